"""The expiry sweep: every expired hold given back, and the orders still waiting on one ended unpaid."""

from __future__ import annotations

import logging
from collections.abc import Callable

from orders.domain.events import Event, event
from orders.domain.states import HoldState, OrderState, Step
from orders.steps.charge import EXPIRED, end_unpaid
from orders.steps.flow import COMPENSATION
from orders.steps.ports import Deps
from orders.steps.reservation import released_event
from orders.steps.state_machine import Outcome

log = logging.getLogger(__name__)


def sweep(deps: Deps, conclude: Callable[[Outcome], object], now: float | None = None) -> list[str]:
    """Release every expired hold; each order's outcome is concluded (its events published, its
    refund sent) before the next hold is looked at. The ids of the orders released."""
    released = []
    for order_id in deps.stock.expired_holds(now):
        outcome = expire(deps, order_id, now)
        if outcome is not None:
            conclude(outcome)
            released.append(order_id)
    if released:
        log.info("released %d expired reservation(s)", len(released))
    return released


def expire(deps: Deps, order_id: str, now: float | None = None) -> Outcome | None:
    """Release one expired hold; an order still waiting for payment is cancelled with it
    (or refunded, if its payment was captured but never recorded: charge.end_unpaid).

    A `failed` order that failed waiting for payment (its charge message in a DLQ) is ended the
    same way: its stock is never given back while a capture of it is kept.
    """
    hold, record = deps.stock.load_hold(order_id), deps.orders.load(order_id)
    if hold is None or not hold.expired(now):
        return None
    writes = deps.stock.release(hold, HoldState.EXPIRED)
    waiting = record is not None and record.standing().status is OrderState.RESERVED
    if record is not None and waiting:
        write, record = end_unpaid(deps, record, Step.EXPIRE)
        writes.append(write)
    if deps.orders.transact(writes) is not None:
        log.info("hold of %s changed during the sweep; the next sweep looks again", order_id)
        return None
    released = {"items": hold.as_data(), "reason": EXPIRED}
    if record is None:  # a hold whose order record is gone: the event still says what was released
        return Outcome(order_id, None, (Event("StockReleased", order_id, order_id, released),))
    events = [released_event(record, hold, EXPIRED)]
    if waiting and record.status is OrderState.CANCELLED:
        events.append(event("OrderCancelled", record, {"reason": EXPIRED}))
    then = COMPENSATION if waiting and record.status is OrderState.REFUNDING else None
    return Outcome(order_id, record, tuple(events), then)
