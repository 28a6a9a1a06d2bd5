"""The order store on DynamoDB: each order's state machine, its history and its idempotency records.

Every state change is one conditional write on the order's `version`
(optimistic locking): a writer that read version 3 can only write version 4,
so two workers racing on one order never both win. Times are ISO-8601 UTC
strings with microseconds (`2026-01-31T12:00:00.123456Z`) everywhere.

One table (`<env>-orders`, keys pk/sk) holds, per order id:
  sk "order"         the order, its status, reason, history and version
  sk "reservation"   the stock hold (orders.aws.stock), found by the sparse
                     index `active-holds` while it is active
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from orders.aws import clients
from orders.aws.tables import aws_errors, condition_failed, from_item, now_iso, plain, table_name, to_item
from orders.domain.errors import ConcurrentUpdate
from orders.domain.order import Order
from orders.settings import Settings

log = logging.getLogger(__name__)

FINAL_STATES = ("completed", "cancelled", "rejected", "failed")
#: The stages an order passes through, in order (history entries carry these names).
STAGES = ("placed", "validated", "reviewed", "reserved", "paid", "shipped", "completed")


class OrderStore:
    """Orders, their states and idempotency records in `<env>-orders`."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.table = table_name(settings, "orders")

    @property
    def ddb(self) -> Any:
        return clients.client("dynamodb", self.settings)

    def key(self, order_id: str, sk: str = "order") -> dict[str, Any]:
        return to_item({"pk": order_id, "sk": sk})

    def load(self, order_id: str) -> dict[str, Any] | None:
        """The raw record (Decimals and all), as the pipeline steps use it."""
        with aws_errors():
            item = self.ddb.get_item(TableName=self.table, Key=self.key(order_id),
                                     ConsistentRead=True).get("Item")
        return from_item(item) if item else None

    def get(self, order_id: str) -> dict[str, Any] | None:
        """The order's public view: orderId, status, reason, history [{status, at, ...}], ..."""
        record = self.load(order_id)
        return public_view(record) if record else None

    def create(self, order: Order, placed_at: str, correlation_id: str,
               review: bool) -> tuple[dict[str, Any], bool]:
        """Record a validated order (placed, then validated); (record, False) if it already existed."""
        at = now_iso()
        record = {
            "pk": order.order_id, "sk": "order", "orderId": order.order_id,
            "status": "validated", "version": 1, "reason": None,
            "customerId": order.customer_id, "customerTier": order.tier,
            "totalAmount": order.total, "currency": order.currency, "order": order.to_json(),
            "fingerprint": order.fingerprint(), "needsReview": review,
            "correlationId": correlation_id, "placedAt": placed_at, "updatedAt": at,
            "history": [{"status": "placed", "at": placed_at, "step": "place"},
                        {"status": "validated", "at": at, "step": "place"}],
            "notifications": {},
        }
        return self._put_new(record)

    def reject(self, order_id: str, problems: list[str], placed_at: str,
               correlation_id: str) -> tuple[dict[str, Any], bool]:
        """Record an order refused by validation, with every problem; (record, created)."""
        at = now_iso()
        record = {
            "pk": order_id, "sk": "order", "orderId": order_id, "status": "rejected",
            "version": 1, "reason": "invalid-order", "problems": problems,
            "correlationId": correlation_id, "placedAt": placed_at, "updatedAt": at,
            "history": [{"status": "placed", "at": placed_at, "step": "place"},
                        {"status": "rejected", "at": at, "step": "place",
                         "reason": "invalid-order"}],
            "notifications": {},
        }
        return self._put_new(record)

    def _put_new(self, record: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        try:
            with aws_errors():
                self.ddb.put_item(TableName=self.table, Item=to_item(record),
                                  ConditionExpression="attribute_not_exists(pk)")
            return record, True
        except Exception as exc:
            if not condition_failed(exc):
                raise
        existing = self.load(record["pk"])
        assert existing is not None
        return existing, False

    def prepare(self, record: dict[str, Any], status: str, step: str, reason: str | None = None,
                fields: dict[str, Any] | None = None,
                via: Sequence[str] = ()) -> tuple[dict[str, Any], dict[str, Any]]:
        """The conditional update that moves `record` to `status` (through `via` first), and the
        record as it will be once that update is applied.

        The update is returned rather than run so that inventory can put it in the
        same transaction as the stock it changes.
        """
        at = now_iso()
        entries = [{"status": s, "at": at, "step": step} for s in (*via, status)]
        if reason:
            entries[-1]["reason"] = reason
        changes = {k: v for k, v in {"reason": reason, **(fields or {})}.items() if v is not None}
        values: dict[str, Any] = {":status": status, ":one": 1, ":entries": entries,
                                  ":now": at, ":version": record["version"]}
        sets = ["#status = :status", "version = version + :one",
                "history = list_append(history, :entries)", "updatedAt = :now"]
        names = {"#status": "status"}
        for n, (name, value) in enumerate(changes.items()):
            names[f"#f{n}"] = name
            values[f":f{n}"] = value
            sets.append(f"#f{n} = :f{n}")
        op = {"TableName": self.table, "Key": self.key(record["orderId"]),
              "UpdateExpression": "SET " + ", ".join(sets),
              "ConditionExpression": "version = :version",
              "ExpressionAttributeNames": names,
              "ExpressionAttributeValues": to_item(values)}
        new = {**record, **changes, "status": status, "version": record["version"] + 1,
               "history": [*record.get("history", []), *entries], "updatedAt": at}
        return op, new

    def transition(self, record: dict[str, Any], status: str, step: str,
                   reason: str | None = None, fields: dict[str, Any] | None = None,
                   via: Sequence[str] = ()) -> dict[str, Any]:
        """Move the order to `status`; ConcurrentUpdate (retryable) if someone wrote it meanwhile."""
        op, new = self.prepare(record, status, step, reason, fields, via)
        try:
            with aws_errors():
                self.ddb.update_item(**op)
        except Exception as exc:
            if condition_failed(exc):
                raise ConcurrentUpdate(f"order {record['orderId']} changed while {step} ran") from exc
            raise
        return new

    def mark_failed(self, order_id: str, reason: str) -> bool:
        """Mark an order `failed` (its message is in a DLQ); False if already final or failed.

        The status it failed from is kept (`failedFrom`), so a redriven message can
        resume the order where it stopped. An order never recorded gets a record.
        """
        for _ in range(5):
            record = self.load(order_id)
            if record is None:
                at = now_iso()
                _, created = self._put_new({
                    "pk": order_id, "sk": "order", "orderId": order_id, "status": "failed",
                    "version": 1, "reason": reason, "failedFrom": "placed", "updatedAt": at,
                    "history": [{"status": "failed", "at": at, "step": "dlq", "reason": reason}],
                    "notifications": {}})
                if created:
                    return True
                continue
            if record["status"] in FINAL_STATES:
                return False
            try:
                self.transition(record, "failed", "dlq", reason, {"failedFrom": record["status"]})
                return True
            except ConcurrentUpdate:
                continue
        raise ConcurrentUpdate(f"order {order_id} kept changing while being marked failed")

    def claim_notification(self, order_id: str, event_type: str) -> dict[str, Any] | None:
        """Claim the one notification of (order id, event type): the order record the first
        time, None if it was claimed before or there is no such order.

        The claim is one conditional write on the order item (`notifications.<type>`,
        the idempotency record of the notify step); `notificationsSent` counts claims.
        """
        try:
            with aws_errors():
                new = self.ddb.update_item(
                    TableName=self.table, Key=self.key(order_id),
                    UpdateExpression="SET notifications.#e = :at ADD notificationsSent :one",
                    ConditionExpression="attribute_exists(notifications) AND "
                                        "attribute_not_exists(notifications.#e)",
                    ExpressionAttributeNames={"#e": event_type},
                    ExpressionAttributeValues=to_item({":at": now_iso(), ":one": 1}),
                    ReturnValues="ALL_NEW")["Attributes"]
        except Exception as exc:
            if condition_failed(exc):
                return None
            raise
        return from_item(new)


def public_view(record: dict[str, Any]) -> dict[str, Any]:
    """What `orders status --json` and the API show of an order record."""
    view = {
        "orderId": record["orderId"], "status": record["status"], "reason": record.get("reason"),
        "problems": record.get("problems") or [],
        "history": [plain(entry) for entry in record.get("history", [])],
        "customerId": record.get("customerId"), "customerTier": record.get("customerTier"),
        "totalAmount": str(record["totalAmount"]) if "totalAmount" in record else None,
        "currency": record.get("currency"), "correlationId": record.get("correlationId"),
        "placedAt": record.get("placedAt"), "updatedAt": record.get("updatedAt"),
        "version": plain(record.get("version")),
        "payment": plain(record.get("payment")), "shipment": plain(record.get("shipment")),
        "notifications": plain(record.get("notifications") or {}),
    }
    if record.get("failedFrom"):
        view["failedFrom"] = record["failedFrom"]
    return view
