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
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from orders.aws import clients
from orders.aws.store import OrderStore
from orders.aws.tables import aws_errors, from_item, now_iso, table_name, to_item, transact
from orders.domain.errors import ConcurrentUpdate, OutOfStock
from orders.domain.order import Order
from orders.settings import Settings

HOLD_SK = "reservation"
HOLDS_INDEX = "active-holds"


@dataclass(frozen=True)
class Hold:
    """A stock reservation for one order."""

    order_id: str
    items: tuple[tuple[str, int], ...]
    expires_at: float
    state: str  # active | committed | released | expired | returned

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Hold:
        return cls(record["pk"], tuple((i["sku"], int(i["quantity"])) for i in record["items"]),
                   float(record["expiresAt"]), record["state"])

    def expired(self, now: float | None = None) -> bool:
        return self.state == "active" and self.expires_at <= (now or time.time())

    def as_data(self) -> list[dict[str, Any]]:
        return [{"sku": sku, "quantity": q} for sku, q in self.items]


def set_stock(settings: Settings, sku: str, quantity: int) -> dict[str, Any]:
    """Set a product's available quantity (reserved units are left as they are)."""
    with aws_errors():
        new = clients.client("dynamodb", settings).update_item(
            TableName=table_name(settings, "stock"), Key=to_item({"sku": sku}),
            UpdateExpression="SET available = :q, reserved = if_not_exists(reserved, :zero), "
                             "version = if_not_exists(version, :zero) + :one, updatedAt = :now",
            ExpressionAttributeValues=to_item({":q": quantity, ":zero": 0, ":one": 1, ":now": now_iso()}),
            ReturnValues="ALL_NEW")["Attributes"]
    return stock_view(from_item(new))


def get_stock(settings: Settings, sku: str) -> dict[str, Any] | None:
    """{"sku", "available", "reserved"} of one product, or None if unknown."""
    with aws_errors():
        item = clients.client("dynamodb", settings).get_item(
            TableName=table_name(settings, "stock"), Key=to_item({"sku": sku}),
            ConsistentRead=True).get("Item")
    return stock_view(from_item(item)) if item else None


def stock_view(record: dict[str, Any]) -> dict[str, Any]:
    return {"sku": record["sku"], "available": int(record.get("available", 0)),
            "reserved": int(record.get("reserved", 0))}


