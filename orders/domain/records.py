"""The records that cross a step boundary, typed: the order as the store keeps it, with its history
and the details the steps record on it (orders.domain.details), and the stock hold.

Each record converts from and to the plain values the store keeps (`from_data`, `to_data`:
the stored camelCase names, money as Decimal or decimal strings, absent fields left out), so
items keep the layout the pipeline has always written and existing items load unchanged.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any, TypedDict

from orders.domain.details import Payment, Refund, Shipment, Shortage, as_decimal, as_int, present
from orders.domain.order import Order, validate
from orders.domain.states import HoldState, OrderState, Step


@dataclass(frozen=True)
class HistoryEntry:
    """One state an order entered: when, by which step, and why (on the entry of a step's last state)."""

    status: OrderState
    at: str
    step: Step
    reason: str | None = None

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> HistoryEntry:
        return cls(OrderState(data["status"]), str(data["at"]), Step(data["step"]), data.get("reason"))

    def to_data(self) -> dict[str, Any]:
        return present({"status": self.status.value, "at": self.at, "step": self.step.value,
                        "reason": self.reason})


class StockLevel(TypedDict):
    """A product's stock, as `orders inventory show --json` prints it."""

    sku: str
    available: int
    reserved: int


@dataclass(frozen=True)
class Change:
    """A state change a step makes: to `status` (through `via` first) by `step`, with a reason and the
    details it records. Details left unset, and a reason of None, keep what the order had."""

    status: OrderState
    step: Step
    reason: str | None = None
    via: tuple[OrderState, ...] = ()
    payment: Payment | None = None
    shipment: Shipment | None = None
    refund: Refund | None = None
    problems: tuple[str, ...] = ()
    shortages: tuple[Shortage, ...] = ()
    failed_from: OrderState | None = None
    reservation_expires_at: int | None = None

    def entries(self, at: str) -> list[HistoryEntry]:
        """The history entries it appends (the reason goes on the last)."""
        states = (*self.via, self.status)
        return [HistoryEntry(s, at, self.step, self.reason if n == len(states) - 1 else None)
                for n, s in enumerate(states)]

    def fields(self) -> dict[str, Any]:
        """The stored fields it sets besides status, version, history and updatedAt (as stored)."""
        return present({
            "reason": self.reason,
            "payment": self.payment.to_data() if self.payment else None,
            "shipment": self.shipment.to_data() if self.shipment else None,
            "refund": self.refund.to_data() if self.refund else None,
            "problems": list(self.problems) or None,
            "shortages": [s.to_data() for s in self.shortages] or None,
            "failedFrom": self.failed_from.value if self.failed_from else None,
            "reservationExpiresAt": self.reservation_expires_at,
        })


#: The stored fields that describe a failure, dropped when a step takes the order on again.
FAILURE_FIELDS = ("reason", "failedFrom")


@dataclass(frozen=True)
class OrderRecord:
    """An order as the store keeps it: its state machine (status, version, history) and what the steps
    recorded on it. `content` is the order as placed (`Order.to_json()`), None for an order refused
    or failed before it was ever recorded; `order()` reads it back."""

    order_id: str
    status: OrderState
    version: int
    history: tuple[HistoryEntry, ...] = ()
    reason: str | None = None
    problems: tuple[str, ...] = ()
    customer_id: str | None = None
    customer_tier: str | None = None
    total_amount: Decimal | None = None
    currency: str | None = None
    content: Mapping[str, Any] | None = None
    fingerprint: str | None = None
    needs_review: bool | None = None  # None: the record never held a valid order (rejected, failed)
    correlation_id: str | None = None
    placed_at: str | None = None
    updated_at: str | None = None
    notifications: Mapping[str, str] = field(default_factory=dict)
    notifications_sent: int = 0
    failed_from: OrderState | None = None
    reservation_expires_at: int | None = None
    payment: Payment | None = None
    shipment: Shipment | None = None
    refund: Refund | None = None
    shortages: tuple[Shortage, ...] = ()
    #: The region whose workers write the order, and the switch's epoch when it took it (docs/multi-region.md,
    #: rule R2); None in a deployment of one region.
    home_region: str | None = None
    home_epoch: int | None = None
    #: The region it was adopted from, when a failover moved it (operators and the reconciliation read it).
    adopted_from: str | None = None

    @classmethod
    def placed(cls, order: Order, placed_at: str, at: str, correlation_id: str,
               needs_review: bool) -> OrderRecord:
        """A valid order as first recorded: placed at `placed_at`, validated at `at`."""
        return cls(order.order_id, OrderState.VALIDATED, 1,
                   (HistoryEntry(OrderState.PLACED, placed_at, Step.PLACE),
                    HistoryEntry(OrderState.VALIDATED, at, Step.PLACE)),
                   customer_id=order.customer_id, customer_tier=order.tier, total_amount=order.total,
                   currency=order.currency, content=order.to_json(), fingerprint=order.fingerprint(),
                   needs_review=needs_review, correlation_id=correlation_id, placed_at=placed_at,
                   updated_at=at)

    @classmethod
    def rejected(cls, order_id: str, problems: Sequence[str], placed_at: str, at: str,
                 correlation_id: str) -> OrderRecord:
        """An order refused by validation, with every problem."""
        reason = "invalid-order"
        return cls(order_id, OrderState.REJECTED, 1,
                   (HistoryEntry(OrderState.PLACED, placed_at, Step.PLACE),
                    HistoryEntry(OrderState.REJECTED, at, Step.PLACE, reason)),
                   reason=reason, problems=tuple(problems), correlation_id=correlation_id,
                   placed_at=placed_at, updated_at=at)

    @classmethod
    def failed_unrecorded(cls, order_id: str, reason: str, at: str) -> OrderRecord:
        """An order never recorded whose message reached a DLQ (a redrive resumes it at placement)."""
        return cls(order_id, OrderState.FAILED, 1, (HistoryEntry(OrderState.FAILED, at, Step.DLQ, reason),),
                   reason=reason, failed_from=OrderState.PLACED, updated_at=at)

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> OrderRecord:
        """The record from its stored values (unknown fields, such as the table's keys, ignored)."""
        payment, shipment, refund = data.get("payment"), data.get("shipment"), data.get("refund")
        return cls(
            order_id=str(data.get("orderId") or data["pk"]), status=OrderState(data["status"]),
            version=int(data["version"]),
            history=tuple(HistoryEntry.from_data(e) for e in data.get("history") or ()),
            reason=data.get("reason"), problems=tuple(data.get("problems") or ()),
            customer_id=data.get("customerId"), customer_tier=data.get("customerTier"),
            total_amount=as_decimal(data.get("totalAmount")), currency=data.get("currency"),
            content=data.get("order"), fingerprint=data.get("fingerprint"),
            needs_review=data.get("needsReview"), correlation_id=data.get("correlationId"),
            placed_at=data.get("placedAt"), updated_at=data.get("updatedAt"),
            notifications=dict(data.get("notifications") or {}),
            notifications_sent=int(data.get("notificationsSent") or 0),
            failed_from=OrderState(data["failedFrom"]) if data.get("failedFrom") else None,
            reservation_expires_at=as_int(data.get("reservationExpiresAt")),
            payment=Payment.from_data(payment) if payment else None,
            shipment=Shipment.from_data(shipment) if shipment else None,
            refund=Refund.from_data(refund) if refund else None,
            shortages=tuple(Shortage.from_data(s) for s in data.get("shortages") or ()),
            home_region=data.get("homeRegion"), home_epoch=as_int(data.get("homeEpoch")),
            adopted_from=data.get("adoptedFrom"))

    def to_data(self) -> dict[str, Any]:
        """The stored values (absent fields left out)."""
        return present({
            "orderId": self.order_id, "status": self.status.value, "version": self.version,
            "reason": self.reason, "problems": list(self.problems) or None,
            "customerId": self.customer_id, "customerTier": self.customer_tier,
            "totalAmount": self.total_amount, "currency": self.currency,
            "order": dict(self.content) if self.content is not None else None,
            "fingerprint": self.fingerprint, "needsReview": self.needs_review,
            "correlationId": self.correlation_id, "placedAt": self.placed_at, "updatedAt": self.updated_at,
            "history": [e.to_data() for e in self.history], "notifications": dict(self.notifications),
            "notificationsSent": self.notifications_sent or None,
            "failedFrom": self.failed_from.value if self.failed_from else None,
            "reservationExpiresAt": self.reservation_expires_at,
            "payment": self.payment.to_data() if self.payment else None,
            "shipment": self.shipment.to_data() if self.shipment else None,
            "refund": self.refund.to_data() if self.refund else None,
            "shortages": [s.to_data() for s in self.shortages] or None,
            "homeRegion": self.home_region, "homeEpoch": self.home_epoch, "adoptedFrom": self.adopted_from,
        })

    def carried(self) -> dict[str, Any]:
        """The stored values as plain JSON (money as decimal strings), for a message to carry to the
        next step (`from_carried` reads them back)."""
        return _json_ready(self.to_data())

    @classmethod
    def from_carried(cls, data: Any) -> OrderRecord | None:
        """The record a message carried, or None if what it carried is not one (anyone can send a
        message: a step only takes it as a guess, which its conditional write checks)."""
        if not isinstance(data, Mapping):
            return None
        try:
            return cls.from_data(data)
        except (KeyError, ValueError, TypeError, ArithmeticError, AttributeError):
            return None

    def after(self, change: Change, at: str) -> OrderRecord:
        """The record once `change` is applied at `at` (one version later).

        A change that takes a failed order on (after a redrive) drops the failure's `reason` and
        `failedFrom` (FAILURE_FIELDS): they no longer describe the order.
        """
        kept = {k: v for k, v in self.to_data().items()
                if self.status is not OrderState.FAILED or k not in FAILURE_FIELDS}
        return OrderRecord.from_data({
            **kept, **change.fields(), "status": change.status.value, "version": self.version + 1,
            "history": [e.to_data() for e in (*self.history, *change.entries(at))], "updatedAt": at})

    def order(self) -> Order:
        """The order as placed; InvalidOrder if the record holds none, or a broken one."""
        return validate(self.content)

    @property
    def last_step(self) -> Step | None:
        """The step that made the latest state change (the DLQ watcher's mark, which only says where
        the order stopped, aside)."""
        change = self._last_change()
        return change.step if change else None

    def _last_change(self) -> HistoryEntry | None:
        return next((e for e in reversed(self.history) if e.step is not Step.DLQ), None)

    def standing(self) -> OrderRecord:
        """The order as it stood before its message reached a DLQ (itself unless failed): the state
        a redriven message, or the next step's own, takes it on from, with that state's reason."""
        if self.status is not OrderState.FAILED or self.failed_from is None:
            return self
        change = self._last_change()
        return replace(self, status=self.failed_from, reason=change.reason if change else None)

    @property
    def unrecorded(self) -> bool:
        """A stub the DLQ watcher wrote for a placement that never recorded its order (no content)."""
        return self.status is OrderState.FAILED and self.content is None \
            and self.failed_from is OrderState.PLACED


def _json_ready(value: Any) -> Any:
    # A whole number read back from the store (a quantity) stays a number; money keeps its decimal text.
    if isinstance(value, Decimal):
        return int(value) if value.as_tuple().exponent == 0 else str(value)
    if isinstance(value, Mapping):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_ready(v) for v in value]
    return value


