"""Stock under contention, reservation expiry, and the status/inventory commands."""

from __future__ import annotations

import dataclasses
import json
import time
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

from click.testing import CliRunner

from orders import place_order
from orders.aws.gateway import Gateway
from orders.aws.stock import get_stock, set_stock
from orders.aws.store import OrderStore
from orders.celery import app
from orders.cli import cli
from orders.domain.errors import OutOfStock
from orders.domain.order import validate
from orders.runtime.config import beat_schedule
from orders.runtime.dependencies import dependencies
from orders.steps.reservation import take
from tests.helpers import wait_for
from tests.integration.pipeline_support import make_order, pipeline, statuses, wait_final, wait_status


def test_concurrent_orders_for_scarce_stock_never_oversell(infra):
    set_stock(infra, "SKU-HOT", 5)
    orders = [make_order(sku="SKU-HOT") for _ in range(14)]
    for order in orders:
        place_order.delay(order)
    with pipeline(concurrency=10):
        records = [wait_final(infra, o["orderId"], timeout=120) for o in orders]
    outcomes = sorted((r["status"], r["reason"]) for r in records)
    assert outcomes == [("cancelled", "out-of-stock")] * 9 + [("completed", None)] * 5
    assert get_stock(infra, "SKU-HOT") == {"sku": "SKU-HOT", "available": 0, "reserved": 0}


def test_racing_reservations_take_exactly_the_available_quantity(infra):
    """Reservations straight against DynamoDB from many threads: no FIFO group serializes them."""
    set_stock(infra, "SKU-RACE", 6)
    store, deps = OrderStore(infra), dependencies(infra)
    records = []
    for _ in range(16):
        order = validate(make_order(sku="SKU-RACE"))
        records.append((store.create(order, "2026-01-01T00:00:00.000000Z", "c", False)[0], order))

    def attempt(pair):
        record, order = pair
        try:
            take(deps, record, order)
            return True
        except OutOfStock:
            return False

    with ThreadPoolExecutor(16) as pool:
        won = sum(pool.map(attempt, records))
    assert won == 6
    assert get_stock(infra, "SKU-RACE") == {"sku": "SKU-RACE", "available": 0, "reserved": 6}
    assert sum(store.get(r.order_id)["status"] == "reserved" for r, _ in records) == 6


def short_holds(settings):
    """Reservations that expire after one second (the app's tasks run with these settings)."""
    app.reconfigure(dataclasses.replace(settings, reservation_ttl_seconds=1))


def sweep_once_expired(settings, order_id):
    """Wait until the order's hold has expired, then send the expiry sweep as beat does."""
    expires = OrderStore(settings).load(order_id).reservation_expires_at
    time.sleep(max(0.0, float(expires) - time.time()) + 0.1)
    sweep = beat_schedule(settings)["release-expired-holds"]
    app.send_task(sweep["task"], **sweep["options"])


def test_an_expired_reservation_is_released_by_the_periodic_task(infra):
    short_holds(infra)
    set_stock(infra, "SKU-E", 3)
    order = make_order(sku="SKU-E", quantity=2)
    place_order.delay(order)
    with pipeline(["orders", "inventory.fifo"]):  # no payments worker: the hold just waits
        wait_status(infra, order["orderId"], "reserved")
        assert get_stock(infra, "SKU-E") == {"sku": "SKU-E", "available": 1, "reserved": 2}
        sweep_once_expired(infra, order["orderId"])
        record = wait_final(infra, order["orderId"])
    assert (record["status"], record["reason"]) == ("cancelled", "reservation-expired")
    assert statuses(record) == ["placed", "validated", "reserved", "cancelled"]
    assert get_stock(infra, "SKU-E") == {"sku": "SKU-E", "available": 3, "reserved": 0}
    with pipeline(["payments"]):  # the charge message finds the order cancelled: no charge
        wait_for(lambda: Gateway(infra).lookup(f"{order['orderId']}:charge") is None and
                 _queue_empty(infra, "payments"))
    assert OrderStore(infra).get(order["orderId"])["version"] == record["version"]


def test_a_capture_never_recorded_is_refunded_when_the_reservation_runs_out(infra):
    short_holds(infra)
    set_stock(infra, "SKU-K", 3)
    order = make_order(sku="SKU-K", quantity=2, price="15.00")
    place_order.delay(order)
    with pipeline(["orders", "inventory.fifo"]):  # no payments worker yet
        wait_status(infra, order["orderId"], "reserved")
        # A charge worker took the money and died before recording it on the order.
        Gateway(infra).charge(order["orderId"], Decimal("30.00"), "USD", "tok_visa")
        sweep_once_expired(infra, order["orderId"])
        wait_status(infra, order["orderId"], "refunding")
    with pipeline(["payments"]):  # the dead worker's charge message comes back, then the refund
        record = wait_final(infra, order["orderId"])
    assert (record["status"], record["reason"]) == ("cancelled", "reservation-expired")
    assert statuses(record) == ["placed", "validated", "reserved", "refunding", "cancelled"]
    assert Gateway(infra).lookup(f"{order['orderId']}:refund")["status"] == "refunded"
    assert Gateway(infra).lookup(f"{order['orderId']}:charge")["attempts"] == 1  # charged once
    assert get_stock(infra, "SKU-K") == {"sku": "SKU-K", "available": 3, "reserved": 0}


