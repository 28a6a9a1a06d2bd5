"""Outages ride through: SNS, DynamoDB or SQS sends taken away, every order still ends final, none in a DLQ.

Real workers (every pipeline queue, in this process's threads) on the real
emulator, whose fault injection answers every call to the target with 503 for the
outage. Orders are placed before it (it starts as soon as the first of them has
left `placed`, so they meet it at different steps) and during it: the door takes
them during an SNS outage; it refuses them with RetryableError (the API's 503)
while DynamoDB (for a product it has not looked up yet) or SQS sends are out, and
the client places them again after. The outage lasts 30 s and the retry settings
are scaled down with it (a 90 s budget, pauses of at most 8 s): the same code paths
as the defaults' 10 minutes and 60 s. `ORDERS_OUTAGE_MEASURE=sns:180,dynamodb:180,sqs-send:180`
runs the same with the default settings and prints what they ride through
(docs/reliability.md).

Faults are global to an emulator, and the session shares one: they are cleared when
each test ends, whatever happened.
"""

from __future__ import annotations

import dataclasses
import math
import os
import threading
import time
import uuid
from collections import Counter
from decimal import Decimal
from typing import Any

import pytest

from orders import place_order
from orders.aws import batching, clients, sns
from orders.aws.gateway import Gateway, Movement
from orders.aws.sns import topic_arn
from orders.aws.stock import get_stock, set_stock
from orders.aws.store import OrderStore
from orders.celery import app
from orders.domain.errors import RetryableError
from orders.emulator.faults import clear_faults, fault_report, start_outage
from orders.runtime.queue_urls import queue_url
from orders.topology import QUEUES
from tests.helpers import calls, wait_for
from tests.integration.pipeline_support import make_order, pipeline, wait_final
from tests.integration.test_dlq import looked_up

pytestmark = pytest.mark.integration

OUTAGE_SECONDS = 30.0
#: The defaults (600 s, 60 s) scaled to the test's outage.
SCALED = {"retry_budget_seconds": 90, "retry_backoff_max": 8}
#: The product of the orders placed before the outage, and of those placed during it.
SKU, NEW_SKU, STOCK = "SKU-OUT", "SKU-NEW", 100
#: What each kind of order ends as, by its payment token.
OUTCOMES = {"tok_chargeDeclined": ("cancelled", "payment-declined")}
MEASURE = os.environ.get("ORDERS_OUTAGE_MEASURE", "")


def mix(tag: str, sku: str) -> list[dict[str, Any]]:
    """Orders of each kind: a regular one, two units, a VIP's (the priority FIFO queue), a declined card."""
    run = uuid.uuid4().hex[:6]  # a measurement places orders several times in one namespace
    return [make_order(sku, orderId=f"ord-{tag}-{run}-{n}", **kind) for n, kind in enumerate([
        {}, {"quantity": 2, "price": "5.00"}, {"tier": "vip", "token": "wallet_ok"},
        {"token": "tok_chargeDeclined"}])]


@pytest.fixture
def outage_env(infra, emulator):
    """The test's namespace with `SCALED` retry settings, and the emulator's faults cleared after."""
    settings = dataclasses.replace(infra, **SCALED)
    app.reconfigure(settings)
    clear_faults(emulator.endpoint)
    try:
        yield settings, emulator.endpoint
    finally:
        clear_faults(emulator.endpoint)


@pytest.mark.parametrize("target", ["sns", "dynamodb", "sqs-send"])
def test_every_order_ends_final_through_an_outage_and_none_waits_in_a_dlq(outage_env, target):
    settings, endpoint = outage_env
    figures = ride_through(settings, endpoint, target, OUTAGE_SECONDS)
    print_figures(target, OUTAGE_SECONDS, settings, figures)
    assert figures["injected"], f"the {target} outage met no call"
    if target == "sns":
        assert figures["refused"] == 0  # the door needs no SNS
    else:
        assert figures["refused"] >= 1  # placing needs DynamoDB (a new product's lookup), an SQS send
    if target == "sqs-send":
        assert figures["sends_retried"] > 0  # hand-offs waited in their tasks, messages held


