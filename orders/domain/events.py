"""Domain events: what happened to an order, in the past tense, with a stable id per occurrence.

Event ids are derived from (order id, event type, key), so a step that runs
twice produces the same ids and subscribers can drop the duplicate. Which
topic carries each type and its severity are declared here too; publishing
is an adapter's job (orders.aws.sns).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from orders.domain.records import OrderRecord
from orders.domain.times import now_iso

SCHEMA_VERSION = 1
EVENT_NAMESPACE = uuid.UUID("6f1c2a4e-3b8d-4c5e-9a7f-0d1e2f3a4b5c")
#: Each event type's topic. Inventory events go to inventory-alerts.
EVENT_TOPICS: dict[str, str] = {
    **{t: "order-status" for t in ("OrderPlaced", "OrderReviewed", "OrderShipped", "OrderCompleted",
                                   "OrderCancelled", "OrderRejected", "OrderFailed")},
    **{t: "payment-notifications" for t in ("PaymentCaptured", "PaymentDeclined", "PaymentRefunded")},
    **{t: "inventory-alerts" for t in ("StockReserved", "StockReleased", "StockLow", "OutOfStock",
                                       "StockRestocked")},
}
#: Severity by event type (default "info"); "critical" reaches the SMS/email alert subscriptions.
SEVERITIES: dict[str, str] = {
    "PaymentDeclined": "warning", "OrderCancelled": "warning", "OrderRejected": "warning",
    "StockLow": "warning", "PaymentRefunded": "warning",
    "OutOfStock": "critical", "OrderFailed": "critical",
}


@dataclass(frozen=True)
class Event:
    """One domain event about one order (or one product, for stock alerts)."""

    type: str
    order_id: str
    correlation_id: str
    data: dict[str, Any] = field(default_factory=dict)
    key: str = ""
    occurred_at: str = field(default_factory=now_iso)
    tier: str | None = None

    @property
    def topic(self) -> str:
        return EVENT_TOPICS[self.type]

    @property
    def severity(self) -> str:
        return SEVERITIES.get(self.type, "info")

    @property
    def event_id(self) -> str:
        return str(uuid.uuid5(EVENT_NAMESPACE, f"{self.order_id}|{self.type}|{self.key}"))

    def envelope(self) -> dict[str, Any]:
        return {"eventType": self.type, "schemaVersion": SCHEMA_VERSION, "eventId": self.event_id,
                "occurredAt": self.occurred_at, "orderId": self.order_id,
                "correlationId": self.correlation_id, "severity": self.severity, "data": self.data}

    def attributes(self) -> dict[str, dict[str, str]]:
        """SNS message attributes (subscription filter policies match on these)."""
        attrs = {"event_type": self.type, "severity": self.severity, "order_id": self.order_id,
                 "correlation_id": self.correlation_id, "customer_tier": self.tier}
        out = {k: {"DataType": "String", "StringValue": v} for k, v in attrs.items() if v}
        out["schema_version"] = {"DataType": "Number", "StringValue": str(SCHEMA_VERSION)}
        return out

    def summary(self) -> str:
        detail = self.data.get("reason") or self.data.get("trackingNumber") or ""
        return f"Order {self.order_id}: {self.type}" + (f" ({detail})" if detail else "")


def event(type_: str, record: OrderRecord, data: dict[str, Any] | None = None, key: str = "") -> Event:
    """An event about the order in `record`."""
    return Event(type_, record.order_id, record.correlation_id or record.order_id, data or {}, key,
                 tier=record.customer_tier)
