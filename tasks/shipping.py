"""The shipping service (shipping): create the shipment with a tracking number; the order completes.

The carrier is SIMULATED: it accepts every address except postal code "00000",
which it refuses as undeliverable (the path where a failure after payment refunds).
Like a real carrier API called with an idempotency key (the order id), booking
the same order twice gives the same shipment, so a step that runs again (its
worker died after booking) books nothing new and needs no record of its own:
the step is one read and one conditional write of the order.
"""

from __future__ import annotations

import uuid
from typing import Any

from orders.aws.store import OrderStore
from orders.aws.tables import now_iso
from orders.celery import app
from orders.domain.errors import PermanentError
from orders.domain.events import Event, event
from orders.domain.order import Order, validate
from orders.settings import Settings, get_settings
from orders.steps.workflow import StepTask, run_step

UNDELIVERABLE_POSTCODE = "00000"


class ShipmentRefused(PermanentError):
    reason = "undeliverable-address"


_SHIPMENTS = uuid.UUID("3d0b7f52-9c1e-4a8b-b6f4-2e5a7c9d1f30")


def book_shipment(order: Order) -> dict[str, Any]:
    """The simulated carrier's answer: a tracking number (the same for the same order), or ShipmentRefused."""
    if order.shipping_address.get("postalCode") == UNDELIVERABLE_POSTCODE:
        raise ShipmentRefused(f"carrier refused the address ({UNDELIVERABLE_POSTCODE})")
    tracking = "1Z" + uuid.uuid5(_SHIPMENTS, order.order_id).hex[:16].upper()
    return {"carrier": "SIM", "trackingNumber": tracking, "bookedAt": now_iso()}


@app.task(base=StepTask, bind=True, name="shipping.create_shipment")
def create_shipment(self: StepTask, order_id: Any = None) -> dict[str, Any]:
    """Book the shipment once (the tracking number is recorded per order) and complete the order."""
    return ship(get_settings(), order_id)


def ship(settings: Settings, order_id: Any) -> dict[str, Any]:
    def act(store: OrderStore, record: dict[str, Any]) -> tuple[dict[str, Any], list[Event]]:
        order = validate(record["order"])
        try:
            booked = book_shipment(order)
        except ShipmentRefused as exc:
            return store.transition(record, "refunding", "ship", exc.reason,
                                    {"shipment": {"status": "refused", "detail": str(exc)}}), []
        return store.transition(record, "completed", "ship", fields={"shipment": booked},
                                via=("shipped",)), []

    def announce(record: dict[str, Any]) -> tuple[list[Event], str | None]:
        if record["status"] == "refunding":
            return [], "refund"
        return [event("OrderShipped", record, record.get("shipment") or {}),
                event("OrderCompleted", record, {"totalAmount": str(record["totalAmount"]),
                                                 "currency": record["currency"]})], None

    return run_step(settings, order_id, "ship", ("paid",), act, announce)
