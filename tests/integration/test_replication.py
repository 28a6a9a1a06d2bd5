"""The emulator's global tables (orders.emulator.replication): two emulator processes, one per region.

What a real deployment meets with DynamoDB global tables, shown on the emulator: writes arrive
after the delay, deletes too, concurrent writes converge on the last writer, conditional writes
are checked in their own region only (so both regions can accept a write that together they
should not), and the replicator never sends its own writes back.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from orders.aws import clients
from orders.emulator.faults import clear_faults, fault_report, set_faults, start_outage
from orders.emulator.replication import REPLICATED_TABLES, Replicator
from orders.emulator.server import EmulatorProcess, call_counts
from orders.emulator.streams import unchanged
from orders.infra import kms, tables
from orders.infra.converger import Converger
from orders.settings import Settings
from orders.topology import TABLES_BY_NAME
from tests.helpers import region_emulators, wait_for

FLAKY_SEED = 7  # the fault plan's: calls fail in the same order every run
PRIMARY, SECONDARY = "us-east-1", "us-west-2"
DELAY = 1.0


@pytest.fixture(scope="module")
def emulators() -> Iterator[dict[str, EmulatorProcess]]:
    """One emulator process per region, as each region's AWS."""
    with region_emulators(PRIMARY, SECONDARY) as found:
        yield found


def namespace(emulators: dict[str, EmulatorProcess]) -> dict[str, Settings]:
    """Settings of a fresh namespace in each region."""
    env = f"r{uuid.uuid4().hex[:10]}"
    return {region: emulator.settings({"AWS_DEFAULT_REGION": region, "ORDERS_ENV": env})
            for region, emulator in emulators.items()}


@pytest.fixture
def regions(emulators: dict[str, EmulatorProcess]) -> dict[str, Settings]:
    """A fresh namespace in both regions with its replicated tables, defined as `orders infra up` does."""
    found = namespace(emulators)
    for settings in found.values():
        for name in (*REPLICATED_TABLES, "gateway"):
            spec = TABLES_BY_NAME[name]
            ddb(settings).create_table(**tables.table_definition(spec, spec.table_name(settings)))
    return found


@pytest.fixture
def replicator(regions: dict[str, Settings]) -> Iterator[Replicator]:
    with Replicator(list(regions.values()), delay=DELAY, poll=0.05) as running:
        yield running


def ddb(settings: Settings) -> Any:
    return clients.client("dynamodb", settings)


def stock_table(settings: Settings) -> str:
    return f"{settings.prefix}stock"


def get(settings: Settings, table: str, key: dict[str, Any]) -> dict[str, Any] | None:
    found: dict[str, Any] | None = ddb(settings).get_item(TableName=table, Key=key,
                                                          ConsistentRead=True).get("Item")
    return found


def writes(settings: Settings) -> int:
    counts = call_counts(str(settings.endpoint_url))
    return sum(n for call, n in counts.items()
               if call.split(":")[1] in ("PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems"))


def test_replicated_tables_are_provisioned_with_a_stream_of_new_and_old_images(emulators):
    for settings in namespace(emulators).values():
        up = Converger(settings, apply=True)
        kms.converge_key(up)
        tables.converge_tables(up)
        for name in REPLICATED_TABLES:
            table = ddb(settings).describe_table(TableName=f"{settings.prefix}{name}")["Table"]
            assert table["StreamSpecification"] == tables.STREAM
        assert "StreamSpecification" not in ddb(settings).describe_table(
            TableName=f"{settings.prefix}dlq-archive")["Table"]
        converger = Converger(settings, apply=False)
        kms.converge_key(converger)
        tables.converge_tables(converger)
        assert converger.report.clean, converger.report.changes


def test_up_switches_on_the_stream_of_a_replicated_table_made_without_one(emulators):
    settings = namespace(emulators)[PRIMARY]
    spec = TABLES_BY_NAME["stock"]
    name = spec.table_name(settings)
    ddb(settings).create_table(**{k: v for k, v in tables.table_definition(spec, name).items()
                                  if k != "StreamSpecification"})  # as `up` made it before this release
    check = Converger(settings, apply=False)
    tables.converge_tables(check)
    assert f"table {name}: stream is None, declared {tables.STREAM}" in check.report.changes
    up = Converger(settings, apply=True)
    tables.converge_tables(up)
    assert ddb(settings).describe_table(TableName=name)["Table"]["StreamSpecification"] == tables.STREAM