def public_view(record: OrderRecord) -> dict[str, Any]:
    """What `orders status --json` and the API show of an order record."""
    view: dict[str, Any] = {
        "orderId": record.order_id, "status": record.status.value, "reason": record.reason,
        "problems": list(record.problems), "history": [e.to_data() for e in record.history],
        "customerId": record.customer_id, "customerTier": record.customer_tier,
        "totalAmount": None if record.total_amount is None else str(record.total_amount),
        "currency": record.currency, "correlationId": record.correlation_id,
        "placedAt": record.placed_at, "updatedAt": record.updated_at, "version": record.version,
        "payment": record.payment.to_data() if record.payment else None,
        "shipment": record.shipment.to_data() if record.shipment else None,
        "notifications": dict(record.notifications),
    }
    if record.failed_from:
        view["failedFrom"] = record.failed_from.value
    return view


@dataclass(frozen=True)
class Hold:
    """A stock reservation for one order: its lines, when it runs out (epoch seconds), its state."""

    order_id: str
    items: tuple[tuple[str, int], ...]
    expires_at: int
    state: HoldState
    changed_at: str | None = None  # when it left `active` (committed, released...), as stored

    @classmethod
    def of(cls, order: Order, expires_at: int, state: HoldState = HoldState.ACTIVE) -> Hold:
        """The hold on every line of `order`."""
        return cls(order.order_id, tuple((i.sku, i.quantity) for i in order.items), expires_at, state)

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> Hold:
        return cls(str(data["pk"]), tuple((i["sku"], int(i["quantity"])) for i in data["items"]),
                   int(data["expiresAt"]), HoldState(data["state"]), data.get("changedAt"))

    def expired(self, now: float | None = None) -> bool:
        return self.state is HoldState.ACTIVE and self.expires_at <= (now or time.time())

    def as_data(self) -> list[dict[str, Any]]:
        return [{"sku": sku, "quantity": q} for sku, q in self.items]
