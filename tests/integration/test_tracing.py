"""One trace per order, across every queue and the SNS fan-out, from real processes.

A producer process places orders (`place_order.delay()` and the HTTP API); two worker
processes run them (a prefork one: its pool processes set tracing up after the fork; a
threads one: at worker start); all of them export over OTLP/HTTP to a receiver this
test runs. The spans of each order must form one trace whose every parent was received.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

from orders.aws.stock import set_stock
from orders.harness.otlp_receiver import OtlpReceiver, ReceivedSpan
from tests.helpers import wait_for, worker_process
from tests.integration.pipeline_support import drain_events, make_order, subscribe_probe, wait_final

PIPELINE_QUEUES = {"orders", "inventory.fifo", "payments", "shipping", "notifications"}


def tracing_env(receiver: OtlpReceiver, service: str) -> dict[str, str]:
    return {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
            "OTEL_SERVICE_NAME": service, "OTEL_BSP_SCHEDULE_DELAY": "200"}


@contextmanager
def traced_workers(receiver: OtlpReceiver, tmp_path: Any) -> Iterator[None]:
    with ExitStack() as stack:
        stack.enter_context(worker_process(
            ["orders", "inventory.fifo", "payments"], tmp_path / "steps.log",
            ["--pool", "prefork", "-c", "2"], env=tracing_env(receiver, "orders-steps")))
        stack.enter_context(worker_process(
            ["shipping", "notifications"], tmp_path / "delivery.log",
            ["--pool", "threads", "-c", "4"], env=tracing_env(receiver, "orders-delivery")))
        yield


def place(receiver: OtlpReceiver, orders: list[dict[str, Any]]) -> None:
    env = {**os.environ, **tracing_env(receiver, "orders-api")}
    done = subprocess.run([sys.executable, "-m", "tests.integration.tracing_producer", json.dumps(orders)],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def trace_of(spans: list[ReceivedSpan], order_id: str) -> list[ReceivedSpan]:
    """Every span of the trace(s) the order's spans belong to."""
    traces = {s.trace_id for s in spans if s.attributes.get("order.id") == order_id}
    return [s for s in spans if s.trace_id in traces]


def runs(trace: list[ReceivedSpan], task: str) -> list[ReceivedSpan]:
    return sorted((s for s in trace if s.name == f"run/{task}"), key=lambda s: s.start)


def ancestors(span: ReceivedSpan, by_id: dict[str, ReceivedSpan]) -> list[ReceivedSpan]:
    found = []
    while span.parent_id in by_id:
        span = by_id[span.parent_id]
        found.append(span)
    return found


def complete(spans: list[ReceivedSpan], order_id: str, notified: int) -> bool:
    """Whether the order's trace has its notifications and every span's parent arrived."""
    trace = trace_of(spans, order_id)
    ids = {s.span_id for s in trace}
    return (len(runs(trace, "notifications.notify")) >= notified
            and all(s.parent_id in ids for s in trace if s.parent_id))


def check_one_trace(trace: list[ReceivedSpan], order_id: str) -> ReceivedSpan:
    """One trace id, one root (the producer's or the API's), every other span's parent in it."""
    assert len({s.trace_id for s in trace}) == 1, f"{order_id}: spans in several traces"
    roots = [s for s in trace if not s.parent_id]
    assert len(roots) == 1, [(r.name, r.service) for r in roots]
    assert roots[0].service == "orders-api"
    for span in trace:
        if span.name.startswith("run/"):
            assert span.attributes.get("order.id") == order_id, span
            assert span.attributes.get("order.step") and span.attributes.get("order.outcome"), span
    return roots[0]


def test_one_trace_per_order_across_every_queue_retries_compensation_and_the_sns_hop(infra, tmp_path):
    set_stock(infra, "SKU-1", 10)
    probe = subscribe_probe(infra)
    retried = make_order(token="tok_processingError")  # charge fails twice, then succeeds
    declined = make_order(token="tok_chargeDeclined")  # charge declined: stock released, cancelled
    with OtlpReceiver() as receiver:
        with traced_workers(receiver, tmp_path):
            place(receiver, [retried, declined])
            assert wait_final(infra, retried["orderId"], timeout=120)["status"] == "completed"
            assert wait_final(infra, declined["orderId"], timeout=120)["status"] == "cancelled"
            wait_for(lambda: complete(receiver.received(), retried["orderId"], 2)
                     and complete(receiver.received(), declined["orderId"], 2), timeout=60)
        spans = receiver.received()
    dump = tmp_path / "spans.json"
    dump.write_text(json.dumps([s.__dict__ for s in spans], default=list))
    print("spans:", dump)

    happy, sad = trace_of(spans, retried["orderId"]), trace_of(spans, declined["orderId"])
    by_id = {s.span_id: s for s in spans}
    assert check_one_trace(happy, retried["orderId"]).name == "apply_async/orders.place"  # delay()
    assert check_one_trace(sad, declined["orderId"]).name == "POST /orders"  # the API
    queues = {s.attributes.get("messaging.destination") for s in happy + sad if s.name.startswith("run/")}
    assert PIPELINE_QUEUES <= queues, queues
    assert {s.service for s in happy} == {"orders-api", "orders-steps", "orders-delivery"}

    # Each hop of the chain is the child (through its message's producer span) of the step before.
    place_run, reserve, (first_charge, *_), ship = (runs(happy, t) for t in (
        "orders.place", "inventory.reserve", "payments.charge", "shipping.create_shipment"))
    assert place_run and reserve and ship
    assert place_run[0] in ancestors(reserve[0], by_id)
    charges = runs(happy, "payments.charge")
    assert [c.attributes["order.outcome"] for c in charges] == ["retry", "retry", "ok"]
    for before, after in zip(charges, charges[1:], strict=False):  # each retry is sent by the run before
        assert by_id[after.parent_id].parent_id == before.span_id
    assert charges[-1] in ancestors(ship[0], by_id)
    assert (ship[0].attributes["order.outcome"], ship[0].attributes["order.status"]) == ("ok", "completed")

    # Compensation: the declined charge ends the order, releases the stock and says so, in the same trace.
    declined_charge = runs(sad, "payments.charge")[-1]
    assert (declined_charge.attributes["order.outcome"], declined_charge.attributes["order.status"]) == \
        ("ended", "cancelled")
    released = [s for s in sad if s.parent_id == declined_charge.span_id and s.name.endswith(" publish")]
    assert released and "StockReleased" in released[0].attributes["order.events"]
    assert any(by_id[n.parent_id] is released[0] for n in runs(sad, "notifications.notify"))

    # The SNS hop: notify runs are children of a publish span inside the step that published.
    for trace in (happy, sad):
        for notify in runs(trace, "notifications.notify"):
            publish = by_id[notify.parent_id]
            assert publish.name.endswith(" publish") and publish.kind == "producer", publish
            assert by_id[publish.parent_id].name.startswith("run/"), by_id[publish.parent_id]
            assert notify.service == "orders-delivery"

    # The same context rides in the events' `traceparent` message attribute (what Lambda, email or
    # any other SQS subscriber gets), not the batch call's: each names its own order's trace.
    for event in drain_events(infra, probe):
        trace = trace_of(spans, event["orderId"])
        traceparent = event["_attributes"].get("traceparent", "")
        assert traceparent.split("-")[1] == trace[0].trace_id, (event["eventType"], traceparent)
