"""The `order.*` attributes of the spans of Celery tasks, from what Celery's signals carry.

The steps' code knows nothing of tracing: the order id comes from a task's first
argument (an order id, an order, an event or a list of events), the step from the
task's name, the outcome from what the task returned or raised:

    order.id        the order the task works on
    order.step      place, review, reserve, charge, ship, refund (the task's step), else the
                    task name's last part (notify, release, publish, ...)
    order.outcome   ok | ended (the order is final: the rest of its chain is not sent) |
                    branched (compensation or a resume, sent in its place) | skipped (already
                    done: a repeated message) | conflict | retry | failed
    order.status    the order's status after the step, when the task says it
    order.error     the exception type of a retry or a failure

Loaded only when tracing is on (orders.runtime.tracing_sdk).
"""

from __future__ import annotations

import re
from typing import Any

from celery import signals
from celery.exceptions import Ignore, Retry
from opentelemetry import trace

from orders.runtime.redaction import order_of
from orders.steps.flow import STEP_OF_TASK

#: How a step of an earlier release said, raising Ignore, that an order is final (StepTask.end returns it).
ENDED = re.compile(r"^order \S+ is (\S+): ")


def step_of(task_name: str) -> str:
    """The step a task runs: the pipeline's name for it, else its name's last part."""
    return STEP_OF_TASK.get(task_name) or task_name.rsplit(".", 1)[-1]


def outcome_of(state: str | None, retval: Any) -> dict[str, str]:
    """`order.outcome` (and `order.status`, `order.error` when known) of a finished task."""
    if isinstance(retval, Retry) or state == "RETRY":
        cause = getattr(retval, "exc", None)
        return {"order.outcome": "retry", **({"order.error": type(cause).__name__} if cause else {})}
    if isinstance(retval, Ignore) or state == "IGNORED":  # a branch; an ending of an earlier release
        ended = ENDED.match(str(retval))
        return {"order.outcome": "ended", "order.status": ended.group(1)} if ended else \
            {"order.outcome": "branched"}
    if state == "FAILURE" or isinstance(retval, BaseException):
        return {"order.outcome": "failed", "order.error": type(retval).__name__}
    if isinstance(retval, dict):
        # StepTask.end: the step ended its order's chain (a branch raises Celery's Ignore, above).
        outcome = "ended" if retval.get("ended") is True else "skipped" if retval.get("skipped") \
            else "conflict" if retval.get("conflict") else "ok"
        status = retval.get("status")
        return {"order.outcome": outcome, **({"order.status": status} if isinstance(status, str) else {})}
    return {"order.outcome": "ok"}


def _label(span: Any, task_name: str, args: Any) -> None:
    if not span.is_recording():
        return
    span.set_attribute("order.step", step_of(task_name))
    order_id = order_of(task_name, args)  # checked: a hand-made id is no attribute
    if order_id:
        span.set_attribute("order.id", order_id)


def _on_prerun(task: Any = None, args: Any = None, **_: Any) -> None:
    # After the instrumentation's prerun: its span for this run is the current one.
    if task is not None:
        _label(trace.get_current_span(), task.name, args)


def _on_postrun(state: str | None = None, retval: Any = None, **_: Any) -> None:
    # Before the instrumentation's postrun, which ends the span.
    span = trace.get_current_span()
    if span.is_recording():
        span.set_attributes(outcome_of(state, retval))


def _on_publish(sender: Any = None, body: Any = None, **_: Any) -> None:
    # After the instrumentation's before_task_publish: the producer span is the current one.
    args = body[0] if isinstance(body, (list, tuple)) and body else None
    _label(trace.get_current_span(), str(sender), args)


def connect_before_instrumentation() -> None:
    """Handlers that must run before the Celery instrumentation's (signals run in connection order)."""
    signals.task_postrun.connect(_on_postrun, weak=False, dispatch_uid="orders.order_spans.postrun")


def connect_after_instrumentation() -> None:
    """Handlers that must run after the Celery instrumentation's."""
    signals.task_prerun.connect(_on_prerun, weak=False, dispatch_uid="orders.order_spans.prerun")
    signals.before_task_publish.connect(_on_publish, weak=False, dispatch_uid="orders.order_spans.publish")