def test_a_write_reaches_the_other_region_after_the_delay_and_a_delete_follows(regions, replicator):
    a, b = regions[PRIMARY], regions[SECONDARY]
    key = {"pk": {"S": "order-1"}, "sk": {"S": "order"}}
    item = {**key, "status": {"S": "placed"}, "version": {"N": "1"},
            "history": {"L": [{"M": {"status": {"S": "placed"}, "at": {"S": "2026-12-06T00:00:00Z"}}}]}}
    written = time.monotonic()
    ddb(a).put_item(TableName=f"{a.prefix}orders", Item=item)
    if time.monotonic() - written < DELAY / 2:  # read back well inside the delay: not there yet
        assert get(b, f"{b.prefix}orders", key) is None
    arrived = wait_for(lambda: get(b, f"{b.prefix}orders", key), timeout=20)
    print(f"replicated {time.monotonic() - written:.2f} s after the write (delay {DELAY} s)")
    assert arrived == item
    ddb(a).delete_item(TableName=f"{a.prefix}orders", Key=key)
    assert replicator.wait()
    assert get(b, f"{b.prefix}orders", key) is None and get(a, f"{a.prefix}orders", key) is None


def test_writes_in_both_regions_replicate_both_ways_and_the_replicator_echoes_nothing(regions, replicator):
    a, b = regions[PRIMARY], regions[SECONDARY]
    for n, settings in enumerate((a, b, a, b, a)):
        ddb(settings).put_item(TableName=stock_table(settings),
                               Item={"sku": {"S": f"SKU-{n}"}, "available": {"N": str(n)}})
    assert replicator.wait()
    for settings in (a, b):
        skus = ddb(settings).scan(TableName=stock_table(settings), ConsistentRead=True)["Items"]
        assert sorted(i["sku"]["S"] for i in skus) == [f"SKU-{n}" for n in range(5)]
    assert replicator.counts["local"] == 5 and replicator.counts["applied"] == 5
    assert replicator.counts["echo"] == 5  # each replicated write seen once in its target's stream
    before = {region: writes(settings) for region, settings in regions.items()}
    time.sleep(2 * DELAY)  # long enough for an echo to have gone round
    assert replicator.wait()
    assert {region: writes(settings) for region, settings in regions.items()} == before
    assert replicator.counts["applied"] == 5


def test_two_conditional_writes_each_accepted_locally_converge_on_the_last_writer(regions, replicator):
    """The conflict a real deployment meets: the last unit of a product sold in both regions.

    Each region's condition (`available >= 1`) holds in its own copy, so both accept; global
    tables then keep the later write everywhere and drop the other without an error. Two
    holds exist for one unit: why stock is written in one region only (docs/multi-region.md)."""
    a, b = regions[PRIMARY], regions[SECONDARY]
    sku = {"sku": {"S": "SKU-LAST"}}
    ddb(a).put_item(TableName=stock_table(a), Item={**sku, "available": {"N": "1"}, "reserved": {"N": "0"}})
    assert replicator.wait()
    assert get(b, stock_table(b), sku)["available"] == {"N": "1"}
    for settings, order in ((a, "order-a"), (b, "order-b")):  # within the delay: neither sees the other
        ddb(settings).transact_write_items(TransactItems=[
            {"Update": {"TableName": stock_table(settings), "Key": sku,
                        "UpdateExpression": "SET available = available - :one, reserved = reserved + :one, "
                                            "lastHold = :order",
                        "ConditionExpression": "available >= :one",
                        "ExpressionAttributeValues": {":one": {"N": "1"}, ":order": {"S": order}}}},
            {"Put": {"TableName": f"{settings.prefix}orders",
                     "ConditionExpression": "attribute_not_exists(pk)",
                     "Item": {"pk": {"S": order}, "sk": {"S": "reservation"}, "state": {"S": "active"}}}}])
    assert replicator.wait()
    winner_a, winner_b = get(a, stock_table(a), sku), get(b, stock_table(b), sku)
    assert winner_a == winner_b
    assert winner_a["lastHold"] == {"S": "order-b"}  # written last
    assert winner_a["reserved"] == {"N": "1"} and winner_a["available"] == {"N": "0"}
    for settings in (a, b):  # both holds survive: two units promised, one counted
        for order in ("order-a", "order-b"):
            assert get(settings, f"{settings.prefix}orders", {"pk": {"S": order}, "sk": {"S": "reservation"}})
    assert replicator.counts["superseded"] >= 1


def test_a_delete_beats_an_older_write_that_arrives_after_it(regions, replicator):
    a, b = regions[PRIMARY], regions[SECONDARY]
    key = {"sku": {"S": "SKU-GONE"}}
    ddb(b).put_item(TableName=stock_table(b), Item={**key, "available": {"N": "3"}})  # older
    ddb(a).put_item(TableName=stock_table(a), Item={**key, "available": {"N": "5"}})
    ddb(a).delete_item(TableName=stock_table(a), Key=key)  # newest: a tombstone
    assert replicator.wait()
    assert get(a, stock_table(a), key) is None and get(b, stock_table(b), key) is None


