"""How a step moves an order, safely twice: from the states it expects, or re-announcing its own change.

A step that finds its own state change already recorded (the message came twice,
or the worker died after recording) announces again what that change means (the
same events, the same next step): the events keep their ids and the next step is
idempotent too. A message for an order past the step, or unknown, changes nothing.

A `failed` order (a message of it reached a DLQ) stands where it failed from
(`OrderRecord.standing`): the step that expects that state takes it on, and the step
whose change that state is announces it again, so a redriven message resumes the
order whether its step failed before or after its own write.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

from orders.domain.errors import ConcurrentUpdate, InvalidOrder
from orders.domain.events import Event
from orders.domain.records import OrderRecord
from orders.domain.states import OrderState, Step
from orders.domain.times import parse_time
from orders.domain.writes import Write
from orders.steps.ports import Deps, Metrics, Orders

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    """What a step did to one order: the record it left, the events to publish, the step to run next.

    `skipped`: the message found nothing to do; `conflict`: a placement with another
    order's id. The runtime publishes `events`, then lets the order go on to `then`: along
    its chain, or a branch off it; with no `then`, the order's chain ends here.
    """

    order_id: str
    record: OrderRecord | None
    events: tuple[Event, ...] = ()
    then: Step | None = None
    skipped: bool = False
    conflict: bool = False


#: A step's change, from a state it expects: the new record and any events of the change itself.
Act = Callable[[OrderRecord], tuple[OrderRecord, list[Event]]]
#: What the state an order is in means: the events to announce and the next step.
Announce = Callable[[OrderRecord], tuple[list[Event], Step | None]]
Expected = Collection[OrderState] | Callable[[OrderRecord], Collection[OrderState]]


def run_step(deps: Deps, order_id: object, step: Step, expected: Expected,
             act: Act, announce: Announce) -> Outcome:
    """One pipeline step, safe to run twice (see the module's docstring).

    When the message carried the order as the previous step left it (`Deps.given`) and that
    order waits for this step, the step acts on it without reading the order first: every
    change is a write conditional on the version and state it was decided on, so a carried
    order that is out of date (the message came twice, was redriven, or was forged) changes
    nothing, and the step reads the order and decides again.
    """
    if not (isinstance(order_id, str) and order_id):
        return skipped(str(order_id), step, None)
    given = deps.given if deps.given is not None and deps.given.order_id == order_id else None
    if given is not None and ready_for(given, _expected(given, expected)):
        try:
            return _act(deps, given, act, announce)
        except (ConcurrentUpdate, InvalidOrder) as exc:
            log.info("%s: order %s moved since its message was sent (%s); reading it", step, order_id, exc)
    record = deps.orders.load(order_id)
    if record is None:
        return skipped(order_id, step, record)
    if ready_for(record, _expected(record, expected)):
        return _act(deps, record, act, announce)
    if record.last_step is step:
        events, then = announce(record.standing())
        return Outcome(record.order_id, record, tuple(events), then)
    return skipped(order_id, step, record)


def _expected(record: OrderRecord, expected: Expected) -> Collection[OrderState]:
    return expected(record) if callable(expected) else expected


def _act(deps: Deps, record: OrderRecord, act: Act, announce: Announce) -> Outcome:
    """Make the step's change to an order that waits for it, and announce it."""
    record, extra = act(record)
    record_metrics(deps.metrics, record)
    events, then = announce(record.standing())
    return Outcome(record.order_id, record, (*events, *extra), then)


def ready_for(record: OrderRecord, expected: Collection[OrderState]) -> bool:
    """Whether the order waits for this step (or failed there, and its message was redriven)."""
    return record.standing().status in expected


def skipped(order_id: str, step: Step, record: OrderRecord | None) -> Outcome:
    log.info("%s: order %s is %s; nothing to do", step, order_id, record.status if record else "unknown")
    return Outcome(order_id, record, skipped=True)


def record_metrics(metrics: Metrics, record: OrderRecord) -> None:
    """Stage latency of the change just made and, at a final state, the business metrics."""
    history = record.history
    # A change right after the DLQ watcher's mark timed the triage, not a stage.
    if len(history) >= 2 and history[-2].step is not Step.DLQ:
        seconds = (parse_time(history[-1].at) - parse_time(history[-2].at)).total_seconds()
        metrics.stage_time(history[-1].status.value, seconds)
    if record.status is OrderState.COMPLETED and record.total_amount is not None and record.currency:
        metrics.order_completed(record.total_amount, record.currency,
                                parse_time(history[0].at) if history else None)
    elif record.status is OrderState.CANCELLED:
        metrics.order_cancelled(record.reason or "unknown")
    elif record.status is OrderState.REJECTED:
        metrics.order_rejected()
    elif record.status is OrderState.VALIDATED and record.last_step is Step.PLACE:  # just admitted
        metrics.order_placed()


def commit(orders: Orders, writes: Sequence[Write]) -> None:
    """Run writes that must all happen: ConcurrentUpdate (retryable) if any condition failed."""
    refusal = orders.transact(writes)
    if refusal is not None:
        raise ConcurrentUpdate(f"transaction cancelled: {list(refusal.codes)}")
