"""Celery's task events of a run, as the control plane carries them: who received which message, when.

Every worker sends `task-received` when its consumer takes a message off SQS
(running or prefetched), with its pid and the task's id and retry count; a
Celery retry is a new message with the same id and one more retry, so
(task id, retries) names one message. The campaign reads these to time the
redelivery of a killed worker's messages (orders.harness.chaos_figures).
Events are what the workers managed to publish: one sent by a worker in the
instant before its SIGKILL may be missing, never invented.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from orders.celery import app

logger = logging.getLogger(__name__)

#: The events kept: a message taken, and a task's ends (after which its message is acked or retried).
KEPT = frozenset({"task-received", "task-started", "task-succeeded", "task-failed", "task-retried",
                  "task-rejected", "task-revoked"})


@dataclass(frozen=True)
class TaskEvent:
    """One task event: its type, the task's id and retries, the sending worker's pid, when (epoch s)."""

    type: str
    task_id: str
    retries: int | None
    pid: int
    hostname: str
    at: float


def task_event(event: dict[str, Any]) -> TaskEvent | None:
    """A TaskEvent from Celery's event dict, or None if it is not one kept."""
    if event.get("type") not in KEPT or not event.get("uuid"):
        return None
    retries = event.get("retries")
    return TaskEvent(str(event["type"]), str(event["uuid"]), int(retries) if retries is not None else None,
                     int(event.get("pid") or 0), str(event.get("hostname", "")),
                     float(event.get("timestamp") or time.time()))


class TaskEventLog:
    """Captures task events on a thread, from `start()` to `stop()`."""

    def __init__(self) -> None:
        self.events: list[TaskEvent] = []
        self._lock = threading.Lock()
        self._receiver: Any = None
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="task-events")
        self.ready = threading.Event()

    def start(self, timeout: float = 10.0) -> TaskEventLog:
        self._thread.start()
        if not self.ready.wait(timeout):
            logger.warning("task events: not listening after %.0f s; the first events may be missed", timeout)
        return self

    def stop(self) -> list[TaskEvent]:
        self._stopping.set()
        if self._receiver is not None:
            self._receiver.should_stop = True
        self._thread.join(timeout=5)
        return self.snapshot()

    def snapshot(self) -> list[TaskEvent]:
        with self._lock:
            return list(self.events)

    def _on_event(self, event: dict[str, Any]) -> None:
        found = task_event(event)
        if found is not None:
            with self._lock:
                self.events.append(found)

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                with app.connection() as conn:  # the control plane (orders.runtime.control_plane)
                    self._receiver = app.events.Receiver(conn, handlers={"*": self._on_event})
                    # kombu calls it once the consumer listens: events from then on are seen.
                    self._receiver.on_consume_ready = lambda *_a, **_k: self.ready.set()
                    if self._stopping.is_set():  # stop() came before this receiver was there to be told
                        return
                    self._receiver.capture(limit=None, timeout=None, wakeup=False)
            except Exception as exc:  # noqa: BLE001 - the control plane blinked: listen again
                logger.warning("task events: %s: %s; listening again", type(exc).__name__, exc)
                self._stopping.wait(1.0)