def test_concurrent_captures_under_one_idempotency_key_merge_into_one_record(regions):
    """Why the payment processor's idempotency is not built on replicated tables: the same charge
    key captured in both regions within the delay merges into one record showing one capture,
    while the money moved twice. The processor must be one service both regions reach."""
    a, b = regions[PRIMARY], regions[SECONDARY]
    for settings in (a, b):  # the simulator's table is not replicated: give it a stream here
        ddb(settings).update_table(TableName=f"{settings.prefix}gateway", StreamSpecification={
            "StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"})
    key = {"key": {"S": "order-9:charge"}}
    with Replicator([a, b], tables=("gateway",), delay=DELAY, poll=0.05) as replicator:
        for settings, payment in ((a, "pay_a"), (b, "pay_b")):
            new = ddb(settings).update_item(
                TableName=f"{settings.prefix}gateway", Key=key, ReturnValues="ALL_NEW",
                UpdateExpression="ADD attempts :one SET #s = if_not_exists(#s, :captured), "
                                 "paymentId = if_not_exists(paymentId, :payment), captures = :one",
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues={":one": {"N": "1"}, ":captured": {"S": "captured"},
                                           ":payment": {"S": payment}})["Attributes"]
            assert new["paymentId"] == {"S": payment}  # each region captured: two payments
        assert replicator.wait()
    merged = [get(settings, f"{settings.prefix}gateway", key) for settings in (a, b)]
    assert merged[0] == merged[1]
    assert merged[0]["captures"] == {"N": "1"} and merged[0]["paymentId"] == {"S": "pay_b"}


def test_the_replicators_condition_holds_on_the_copy_it_read_and_fails_once_the_item_changed(regions):
    """How a replicated write never overwrites an application write it has not seen yet."""
    settings = regions[PRIMARY]
    table = f"{settings.prefix}orders"
    read = {"pk": {"S": "order-7"}, "sk": {"S": "order"}, "version": {"N": "1"},
            "history": {"L": [{"M": {"status": {"S": "placed"}}}]}, "notifications": {"M": {}}}
    ddb(settings).put_item(TableName=table, Item=read, **unchanged(None, "pk"))
    ddb(settings).update_item(TableName=table, Key={"pk": read["pk"], "sk": read["sk"]},
                              UpdateExpression="SET history = list_append(history, :e)",
                              ExpressionAttributeValues={":e": {"L": [{"M": {"status": {"S": "valid"}}}]}})
    replicated = {**read, "version": {"N": "2"}}
    with pytest.raises(ddb(settings).exceptions.ConditionalCheckFailedException):
        ddb(settings).put_item(TableName=table, Item=replicated, **unchanged(read, "pk"))
    current = get(settings, table, {"pk": read["pk"], "sk": read["sk"]})
    ddb(settings).put_item(TableName=table, Item=replicated, **unchanged(current, "pk"))
    assert get(settings, table, {"pk": read["pk"], "sk": read["sk"]}) == replicated


def test_a_change_waits_out_its_target_regions_outage_and_arrives_after_it(regions, replicator):
    """An impaired region gets the other's writes once it answers again, as with global tables."""
    a, b = regions[PRIMARY], regions[SECONDARY]
    start_outage(str(a.endpoint_url), "dynamodb", seconds=3 * DELAY)
    key = {"sku": {"S": "SKU-DURING"}}
    try:
        ddb(b).put_item(TableName=stock_table(b), Item={**key, "available": {"N": "4"}})
        assert replicator.wait(timeout=30)  # once the outage is over: the change is pending until then
        assert fault_report(str(a.endpoint_url))["injected"]  # the replicator's calls met the outage
    finally:
        clear_faults(str(a.endpoint_url))
    assert replicator.counts["unreachable"] > 0
    assert get(a, stock_table(a), key) == {**key, "available": {"N": "4"}}


def test_records_read_just_before_a_read_fails_are_not_lost(regions):
    """A stream read is several calls; when a later one fails (a region going into an outage, a 5xx),
    the records the earlier ones returned are past their iterators: they must still be applied, or
    the other region never gets those writes and the replicator writes on a copy it never saw change."""
    a, b = regions[PRIMARY], regions[SECONDARY]
    items = [{"sku": {"S": f"SKU-FLAKY-{n}"}, "available": {"N": str(n)}} for n in range(10)]
    with Replicator([a, b], delay=0.0, poll=0.05) as replicator:
        assert replicator.wait(timeout=30)  # every stream open, nothing pending
        # From here every call to the first region's DynamoDB (its streams included) fails four times in five.
        set_faults(str(a.endpoint_url), error_rate=0.8, services=["dynamodb"], seed=FLAKY_SEED)
        try:
            for item in items:
                wait_for(lambda item=item: _put(a, item), timeout=30, interval=0.01)
            failed = replicator.counts["unreachable"]
            wait_for(lambda: replicator.counts["unreachable"] >= failed + 20, timeout=30)
        finally:
            clear_faults(str(a.endpoint_url))
        assert replicator.wait(timeout=30)
    assert [get(b, stock_table(b), {"sku": i["sku"]}) for i in items] == items


def _put(settings: Settings, item: dict[str, Any]) -> bool:
    try:
        ddb(settings).put_item(TableName=stock_table(settings), Item=item)
        return True
    except Exception:  # noqa: BLE001 - a fault of the plan: the caller tries again
        return False
