"""Stock and reservations on DynamoDB: all-or-nothing holds in one transaction, release, expiry.

Stock lives in `<env>-stock` (sku -> available, reserved, version). A
reservation ("hold") is one item beside its order in `<env>-orders`
(sk "reservation"), written in the same TransactWriteItems as the stock it
takes and the order's move to `reserved`: each stock line is conditional on
`available >= quantity`, the hold on not existing yet, the order on its
version. Either all of it happens or none of it does, so stock never goes
negative and an order is never half-reserved.

Partial availability policy: all or nothing. If any line cannot be reserved
in full, nothing is reserved and the order is cancelled as `out-of-stock`
with every short line named (no partial shipment, no back-order): the
charge is for the whole order, and a split order would need a second
payment and shipment flow that this pipeline does not have.

A hold expires `reservation_ttl_seconds` after it is taken; while active it
carries `holdState = "active"` and `expiresAt`, which the sparse index
`active-holds` finds for the periodic sweep. Committing (after payment),
releasing (decline, cancellation, expiry) and returning (refund after
commitment) are conditional on the hold's state, so each happens once.

Every write also keeps the counters the ledger audit (orders.ops.audit) checks:
`stockSet` (the units on the shelf when `orders inventory set` last set the product:
the quantity set plus the units held then), `restocked` and `sold` (units added by
restocks and sold since, net of sold units put back by refunds). Whatever moves, the
same write moves the counters, so every item keeps

    stockSet + restocked == available + reserved + sold

An item written before the counters existed has no `stockSet` until the next set.

`Stock` is what the steps see (orders.steps.ports.Inventory): reads, and the writes
of a hold's moves, which the steps run in one transaction with the order's own write
(orders.aws.store.OrderStore.transact). Deciding what to reserve, and what a refused
reservation means, is the steps' business (orders.steps.reservation).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from orders.aws import clients
from orders.aws.gathering import PerProcess
from orders.aws.reservations import ReservationBatch
from orders.aws.tables import aws_errors, batch_get, from_item, table_name, to_item, transact
from orders.domain.records import Hold, StockLevel
from orders.domain.states import HoldState
from orders.domain.times import now_iso
from orders.domain.writes import Guard, Refusal, Write
from orders.settings import Settings

HOLD_SK = "reservation"
HOLDS_INDEX = "active-holds"


class Stock:
    """Stock and holds in `<env>-stock` and `<env>-orders`, as the steps use them."""

    def __init__(self, settings: Settings):
        self.settings = settings

    def unknown_skus(self, skus: Iterable[str]) -> list[str]:
        return unknown_skus(self.settings, skus)

    def levels(self, skus: Iterable[str]) -> dict[str, StockLevel]:
        return stock_levels(self.settings, skus)

    def level(self, sku: str) -> StockLevel | None:
        return get_stock(self.settings, sku)

    def load_hold(self, order_id: str) -> Hold | None:
        return load_hold(self.settings, order_id)

    def expired_holds(self, now: float | None = None) -> list[str]:
        return expired_holds(self.settings, now)

    def restock(self, sku: str, quantity: int, restock_id: str) -> bool:
        return restock(self.settings, sku, quantity, restock_id)

    def take(self, hold: Hold, spare: int = 0) -> list[Write]:
        """Writes that take a new hold's units out of `available`, each line only if it has them and
        `spare` more (which tells, with no read, that none of them is left with `spare` or fewer)."""
        return take_writes(self.settings, [hold], spare)

    def take_with(self, hold: Hold, write: Write, spare: int = 0) -> Refusal | None:
        """Take a new hold and make the order's `write` with it, in one transaction shared with the
        holds this process's other threads take at that moment (orders.aws.reservations): None once
        done, else what refused it, as `OrderStore.transact` answers for the two alone."""
        batch = _RESERVATIONS.get((self.settings, spare), partial(take_writes, self.settings), spare,
                                  partial(transact, self.settings), self.settings.reserve_linger)
        return batch.take(hold, write)

    def commit(self, hold: Hold) -> list[Write]:
        """Writes that turn an active hold into sold units (after payment)."""
        expression = "SET reserved = reserved - :q, sold = if_not_exists(sold, :zero) + :q"
        return [_stock_line(self.settings, sku, expression, q) for sku, q in hold.items] \
            + [_hold_move(self.settings, hold, HoldState.COMMITTED, HoldState.ACTIVE)]

    def release(self, hold: Hold, to: HoldState = HoldState.RELEASED) -> list[Write]:
        """Writes that give an active hold's units back to `available` (released, or expired)."""
        expression = "SET available = available + :q, reserved = reserved - :q"
        return [_stock_line(self.settings, sku, expression, q) for sku, q in hold.items] \
            + [_hold_move(self.settings, hold, to, HoldState.ACTIVE)]

    def put_back(self, hold: Hold) -> list[Write]:
        """Writes that put committed (sold, then refunded) units back on sale."""
        expression = "SET available = available + :q, sold = if_not_exists(sold, :zero) - :q"
        return [_stock_line(self.settings, sku, expression, q) for sku, q in hold.items] \
            + [_hold_move(self.settings, hold, HoldState.RETURNED, HoldState.COMMITTED)]


