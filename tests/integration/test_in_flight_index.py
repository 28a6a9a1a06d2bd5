"""The orders table's sparse `in-flight` index holds exactly the orders not in a final state, keyed by the
store's own clock; the stuck-order sweeper finds them there, with no Scan of the table."""

from __future__ import annotations

import dataclasses
import weakref
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from orders.aws import clients
from orders.aws.store import IN_FLIGHT, IN_FLIGHT_SINCE, OrderStore
from orders.domain.errors import RetryableError
from orders.domain.order import validate
from orders.domain.records import Change, OrderRecord
from orders.domain.states import OrderState, Step
from orders.domain.times import iso, now_iso
from orders.emulator.server import call_counts
from orders.ops import sweeper
from orders.settings import Settings
from tests.integration.pipeline_support import make_order

pytestmark = pytest.mark.integration

LATER = timedelta(days=1)


def in_flight(settings: Settings) -> set[str]:
    return set(OrderStore(settings).in_flight(iso(datetime.now(UTC) + LATER)))


def raw(settings: Settings, order_id: str) -> dict[str, Any]:
    store = OrderStore(settings)
    item = clients.client("dynamodb", settings).get_item(
        TableName=store.table, Key=store.key(order_id), ConsistentRead=True)["Item"]
    return {name: next(iter(value.values())) for name, value in item.items()}


def placed(settings: Settings, placed_at: str | None = None) -> OrderRecord:
    order = validate(make_order())
    record, created = OrderStore(settings).create(order, placed_at or now_iso(), "corr-1", review=False)
    assert created
    return record


def table_from_before_the_index(settings: Settings) -> None:
    """The orders table made again as a release before the `in-flight` index made it (empty)."""
    from orders.infra.tables import table_definition
    from orders.topology import TABLES_BY_NAME

    store, ddb = OrderStore(settings), clients.client("dynamodb", settings)
    ddb.delete_table(TableName=store.table)
    ddb.get_waiter("table_not_exists").wait(TableName=store.table, WaiterConfig={"Delay": 1})
    old = dataclasses.replace(TABLES_BY_NAME["orders"], indexes={"active-holds": ("holdState", "expiresAt")},
                              keys_only=())
    ddb.create_table(**table_definition(old, store.table))


def test_an_order_is_in_flight_from_its_first_record_to_its_final_state_and_again_when_taken_on(infra):
    store = OrderStore(infra)
    record = placed(infra, placed_at="9999-12-31T00:00:00.000000Z")  # a message's time: not the index's key
    since = raw(infra, record.order_id)[IN_FLIGHT_SINCE]
    assert record.order_id in in_flight(infra) and since < iso(datetime.now(UTC) + timedelta(seconds=1))

    reserved = store.transition(record, Change(OrderState.RESERVED, Step.RESERVE))
    assert record.order_id in in_flight(infra)
    assert raw(infra, record.order_id)[IN_FLIGHT_SINCE] == since  # a step leaves the index's key as it was

    failed = store.transition(reserved, Change(OrderState.FAILED, Step.DLQ, "its message reached a DLQ"))
    assert record.order_id not in in_flight(infra)
    assert not {IN_FLIGHT, IN_FLIGHT_SINCE} & set(raw(infra, record.order_id))

    taken_on = store.transition(failed, Change(OrderState.PAID, Step.CHARGE))  # a redriven charge
    assert record.order_id in in_flight(infra)
    assert raw(infra, record.order_id)[IN_FLIGHT_SINCE] > since

    store.transition(taken_on, Change(OrderState.COMPLETED, Step.SHIP, via=(OrderState.SHIPPED,)))
    assert record.order_id not in in_flight(infra)


def test_a_rejected_order_is_never_in_flight(infra):
    rejected, created = OrderStore(infra).reject("ord-rejected-1", ["no lines"], now_iso(), "corr-2")
    assert created and rejected.status is OrderState.REJECTED
    assert "ord-rejected-1" not in in_flight(infra)
    assert IN_FLIGHT not in raw(infra, "ord-rejected-1")


