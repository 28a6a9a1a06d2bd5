"""Performance and operational metrics of every task, from Celery's own signals.

Per task: its duration (`TaskDuration` by task name), and `TaskSuccess` 1 or 0
by queue, whose average is the success rate the error-rate alarm watches (1 also
for a step that branched off its order's chain, which Celery calls IGNORED); per retry,
`TaskRetries`. Values go to the process's metrics buffer (`orders.aws.metrics`), bound
to the worker's settings when it starts and flushed at worker shutdown.
"""

from __future__ import annotations

import time
from typing import Any

from celery import signals

from orders.aws import metrics
from orders.aws.metrics import amount, count, timing
from orders.settings import Settings
from orders.topology import queue_for_task

_started: dict[str, float] = {}


def _queue_of(task: Any) -> str:
    info = getattr(task.request, "delivery_info", None) or {}
    if info.get("routing_key"):
        return str(info["routing_key"])
    try:
        return queue_for_task(task.name).name
    except KeyError:
        return "unknown"


def _on_prerun(task_id: str | None = None, **_: Any) -> None:
    if task_id:
        _started[task_id] = time.perf_counter()


def _on_postrun(task_id: str | None = None, task: Any = None, state: str | None = None, **_: Any) -> None:
    """Per task: its duration, and 1 (success) or 0 (failure): the average is the success rate."""
    began = _started.pop(task_id or "", None)
    if task is None:
        return
    if began is not None:
        timing("TaskDuration", time.perf_counter() - began, Task=task.name)
    if state in ("SUCCESS", "IGNORED"):  # IGNORED: a step that branched off its order's chain
        amount("TaskSuccess", 1, Queue=_queue_of(task))
    elif state == "FAILURE":
        amount("TaskSuccess", 0, Queue=_queue_of(task))
    elif state == "RETRY":
        count("TaskRetries", Queue=_queue_of(task))


def _on_worker_init(sender: Any = None, **_: Any) -> None:
    """The worker's metrics go where its app runs (`app.settings`: its environment, endpoint, interval)."""
    settings = getattr(getattr(sender, "app", None), "settings", None)
    if isinstance(settings, Settings):
        metrics.bind(settings)


def _on_shutdown(**_: Any) -> None:
    metrics.buffer().close()


def connect_task_signals() -> None:
    """Measure every task of this process and flush at worker shutdown (idempotent)."""
    signals.worker_init.connect(_on_worker_init, weak=False, dispatch_uid="orders.aws.metrics.worker_init")
    signals.task_prerun.connect(_on_prerun, weak=False, dispatch_uid="orders.aws.metrics.prerun")
    signals.task_postrun.connect(_on_postrun, weak=False, dispatch_uid="orders.aws.metrics.postrun")
    for name, signal in (("process", signals.worker_process_shutdown), ("worker", signals.worker_shutdown)):
        signal.connect(_on_shutdown, weak=False, dispatch_uid=f"orders.aws.metrics.{name}_shutdown")
