"""The ledger audit against a real pipeline run: clean, then each discrepancy forged in the tables."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner

from orders import place_order
from orders.aws import clients, tables
from orders.aws.stock import get_stock, set_stock
from orders.aws.store import OrderStore
from orders.aws.tables import to_item
from orders.cli import cli
from orders.domain.errors import PermanentError, RetryableError
from orders.domain.states import Step
from orders.domain.times import now_iso
from orders.emulator.faults import clear_faults, start_outage
from orders.ops.audit import audit, read_stock
from orders.ops.audit_bounds import step_budget
from orders.ops.reconcile import recount_stock
from tests.helpers import calls, wait_for
from tests.integration.pipeline_support import make_order, pipeline, wait_final, wait_status

ORDER_KEYS = {"orderId", "status", "placedAt", "finishedAt", "captured", "refunded"}
COUNT_KEYS = {"orders", "final", "stuck", "double_charges", "oversold_units", "money_mismatches"}


def run_audit(*args: str) -> tuple[int, dict]:
    """`orders audit --json ARGS`: its exit code and its JSON."""
    result = CliRunner().invoke(cli, ["audit", "--json", *args])
    assert result.exit_code in (0, 1) and isinstance(result.exception, SystemExit | None), result.exception
    return result.exit_code, json.loads(result.output)


def kinds(report: dict) -> list[tuple[str, str | None, str | None]]:
    """(kind, order, sku) of each problem, sorted."""
    return ordered([(p["kind"], p["orderId"], p["sku"]) for p in report["problems"]])


def ordered(problems: list) -> list:
    return sorted(problems, key=lambda k: (k[0], k[1] or "", k[2] or ""))


@pytest.fixture
def ran(infra):
    """A pipeline run that ends every way an order can end, a restock, and one order left reserved."""
    set_stock(infra, "SKU-A1", 20)
    set_stock(infra, "SKU-A0", 0)
    orders = {
        "completed": make_order(sku="SKU-A1", quantity=2, price="12.50"),
        "declined": make_order(sku="SKU-A1", token="tok_chargeDeclined"),
        "out of stock": make_order(sku="SKU-A0"),
        "undeliverable": make_order(sku="SKU-A1", price="7.25", shippingAddress={
            "line1": "1 Main St", "city": "Springfield", "postalCode": "00000", "country": "US"}),
        "rejected": make_order(sku="SKU-UNKNOWN"),
    }
    for name, order in orders.items():
        if name == "rejected":  # past the door's catalogue check: the place step refuses it
            place_order.apply_async((order,), {"placed_at": now_iso()})
        else:
            place_order.delay(order)
    assert CliRunner().invoke(cli, ["inventory", "restock", "SKU-A1", "5", "--id", "r-audit"]).exit_code == 0
    with pipeline():
        for order in orders.values():
            wait_final(infra, order["orderId"])
        wait_for(lambda: get_stock(infra, "SKU-A1")["available"] == 20 - 2 + 5, timeout=60)
    orders["reserved"] = make_order(sku="SKU-A1", price="3.00")
    place_order.delay(orders["reserved"])
    with pipeline(["orders", "inventory.fifo"]):  # no payments worker: it waits for its charge
        wait_status(infra, orders["reserved"]["orderId"], "reserved")
    return {name: order["orderId"] for name, order in orders.items()}


def test_a_clean_run_audits_clean_with_the_exact_json(infra, ran):
    code, report = run_audit()
    assert code == 0 and report["problems"] == []
    assert set(report) == {"orders", "problems", "counts"}
    assert all(set(line) == ORDER_KEYS for line in report["orders"])
    assert COUNT_KEYS <= set(report["counts"])
    lines = {line["orderId"]: line for line in report["orders"]}
    assert set(lines) == set(ran.values())
    money = {name: (lines[oid]["status"], lines[oid]["captured"], lines[oid]["refunded"])
             for name, oid in ran.items()}
    assert money == {"completed": ("completed", "25.00", "0.00"), "declined": ("cancelled", "0.00", "0.00"),
                     "out of stock": ("cancelled", "0.00", "0.00"),
                     "undeliverable": ("cancelled", "7.25", "7.25"), "rejected": ("rejected", "0.00", "0.00"),
                     "reserved": ("reserved", "0.00", "0.00")}
    for name, oid in ran.items():
        placed, finished = lines[oid]["placedAt"], lines[oid]["finishedAt"]
        assert placed.endswith("Z") and datetime.fromisoformat(placed).tzinfo is not None
        assert (finished is None) == (name == "reserved") and (finished is None or finished.endswith("Z"))
    assert {k: report["counts"][k] for k in COUNT_KEYS} == {
        "orders": 6, "final": 5, "stuck": 0, "double_charges": 0, "oversold_units": 0, "money_mismatches": 0}
    text = CliRunner().invoke(cli, ["audit"])
    assert text.exit_code == 0 and "6 orders (5 final, 1 in flight), 2 products: everything reconciles" \
        in text.output


def test_status_json_lists_the_orders_gateway_entries(infra, ran):
    def ledger(name):
        result = CliRunner().invoke(cli, ["status", ran[name], "--json"])
        assert result.exit_code == 0, result.output
        return [(e["kind"], e["amount"], e["id"][:3]) for e in json.loads(result.output)["ledger"]]

    assert ledger("completed") == [("capture", "25.00", "pay")]
    assert ledger("undeliverable") == [("capture", "7.25", "pay"), ("refund", "7.25", "re_")]
    assert ledger("declined") == [] and ledger("reserved") == []
    text = CliRunner().invoke(cli, ["status", ran["undeliverable"]]).output
    assert "gateway capture pay_" in text and "gateway refund re_" in text


def test_each_forged_discrepancy_is_reported(infra, ran):
    ddb, prefix = clients.client("dynamodb", infra), infra.prefix
    charge = ddb.get_item(TableName=prefix + "gateway", Key=to_item({"key": f"{ran['completed']}:charge"}),
                          ConsistentRead=True)["Item"]
    # A second capture of the completed order, under another idempotency key.
    again = to_item({"key": f"{ran['completed']}:charge-again", "paymentId": "pay_two"})
    ddb.put_item(TableName=prefix + "gateway", Item={**charge, **again})
    expected = [("double-charge", ran["completed"], None), ("money-mismatch", ran["completed"], None)]
    assert_reported(expected, double_charges=1, money_mismatches=1)
    # The refund of the undeliverable (cancelled) order never happened.
    ddb.delete_item(TableName=prefix + "gateway", Key=to_item({"key": f"{ran['undeliverable']}:refund"}))
    expected.append(("money-mismatch", ran["undeliverable"], None))
    assert_reported(expected, money_mismatches=2)
    # A unit on sale vanishes; elsewhere a unit is sold that was never stocked.
    set_stock(infra, "SKU-A2", 4)
    one = to_item({":one": 1})
    ddb.update_item(TableName=prefix + "stock", Key=to_item({"sku": "SKU-A1"}),
                    UpdateExpression="SET available = available - :one", ExpressionAttributeValues=one)
    ddb.update_item(TableName=prefix + "stock", Key=to_item({"sku": "SKU-A2"}),
                    UpdateExpression="SET sold = sold + :one", ExpressionAttributeValues=one)
    expected += [("oversold", None, "SKU-A2"), ("stock-lost", None, "SKU-A1")]
    report = assert_reported(expected, oversold_units=1, lost_units=1)
    lost = "1 unit stocked and now nowhere: available 21 + held 1 + sold 2 = 24, set 20 + restocked 5 = 25"
    assert lost in [p["detail"] for p in report["problems"]]


def test_an_order_left_reserved_too_long_is_stuck_then_failed(infra, ran):
    store, oid = OrderStore(infra), ran["reserved"]
    record = store.load(oid)
    allowed = step_budget(infra, Step.CHARGE)
    assert audit(infra, now=datetime.now(UTC) + timedelta(seconds=allowed - 60)).ok  # within its budget
    assert not audit(infra, now=datetime.now(UTC) + timedelta(seconds=allowed + 60)).ok
    assert kinds(run_audit("--stuck-after", "3600")[1]) == []
    # Its last state change, moved back a day.
    day_ago = (datetime.now(UTC) - timedelta(days=1)).isoformat().replace("+00:00", "Z")
    clients.client("dynamodb", infra).update_item(
        TableName=infra.prefix + "orders", Key=to_item({"pk": oid, "sk": "order"}),
        UpdateExpression=f"SET history[{len(record.history) - 1}].#at = :old",
        ExpressionAttributeNames={"#at": "at"}, ExpressionAttributeValues=to_item({":old": day_ago}))
    code, report = run_audit()
    assert code == 1 and kinds(report) == [("stuck", oid, None)] and report["counts"]["stuck"] == 1
    text = CliRunner().invoke(cli, ["audit"])
    assert text.exit_code == 1 and f"stuck: order {oid}: reserved since {day_ago}" in text.output
    # Its message reached the DLQ: the watcher marks it failed, which awaits a person.
    assert store.mark_failed(oid, "forged: charge message dead-lettered")
    code, report = run_audit()
    assert code == 1 and kinds(report) == [("failed", oid, None)]
    assert report["counts"]["failed"] == 1 and report["counts"]["stuck"] == 0


def assert_reported(expected: list, **counts: int) -> dict:
    """The audit exits 1 listing exactly `expected` (kind, order, sku), with these counts."""
    code, report = run_audit()
    assert code == 1 and kinds(report) == ordered(expected)
    assert {k: report["counts"][k] for k in counts} == counts
    return report


def test_an_environment_without_tables_cannot_be_audited(settings):
    result = CliRunner().invoke(cli, ["audit"])
    assert result.exit_code == 2 and "cannot read the tables" in result.output


def test_a_table_scan_reads_every_page_and_classifies_its_errors(infra, emulator):
    """tables.scan, what the audit reads the tables with: every page of a table above DynamoDB's 1 MB
    page; a table that does not exist is a permanent error, DynamoDB down a retryable one."""
    ddb, skus = clients.client("dynamodb", infra), [f"SKU-P{n:03}" for n in range(160)]
    for sku in skus:  # 160 items of 8 KB: more than one page
        ddb.put_item(TableName=infra.prefix + "stock", Item=to_item({"sku": sku, "pad": "x" * 8000}))
    scans = calls(emulator.endpoint)["dynamodb:Scan"]
    assert sorted(item["sku"] for item in tables.scan(infra, "stock")) == skus
    assert calls(emulator.endpoint)["dynamodb:Scan"] - scans >= 2, "one Scan per page"
    assert sorted(count.sku for count in read_stock(infra)[0]) == skus
    with pytest.raises(PermanentError):
        list(tables.scan(dataclasses.replace(infra, env=infra.env + "-none"), "stock"))
    try:
        start_outage(emulator.endpoint, "dynamodb", 120)
        with pytest.raises(RetryableError):
            list(tables.scan(infra, "stock", consistent=False))
    finally:
        clear_faults(emulator.endpoint)


def test_a_stock_item_with_unreadable_counters_is_a_finding_and_the_others_are_audited_and_recounted(infra):
    """A hand edit that stores text or a map in a counter once stopped the audit and the recount with a
    traceback at the first such item: now it is reported, left as it is, and the others go on."""
    set_stock(infra, "SKU-OK", 5)
    set_stock(infra, "SKU-DRIFT", 5)
    ddb, table = clients.client("dynamodb", infra), infra.prefix + "stock"
    text = to_item({"sku": "SKU-TEXT", "available": "lots", "stockSet": 3})
    nested = to_item({"sku": "SKU-MAP", "available": 1, "reserved": {"n": 1}, "stockSet": 1})
    for item in (text, nested):
        ddb.put_item(TableName=table, Item=item)
    ddb.update_item(TableName=table, Key=to_item({"sku": "SKU-DRIFT"}),  # one unit held by no hold
                    UpdateExpression="SET reserved = :one", ExpressionAttributeValues=to_item({":one": 1}))
    code, report = run_audit()
    assert code == 1
    unreadable = {p["sku"]: p["detail"] for p in report["problems"] if p["kind"] == "unreadable-record"}
    assert set(unreadable) == {"SKU-TEXT", "SKU-MAP"}
    assert unreadable["SKU-TEXT"].startswith("stock item: ValueError")
    assert unreadable["SKU-MAP"].startswith("stock item: TypeError")
    assert "SKU-DRIFT" in {p["sku"] for p in report["problems"] if p["kind"] != "unreadable-record"}
    assert "SKU-OK" not in {p["sku"] for p in report["problems"]}

    recounted = recount_stock(infra)
    assert [(r.sku, r.now["reserved"], r.written) for r in recounted] == [("SKU-DRIFT", 0, True)]
    assert get_stock(infra, "SKU-DRIFT")["available"] == 5
    for item in (text, nested):  # left for an operator, exactly as they were
        stored = ddb.get_item(TableName=table, Key={"sku": item["sku"]}, ConsistentRead=True)["Item"]
        assert stored == item
