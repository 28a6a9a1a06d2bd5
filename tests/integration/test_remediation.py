"""Automated remediation, end to end: a real worker, a real `celery beat`, the real emulator with an injected
outage, and no person acting.

A DynamoDB outage sends orders in flight to their DLQs (the retry budget is scaled down to 1 s so they get
there in seconds, not ten minutes); beat's watcher archives them as transient once DynamoDB is back, and its
automated redrive sends them back after their pause (1 s here): every order ends final and right by the
ledger audit. A poison message is never redriven; a task that always fails transiently is redriven up to the
cap and then left, announced once; the switch turns it off. An order whose step message was deleted is
resumed by the sweeper; one that resuming does not move is failed and left for a person.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import tasks.ops  # noqa: F401  (worker hooks: failure records, as in production)
from orders import place_order
from orders.aws import clients
from orders.aws.gateway import Gateway, Movement
from orders.aws.sns import topic_arns
from orders.aws.stock import set_stock
from orders.aws.store import OrderStore
from orders.celery import app
from orders.domain.errors import RetryableError
from orders.emulator.faults import clear_faults, fault_report, start_outage
from orders.infra import provisioning
from orders.ops import archive, dead_letters, remediation, sweeper
from orders.ops.audit import audit
from orders.runtime.queue_urls import queue_url
from orders.settings import Settings
from orders.topology import QUEUES, QUEUES_BY_NAME
from tests.helpers import wait_for
from tests.integration.pipeline_support import make_order, pipeline, wait_status

pytestmark = pytest.mark.integration

ORDERS = QUEUES_BY_NAME["orders"]
CAP = 2
#: What the workers (in this process) run with: steps give up after 1 s of retries; automated redrive
#: waits 1 s, 2 s, ... and stops after CAP redrives. (The sweeper's tests call an order resting 2 s stuck.)
FAST = {"retry_budget_seconds": 1, "retry_backoff_max": 1, "auto_redrive_backoff_seconds": 1.0,
        "auto_redrive_max": CAP}
STUCK_AFTER = 2.0
#: What beat (its own process) runs with: the watcher and the sweeper every second, no expiry sweep.
BEAT_ENV = {"ORDERS_DLQ_WATCH_SECONDS": "1", "ORDERS_SWEEP_STUCK_SECONDS": "1",
            "ORDERS_RESERVATION_SWEEP_SECONDS": "3600"}
runs: list[str] = []


@app.task(name="ops.test_always_unavailable")
def always_unavailable(label: list[str]) -> None:
    """A dependency that never comes back: transient every time, so only the cap stops its redrives.
    (Its argument is a list: nothing the watcher could take for an order id.)"""
    runs.append(label[0])
    raise RetryableError(f"ServiceUnavailable for {label[0]}")


@pytest.fixture
def fast(infra: Settings, emulator) -> Iterator[Settings]:
    settings = dataclasses.replace(infra, **FAST)
    app.reconfigure(settings)
    clear_faults(emulator.endpoint)
    runs.clear()
    try:
        yield settings
    finally:
        clear_faults(emulator.endpoint)


@contextmanager
def beat(tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    """`celery -A orders beat` sending ops.watch_dlqs and ops.sweep_stuck every second."""
    cmd = [sys.executable, "-m", "celery", "-A", "orders", "beat", "--loglevel", "WARNING",
           "-s", str(tmp_path / "beat-schedule")]
    proc = subprocess.Popen(cmd, env={**os.environ, **BEAT_ENV}, text=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        yield proc
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def health_probe(settings: Settings) -> str:
    """A queue subscribed to system-health with no filter, as its email and SMS subscriptions are."""
    sqs, sns = clients.client("sqs", settings), clients.client("sns", settings)
    url = sqs.create_queue(QueueName=f"{settings.prefix}test-health")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic_arns(settings)["system-health"], Protocol="sqs", Endpoint=arn,
                  Attributes={"RawMessageDelivery": "true"})
    return str(url)


class Notices:
    """What reached the system-health probe so far, read on demand."""

    def __init__(self, settings: Settings, url: str):
        self.settings, self.url, self.seen = settings, url, []  # type: ignore[var-annotated]

    def of(self, event_type: str) -> list[dict[str, Any]]:
        sqs = clients.client("sqs", self.settings)
        while messages := sqs.receive_message(QueueUrl=self.url, MaxNumberOfMessages=10,
                                              WaitTimeSeconds=0).get("Messages", []):
            self.seen += [json.loads(m["Body"]) for m in messages]
            sqs.delete_message_batch(QueueUrl=self.url, Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)])
        return [n for n in self.seen if n.get("event_type") == event_type]


def depth(settings: Settings, url: str) -> int:
    attrs = clients.client("sqs", settings).get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])
    return sum(int(v) for v in attrs["Attributes"].values())


def dead(settings: Settings) -> dict[str, int]:
    found = {spec.name: sum(dead_letters.depth(settings, spec)) for spec in QUEUES}
    return {name: n for name, n in found.items() if n}


def redrives(settings: Settings, key: str) -> int:
    ledger = [item for item in archive.history(settings, key) if item["item"] == "redrive"]
    return int(ledger[0]["redrives"]) if ledger else 0


def metric_outcomes(settings: Settings, name: str) -> set[str]:
    """The dimension sets recorded under `name` (Outcome or Status values)."""
    pages = clients.client("cloudwatch", settings).get_paginator("list_metrics").paginate(
        Namespace="Orders", MetricName=name)
    return {d["Value"] for page in pages for m in page["Metrics"] for d in m["Dimensions"]
            if d["Name"] in ("Outcome", "Status")}


def test_an_outage_s_dead_letters_are_redriven_and_every_order_ends_right_with_no_person(fast, emulator,
                                                                                       tmp_path):
    settings, endpoint = fast, emulator.endpoint
    notices = Notices(settings, health_probe(settings))
    set_stock(settings, "SKU-REM", 100)
    kinds: list[dict[str, Any]] = [{}, {"quantity": 2, "price": "5.00"}, {}, {"token": "tok_chargeDeclined"},
                                   {}, {"tier": "vip", "token": "wallet_ok"}]
    orders = [make_order("SKU-REM", orderId=f"ord-rem-{n}", **kind) for n, kind in enumerate(kinds)]
    sqs = clients.client("sqs", settings)
    sqs.send_message(QueueUrl=queue_url(settings, "orders"), MessageBody="poison: not a task at all")
    always_unavailable.delay(["cap"])
    for order in orders:
        place_order.delay(order)
    start_outage(endpoint, "dynamodb", 10)  # every step the orders meet fails until they are dead-lettered
    with pipeline():
        with beat(tmp_path):
            wait_for(lambda: not any(o["active"] for o in fault_report(endpoint)["outages"]), timeout=40)
            final = {o["orderId"]: wait_status_final(settings, o["orderId"]) for o in orders}
            wait_for(lambda: notices.of("AutoRedriveStopped"), timeout=120, interval=0.5)
        # Beat stopped: its tasks of every second (and their acks' linger) no longer keep the orders
        # queue from ever being empty, so that the queues can be seen drained.
        wait_for(lambda: dead(settings) == {"orders": 2} and all(
            depth(settings, queue_url(settings, q.name)) == 0 for q in QUEUES), timeout=120, interval=0.5)

    # Every order final and right: completed once and charged once, or declined and never charged.
    for order in orders:
        declined = order["payment"]["token"] == "tok_chargeDeclined"
        assert final[order["orderId"]]["status"] == ("cancelled" if declined else "completed")
        captures = [e for e in Gateway(settings).entries(order["orderId"]) if e.kind is Movement.CAPTURE]
        assert len(captures) == (0 if declined else 1)
    report = audit(settings)
    assert report.problems == [] and report.counts["failed"] == report.counts["stuck"] == 0
    assert report.counts["double_charges"] == report.counts["oversold_units"] == 0

    # The outage did send messages to a DLQ, and automation (no person) sent them back.
    redriven = [n for n in notices.of("AutoRedrive") if n["outcome"] == "redriven"]
    assert fault_report(endpoint)["injected"] and redriven
    assert any(n["task"] != "ops.test_always_unavailable" for n in redriven)
    assert "redriven" in metric_outcomes(settings, "AutoRedrives")

    # Left in the orders DLQ: the poison message, never redriven, and the task at its cap, announced once.
    left = {m.task: m for m in dead_letters.scan(settings, ORDERS)}
    assert set(left) == {None, "ops.test_always_unavailable"}
    poison = left[None]
    assert poison.poison and redrives(settings, poison.key) == 0
    capped = left["ops.test_always_unavailable"]
    assert redrives(settings, capped.key) == CAP
    [stopped] = notices.of("AutoRedriveStopped")
    assert (stopped["key"], stopped["severity"], stopped["redrives"]) == (capped.key, "critical", CAP)
    assert runs.count("cap") >= (CAP + 1) * ORDERS.max_receive_count  # first delivery + CAP redrives
    assert "capped" in metric_outcomes(settings, "AutoRedrives")


def wait_status_final(settings: Settings, order_id: str) -> dict[str, Any]:
    store = OrderStore(settings)

    def done() -> dict[str, Any] | None:
        record = store.get(order_id)
        return record if record and record["status"] in ("completed", "cancelled", "rejected") else None

    result: dict[str, Any] = wait_for(done, timeout=90, interval=0.2)
    return result


def test_with_the_switch_off_a_transient_dead_letter_stays_where_it_is(fast):
    settings = dataclasses.replace(fast, auto_redrive=False)
    app.reconfigure(settings)
    with pipeline(["orders"]):
        always_unavailable.delay(["off"])
        wait_for(lambda: dead(settings) == {"orders": 1}, timeout=60)
        assert tasks.ops.watch_dlqs()["auto_redrives"] == {}  # the beat task's body: archived, not redriven
        [letter] = dead_letters.scan(settings, ORDERS)
        dead_letters.release(settings, [letter])
        time.sleep(remediation.pause(fast, 2, letter.arrival))  # past any first pause
        assert tasks.ops.watch_dlqs()["auto_redrives"] == {}
    assert dead(settings) == {"orders": 1} and redrives(settings, letter.key) == 0
    assert remediation.auto_redrive(fast)[0].outcome == "redriven"  # on again: it goes


def stuck_at(settings: Settings, order: dict[str, Any], status: str, before: list[str], lost: str) -> None:
    """The order brought to `status` by workers on the queues `before`, its next step's message
    (on queue `lost`) deleted: nothing of the pipeline moves it any more."""
    set_stock(settings, order["items"][0]["sku"], 10)
    place_order.delay(order)
    with pipeline(before):
        wait_status(settings, order["orderId"], status, timeout=30)
        # The earlier steps' messages acked (none to come back and resend the lost one).
        path = [*before, lost]
        wait_for(lambda: [depth(settings, queue_url(settings, q)) for q in path] == [0] * len(before) + [1],
                 timeout=30)
    url = queue_url(settings, lost)
    clients.client("sqs", settings).purge_queue(QueueUrl=url)
    wait_for(lambda: depth(settings, url) == 0, timeout=10)


@pytest.fixture
def sweeping(fast: Settings) -> Settings:
    settings = dataclasses.replace(fast, sweep_stuck_after=STUCK_AFTER)
    app.reconfigure(settings)
    return settings


def test_an_order_whose_step_message_was_lost_is_resumed_by_the_sweeper(sweeping, tmp_path):
    settings = sweeping
    notices = Notices(settings, health_probe(settings))
    order = make_order("SKU-STUCK")
    stuck_at(settings, order, "reserved", ["orders", "inventory.fifo"], "payments")
    time.sleep(settings.sweep_stuck_after)  # stuck now, by the sweeper's bound
    assert sweeper.sweep(dataclasses.replace(settings, sweep_stuck=False), tasks.ops.resume) == []
    with beat(tmp_path), pipeline():
        final = wait_status_final(settings, order["orderId"])
        wait_for(lambda: notices.of("StuckOrderResumed"), timeout=30)
    assert final["status"] == "completed"
    assert len(Gateway(settings).entries(order["orderId"])) == 1  # one capture
    [resumed] = notices.of("StuckOrderResumed")
    assert (resumed["order_id"], resumed["status"], resumed["severity"]) == \
        (order["orderId"], "reserved", "info")
    assert audit(settings).problems == []
    assert "reserved" in metric_outcomes(settings, "StuckOrdersResumed")


def test_an_order_that_resuming_does_not_move_is_failed_and_left_for_a_person(sweeping, tmp_path):
    settings = sweeping
    notices = Notices(settings, health_probe(settings))
    order = make_order("SKU-GONE")
    stuck_at(settings, order, "reserved", ["orders", "inventory.fifo"], "payments")
    payments = queue_url(settings, "payments")
    with beat(tmp_path), pipeline(["orders"]):  # the ops tasks run; nothing consumes payments
        wait_status(settings, order["orderId"], "failed", timeout=30)
        wait_for(lambda: notices.of("StuckOrderFailed"), timeout=30)
    record = OrderStore(settings).get(order["orderId"])
    assert record["failedFrom"] == "reserved" and record["reason"].startswith("stuck: ")
    assert depth(settings, payments) == 1  # resumed once (that version), and no more
    assert [n["order_id"] for n in notices.of("StuckOrderResumed")] == [order["orderId"]]
    [failed] = notices.of("StuckOrderFailed")
    assert (failed["order_id"], failed["severity"]) == (order["orderId"], "critical")
    assert [p.kind.value for p in audit(settings, now=datetime.now(UTC)).problems] == ["failed"]


def test_a_paid_order_that_resuming_does_not_ship_is_refunded_not_kept(sweeping, tmp_path):
    settings = sweeping
    notices = Notices(settings, health_probe(settings))
    order = make_order("SKU-UNSHIPPED")
    stuck_at(settings, order, "paid", ["orders", "inventory.fifo", "payments"], "shipping")
    shipping = queue_url(settings, "shipping")
    # Nothing consumes shipping: the resume does not move it, so the sweeper compensates.
    with beat(tmp_path), pipeline(["orders", "inventory.fifo", "payments"]):
        final = wait_status_final(settings, order["orderId"])
        wait_for(lambda: notices.of("StuckOrderCompensated"), timeout=30)
    assert final["status"] == "cancelled" and final["reason"].startswith("stuck: ")
    capture, refund = sorted(Gateway(settings).entries(order["orderId"]), key=lambda e: e.kind)
    assert (capture.kind, refund.kind) == (Movement.CAPTURE, Movement.REFUND)
    assert capture.amount == refund.amount  # all of it back
    assert depth(settings, shipping) == 1  # resumed once (that version), and no more
    [compensated] = notices.of("StuckOrderCompensated")
    assert (compensated["order_id"], compensated["status"], compensated["severity"]) == \
        (order["orderId"], "paid", "warning")
    assert audit(settings, now=datetime.now(UTC)).problems == []  # refunded, its units back on sale
    assert "paid" in metric_outcomes(settings, "StuckOrdersCompensated")


def test_a_copy_at_its_cap_pages_once_though_sns_refused_its_first_notice(fast):
    settings = dataclasses.replace(fast, auto_redrive=False)  # the watcher archives; nothing redriven yet
    app.reconfigure(settings)
    with pipeline(["orders"]):
        always_unavailable.delay(["paged"])
        wait_for(lambda: dead(settings) == {"orders": 1}, timeout=60)
        tasks.ops.watch_dlqs()  # archived, its arrival announced (the topic's ARN is known from now on)
    capped = dataclasses.replace(fast, auto_redrive_max=0)  # at its cap from the start
    sns = clients.client("sns", settings)
    sns.delete_topic(TopicArn=topic_arns(settings)["system-health"])  # a notice SNS refuses
    assert [a.outcome for a in remediation.auto_redrive(capped)] == ["capped"]
    provisioning.up(settings)  # the topic back
    notices = Notices(settings, health_probe(settings))
    assert [a.outcome for a in remediation.auto_redrive(capped)] == ["capped"]  # announced now
    assert remediation.auto_redrive(capped) == []  # and marked: once
    [stopped] = notices.of("AutoRedriveStopped")
    assert stopped["severity"] == "critical"
