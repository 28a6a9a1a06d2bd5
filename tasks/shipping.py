"""The shipping service (shipping): create the shipment with a tracking number; the order completes.

The carrier is SIMULATED: it accepts every address except postal code "00000",
which it refuses as undeliverable (the path where a failure after payment refunds).
"""

from __future__ import annotations

import secrets
from typing import Any

from orders.celery import app
from orders.domain import Order, validate
from orders.errors import PermanentError
from orders.events import Event, event
from orders.settings import Settings, get_settings
from orders.store import OrderStore
from orders.tables import now_iso
from orders.workflow import StepTask, run_step

UNDELIVERABLE_POSTCODE = "00000"


class ShipmentRefused(PermanentError):
    reason = "undeliverable-address"


def book_shipment(order: Order) -> dict[str, Any]:
    """The simulated carrier's answer: a tracking number, or ShipmentRefused."""
    if order.shipping_address.get("postalCode") == UNDELIVERABLE_POSTCODE:
        raise ShipmentRefused(f"carrier refused the address ({UNDELIVERABLE_POSTCODE})")
    return {"carrier": "SIM", "trackingNumber": "1Z" + secrets.token_hex(8).upper(), "bookedAt": now_iso()}


@app.task(base=StepTask, bind=True, name="shipping.create_shipment")
def create_shipment(self: StepTask, order_id: Any = None) -> dict[str, Any]:
    """Book the shipment once (the tracking number is recorded per order) and complete the order."""
    return ship(get_settings(), order_id)


def ship(settings: Settings, order_id: Any) -> dict[str, Any]:
    def act(store: OrderStore, record: dict[str, Any]) -> tuple[dict[str, Any], list[Event]]:
        order = validate(record["order"])
        booked = store.recall(order.order_id, "ship")
        if booked is None:
            try:
                booked, _ = store.remember(order.order_id, "ship", book_shipment(order))
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
