"""Redrive resumes or compensates: a failure at each point of each step, the message dead-lettered by
SQS, the order marked failed by the DLQ watcher, the message redriven with `orders dlq redrive`; every
order ends completed, or cancelled with its stock back and its money refunded.

One namespace and one worker serve the whole matrix: every case is its own order (its own product),
its fault is keyed by that order, so the cases run at once.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
from click.testing import CliRunner

import tasks.ops  # noqa: F401  (worker hooks: failure records, as in production)
from orders import place_order
from orders.aws import clients
from orders.aws.gateway import Gateway
from orders.aws.stock import get_stock, set_stock
from orders.aws.store import OrderStore
from orders.celery import app
from orders.cli import cli
from orders.emulator.server import EmulatorProcess
from orders.ops import dead_letters, watch
from orders.runtime import quarantine
from orders.runtime.dependencies import dependencies
from orders.runtime.queue_urls import queue_url
from orders.settings import Settings, get_settings
from orders.steps.expiry import sweep
from orders.topology import QUEUES, QUEUES_BY_NAME
from tasks.inventory import release_expired
from tests.conftest import TEST_ENV
from tests.helpers import wait_for
from tests.integration.fault_points import InjectedFault, Point, injected
from tests.integration.pipeline_support import make_order, pipeline

STOCK = 10
UNITS = 2
KINDS: dict[str, dict[str, Any]] = {  # the orders of the matrix, by how they end when nothing fails
    "plain": {},
    "large": {"price": "3000.00"},  # 6,000.00: reviewed (and approved) first
    "refused": {"shippingAddress": {"line1": "1 Main St", "city": "Springfield", "postalCode": "00000",
                                    "country": "US"}},  # the carrier refuses it after the capture: refund
    "declined": {"token": "tok_chargeDeclined"},
}
B, W, E, H = Point.BEFORE_WRITE, Point.AFTER_WRITE, Point.AFTER_EVENTS, Point.AFTER_HANDOFF


@dataclass(frozen=True)
class Case:
    """A task failing at a point for an order of a kind; the order once the watcher has passed
    (`status` or `failed from <state>`), and how it ends after the redrive."""

    task: str
    point: Point
    kind: str
    watched: str
    end: str

    @property
    def id(self) -> str:
        return f"{self.task}-{self.kind}-{self.point}"


def cases(task: str, kind: str, watched: dict[Point, str], end: str) -> list[Case]:
    return [Case(task, point, kind, state, end) for point, state in watched.items()]


MATRIX = [
    *cases("orders.place", "plain", {B: "failed from placed", W: "failed from validated",
                                     E: "failed from validated", H: "completed"}, "completed"),
    *cases("orders.review", "large", {B: "failed from validated", W: "failed from reviewed",
                                      E: "failed from reviewed", H: "completed"}, "completed"),
    *cases("inventory.reserve", "plain", {B: "failed from validated", W: "failed from reserved",
                                          E: "failed from reserved", H: "completed"}, "completed"),
    *cases("payments.charge", "plain", {B: "failed from reserved", W: "failed from paid",
                                        E: "failed from paid", H: "completed"}, "completed"),
    *cases("payments.charge", "declined", {B: "failed from reserved", W: "cancelled", E: "cancelled",
                                           H: "cancelled"}, "cancelled"),
    *cases("shipping.create_shipment", "plain", {B: "failed from paid", W: "completed", E: "completed",
                                                 H: "completed"}, "completed"),
    *cases("shipping.create_shipment", "refused", {B: "failed from paid", W: "failed from refunding",
                                                   E: "failed from refunding", H: "cancelled"}, "cancelled"),
    *cases("payments.refund", "refused", {B: "failed from refunding", W: "cancelled", E: "cancelled",
                                          H: "cancelled"}, "cancelled"),
    Case("notifications.notify", B, "plain", "completed", "completed"),  # the pipeline went on meanwhile
]
RESTOCKS = [B, W, E]  # inventory.restock: no order; the units are added once


@dataclass
class Seen:
    """One case's order: as the watcher left it, and at the end."""

    order: dict[str, Any]
    watched: str = ""
    final: dict[str, Any] | None = None


def described(record: dict[str, Any] | None) -> str:
    if record is None:
        return "absent"
    return f"failed from {record.get('failedFrom')}" if record["status"] == "failed" else record["status"]


def money(settings: Settings, order_id: str) -> tuple[Decimal, Decimal, int]:
    """(captured, refunded, captures) for the order, from the gateway's own records."""
    gateway = Gateway(settings)
    charge = gateway.lookup(f"{order_id}:charge") or {}
    refund = gateway.lookup(f"{order_id}:refund") or {}
    captured = charge.get("status") == "captured"
    return (Decimal(str(charge["amount"])) if captured else Decimal(0),
            Decimal(str(refund["amount"])) if refund.get("status") == "refunded" else Decimal(0),
            int(charge.get("captures", 1)) if captured else 0)


