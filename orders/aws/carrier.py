"""A SIMULATED shipping carrier: no parcel moves, no network call leaves the platform.

It stands where a carrier's booking API would be (beside the simulated payment
gateway): it accepts every address except postal code "00000", which it refuses
as undeliverable (the path where a failure after payment refunds). Like a real
carrier API called with an idempotency key (the order id), booking the same order
twice gives the same shipment, so a shipping step that runs again (its worker died
after booking) books nothing new and needs no record of its own.
"""

from __future__ import annotations

import uuid
from typing import Any

from orders.domain.details import Shipment
from orders.domain.order import Order
from orders.domain.times import now_iso

UNDELIVERABLE_POSTCODE = "00000"
_SHIPMENTS = uuid.UUID("3d0b7f52-9c1e-4a8b-b6f4-2e5a7c9d1f30")


class SimulatedCarrier:
    """The simulator's API: `book` (orders.steps.ports.Carrier)."""

    name = "SIM"

    def book(self, order: Order, address: dict[str, Any]) -> Shipment:
        """A tracking number (the same for the same order), or the carrier's refusal.

        `address` is the order's shipping address in clear, opened by the shipping step for
        this call only: the carrier needs it, nothing here keeps it.
        """
        if address.get("postalCode") == UNDELIVERABLE_POSTCODE:
            return Shipment.refusal(f"carrier refused the address ({UNDELIVERABLE_POSTCODE})")
        tracking = "1Z" + uuid.uuid5(_SHIPMENTS, order.order_id).hex[:16].upper()
        return Shipment.booked(self.name, tracking, now_iso())