def test_the_sweeper_finds_stuck_orders_in_the_index_and_never_scans_the_table(infra):
    stuck = placed(infra)
    done = OrderStore(infra).transition(placed(infra),
                                        Change(OrderState.CANCELLED, Step.RESERVE, "out-of-stock"))
    fresh = placed(infra)
    settings = dataclasses.replace(infra, sweep_stuck_after=60.0)
    before = call_counts(str(infra.endpoint_url))
    found = sweeper.stuck_orders(settings, datetime.now(UTC) + timedelta(seconds=120))
    right_now = sweeper.stuck_orders(settings, datetime.now(UTC))
    after = call_counts(str(infra.endpoint_url))
    made = {k: after.get(k, 0) - before.get(k, 0) for k in after if after.get(k, 0) != before.get(k, 0)}
    assert {record.order_id for record, _, _ in found} == {stuck.order_id, fresh.order_id}
    assert done.order_id not in {record.order_id for record, _, _ in found}
    assert right_now == []  # nobody in flight for a minute yet: nothing read beyond the index
    assert made.get("dynamodb:Scan", 0) == 0
    # The candidates judged (one read), then the stuck ones read again as they are acted on (one read).
    assert made["dynamodb:Query"] == 2 * 10 and made["dynamodb:BatchGetItem"] == 2, made


def test_a_pass_judges_the_records_as_it_reads_them_and_keeps_only_the_stuck_ones_ids(infra, monkeypatch):
    """In a long outage every order in flight is a candidate: a pass never holds all their records at once."""
    records = [placed(infra) for _ in range(230)]  # three BatchGetItems' worth, the oldest first
    settings = dataclasses.replace(infra, sweep_stuck_after=60.0)
    later = datetime.now(UTC) + timedelta(seconds=120)
    live: set[int] = set()
    most = [0]
    read_order = sweeper.read_order

    def tracked(data: dict[str, Any]) -> OrderRecord:
        record = read_order(data)
        live.add(id(record))
        most[0] = max(most[0], len(live))
        weakref.finalize(record, live.discard, id(record))
        return record

    monkeypatch.setattr(sweeper, "read_order", tracked)
    before = call_counts(str(infra.endpoint_url))
    order_ids = sweeper.stuck_ids(settings, later)
    after = call_counts(str(infra.endpoint_url))
    assert order_ids == [r.order_id for r in records]  # the longest stuck first
    assert after.get("dynamodb:BatchGetItem", 0) - before.get("dynamodb:BatchGetItem", 0) == 3
    assert most[0] <= sweeper.READ_CHUNK, most  # all 230 held at once before
    again = sweeper.read_stuck(settings, order_ids, later)  # as the pass goes on: a hundred at a time
    assert [next(again)[0].order_id for _ in range(3)] == order_ids[:3]
    assert most[0] <= sweeper.READ_CHUNK, most


def test_a_pass_goes_past_the_orders_whose_resume_is_under_way(infra):
    """Resumed orders stay the longest stuck while their resume is awaited (their step's whole bound): a
    pass acts on the next ones, however many wait."""
    records = [placed(infra) for _ in range(11)]  # more than four for each order a pass may act on
    for record in records:  # waiting for their reservation, which never comes
        OrderStore(infra).transition(record, Change(OrderState.VALIDATED, Step.PLACE))
    settings = dataclasses.replace(infra, sweep_stuck_after=60.0, sweep_max_orders=2)
    later = datetime.now(UTC) + timedelta(seconds=120)
    resumed: list[str] = []
    passes = [[s.record.order_id for s in sweeper.sweep(settings, lambda r, step: resumed.append(r.order_id),
                                                         later)] for _ in range(6)]
    ids = [r.order_id for r in records]
    assert passes == [ids[0:2], ids[2:4], ids[4:6], ids[6:8], ids[8:10], ids[10:11]], passes
    assert resumed == ids


