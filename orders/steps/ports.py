"""What the steps need from the world, as small interfaces, and the bundle they are passed in.

The AWS implementations are in orders.aws (OrderStore, Stock, Gateway, SimulatedCarrier,
FieldCrypto, the metrics module); orders.runtime.dependencies puts them together. Tests can pass
stand-ins. Events are not published from here: a step returns them (orders.steps.state_machine.Outcome)
and the runtime publishes them and lets the order go on (orders.runtime.step_tasks).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol

from orders.domain.details import Payment, Refund, Shipment
from orders.domain.errors import ConcurrentUpdate
from orders.domain.order import Order
from orders.domain.records import Change, Hold, OrderRecord, StockLevel
from orders.domain.sensitive import Field
from orders.domain.states import HoldState
from orders.domain.writes import Refusal, Write
from orders.settings import Settings


class Orders(Protocol):
    """The order store: each order's record, changed only by conditional writes on its version."""

    def load(self, order_id: str) -> OrderRecord | None: ...

    def create(self, order: Order, placed_at: str, correlation_id: str,
               review: bool) -> tuple[OrderRecord, bool]: ...

    def reject(self, order_id: str, problems: Sequence[str], placed_at: str,
               correlation_id: str) -> tuple[OrderRecord, bool]: ...

    def prepare(self, record: OrderRecord, change: Change) -> tuple[Write, OrderRecord]: ...

    def transition(self, record: OrderRecord, change: Change) -> OrderRecord: ...

    def transact(self, writes: Sequence[Write]) -> Refusal | None: ...

    def mark_failed(self, order_id: str, reason: str) -> bool: ...

    def claim_notification(self, order_id: str, event_type: str) -> OrderRecord | None: ...


class Inventory(Protocol):
    """Stock levels and holds; the hold's moves come back as writes for `Orders.transact`."""

    def unknown_skus(self, skus: Iterable[str]) -> list[str]: ...

    def levels(self, skus: Iterable[str]) -> dict[str, StockLevel]: ...

    def level(self, sku: str) -> StockLevel | None: ...

    def load_hold(self, order_id: str) -> Hold | None: ...

    def expired_holds(self, now: float | None = None) -> list[str]: ...

    def restock(self, sku: str, quantity: int, restock_id: str) -> bool: ...

    def take(self, hold: Hold, spare: int = 0) -> list[Write]: ...

    def take_with(self, hold: Hold, write: Write, spare: int = 0) -> Refusal | None:
        """Take a new hold (as `take`) and make the order's `write` with it, in one transaction: None
        once done, else what refused it. It may share the call with other reservations of the moment."""

    def commit(self, hold: Hold) -> list[Write]: ...

    def release(self, hold: Hold, to: HoldState = HoldState.RELEASED) -> list[Write]: ...

    def put_back(self, hold: Hold) -> list[Write]: ...


class PaymentGateway(Protocol):
    """A card processor, idempotent per order: charge raises PaymentDeclined or GatewayUnavailable."""

    def charge(self, order_id: str, amount: Decimal, currency: str, token: str) -> Payment: ...

    def quote(self, order_id: str, amount: Decimal, currency: str,
              token: str) -> tuple[Write, Payment] | None:
        """The charge as a write for the order's transaction and the payment it records (captured
        or declined); None when it can only be made by `charge`."""

    def refund(self, order_id: str, payment_id: str, amount: Decimal, currency: str) -> Refund: ...

    def capture_of(self, order_id: str) -> Payment | None: ...


class Carrier(Protocol):
    """A shipping carrier, idempotent per order: a booked shipment or its refusal (to the address given)."""

    def book(self, order: Order, address: dict[str, Any]) -> Shipment: ...


class Fields(Protocol):
    """The sensitive fields' encryption: sealed at the door, opened in memory by the one step that needs
    a field (UnreadableField when it does not open); orders.domain.sensitive."""

    def seal(self, order_id: str, field: Field, plaintext: str) -> str: ...

    def open(self, order_id: str, field: Field, sealed: str) -> str: ...


class Metrics(Protocol):
    """Business and stage metrics (buffered by the implementation; never raises on the step's path)."""

    def stage_time(self, stage: str, seconds: float) -> None: ...

    def order_completed(self, total: Decimal, currency: str, placed_at: datetime | None = None) -> None: ...

    def order_cancelled(self, reason: str) -> None: ...

    def order_rejected(self) -> None: ...

    def order_placed(self) -> None: ...


@dataclass(frozen=True)
class Deps:
    """Everything a step may use, passed in."""

    settings: Settings
    orders: Orders
    stock: Inventory
    gateway: PaymentGateway
    carrier: Carrier
    metrics: Metrics
    fields: Fields
    #: The order as the previous step left it, carried in this step's message: a guess that saves
    #: reading it first, which the step's conditional write checks (orders.steps.state_machine).
    given: OrderRecord | None = None

    def confirm(self, record: OrderRecord) -> None:
        """Before money moves outside the step's own conditional write (a gateway's call first): the
        order as a message carried it is a guess anyone could have sent, so ConcurrentUpdate has
        the step read it from the store and decide again (orders.steps.state_machine.run_step)."""
        if self.given is not None and record is self.given:
            raise ConcurrentUpdate(f"order {record.order_id}: confirming the carried record first")