def take_writes(settings: Settings, holds: Sequence[Hold], spare: int = 0) -> list[Write]:
    """Writes that take new holds' units out of `available`: each product's line once, for the units
    of every hold together, only if it has them and `spare` more; then each hold's own item."""
    units: dict[str, int] = {}
    for hold in holds:
        for sku, q in hold.items:
            units[sku] = units.get(sku, 0) + q
    lines = [_stock_line(settings, sku, "SET available = available - :q, reserved = reserved + :q",
                         q, "available >= :need", need=q + spare) for sku, q in units.items()]
    active, table = HoldState.ACTIVE.value, table_name(settings, "orders")
    puts = [Write(Guard.HOLD, {"Put": {
        "TableName": table, "ConditionExpression": "attribute_not_exists(pk)",
        "Item": to_item({"pk": hold.order_id, "sk": HOLD_SK, "holdState": active, "state": active,
                         "expiresAt": hold.expires_at, "items": hold.as_data(), "at": now_iso()})}})
            for hold in holds]
    return [*lines, *puts]


#: One batch of reservations per settings and spare, shared by the process's threads.
_RESERVATIONS: PerProcess[ReservationBatch] = PerProcess(ReservationBatch)


def set_stock(settings: Settings, sku: str, quantity: int) -> StockLevel:
    """Set a product's available quantity (reserved units are left as they are); the audit's
    counters start again from here."""
    with aws_errors():
        new = clients.client("dynamodb", settings).update_item(
            TableName=table_name(settings, "stock"), Key=to_item({"sku": sku}),
            UpdateExpression="SET available = :q, reserved = if_not_exists(reserved, :zero), "
                             "stockSet = if_not_exists(reserved, :zero) + :q, restocked = :zero, "
                             "sold = :zero, version = if_not_exists(version, :zero) + :one, "
                             "updatedAt = :now, stockSetAt = :now",
            ExpressionAttributeValues=to_item({":q": quantity, ":zero": 0, ":one": 1, ":now": now_iso()}),
            ReturnValues="ALL_NEW")["Attributes"]
    return stock_view(from_item(new))


def get_stock(settings: Settings, sku: str) -> StockLevel | None:
    """{"sku", "available", "reserved"} of one product, or None if unknown."""
    with aws_errors():
        item = clients.client("dynamodb", settings).get_item(
            TableName=table_name(settings, "stock"), Key=to_item({"sku": sku}),
            ConsistentRead=True).get("Item")
    return stock_view(from_item(item)) if item else None


def stock_view(record: dict[str, Any]) -> StockLevel:
    return {"sku": record["sku"], "available": int(record.get("available", 0)),
            "reserved": int(record.get("reserved", 0))}


@dataclass(frozen=True)
class StockCount:
    """A product's counters as the ledger audit reads them: what was put on sale, and where it is."""

    sku: str
    available: int
    reserved: int
    sold: int
    restocked: int
    stock_set: int | None  # None: written before the counters, never set since
    version: int = 0
    set_at: str | None = None  # when the stock was last set (`set_stock`), if recorded

    @classmethod
    def from_data(cls, record: dict[str, Any]) -> StockCount:
        stock_set = record.get("stockSet")
        return cls(str(record["sku"]), int(record.get("available", 0)), int(record.get("reserved", 0)),
                   int(record.get("sold", 0)), int(record.get("restocked", 0)),
                   None if stock_set is None else int(stock_set), int(record.get("version", 0)),
                   record.get("stockSetAt"))

    @property
    def accounted(self) -> int:
        """Units somewhere: on sale, held for an order, or sold."""
        return self.available + self.reserved + self.sold