def busy(settings: Settings) -> dict[str, int]:
    """Messages waiting or in flight on each processing queue (those not idle)."""
    sqs, found = clients.client("sqs", settings), {}
    for spec in QUEUES:
        attrs = sqs.get_queue_attributes(QueueUrl=queue_url(settings, spec.name), AttributeNames=[
            "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
        found[spec.name] = sum(int(v) for v in attrs.values())
    return {name: n for name, n in found.items() if n}


def dead(settings: Settings) -> dict[str, int]:
    """Messages in each DLQ (those not empty)."""
    found = {spec.name: sum(dead_letters.depth(settings, spec)) for spec in QUEUES}
    return {name: n for name, n in found.items() if n}


def redrive_all(settings: Settings) -> dict[str, int]:
    """`orders dlq redrive QUEUE --all` for every DLQ that holds messages; what each held."""
    held = dead(settings)
    for queue in held:
        result = CliRunner().invoke(cli, ["dlq", "redrive", queue, "--all"])
        assert result.exit_code == 0, result.output
    return held


@pytest.fixture(scope="module")
def namespace(emulator: EmulatorProcess) -> Iterator[Settings]:
    """A provisioned namespace for the module (conftest's `infra`, made once)."""
    from orders.infra import provisioning

    with pytest.MonkeyPatch.context() as env:
        values = {"ORDERS_ENV": f"t{uuid.uuid4().hex[:10]}", **TEST_ENV}
        for name, value in values.items():
            env.setenv(name, value)
        get_settings.cache_clear()
        settings = emulator.settings(values)
        app.reconfigure(settings)
        provisioning.up(settings)
        yield settings
    get_settings.cache_clear()


@pytest.fixture(scope="module")
def matrix(namespace: Settings) -> dict[str, Seen]:
    """Every case run at once: failed until dead-lettered, watched, fixed, redriven, ended."""
    settings, seen = namespace, {}
    with pytest.MonkeyPatch.context() as patches, injected(patches) as plan:
        for case in MATRIX:
            seen[case.id] = Seen(place_for(settings, case, plan))
        for point in RESTOCKS:
            sku = f"SKU-restock-{point}"
            set_stock(settings, sku, STOCK)
            plan[("inventory.restock", sku)] = point
            app.send_task("inventory.restock", args=(sku, 5, f"r-{point}"), MessageGroupId=sku,
                          MessageDeduplicationId=f"r-{point}")
        expected = len(MATRIX) + len(RESTOCKS) + 1  # the notified order's two customer events
        with pipeline(concurrency=16):
            wait_for(lambda: sum(dead(settings).values()) == expected and not busy(settings), timeout=150)
            watch.watch(settings)  # what beat's ops.watch_dlqs runs
            for case in MATRIX:
                seen[case.id].watched = described(OrderStore(settings).get(seen[case.id].order["orderId"]))
            plan.clear()  # the fix is deployed
            redrive_all(settings)
            settled(settings, seen)
    return seen


def settled(settings: Settings, seen: dict[str, Seen]) -> None:
    """Wait for every order to end as its case says and for the queues to go quiet, or for the time
    to run out (each case's test then says what became of its order); record each order."""
    store = OrderStore(settings)

    def done() -> bool:
        for case in MATRIX:
            seen[case.id].final = store.get(seen[case.id].order["orderId"])
        return all(described(seen[c.id].final) == c.end for c in MATRIX) and not busy(settings)

    try:
        wait_for(done, timeout=90, interval=0.5)
    except AssertionError:
        pass


def place_for(settings: Settings, case: Case, plan: dict[tuple[str, str | None], Point]) -> dict[str, Any]:
    """Place the case's order (its own product, STOCK units of it) with its fault planned."""
    sku = f"SKU-{case.id}".replace(".", "-")
    set_stock(settings, sku, STOCK)
    overrides = dict(KINDS[case.kind])
    order = make_order(sku=sku, quantity=UNITS, price=overrides.pop("price", "10.00"),
                       token=overrides.pop("token", "tok_visa"), **overrides)
    plan[(case.task, order["orderId"])] = case.point
    place_order.delay(order)
    return order


def ended(settings: Settings, order_id: str, status: str) -> dict[str, Any] | None:
    record = OrderStore(settings).get(order_id)
    return record if record and record["status"] == status else None


@pytest.mark.parametrize("case", MATRIX, ids=lambda c: c.id)
def test_a_redriven_message_ends_its_order_with_its_stock_and_money_right(matrix, namespace, case):
    seen = matrix[case.id]
    settings, order, final = namespace, seen.order, seen.final
    assert seen.watched == case.watched  # the failure happened where the case says
    assert described(final) == case.end
    assert final is not None and "failedFrom" not in final and not dead(settings)
    captured, refunded, captures = money(settings, order["orderId"])
    total = Decimal(order["totalAmount"])
    assert captures <= 1 and captured - refunded == (total if case.end == "completed" else 0)
    sold = UNITS if case.end == "completed" else 0
    assert get_stock(settings, order["items"][0]["sku"]) == {
        "sku": order["items"][0]["sku"], "available": STOCK - sold, "reserved": 0}
    if case.end == "cancelled":
        assert final["reason"] in ("payment-declined", "undeliverable-address")
    if case.task == "notifications.notify":
        assert sorted(OrderStore(settings).load(order["orderId"]).notifications) == ["OrderPlaced",
                                                                                      "OrderShipped"]


@pytest.mark.parametrize("point", RESTOCKS, ids=str)
def test_a_redriven_restock_adds_its_units_once_and_names_no_order(matrix, namespace, point):
    sku = f"SKU-restock-{point}"
    assert get_stock(namespace, sku)["available"] == STOCK + 5
    assert OrderStore(namespace).get(sku) is None  # the watcher took no sku for an order


@pytest.mark.parametrize("sweep_dies", [False, True], ids=["swept", "sweep-died-after-its-write"])
def test_the_sweep_refunds_a_failed_order_whose_payment_was_captured(infra, sweep_dies):
    """The charge captured, then could not record it until its message was dead-lettered; the hold runs
    out before anyone redrives it. The sweep gives the stock back and the money too (its refund sent
    by the sweep, or, if the sweep died after its write, by the redriven charge)."""
    case = Case("payments.charge", B, "plain", "failed from reserved", "cancelled")
    store = OrderStore(infra)
    with pytest.MonkeyPatch.context() as patches, injected(patches) as plan:
        # A processor outside the account, as a real one is: its capture is a call of its own, before the
        # order's transaction (the simulator's own capture commits with `paid`: Gateway.quote).
        patches.setattr(Gateway, "quote", lambda *args: None)
        order = place_for(infra, case, plan)
        order_id, sku = order["orderId"], order["items"][0]["sku"]
        with pipeline():
            wait_for(lambda: dead(infra) == {"payments": 1} and not busy(infra), timeout=90)
            watch.watch(infra)
            plan.clear()
            assert described(store.get(order_id)) == case.watched
            assert money(infra, order_id)[0] == Decimal(order["totalAmount"])  # captured, never recorded
            swept(infra, sweep_dies)
            # Ended by the sweep, not left failed; if it died, no refund was sent: nothing moves the
            # order until the charge's redrive.
            ended_by_sweep = {"refunding"} if sweep_dies else {"refunding", "cancelled"}
            assert store.get(order_id)["status"] in ended_by_sweep
            assert get_stock(infra, sku) == {"sku": sku, "available": STOCK, "reserved": 0}
            redrive_all(infra)
            final = wait_for(lambda: ended(infra, order_id, "cancelled"), timeout=60)
            wait_for(lambda: not busy(infra), timeout=60)
    assert final["reason"] == "reservation-expired" and "failedFrom" not in final
    captured, refunded, captures = money(infra, order_id)
    assert (captured - refunded, captures) == (0, 1)
    assert get_stock(infra, sku) == {"sku": sku, "available": STOCK, "reserved": 0}


def swept(settings: Settings, dies: bool) -> None:
    """The beat task's sweep, once the holds have run out; `dies`: its task dies after its write."""
    def conclude(outcome: Any) -> Any:
        if dies:
            raise InjectedFault("the sweep task died after its write")
        return release_expired.settle(outcome)  # what the beat task concludes each order with

    later = time.time() + settings.reservation_ttl_seconds + 60
    try:
        sweep(dependencies(settings), conclude, now=later)
    except InjectedFault:
        assert dies


def test_a_redriven_message_goes_back_without_the_reason_a_worker_refused_it_for(infra):
    """A poison message's DLQ copy carries why it was refused (orders.runtime.quarantine); sent back, it
    is judged afresh: failing again the ordinary way, it is an ordinary dead letter."""
    sqs, spec = clients.client("sqs", infra), QUEUES_BY_NAME["shipping"]
    envelope = json.dumps({"body": base64.b64encode(b'[["ord-x"], {}, {}]').decode(), "properties": {},
                           "content-type": "application/json",
                           "headers": {"task": "shipping.create_shipment", "id": "task-poisoned"}})

    def text(value: str) -> dict[str, str]:
        return {"DataType": "String", "StringValue": value}

    sqs.send_message(QueueUrl=dead_letters.dlq_url(infra, spec), MessageBody=envelope, MessageAttributes={
        quarantine.REASON: text("undecodable"), quarantine.SOURCE: text("shipping"),
        quarantine.SOURCE_ID: text("m-1"), "trace": text("kept")})
    assert redrive_all(infra) == {"shipping": 1}
    [back] = sqs.receive_message(QueueUrl=queue_url(infra, "shipping"), MessageAttributeNames=["All"],
                                 WaitTimeSeconds=1)["Messages"]
    assert back["Body"] == envelope
    assert sorted(back["MessageAttributes"]) == ["orders_redrive", "trace"]