@pytest.mark.skipif(not MEASURE, reason="a measurement: ORDERS_OUTAGE_MEASURE=sns:180,dynamodb:180,...")
@pytest.mark.timeout(3600)
def test_measure_what_the_default_settings_ride_through(infra, emulator):
    """With the default retry settings, outages of the lengths asked for (printed, not timed)."""
    try:
        for spec in MEASURE.split(","):
            target, _, seconds = spec.partition(":")
            clear_faults(emulator.endpoint)
            figures = ride_through(infra, emulator.endpoint, target, float(seconds))
            print_figures(target, float(seconds), infra, figures)
    finally:
        clear_faults(emulator.endpoint)


def ride_through(settings, endpoint: str, target: str, seconds: float) -> dict[str, Any]:
    """Place orders before and during an outage of `target`; check every one ends as its kind should."""
    for sku in (SKU, NEW_SKU):
        set_stock(settings, sku, STOCK)
    topic_arn(settings, "order-status")  # the topics are known, as to workers that have published before
    before, during = mix("before", SKU), mix("during", NEW_SKU)
    for order in before:
        place_order.delay(order)
    sends_before = _sends_retried()
    with pipeline():
        store = OrderStore(settings)
        wait_for(lambda: (store.get(before[0]["orderId"]) or {}).get("status", "placed") != "placed",
                 timeout=30, interval=0.05)
        at_start = Counter(str((store.get(o["orderId"]) or {}).get("status")) for o in before)
        start_outage(endpoint, target, seconds)
        started = time.monotonic()
        refused, door_seconds = place_all(settings, during)
        wait_for(lambda: not any(o["active"] for o in fault_report(endpoint)["outages"]),
                 timeout=seconds + 30, interval=0.5)
        ended = time.monotonic()
        for order in refused:  # the client's retry of a 503
            assert OrderStore(settings).get(order["orderId"]) is None  # refused: nothing was placed
            place_order.delay(order)
        records = {o["orderId"]: wait_final(settings, o["orderId"], timeout=seconds + 180)
                   for o in before + during}
        last_final = time.monotonic()
        wait_for(lambda: all(depth(settings, queue_url(settings, q.name)) == 0 for q in QUEUES),
                 timeout=120, interval=0.5)
    check_outcomes(settings, before + during, records)
    assert dead_letters(settings) == {}
    injected = fault_report(endpoint)["injected"]
    return {"orders": len(records), "at_start": dict(at_start), "refused": len(refused),
            "door_seconds": door_seconds,
            "injected": injected, "outage_to_final": last_final - ended, "span": last_final - started,
            "sends_retried": _sends_retried() - sends_before}


def place_all(settings, orders: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[float]]:
    """Place each order once: those the door refused with RetryableError, and how long each refusal took."""
    refused, took = [], []
    for order in orders:
        t0 = time.monotonic()
        try:
            place_order.delay(order)
        except RetryableError:
            refused.append(order)
            took.append(time.monotonic() - t0)
    return refused, took


def check_outcomes(settings, orders: list[dict[str, Any]], records: dict[str, dict[str, Any]]) -> None:
    """Each order ended as its kind says; captured once if completed, never if not; stock adds up."""
    gateway, sold = Gateway(settings), Counter[str]()
    for order in orders:
        record = records[order["orderId"]]
        expected = OUTCOMES.get(order["payment"]["token"], ("completed", None))
        assert (record["status"], record["reason"]) == expected, record
        entries = gateway.entries(order["orderId"])
        captures = [e for e in entries if e.kind is Movement.CAPTURE]
        if record["status"] == "completed":
            assert [e.amount for e in captures] == [Decimal(order["totalAmount"])]
            sold[order["items"][0]["sku"]] += order["items"][0]["quantity"]
        else:
            assert captures == []
        assert [e for e in entries if e.kind is Movement.REFUND] == []
    for sku in (SKU, NEW_SKU):
        assert get_stock(settings, sku) == {"sku": sku, "available": STOCK - sold[sku], "reserved": 0}