def stock_levels(settings: Settings, skus: Iterable[str]) -> dict[str, StockLevel]:
    """Current stock of several products with BatchGetItem (unknown ones absent)."""
    items = batch_get(settings, "stock", [{"sku": sku} for sku in sorted(set(skus))])
    return {view["sku"]: view for view in map(stock_view, items)}


#: Products each stock table is known to hold, per process. The door and the place step
#: check every order's SKUs; a catalogue changes far less often than orders arrive, and
#: nothing here deletes a product (a table dropped under a running process only makes its
#: reservations fail as out of stock). Only known SKUs are remembered: a new one is looked
#: up until it exists.
_known_skus: dict[str, set[str]] = {}


def unknown_skus(settings: Settings, skus: Iterable[str]) -> list[str]:
    """The products of `skus` that the stock table does not know (one BatchGetItem for new ones)."""
    skus = list(skus)
    known = _known_skus.setdefault(table_name(settings, "stock"), set())
    unseen = [s for s in skus if s not in known]
    if unseen:
        known.update(stock_levels(settings, unseen))
    return [s for s in skus if s not in known]


def restock(settings: Settings, sku: str, quantity: int, restock_id: str) -> bool:
    """Add stock once per `restock_id` (a repeated message adds nothing); True if it was added."""
    marker = {"TableName": table_name(settings, "orders"),
              "Item": to_item({"pk": f"restock#{restock_id}", "sk": "restock", "sku": sku,
                               "quantity": quantity, "at": now_iso()}),
              "ConditionExpression": "attribute_not_exists(pk)"}
    add = {"TableName": table_name(settings, "stock"), "Key": to_item({"sku": sku}),
           "UpdateExpression": "SET available = if_not_exists(available, :zero) + :q, "
                               "reserved = if_not_exists(reserved, :zero), "
                               "restocked = if_not_exists(restocked, :zero) + :q, "
                               "stockSet = if_not_exists(stockSet, :zero), "
                               "version = if_not_exists(version, :zero) + :one, updatedAt = :now",
           "ExpressionAttributeValues": to_item({":q": quantity, ":zero": 0, ":one": 1,
                                                 ":now": now_iso()})}
    return transact(settings, [{"Put": marker}, {"Update": add}]) is None


def load_hold(settings: Settings, order_id: str) -> Hold | None:
    """The order's hold, from its own item."""
    with aws_errors():
        item = clients.client("dynamodb", settings).get_item(
            TableName=table_name(settings, "orders"), Key=to_item({"pk": order_id, "sk": HOLD_SK}),
            ConsistentRead=True).get("Item")
    return Hold.from_data(from_item(item)) if item else None


def _stock_line(settings: Settings, sku: str, expression: str, quantity: int,
                condition: str | None = None, need: int | None = None) -> Write:
    values = {":q": quantity, ":one": 1, **({":zero": 0} if ":zero" in expression else {}),
              **({":need": need} if need is not None else {})}
    op = {"TableName": table_name(settings, "stock"), "Key": to_item({"sku": sku}),
          "UpdateExpression": expression + ", version = version + :one",
          "ExpressionAttributeValues": to_item(values)}
    if condition:
        op["ConditionExpression"] = condition
    return Write(Guard.STOCK, {"Update": op})


def _hold_move(settings: Settings, hold: Hold, to: HoldState, from_state: HoldState) -> Write:
    # While active, the hold is found by its sparse index key (holdState); the move removes that key.
    condition = "holdState = :from" if from_state is HoldState.ACTIVE else "#state = :from"
    return Write(Guard.HOLD, {"Update": {
        "TableName": table_name(settings, "orders"), "Key": to_item({"pk": hold.order_id, "sk": HOLD_SK}),
        "UpdateExpression": "REMOVE holdState SET #state = :to, changedAt = :now",
        "ConditionExpression": condition, "ExpressionAttributeNames": {"#state": "state"},
        "ExpressionAttributeValues": to_item({":to": to.value, ":from": from_state.value,
                                              ":now": now_iso()})}})


def expired_holds(settings: Settings, now: float | None = None, limit: int = 100) -> list[str]:
    """Order ids whose active hold has expired, oldest first (from the sparse index)."""
    with aws_errors():
        response = clients.client("dynamodb", settings).query(
            TableName=table_name(settings, "orders"), IndexName=HOLDS_INDEX, Limit=limit,
            KeyConditionExpression="holdState = :active AND expiresAt <= :now",
            ExpressionAttributeValues=to_item({":active": HoldState.ACTIVE.value,
                                               ":now": int(now or time.time())}))
    return [from_item(item)["pk"] for item in response.get("Items", [])]
