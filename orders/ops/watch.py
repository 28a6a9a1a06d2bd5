"""DLQ triage as it happens: workers record why a task failed; the watcher archives, alerts, counts.

The worker side (`on_task_failure`, `on_task_unknown`) writes the error of a
failed task to the archive, keyed by task id, so a message that later reaches its
DLQ can be shown with the error that put it there. The watcher (`watch`, run by
Celery beat as `ops.watch_dlqs`) reads every DLQ, archives each new message
before anything may delete it, publishes one critical alert per message on
`system-health`, emits the failure metrics and marks the order `failed`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from orders.aws import metrics
from orders.ops import archive
from orders.ops.announce import Notice, announce
from orders.ops.dead_letters import DeadLetter, release, scan
from orders.ops.failures import exception_kinds, failure_category
from orders.runtime.dependencies import fail_order  # the pipeline's own path: store + OrderFailed
from orders.runtime.redaction import mask_text
from orders.settings import Settings, get_settings
from orders.topology import QUEUES, QueueSpec

log = logging.getLogger(__name__)

#: Tasks whose messages name no order, though their first argument reads like an id (a restock's sku).
NO_ORDER = frozenset({"inventory.restock", "inventory.release_expired"})


def on_task_failure(sender: Any = None, task_id: str | None = None, exception: BaseException | None = None,
                    einfo: Any = None, **_: Any) -> None:
    """Celery task_failure handler: record the error (never raises: the worker must go on)."""
    if not task_id or exception is None:
        return
    queue = (getattr(sender.request, "delivery_info", None) or {}).get("routing_key", "") if sender else ""
    _record(task_id, getattr(sender, "name", "?"), str(queue), exception, str(einfo or ""))


def on_task_unknown(name: str | None = None, id: str | None = None, exc: BaseException | None = None,
                    message: Any = None, **_: Any) -> None:
    """Celery task_unknown handler: a message naming a task this worker does not have."""
    if id and exc is not None:
        queue = (getattr(message, "delivery_info", None) or {}).get("routing_key", "")
        _record(id, name or "?", str(queue), exc, "")  # a KeyError: a bug (a deploy out of step)


def _record(task_id: str, task: str, queue: str, exc: BaseException, trace: str) -> None:
    try:
        # The error's text and its traceback's lines may quote what a message carried.
        error = mask_text(f"{type(exc).__name__}: {exc}")
        archive.record_failure(get_settings(), task_id, task, queue, error,
                               exception_kinds(exc), failure_category(exc), mask_text(trace))
    except Exception as err:  # the message still reaches its DLQ; only its error is missing
        log.warning("could not record the failure of %s %s: %s", task, task_id, err)


@dataclass
class Arrival:
    """A message of a DLQ whose alert is due: newly archived, or archived by a pass that could not alert."""

    letter: DeadLetter
    category: str
    why: str
    failure: dict[str, Any] | None
    new: bool = True

    def alert(self, settings: Settings) -> dict[str, Any]:
        m = self.letter
        return {"event_type": "MessageDeadLettered", "severity": "critical", "environment": settings.env,
                "queue": m.queue.name, "dlq": m.queue.dlq_name, "message_id": m.message_id, "key": m.key,
                "task": archive.clip(m.task, 200), "order_id": m.order_id, "classification": self.category,
                "error": archive.clip(self.why, 2000),
                "failures": int((self.failure or {}).get("failures", 0)),
                "action": f"orders dlq show {m.queue.name}; see docs/operations.md#dlq-triage"}


def watch(settings: Settings, limit: int = 100) -> list[Arrival]:
    """One pass over every DLQ: archive, count, fail the orders of, and alert on new messages.

    A DLQ that cannot be read or archived now is logged and left for the next pass
    (its messages stay in it); the other DLQs are still watched.
    """
    arrivals = []
    for spec in QUEUES:
        try:
            arrivals += watch_queue(settings, spec, limit)
        except Exception:
            log.exception("DLQ %s not watched this pass", spec.dlq_sqs_name(settings))
    for arrival in (a for a in arrivals if a.new):
        metrics.count("DLQArrivals", Queue=arrival.letter.queue.name, Classification=arrival.category)
        # A message a worker refused never ran a step: its order is wherever its own messages took it.
        if arrival.letter.order_id and not arrival.letter.poison and arrival.letter.task not in NO_ORDER:
            metrics.order_failed(arrival.category)
            mark_order_failed(settings, arrival)
    metrics.flush()
    if arrivals:
        publish_alerts(settings, arrivals)
    return arrivals


def watch_queue(settings: Settings, spec: QueueSpec, limit: int = 100) -> list[Arrival]:
    """Archive the DLQ's messages not archived yet; return them, and those still to alert on."""
    letters = scan(settings, spec, limit)
    try:
        found = archive.look_up(settings, letters)
        # An alert the archiving pass could not send (SNS down, pass killed) is sent by a later one.
        arrivals = [Arrival(m, str(copy["category"]), str(copy["why"]), None, new=False)
                    for m in letters if (copy := found.copies.get(m.message_id)) is not None
                    and archive.claim_late_alert(settings, m, copy)]
        for letter in found.new:
            category, why = found.classify(letter)
            try:
                if archive.archive(settings, letter, category, why):
                    arrivals.append(Arrival(letter, category, why, found.failures.get(letter.key)))
            except archive.ArchiveError as exc:  # it stays in its DLQ; the next pass tries again
                metrics.count("DLQArchiveFailures", Queue=spec.name)
                log.error("%s", exc)
        return arrivals
    finally:
        if letters:
            release(settings, letters)


def publish_alerts(settings: Settings, arrivals: list[Arrival]) -> None:
    """One critical alert per message on system-health, through the one SNS path; each marked once sent
    (one not sent, a later pass sends: archive.claim_late_alert)."""
    outcomes = announce(settings, [notice(a.alert(settings)) for a in arrivals])
    if outcomes is None:
        log.warning("%d dead-letter alert(s) left to a later pass", len(arrivals))
        return
    for arrival, error in zip(arrivals, outcomes, strict=True):
        if error is None:
            archive.mark_alerted(settings, arrival.letter)
        else:
            log.error("dead-letter alert for %s not published (retried next pass): %s",
                      arrival.letter.message_id, error)


def notice(alert: dict[str, Any]) -> Notice:
    subject = f"[critical] dead-lettered {alert['task'] or 'message'} on {alert['queue']}"
    return Notice(subject, alert, {"severity": "critical", "event_type": "MessageDeadLettered",
                                   "queue": alert["queue"], "classification": alert["classification"]})


def mark_order_failed(settings: Settings, arrival: Arrival) -> bool:
    """The order shows `failed` (and OrderFailed is published) while its message awaits triage."""
    order_id = arrival.letter.order_id
    if order_id is None:
        return False
    reason = f"dead-lettered on {arrival.letter.queue.name} ({arrival.category}): {arrival.why}"[:500]
    try:
        return fail_order(settings, order_id, reason)
    except Exception as exc:  # a store or SNS hiccup must not stop the watcher; the alert still goes out
        log.warning("could not mark order %s failed: %s", order_id, exc)
        return False