def depth(settings, url: str) -> int:
    attrs = clients.client("sqs", settings).get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])
    return sum(int(v) for v in attrs["Attributes"].values())


def dead_letters(settings) -> dict[str, int]:
    """Messages in each DLQ that holds any."""
    sqs = clients.client("sqs", settings)
    urls = {spec.dlq_name: sqs.get_queue_url(QueueName=spec.dlq_sqs_name(settings))["QueueUrl"]
            for spec in QUEUES}
    found = {name: depth(settings, url) for name, url in urls.items()}
    return {name: n for name, n in found.items() if n}


def _sends_retried() -> int:
    sends = batching.existing("sqs-sends")
    return sends.stats["retried"] if sends else 0


def print_figures(target: str, seconds: float, settings, f: dict[str, Any]) -> None:
    by_kind: Counter[str] = Counter()
    for key, n in f["injected"].items():
        by_kind[key.rsplit(":", 1)[0]] += n
    door = ", ".join(f"{s:.1f}" for s in f["door_seconds"]) or "-"
    print(f"\n[outage {target} {seconds:.0f} s, retry budget {settings.retry_budget_seconds} s, "
          f"backoff cap {settings.retry_backoff_max} s] orders placed before it were {f['at_start']} "
          f"when it began; {f['orders']} orders final, 0 in DLQs; "
          f"{f['refused']} refused at the door during it (503 after {door} s); last order final "
          f"{f['outage_to_final']:.1f} s after the outage ended ({f['span']:.1f} s after it began); "
          f"SQS send entries retried {f['sends_retried']}; calls failed: {dict(by_kind)}")


def test_an_sns_outage_costs_one_process_at_most_one_topic_lookup_a_second(outage_env):
    """Threads publishing during an SNS outage in a process that has not looked up its topics yet: they
    share one ListTopics lookup at a time, and a failed one is tried again only after
    `sns.LOOKUP_RETRY_SECONDS` (each lookup is a call and botocore's retries of it)."""
    settings, endpoint = outage_env
    threads, window = 16, 5.0
    refusals: Counter[str] = Counter()

    def publish_until(end: float) -> None:
        while time.monotonic() < end:
            try:
                sns.topic_arn(settings, "order-status")
            except RetryableError as exc:
                refusals["outage" if "ServiceUnavailable" in str(exc) else str(exc)] += 1
                time.sleep(0.01)  # as a task would, before its retry

    start_outage(endpoint, "sns", 120)
    listed_before, started = calls(endpoint)["sns:ListTopics"], time.monotonic()
    running = [threading.Thread(target=publish_until, args=(started + window,)) for _ in range(threads)]
    for thread in running:
        thread.start()
    for thread in running:
        thread.join()
    elapsed, listed = time.monotonic() - started, calls(endpoint)["sns:ListTopics"] - listed_before
    clear_faults(endpoint)
    attempts = clients.client("sns", settings).meta.config.retries["total_max_attempts"]
    lookups = math.floor(elapsed / sns.LOOKUP_RETRY_SECONDS) + 1
    print(f"\n[SNS outage] {threads} threads looked up a topic for {elapsed:.1f} s: {listed} ListTopics "
          f"calls, {refusals.total()} RetryableError(s) (allowed {lookups} lookups of {attempts} calls)")
    assert refusals["outage"] >= threads and set(refusals) == {"outage"}
    assert 1 <= listed <= lookups * attempts
    arn = wait_for(lambda: looked_up(settings, "order-status"), timeout=30, interval=0.5)
    assert arn.endswith(":" + settings.prefix + "order-status")