def stock_levels(settings: Settings, skus: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Current stock of several products with BatchGetItem (unknown ones absent)."""
    skus = sorted(set(skus))
    table, found = table_name(settings, "stock"), {}
    ddb = clients.client("dynamodb", settings)
    for start in range(0, len(skus), 100):
        request = {table: {"Keys": [to_item({"sku": s}) for s in skus[start:start + 100]],
                           "ConsistentRead": True}}
        for _ in range(5):
            with aws_errors():
                response = ddb.batch_get_item(RequestItems=request)
            for item in response.get("Responses", {}).get(table, []):
                view = stock_view(from_item(item))
                found[view["sku"]] = view
            request = response.get("UnprocessedKeys") or {}
            if not request:
                break
            time.sleep(0.05)
    return found


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
                               "version = if_not_exists(version, :zero) + :one, updatedAt = :now",
           "ExpressionAttributeValues": to_item({":q": quantity, ":zero": 0, ":one": 1,
                                                 ":now": now_iso()})}
    return transact(settings, [{"Put": marker}, {"Update": add}]) is None


def _stock_op(settings: Settings, sku: str, expression: str, quantity: int,
              condition: str | None = None) -> dict[str, Any]:
    op = {"TableName": table_name(settings, "stock"), "Key": to_item({"sku": sku}),
          "UpdateExpression": expression + ", version = version + :one",
          "ExpressionAttributeValues": to_item({":q": quantity, ":one": 1})}
    if condition:
        op["ConditionExpression"] = condition
    return {"Update": op}


def reserve(settings: Settings, store: OrderStore, record: dict[str, Any],
            order: Order) -> dict[str, Any]:
    """Reserve every line of `order` and move it to `reserved`, atomically; the new record.

    OutOfStock (with `shortages`) if any line is short; ConcurrentUpdate if the
    order or its hold changed meanwhile (the caller retries).
    """
    expires = math.ceil(time.time() + settings.reservation_ttl_seconds)  # whole seconds, never early
    hold = Hold(order.order_id, tuple((i.sku, i.quantity) for i in order.items), expires, "active")
    items = [_stock_op(settings, sku, "SET available = available - :q, reserved = reserved + :q",
                       q, "available >= :q") for sku, q in hold.items]
    items.append({"Put": {
        "TableName": store.table, "ConditionExpression": "attribute_not_exists(pk)",
        "Item": to_item({"pk": order.order_id, "sk": HOLD_SK, "holdState": "active", "state": "active",
                         "expiresAt": expires, "items": hold.as_data(), "at": now_iso()})}})
    op, reserved = store.prepare(record, "reserved", "reserve",
                                 fields={"reservationExpiresAt": expires})
    codes = transact(settings, [*items, {"Update": op}])
    if codes is None:
        return reserved
    if any(c == "ConditionalCheckFailed" for c in codes[:len(hold.items)]):
        raise out_of_stock(settings, hold)
    raise ConcurrentUpdate(f"order {order.order_id} or its hold changed while reserving: {codes}")


def out_of_stock(settings: Settings, hold: Hold) -> OutOfStock:
    levels = stock_levels(settings, [sku for sku, _ in hold.items])
    shortages = [{"sku": sku, "requested": q, "available": levels.get(sku, {}).get("available", 0)}
                 for sku, q in hold.items if levels.get(sku, {}).get("available", 0) < q]
    error = OutOfStock("out of stock: " + ", ".join(
        f"{s['sku']} (requested {s['requested']}, available {s['available']})" for s in shortages))
    error.shortages = shortages  # type: ignore[attr-defined]
    return error


def hold_of(settings: Settings, record: dict[str, Any]) -> Hold | None:
    """The order's hold: read from the order while it is `reserved` (the hold is then active,
    since every change of an active hold moves the order too), else from its own item."""
    if record.get("status") == "reserved" and record.get("reservationExpiresAt"):
        items = tuple((i["sku"], int(i["quantity"])) for i in record["order"]["items"])
        return Hold(record["orderId"], items, float(record["reservationExpiresAt"]), "active")
    return load_hold(settings, record["orderId"])


def load_hold(settings: Settings, order_id: str) -> Hold | None:
    with aws_errors():
        item = clients.client("dynamodb", settings).get_item(
            TableName=table_name(settings, "orders"), Key=to_item({"pk": order_id, "sk": HOLD_SK}),
            ConsistentRead=True).get("Item")
    return Hold.from_record(from_item(item)) if item else None


def _hold_op(settings: Settings, hold: Hold, new_state: str, from_state: str) -> dict[str, Any]:
    condition = "holdState = :from" if from_state == "active" else "#state = :from"
    return {"Update": {
        "TableName": table_name(settings, "orders"), "Key": to_item({"pk": hold.order_id, "sk": HOLD_SK}),
        "UpdateExpression": "REMOVE holdState SET #state = :to, changedAt = :now",
        "ConditionExpression": condition, "ExpressionAttributeNames": {"#state": "state"},
        "ExpressionAttributeValues": to_item({":to": new_state, ":from": from_state, ":now": now_iso()})}}


def release_ops(settings: Settings, hold: Hold, new_state: str = "released") -> list[dict[str, Any]]:
    """Transaction items that give an active hold's units back to `available`."""
    return [_stock_op(settings, sku, "SET available = available + :q, reserved = reserved - :q", q)
            for sku, q in hold.items] + [_hold_op(settings, hold, new_state, "active")]


def commit_ops(settings: Settings, hold: Hold) -> list[dict[str, Any]]:
    """Transaction items that turn an active hold into sold units (after payment)."""
    return [_stock_op(settings, sku, "SET reserved = reserved - :q", q) for sku, q in hold.items] \
        + [_hold_op(settings, hold, "committed", "active")]


def return_ops(settings: Settings, hold: Hold) -> list[dict[str, Any]]:
    """Transaction items that put committed (sold, then refunded) units back on sale."""
    return [_stock_op(settings, sku, "SET available = available + :q", q) for sku, q in hold.items] \
        + [_hold_op(settings, hold, "returned", "committed")]


def expired_holds(settings: Settings, now: float | None = None, limit: int = 100) -> list[str]:
    """Order ids whose active hold has expired, oldest first (from the sparse index)."""
    with aws_errors():
        response = clients.client("dynamodb", settings).query(
            TableName=table_name(settings, "orders"), IndexName=HOLDS_INDEX, Limit=limit,
            KeyConditionExpression="holdState = :active AND expiresAt <= :now",
            ExpressionAttributeValues=to_item({":active": "active", ":now": int(now or time.time())}))
    return [from_item(item)["pk"] for item in response.get("Items", [])]
