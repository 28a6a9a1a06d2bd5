"""An order whose message reached a DLQ: marked `failed` (resumable where it stopped) and announced."""

from __future__ import annotations

from orders.domain.events import event
from orders.steps.ports import Orders
from orders.steps.state_machine import Outcome


def fail_order(orders: Orders, order_id: str, reason: str) -> Outcome | None:
    """Mark the order failed; the outcome announces OrderFailed. None if it was final or failed already."""
    if not orders.mark_failed(order_id, reason):
        return None
    record = orders.load(order_id)
    events = (event("OrderFailed", record, {"reason": reason}),) if record else ()
    return Outcome(order_id, record, events)
