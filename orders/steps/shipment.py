"""The shipping step: book the shipment with the carrier and complete the order, or refund on a refusal.

The carrier is idempotent per order (orders.steps.ports.Carrier), so a step that
runs again (its worker died after booking) books nothing new and needs no record of
its own: the step is one read and one conditional write of the order.
"""

from __future__ import annotations

from orders.domain.events import Event, event
from orders.domain.records import Change, OrderRecord
from orders.domain.sensitive import Field
from orders.domain.states import OrderState, Step
from orders.steps.flow import COMPENSATION
from orders.steps.ports import Deps
from orders.steps.state_machine import Outcome, run_step

#: Why an order is refunded when the carrier refuses its address.
UNDELIVERABLE = "undeliverable-address"


def ship(deps: Deps, order_id: object) -> Outcome:
    """Book the shipment of a paid order (the tracking number is recorded on it) and complete it."""
    return run_step(deps, order_id, Step.SHIP, (OrderState.PAID,), lambda record: book(deps, record),
                    announce)


def book(deps: Deps, record: OrderRecord) -> tuple[OrderRecord, list[Event]]:
    order = record.order()
    # The address, and nothing else, is opened: in memory, for the carrier's call only.
    shipment = deps.carrier.book(order, order.opened(Field.SHIPPING_ADDRESS, deps.fields.open))
    if shipment.refused:
        return deps.orders.transition(record, Change(OrderState.REFUNDING, Step.SHIP, UNDELIVERABLE,
                                                     shipment=shipment)), []
    return deps.orders.transition(record, Change(OrderState.COMPLETED, Step.SHIP, shipment=shipment,
                                                 via=(OrderState.SHIPPED,))), []


def announce(record: OrderRecord) -> tuple[list[Event], Step | None]:
    if record.status is OrderState.REFUNDING:
        return [], COMPENSATION
    return [event("OrderShipped", record, record.shipment.to_data() if record.shipment else {}),
            event("OrderCompleted", record, {"totalAmount": str(record.total_amount),
                                             "currency": record.currency})], None
