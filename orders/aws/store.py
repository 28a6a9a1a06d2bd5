"""The order store on DynamoDB: each order's state machine, its history and its idempotency records.

Every state change is one conditional write on the order's `version`
(optimistic locking): a writer that read version 3 can only write version 4,
so two workers racing on one order never both win. Times are ISO-8601 UTC
strings with microseconds (`2026-01-31T12:00:00.123456Z`) everywhere.

One table (`<env>-orders`, keys pk/sk) holds, per order id:
  sk "order"         the order, its status, reason, history and version; found by
                     the sparse index `in-flight` while it is not in a final state
  sk "reservation"   the stock hold (orders.aws.stock), found by the sparse
                     index `active-holds` while it is active

The `in-flight` index is how the stuck-order sweeper finds the orders it watches
without reading the whole table (orders.ops.sweeper): an order carries `inFlight`
(a shard, `IN_FLIGHT_SHARDS` of them, so that a busy table's index writes spread)
and `inFlightSince` (when the store first wrote it so: the store's clock, never a
time a message brought) from its first record to its final state. Only the keys are
projected and they do not change between steps, so the index is written when an
order is placed and when it ends (and when a failed order is taken on again).
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import Any

from botocore.exceptions import ClientError

from orders.aws import clients, region_switch, tables
from orders.aws.claims import Claim, ClaimBatch
from orders.aws.gathering import PerProcess
from orders.aws.tables import aws_errors, condition_failed, from_item, table_name, to_item, transact
from orders.domain.errors import ConcurrentUpdate, RegionInactive
from orders.domain.order import Order
from orders.domain.records import FAILURE_FIELDS, Change, OrderRecord, public_view
from orders.domain.states import FINAL_STATES, OrderState, Step
from orders.domain.times import now_iso
from orders.domain.writes import Guard, Refusal, Write
from orders.settings import Settings

log = logging.getLogger(__name__)

#: The sparse index of orders not in a final state, its shard attribute, and how many shards there are.
IN_FLIGHT_INDEX = "in-flight"
IN_FLIGHT, IN_FLIGHT_SINCE = "inFlight", "inFlightSince"
IN_FLIGHT_SHARDS = 10


class InFlightIndexUnreadable(Exception):
    """The `in-flight` index cannot be read yet: DynamoDB is still building it (after the `orders infra up`
    that added it to a large table), or the table has none (this release runs before that `infra up`)."""


def in_flight_shard(order_id: str) -> str:
    """The order's shard of the `in-flight` index: the same for the order's whole life."""
    return str(zlib.crc32(order_id.encode()) % IN_FLIGHT_SHARDS)


def index_unreadable(exc: ClientError) -> bool:
    """Whether DynamoDB refused a Query of the `in-flight` index because the index is not there to read:
    "Cannot read from backfilling global secondary index: in-flight", "The table does not have the
    specified index: in-flight" (ValidationException on AWS; the emulator's moto answers
    ResourceNotFoundException, "Invalid index: in-flight for table: ...")."""
    error = exc.response.get("Error", {})
    message = str(error.get("Message", ""))
    return (error.get("Code") in ("ValidationException", "ResourceNotFoundException")
            and IN_FLIGHT_INDEX in message and "index" in message.lower())


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

    def load(self, order_id: str) -> OrderRecord | None:
        """The order's record, as the pipeline steps use it."""
        with aws_errors():
            item = self.ddb.get_item(TableName=self.table, Key=self.key(order_id),
                                     ConsistentRead=True).get("Item")
        return OrderRecord.from_data(from_item(item)) if item else None

    def load_many(self, order_ids: Sequence[str]) -> dict[str, OrderRecord]:
        """The records of the orders among `order_ids` that exist, by id (BatchGetItem, 100 a call)."""
        return {record.order_id: record for record in map(OrderRecord.from_data, self.items(order_ids))}

    def items(self, order_ids: Sequence[str]) -> list[dict[str, Any]]:
        """The order items of the orders among `order_ids` that exist, as plain values, unread (BatchGetItem,
        100 a call): for a reader that must survive a damaged one."""
        return tables.batch_get(self.settings, "orders", [{"pk": i, "sk": "order"} for i in order_ids])

    def in_flight(self, since_before: str) -> Iterator[str]:
        """The ids of the orders not in a final state since before `since_before` (an ISO time), from the
        `in-flight` index: one paginated Query a shard, never a read of the whole table."""
        for shard in range(IN_FLIGHT_SHARDS):
            pages = self.ddb.get_paginator("query").paginate(
                TableName=self.table, IndexName=IN_FLIGHT_INDEX,
                KeyConditionExpression="#shard = :shard AND #since < :before",
                ExpressionAttributeNames={"#shard": IN_FLIGHT, "#since": IN_FLIGHT_SINCE},
                ExpressionAttributeValues=to_item({":shard": str(shard), ":before": since_before}))
            with aws_errors():
                try:
                    for page in pages:
                        yield from (str(from_item(item)["pk"]) for item in page.get("Items", []))
                except ClientError as exc:
                    if index_unreadable(exc):
                        raise InFlightIndexUnreadable(exc.response["Error"]["Message"]) from exc
                    raise

    def index_in_flight(self, record: OrderRecord) -> bool:
        """Put an order in flight that lacks the `in-flight` index's keys (written by a release before the
        index) into it, as unchanged since `record` was read; False if it changed meanwhile (its step's
        own write then keeps it in the index, or its final state keeps it out). Its time in the index is
        its first record's, the store's clock then, so an order stuck since before is seen at once."""
        since = record.history[0].at if record.history else record.placed_at
        try:
            with aws_errors():
                self.ddb.update_item(
                    TableName=self.table, Key=self.key(record.order_id),
                    UpdateExpression=f"SET {IN_FLIGHT} = :shard, {IN_FLIGHT_SINCE} = :since",
                    ConditionExpression=f"attribute_not_exists({IN_FLIGHT}) AND version = :version "
                                        "AND #status = :status",
                    ExpressionAttributeNames={"#status": "status"},
                    ExpressionAttributeValues=to_item({
                        ":shard": in_flight_shard(record.order_id), ":since": since or now_iso(),
                        ":version": record.version, ":status": record.status.value}))
            return True
        except Exception as exc:
            if not condition_failed(exc):
                raise
        return False

    def scan(self) -> Iterator[dict[str, Any]]:
        """Every item (orders, holds, restock markers) as plain values: a paginated, consistent Scan."""
        return tables.scan(self.settings, "orders")

    def get(self, order_id: str) -> dict[str, Any] | None:
        """The order's public view: orderId, status, reason, history [{status, at, ...}], ..."""
        record = self.load(order_id)
        return public_view(record) if record else None

    def create(self, order: Order, placed_at: str, correlation_id: str,
               review: bool) -> tuple[OrderRecord, bool]:
        """Record a validated order (placed, then validated); (record, False) if it already existed."""
        record = OrderRecord.placed(order, placed_at, now_iso(), correlation_id, review)
        home = self.home()
        if home is not None:
            record = replace(record, home_region=home[0], home_epoch=home[1])
        return self._put_new(record, over_stub=True)

    def home(self) -> tuple[str, int] | None:
        """(region, epoch) this process writes orders as in a multi-region deployment (rule R2 of
        docs/multi-region.md: the region that placed or adopted an order, at the switch's epoch then);
        None in one region. RegionInactive when the switch cannot be read: no order is written then."""
        if not self.settings.multi_region:
            return None
        switch = region_switch.current(self.settings)
        if switch is None:
            raise RegionInactive(f"{self.settings.region}: the active-region switch cannot be read; "
                                 "no order is written until it can (fail closed)")
        return str(self.settings.region), switch.epoch

    def reject(self, order_id: str, problems: Sequence[str], placed_at: str,
               correlation_id: str) -> tuple[OrderRecord, bool]:
        """Record an order refused by validation, with every problem; (record, created)."""
        return self._put_new(OrderRecord.rejected(order_id, problems, placed_at, now_iso(), correlation_id),
                             over_stub=True)

    def _put_new(self, record: OrderRecord, over_stub: bool = False) -> tuple[OrderRecord, bool]:
        """Write an order's first record: (record, True); or (the record already there, False).

        With `over_stub`, the DLQ watcher's stub of a placement that never recorded its order
        (OrderRecord.unrecorded) counts as absent: the redriven placement replaces it.
        """
        replacing: OrderRecord | None = None
        for _ in range(5):
            if self._put(record, replacing):
                return record, True
            existing = self.load(record.order_id)
            if existing is not None and not (over_stub and existing.unrecorded):
                return existing, False
            replacing = existing
            record = replace(record, version=existing.version + 1) if existing else record
        raise ConcurrentUpdate(f"order {record.order_id} kept changing while being recorded")

    def _put(self, record: OrderRecord, replacing: OrderRecord | None) -> bool:
        """Put the record if there is none (or `replacing` is still there, unchanged); False if not."""
        item = {"pk": record.order_id, "sk": "order", **record.to_data()}
        if not record.status.is_final:
            item.update({IN_FLIGHT: in_flight_shard(record.order_id), IN_FLIGHT_SINCE: now_iso()})
        condition: dict[str, Any] = {"ConditionExpression": "attribute_not_exists(pk)"}
        if replacing is not None:
            condition = {"ConditionExpression": "version = :read",
                         "ExpressionAttributeValues": to_item({":read": replacing.version})}
        try:
            with aws_errors():
                self.ddb.put_item(TableName=self.table, Item=to_item(item), **condition)
            return True
        except Exception as exc:
            if not condition_failed(exc):
                raise
        return False

    def prepare(self, record: OrderRecord, change: Change) -> tuple[Write, OrderRecord]:
        """The conditional write that makes `change` to `record`, and the record as it will be once
        that write is applied.

        The write is returned rather than run so that it can go in the same transaction
        as the stock it changes with.
        """
        at = now_iso()
        fields = change.fields()
        values: dict[str, Any] = {":status": change.status.value, ":one": 1,
                                  ":entries": [e.to_data() for e in change.entries(at)],
                                  ":now": at, ":version": record.version, ":from": record.status.value}
        sets = ["#status = :status", "version = version + :one",
                "history = list_append(history, :entries)", "updatedAt = :now"]
        names = {"#status": "status"}
        for n, (name, value) in enumerate(fields.items()):
            names[f"#f{n}"] = name
            values[f":f{n}"] = value
            sets.append(f"#f{n} = :f{n}")
        # A change that takes a failed order on drops what described the failure (OrderRecord.after).
        gone = [n for n in FAILURE_FIELDS if n not in fields] if record.status is OrderState.FAILED else []
        if change.status.is_final:  # it leaves the in-flight index; any other state keeps (or takes) it there
            gone += [IN_FLIGHT, IN_FLIGHT_SINCE]
        else:
            sets += [f"{IN_FLIGHT} = :inFlight",
                     f"{IN_FLIGHT_SINCE} = if_not_exists({IN_FLIGHT_SINCE}, :now)"]
            values[":inFlight"] = in_flight_shard(record.order_id)
        names.update({f"#g{n}": name for n, name in enumerate(gone)})
        removes = " REMOVE " + ", ".join(f"#g{n}" for n in range(len(gone))) if gone else ""
        condition = "version = :version AND #status = :from"
        # The order, its amount and whether it needs review too: a step decides on them, and a
        # record a message carried (orders.runtime.carried) is anyone's to write: a forged one with
        # the right version and state but other lines, another amount or no review must not be acted on.
        for attribute, value in (("order", record.content), ("totalAmount", record.total_amount),
                                 ("needsReview", record.needs_review)):
            if value is not None:
                names[f"#{attribute}"], values[f":{attribute}"] = attribute, value
                condition += f" AND #{attribute} = :{attribute}"
        new = record.after(change, at)
        home = self.home()
        if home is not None:
            # The step's own write adopts the order into this region (no call of its own), and is refused
            # on an order a later epoch took: a worker of the region switched away from stops there.
            (values[":home"], values[":epoch"]), names["#homeEpoch"] = home, "homeEpoch"
            sets += ["homeRegion = :home", "#homeEpoch = :epoch"]
            condition += " AND (attribute_not_exists(#homeEpoch) OR #homeEpoch <= :epoch)"
            adopted = record.home_region if record.home_region not in (None, home[0]) else None
            if adopted:
                values[":adoptedFrom"], values[":adoptedAt"] = adopted, at
                sets += ["adoptedFrom = :adoptedFrom", "adoptedAt = :adoptedAt"]
            new = replace(new, home_region=home[0], home_epoch=home[1],
                          adopted_from=adopted or new.adopted_from)
        op = {"TableName": self.table, "Key": self.key(record.order_id),
              "UpdateExpression": "SET " + ", ".join(sets) + removes,
              # The state too: the change was decided on it (from a record the message may have carried).
              "ConditionExpression": condition,
              "ExpressionAttributeNames": names,
              "ExpressionAttributeValues": to_item(values)}
        return Write(Guard.ORDER, {"Update": op}), new

    def transition(self, record: OrderRecord, change: Change) -> OrderRecord:
        """Make `change`; ConcurrentUpdate (retryable) if someone wrote the order meanwhile."""
        write, new = self.prepare(record, change)
        try:
            with aws_errors():
                self.ddb.update_item(**write.request["Update"])
        except Exception as exc:
            if condition_failed(exc):
                raise ConcurrentUpdate(f"order {record.order_id} changed while {change.step} ran") from exc
            raise
        return new

    def transact(self, writes: Sequence[Write]) -> Refusal | None:
        """Run writes to orders, holds and stock as one transaction: None once done, else what refused it."""
        return tables.refusal(writes, transact(self.settings, [dict(w.request) for w in writes]))

    def mark_failed(self, order_id: str, reason: str) -> bool:
        """Mark an order `failed` (its message is in a DLQ); False if already final or failed.

        The status it failed from is kept (`failedFrom`), so a redriven message can
        resume the order where it stopped. An order never recorded gets a record.
        """
        for _ in range(5):
            record = self.load(order_id)
            if record is None:
                _, created = self._put_new(OrderRecord.failed_unrecorded(order_id, reason, now_iso()))
                if created:
                    return True
                continue
            if record.status in FINAL_STATES:
                return False
            try:
                failed = Change(OrderState.FAILED, Step.DLQ, reason, failed_from=record.status)
                self.transition(record, failed)
                return True
            except ConcurrentUpdate:
                continue
        raise ConcurrentUpdate(f"order {order_id} kept changing while being marked failed")

    def claim_notification(self, order_id: str, event_type: str) -> OrderRecord | None:
        """Claim the one notification of (order id, event type): the order record the first
        time, None if it was claimed before or there is no such order.

        The claim is one conditional write on the order item (`notifications.<type>`,
        the idempotency record of the notify step); `notificationsSent` counts claims.
        Claims that arrive together (a worker's threads) are made together
        (orders.aws.claims: one transaction and one read for all of them).
        """
        # One batch per settings (credentials, region, endpoint), as the clients are.
        batch = _CLAIMS.get(self.settings, self._claim_one, self._claim_many, self._read_many)
        found = batch.claim(order_id, event_type)
        return OrderRecord.from_data(found) if found else None

    def _claim_request(self, claim: Claim) -> dict[str, Any]:
        return {"TableName": self.table, "Key": self.key(claim.order_id),
                "UpdateExpression": "SET notifications.#e = :at ADD notificationsSent :one",
                "ConditionExpression": "attribute_exists(notifications) AND "
                                       "attribute_not_exists(notifications.#e)",
                "ExpressionAttributeNames": {"#e": claim.event_type},
                "ExpressionAttributeValues": to_item({":at": now_iso(), ":one": 1})}

    def _claim_one(self, claim: Claim) -> dict[str, Any] | None:
        try:
            with aws_errors():
                new = self.ddb.update_item(**self._claim_request(claim), ReturnValues="ALL_NEW")["Attributes"]
        except Exception as exc:
            if condition_failed(exc):
                return None
            raise
        return from_item(new)

    def _claim_many(self, claims: Sequence[Claim]) -> list[str] | None:
        return transact(self.settings, [{"Update": self._claim_request(c)} for c in claims])

    def _read_many(self, order_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        return {str(item["pk"]): item for item in self.items(order_ids)}


#: One batch of notification claims per settings, shared by the process's threads.
_CLAIMS: PerProcess[ClaimBatch] = PerProcess(ClaimBatch)
