"""The review step of large orders: automated rules (simulated: orders.domain.order.review_concerns)."""

from __future__ import annotations

from orders.domain.events import Event, event
from orders.domain.order import review_concerns
from orders.domain.records import Change, OrderRecord
from orders.domain.states import OrderState, Step
from orders.steps.flow import next_step
from orders.steps.ports import Deps
from orders.steps.state_machine import Outcome, run_step


def review(deps: Deps, order_id: object) -> Outcome:
    """Approve a validated order, or cancel it with the review's concerns."""
    def act(record: OrderRecord) -> tuple[OrderRecord, list[Event]]:
        concerns = review_concerns(record.order(), deps.settings.review_threshold)
        if concerns:
            declined = Change(OrderState.CANCELLED, Step.REVIEW, "review-declined", problems=tuple(concerns))
            return deps.orders.transition(record, declined), []
        return deps.orders.transition(record, Change(OrderState.REVIEWED, Step.REVIEW)), []

    return run_step(deps, order_id, Step.REVIEW, (OrderState.VALIDATED,), act, announce)


def announce(record: OrderRecord) -> tuple[list[Event], Step | None]:
    if record.status is OrderState.REVIEWED:
        return [event("OrderReviewed", record, {"decision": "approved"})], next_step(record, Step.REVIEW)
    cancelled = event("OrderCancelled", record, {"reason": record.reason, "problems": list(record.problems)})
    return [cancelled], None