def test_a_pass_through_a_dynamodb_outage_reports_what_it_did_and_raises_nothing(infra, monkeypatch, caplog):
    """DynamoDB gone before the first read, or between two reads of a pass: the pass acts on what it read,
    says so, and leaves the rest to the next pass (a raise would dead-letter the beat task)."""
    records = [placed(infra) for _ in range(3)]
    for record in records:
        OrderStore(infra).transition(record, Change(OrderState.VALIDATED, Step.PLACE))
    settings = dataclasses.replace(infra, sweep_stuck_after=60.0)
    later = datetime.now(UTC) + timedelta(seconds=120)
    monkeypatch.setattr(sweeper, "READ_CHUNK", 1)
    reads = {"n": 0, "fail_from": 1}
    items = OrderStore.items

    def flaky(store: OrderStore, ids: list[str]) -> list[dict[str, Any]]:
        reads["n"] += 1
        if reads["n"] >= reads["fail_from"]:
            raise RetryableError("DynamoDB is unavailable")
        return items(store, ids)

    monkeypatch.setattr(OrderStore, "items", flaky)
    resumed: list[str] = []
    with caplog.at_level("WARNING", logger=sweeper.__name__):
        assert sweeper.sweep(settings, lambda r, step: resumed.append(r.order_id), later) == []
        reads.update(n=0, fail_from=5)  # three reads to judge, one to act on the first, then gone
        swept = sweeper.sweep(settings, lambda r, step: resumed.append(r.order_id), later)
    assert [s.record.order_id for s in swept] == resumed == [records[0].order_id]
    said = [r.getMessage() for r in caplog.records if r.name == sweeper.__name__]
    assert any("could not be read this pass" in line for line in said), said
    assert any("could not all be read again this pass" in line for line in said), said
    reads.update(n=0, fail_from=99)  # back: the next pass takes the others
    assert [s.record.order_id for s in sweeper.sweep(settings, lambda r, step: None, later)] == \
        [r.order_id for r in records[1:]]


def test_a_table_from_before_the_index_gets_it_from_infra_up_and_its_orders_enter_it_at_their_next_step(
        infra):
    """The upgrade: a deployment whose orders table has no `in-flight` index yet (and an order in flight
    that never carried its keys) converges with `orders infra up`, as operators upgrade."""
    from orders.infra import provisioning

    store, ddb = OrderStore(infra), clients.client("dynamodb", infra)
    table_from_before_the_index(infra)
    record = placed(infra)
    ddb.update_item(TableName=store.table, Key=store.key(record.order_id),  # as the release before wrote it
                    UpdateExpression=f"REMOVE {IN_FLIGHT}, {IN_FLIGHT_SINCE}")

    assert "table " + store.table + ": index in-flight missing" in provisioning.check(infra).changes
    assert "table " + store.table + ": index in-flight missing (created)" in provisioning.up(infra).changes
    indexes = ddb.describe_table(TableName=store.table)["Table"]["GlobalSecondaryIndexes"]
    assert {i["IndexName"]: i["Projection"]["ProjectionType"] for i in indexes} == {
        "active-holds": "ALL", "in-flight": "KEYS_ONLY"}
    assert provisioning.check(infra).clean

    assert record.order_id not in in_flight(infra)  # never carried the keys: its next step puts it there
    store.transition(record, Change(OrderState.RESERVED, Step.RESERVE))
    assert record.order_id in in_flight(infra)


def test_the_audit_reports_an_order_in_flight_missing_from_the_index_and_puts_it_there_when_asked(infra):
    """An order in flight since before the release that made the index: the sweeper cannot see it, so the
    audit reports it, and `orders audit --index` puts it in, at its first record's time."""
    from click.testing import CliRunner

    from orders.cli import cli
    from orders.ops.audit import audit
    from orders.ops.audit_checks import Kind

    store, ddb = OrderStore(infra), clients.client("dynamodb", infra)
    old, moved = placed(infra), placed(infra)
    for record in (old, moved):  # as the release before wrote them
        ddb.update_item(TableName=store.table, Key=store.key(record.order_id),
                        UpdateExpression=f"REMOVE {IN_FLIGHT}, {IN_FLIGHT_SINCE}")

    def unindexed(result: Any) -> set[str]:
        return {p.order_id for p in result.problems if p.kind is Kind.UNINDEXED}

    assert {old.order_id, moved.order_id} <= unindexed(audit(infra))
    assert old.order_id not in in_flight(infra)

    store.transition(moved, Change(OrderState.RESERVED, Step.RESERVE))  # moves on: its write indexes it
    assert not store.index_in_flight(moved)  # read before it moved: the step's own write stands
    result = CliRunner().invoke(cli, ["audit", "--index"], env={"ORDERS_ENV": infra.env})
    assert "orders in flight put into the in-flight index" in result.output, result.output
    assert "not-indexed" not in result.output, result.output

    assert {old.order_id, moved.order_id} <= in_flight(infra)
    assert raw(infra, old.order_id)[IN_FLIGHT_SINCE] == old.history[0].at  # stuck since then: seen at once
    assert not {old.order_id, moved.order_id} & unindexed(audit(infra))


