"""The pipeline's steps as Celery tasks: the base task (bounded retries, FIFO ids kept) and what
happens after a step: its events published, then the order goes on along the chain, ends there,
or branches off it.

The chain (orders.runtime.pipeline) is the plan; the state machine decides. A step
whose order needs, next, a step still ahead in the chain returns, and Celery sends
the chain's next message. An order that needs no further step ends the chain there
(the task empties its request's chain and returns: the message is acked and the rest
is never sent). Any other next step is a branch (`Task.replace`): compensation, or the
pipeline rebuilt from the order for a message that carries no chain (sent by hand, or
by an older release).

An ending does not raise Celery's `Ignore`, as Celery's idiom would: for every Ignore the
tracer builds two `ExceptionInfo`s (billiard copies every frame's code positions, then the
traceback is formatted with its source lines), 1.2-1.5 ms of CPU in isolation
(benchmarks/chain_end.py) and more in a busy worker: about 5% of the workers' CPU under
the demo's mix at 20 orders/s, a sixth of the payments worker's (docs/performance.md, tenth
round), paid most when an incident cancels many orders. A branch still ends with Celery's
Ignore: the branch inherits the task's id, and a task reported as a success under that
id would hide a failing branch (Flower keeps SUCCESS over a later FAILURE of one id).

Retries ride through outages, bounded by time rather than by count: a step retries
a RetryableError (throttling, 5xx, timeouts, a lost race) with exponential backoff
and equal jitter (1, 2, 4, ... s, each between half and all of that, capped at
`retry_backoff_max`) for as long as `retry_budget_seconds` from its first failure
allows, then fails and leaves its message to SQS. The first failure's time travels
in the retries' headers. The step's SQS sends (a retry, a branch, the chain's next
message) cannot be retried by sending: they wait out an SQS outage in the task's
thread for up to the same budget (orders.aws.batching.wait_out_outages), the message
held meanwhile.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, NoReturn, Protocol, cast

from celery import Task, signals

from orders.aws import batching
from orders.aws.errors import Backoff
from orders.domain.errors import RetryableError
from orders.domain.events import Event
from orders.domain.order import Order
from orders.runtime import carried, pipeline, publishing, region_gate
from orders.runtime.dependencies import dependencies
from orders.settings import Settings
from orders.steps.admission import check
from orders.steps.flow import task_of
from orders.steps.ports import Deps
from orders.steps.state_machine import Outcome

log = logging.getLogger(__name__)


def admit(settings: Settings, raw: Any) -> tuple[Order, dict[str, Any]]:
    """Validate an order at the door (shape and known SKUs) and choose its entry queue.

    Raises InvalidOrder listing every problem; nothing has been sent then.
    """
    order = check(dependencies(settings).stock, raw)
    return order, pipeline.entry_options(order)


def task_result(outcome: Outcome) -> dict[str, Any]:
    """A step task's JSON result."""
    record = outcome.record
    status = record.status.value if record else None
    if outcome.conflict:
        return {"orderId": outcome.order_id, "status": status, "conflict": True}
    if outcome.skipped:
        return {"orderId": outcome.order_id, "status": status, "reason": record.reason if record else None,
                "paid": bool(record and record.payment), "skipped": True}
    return {"orderId": outcome.order_id, "status": status, "reason": record.reason if record else None,
            "next": task_of(outcome.then) if outcome.then else None}


class _AppWithSettings(Protocol):
    settings: Settings


#: The header a step's retries carry: when the step first failed (epoch seconds), for its budget.
RETRYING_SINCE = "orders_retrying_since"
#: The first retry's longest wait; each next one doubles it, up to settings.retry_backoff_max.
RETRY_BASE_SECONDS = 1.0


def retry_backoff(settings: Settings) -> Backoff:
    """The backoff between a step's retries."""
    return Backoff(RETRY_BASE_SECONDS, float(settings.retry_backoff_max))


def retry_span(settings: Settings) -> float:
    """The longest a step's message can be kept going by retries: its retry budget, then, for its last
    run, a send waiting out an SQS outage for as long again."""
    return 2.0 * settings.retry_budget_seconds


