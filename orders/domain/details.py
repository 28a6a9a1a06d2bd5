"""What the steps record on an order besides its state: the payment, the refund, the shipment, the
stock shortages. Each converts from and to the values the store keeps, in the layout it always kept.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from orders.domain.states import PaymentStatus


def present(values: Mapping[str, Any]) -> dict[str, Any]:
    """The values that are set (None means absent, as in a stored item)."""
    return {k: v for k, v in values.items() if v is not None}


def as_decimal(value: Any) -> Decimal | None:
    """A stored number or decimal string as Decimal (None stays None)."""
    return None if value is None else Decimal(str(value))


def as_int(value: Any) -> int | None:
    """A stored number as int (None stays None)."""
    return None if value is None else int(value)


@dataclass(frozen=True)
class Payment:
    """The order's charge: a capture (payment id, amount, gateway attempts) or a decline (reason)."""

    status: PaymentStatus
    payment_id: str | None = None
    amount: Decimal | None = None
    currency: str | None = None
    attempts: int | None = None
    reason: str | None = None

    @classmethod
    def captured(cls, payment_id: str, amount: Decimal, currency: str, attempts: int) -> Payment:
        return cls(PaymentStatus.CAPTURED, payment_id, amount, currency, attempts)

    @classmethod
    def declined(cls, reason: str) -> Payment:
        return cls(PaymentStatus.DECLINED, reason=reason)

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> Payment:
        return cls(PaymentStatus(data["status"]), data.get("paymentId"), as_decimal(data.get("amount")),
                   data.get("currency"), as_int(data.get("attempts")), data.get("reason"))

    def to_data(self) -> dict[str, Any]:
        return present({"paymentId": self.payment_id,
                        "amount": None if self.amount is None else str(self.amount),
                        "currency": self.currency, "attempts": self.attempts,
                        "status": self.status.value, "reason": self.reason})


@dataclass(frozen=True)
class Refund:
    """A refund of a whole capture."""

    refund_id: str
    payment_id: str
    amount: Decimal
    currency: str

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> Refund:
        return cls(str(data["refundId"]), str(data["paymentId"]), Decimal(str(data["amount"])),
                   str(data["currency"]))

    def to_data(self) -> dict[str, Any]:
        return {"refundId": self.refund_id, "paymentId": self.payment_id, "amount": str(self.amount),
                "currency": self.currency}


@dataclass(frozen=True)
class Shipment:
    """A shipment the carrier booked (tracking number), or its refusal (`refused`, with the detail)."""

    carrier: str | None = None
    tracking_number: str | None = None
    booked_at: str | None = None
    refused: bool = False
    detail: str | None = None

    @classmethod
    def booked(cls, carrier: str, tracking_number: str, booked_at: str) -> Shipment:
        return cls(carrier, tracking_number, booked_at)

    @classmethod
    def refusal(cls, detail: str) -> Shipment:
        return cls(refused=True, detail=detail)

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> Shipment:
        return cls(data.get("carrier"), data.get("trackingNumber"), data.get("bookedAt"),
                   data.get("status") == "refused", data.get("detail"))

    def to_data(self) -> dict[str, Any]:
        if self.refused:
            return present({"status": "refused", "detail": self.detail})
        return present({"carrier": self.carrier, "trackingNumber": self.tracking_number,
                        "bookedAt": self.booked_at})


@dataclass(frozen=True)
class Shortage:
    """One line of an order that the stock could not cover."""

    sku: str
    requested: int
    available: int

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> Shortage:
        return cls(str(data["sku"]), int(data["requested"]), int(data["available"]))

    def to_data(self) -> dict[str, Any]:
        return {"sku": self.sku, "requested": self.requested, "available": self.available}