def test_a_damaged_order_in_flight_is_skipped_and_the_others_are_still_swept(infra):
    """A hand edit (a state no release knows; a time that is not one) is `orders audit`'s to report: it must
    not stop every pass of the sweeper while it stays in flight."""
    store, ddb = OrderStore(infra), clients.client("dynamodb", infra)
    unknown_state, bad_time, stuck = placed(infra), placed(infra), placed(infra)
    ddb.update_item(TableName=store.table, Key=store.key(unknown_state.order_id),
                    UpdateExpression="SET #s = :s", ExpressionAttributeNames={"#s": "status"},
                    ExpressionAttributeValues={":s": {"S": "teleported"}})
    ddb.update_item(TableName=store.table, Key=store.key(bad_time.order_id),
                    UpdateExpression="SET history[1].#at = :t", ExpressionAttributeNames={"#at": "at"},
                    ExpressionAttributeValues={":t": {"S": "not a time"}})
    settings = dataclasses.replace(infra, sweep_stuck_after=60.0)
    found = sweeper.stuck_orders(settings, datetime.now(UTC) + timedelta(seconds=120))
    assert {record.order_id for record, _, _ in found} == {stuck.order_id}


def test_a_sweep_before_the_index_can_be_read_says_so_and_looks_at_no_order(infra, caplog):
    """Between a release that reads the index and the `orders infra up` that makes it (or while DynamoDB
    builds it on a large table), each pass says what is going on, once, without a traceback, and acts on
    nothing; it is not a failure of DynamoDB."""
    import logging

    from orders.aws.store import InFlightIndexUnreadable
    from orders.infra import provisioning

    store = OrderStore(infra)
    table_from_before_the_index(infra)
    try:
        with pytest.raises(InFlightIndexUnreadable, match="in-flight"):
            list(store.in_flight(now_iso()))

        def resume(*_: Any) -> None:
            raise AssertionError("nothing is resumed while the index cannot be read")

        caplog.set_level(logging.WARNING, logger="orders.ops.sweeper")
        assert sweeper.sweep(dataclasses.replace(infra, sweep_stuck_after=1.0), resume) == []
        lines = [r for r in caplog.records if r.name == "orders.ops.sweeper"]
        assert [r.levelno for r in lines] == [logging.WARNING] and lines[0].exc_info is None
        assert "in-flight index cannot be read yet" in lines[0].getMessage()
    finally:
        provisioning.up(infra)  # the table as the release declares it, for the tests after this one


def test_a_backfilling_index_is_told_apart_from_other_refusals():
    from botocore.exceptions import ClientError

    from orders.aws.store import index_unreadable

    def refusal(code: str, message: str) -> ClientError:
        return ClientError({"Error": {"Code": code, "Message": message}}, "Query")

    assert index_unreadable(refusal("ValidationException",
                                    "Cannot read from backfilling global secondary index: in-flight"))
    assert index_unreadable(refusal("ValidationException",
                                    "The table does not have the specified index: in-flight"))
    assert index_unreadable(refusal("ResourceNotFoundException",
                                    "Invalid index: in-flight for table: dev-orders"))
    assert not index_unreadable(refusal("ValidationException", "Invalid KeyConditionExpression: in-flight"))
    assert not index_unreadable(refusal("ThrottlingException", "Rate exceeded for index in-flight"))
    assert not index_unreadable(refusal("ResourceNotFoundException", "Requested resource not found: Table"))