def test_a_charge_that_captures_after_the_expiry_sweep_is_refunded(infra):
    short_holds(infra)
    set_stock(infra, "SKU-R", 3)
    order = make_order(sku="SKU-R", quantity=1, price="20.00")
    place_order.delay(order)
    with pipeline(["orders", "inventory.fifo"]):
        wait_status(infra, order["orderId"], "reserved")
        sweep_once_expired(infra, order["orderId"])
        wait_final(infra, order["orderId"])  # cancelled: nothing was captured when the sweep asked
    # A charge that had passed its hold check before the sweep captures now; its commit
    # fails and its retry (the charge message, here) finds the order cancelled.
    Gateway(infra).charge(order["orderId"], Decimal("20.00"), "USD", "tok_visa")
    with pipeline(["payments"]):
        wait_for(lambda: (Gateway(infra).lookup(f"{order['orderId']}:refund") or {}).get("status")
                 == "refunded", timeout=60)
        wait_for(lambda: OrderStore(infra).load(order["orderId"]).refund is not None, timeout=30)
    record = OrderStore(infra).load(order["orderId"])
    assert (record.status, record.reason) == ("cancelled", "reservation-expired")
    assert record.payment.status == "captured" and Decimal(record.refund.amount) == 20
    assert get_stock(infra, "SKU-R") == {"sku": "SKU-R", "available": 3, "reserved": 0}


def _queue_empty(settings, name):
    from orders.aws import clients
    from orders.runtime.queue_urls import queue_url

    attrs = clients.client("sqs", settings).get_queue_attributes(
        QueueUrl=queue_url(settings, name),
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])
    return all(v == "0" for v in attrs["Attributes"].values())


def test_status_and_inventory_commands(infra):
    runner = CliRunner()
    assert runner.invoke(cli, ["inventory", "set", "SKU-C", "4"]).exit_code == 0
    shown = runner.invoke(cli, ["inventory", "show", "SKU-C", "--json"])
    assert json.loads(shown.output) == {"sku": "SKU-C", "available": 4, "reserved": 0}
    assert runner.invoke(cli, ["inventory", "show", "NOPE"]).exit_code == 1
    restocked = runner.invoke(cli, ["inventory", "restock", "SKU-C", "3", "--id", "r-1"])
    assert restocked.exit_code == 0, restocked.output
    runner.invoke(cli, ["inventory", "restock", "SKU-C", "3", "--id", "r-1"])  # same id: once
    order = make_order(sku="SKU-C")
    place_order.delay(order)
    with pipeline():
        wait_final(infra, order["orderId"])
        wait_for(lambda: get_stock(infra, "SKU-C")["available"] == 6, timeout=60)
    status = runner.invoke(cli, ["status", order["orderId"], "--json"])
    record = json.loads(status.output)
    assert {"orderId", "status", "reason", "history"} <= set(record)
    assert record["status"] == "completed" and record["reason"] is None
    assert all(set(entry) >= {"status", "at"} and entry["at"].endswith("Z") for entry in record["history"])
    text = runner.invoke(cli, ["status", order["orderId"]]).output
    assert f"order {order['orderId']}: completed" in text and "tracking number 1Z" in text
    assert runner.invoke(cli, ["status", "no-such-order"]).exit_code == 1


def test_tables_are_provisioned_checked_and_removed(infra):
    from orders.aws import clients
    from orders.infra import provisioning
    from orders.topology import TABLES

    ddb = clients.client("dynamodb", infra)
    names = [t.table_name(infra) for t in TABLES]
    live = {n: ddb.describe_table(TableName=n)["Table"] for n in names}
    orders_table = live[infra.prefix + "orders"]
    assert [k["AttributeName"] for k in orders_table["KeySchema"]] == ["pk", "sk"]
    indexes = {i["IndexName"]: i["Projection"]["ProjectionType"]
               for i in orders_table["GlobalSecondaryIndexes"]}
    assert indexes == {"active-holds": "ALL", "in-flight": "KEYS_ONLY"}  # expired holds; orders not yet final
    assert not [c for c in provisioning.check(infra).changes if c.startswith("table ")]
    ddb.delete_table(TableName=infra.prefix + "stock")
    assert f"table {infra.prefix}stock: missing" in provisioning.check(infra).changes
    assert f"table {infra.prefix}stock: created" in provisioning.up(infra).changes
    deleted = provisioning.down(infra)
    assert all(f"table {n}" in deleted for n in names)