class StepTask(Task):  # type: ignore[misc]
    """Base of the pipeline's tasks: retries of RetryableError only, with backoff and jitter, within a time
    budget (see the module's docstring).

    Anything else a task raises is a bug or a poison message: the message is
    left un-acked (task_acks_on_failure=False), SQS redelivers it and after
    maxReceiveCount moves it to the queue's DLQ.
    """

    abstract = True
    # A received message's argsrepr is rebuilt from its arguments (orders.runtime.redaction).
    Request = "orders.runtime.redaction:RedactedRequest"
    autoretry_for = (RetryableError,)
    retry_backoff = False  # the countdown is ours (`retry`): equal jitter, within the time budget
    max_retries = None  # bounded by settings.retry_budget_seconds instead (`retry`)

    @property
    def settings(self) -> Settings:
        """The settings of the app this task runs in (orders.celery.OrdersCelery.settings)."""
        return cast(_AppWithSettings, self.app).settings

    def dependencies(self) -> Deps:
        """The steps' dependencies, with the order as the previous step left it if the message carried it."""
        given = carried.given(self.request)
        return replace(dependencies(self.settings), given=given) if given else dependencies(self.settings)

    def before_start(self, task_id: str, args: Any, kwargs: Any) -> None:
        region_gate.turn_away(self.settings, self.name)  # only the active region runs steps (rule R1)
        # Until the task is over (task_postrun), every send of this thread waits out an SQS outage:
        # the chain's hand-off is sent after the task returns, on this thread.
        batching.wait_out_outages(self.settings.retry_budget_seconds)

    def conclude(self, outcome: Outcome) -> dict[str, Any]:
        """Publish a step's events together, then let the order go on (see the module's docstring).

        Every send happens before this returns, and so before the message is acked:
        the events, a branch (Task.replace sends it, then raises Ignore), or the chain's next
        message (Celery's tracer sends it once this returns, in this thread).
        """
        self.publish(outcome.events)
        result = task_result(outcome)
        if outcome.then is None:
            return self.end(result) if self.request.chain else result
        if outcome.record is None:
            return result
        if self.ahead(task_of(outcome.then)):
            carried.attach(cast(list[Any] | None, self.request.chain), task_of(outcome.then), outcome.record)
            return result
        return cast(dict[str, Any], self.replace(pipeline.resume(self.app, outcome.record, outcome.then)))

    def settle(self, outcome: Outcome) -> dict[str, Any]:
        """What `conclude` does for a task outside the chain (the expiry sweep): publish, send any branch."""
        self.publish(outcome.events)
        if outcome.then is not None and outcome.record is not None:
            pipeline.resume(self.app, outcome.record, outcome.then).apply_async()
        return task_result(outcome)

    def ahead(self, task: str) -> bool:
        """Whether `task` is still to come in the chain this task's message carries."""
        # The chain's signatures as the message carries them (dicts), next one last.
        rest = cast(list[dict[str, Any]], self.request.chain or [])
        return any(signature.get("task") == task for signature in rest)

    def end(self, result: dict[str, Any]) -> dict[str, Any]:
        """End the chain here: the task returns, its message is acked, the rest of the chain is never sent.

        Celery's tracer sends the chain's next message from the running request's `chain` (the
        same object as `self.request`) once the task returns: emptied, there is nothing to send.
        Celery reports the task as a success, with the result saying the order ended.
        """
        self.request.chain = None
        # A callback linked to this step runs only if its order goes on, as when steps raised Ignore.
        self.request.callbacks = None
        return {**result, "ended": True}

    def publish(self, events: Sequence[Event]) -> None:
        if events:
            publishing.publish(self.settings, events)

    def retry(self, args: Any = None, kwargs: Any = None, exc: Any = None, throw: bool = True,
              eta: Any = None, countdown: Any = None, max_retries: Any = None, **options: Any) -> Any:
        """A retry within the step's time budget (raises `exc` past it) that keeps the rest of its chain
        (Celery's), its FIFO message group and the time of its first failure, and gets a fresh
        deduplication id.

        FIFO queues take no per-message delay: the countdown is held by the
        worker that receives the retry (Celery's ETA), which is why the cap
        stays far below every visibility timeout.
        """
        since = self.retrying_since()
        if countdown is None and eta is None:
            countdown = retry_backoff(self.settings).delay(self.request.retries + 1)
        if countdown is not None:
            countdown = min(countdown, self.settings.retry_backoff_max)
        if time.time() + (countdown or 0) - since > self.settings.retry_budget_seconds:
            self.give_up(exc, since)
        options["headers"] = {**(options.get("headers") or {}), RETRYING_SINCE: since}
        properties = self.request.properties or {}
        if properties.get("MessageGroupId"):
            original = str(properties.get("MessageDeduplicationId") or self.request.id)
            base = re.sub(r"\.r\d+$", "", original)
            options.setdefault("MessageGroupId", properties["MessageGroupId"])
            options.setdefault("MessageDeduplicationId", f"{base}.r{self.request.retries + 1}")
        return super().retry(args, kwargs, exc, throw, eta, countdown, max_retries, **options)

    def retrying_since(self) -> float:
        """When this step first failed: from its retry's header, else now (this is its first failure).

        Anyone who may send to the queue writes the header: a time in the future, NaN or infinity
        would keep the step retrying forever, so only a finite time not after now is believed.
        """
        now = time.time()
        since = getattr(self.request, RETRYING_SINCE, None)
        if isinstance(since, (int, float)) and not isinstance(since, bool) and math.isfinite(since):
            return min(float(since), now)
        return now

    def give_up(self, exc: Any, since: float) -> NoReturn:
        """Out of retry budget: the task fails with `exc`, and its message is left to SQS (and its DLQ)."""
        log.error("%s[%s]: giving up after %d retries in %.0f s (budget %d s): %r",
                  self.name, self.request.id, self.request.retries, time.time() - since,
                  self.settings.retry_budget_seconds, exc)
        if isinstance(exc, BaseException):
            raise exc
        raise self.MaxRetriesExceededError(f"{self.name}[{self.request.id}]: retry budget spent")


def _impatient_again(**_: Any) -> None:
    """After any task, the thread's sends give up after the usual window again (a producer's must)."""
    batching.wait_out_outages(0)


signals.task_postrun.connect(_impatient_again, weak=False, dispatch_uid="orders.runtime.step_tasks.postrun")
