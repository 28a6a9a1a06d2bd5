"""A worker's output off a terminal is one JSON object per line, with each task's context and nothing
sensitive (docs/monitoring.md, "Logs").

A real worker process on every pipeline queue, its output in a file (not a terminal: JSON by
default), tracing on and exporting to a local OTLP sink; one order with values of its own runs
through placement, reservation, charge, shipment and the notification SNS delivers. Every line
the worker wrote must parse as JSON.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from threading import Thread
from typing import Any

import pytest

from orders import place_order
from orders.aws.stock import set_stock
from orders.settings import Settings
from tests.helpers import wait_for, worker_process
from tests.integration.pipeline_support import ALL_QUEUES, make_order, wait_final

pytestmark = pytest.mark.integration

SKU = "SKU-LOGS"
#: The steps of the order's pipeline, each with its task and the queue it runs on.
STEPS = {"orders.place": ("place", "orders"), "inventory.reserve": ("reserve", "inventory.fifo"),
         "payments.charge": ("charge", "payments"), "shipping.create_shipment": ("ship", "shipping")}


class _Sink(BaseHTTPRequestHandler):
    """Takes OTLP exports and drops them: the spans are the tracing test's business, the ids ours."""

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_: Any) -> None:
        pass


@contextmanager
def otlp_sink() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


def lines_of(log: Path) -> list[dict[str, Any]]:
    """Every line of the log, parsed: fails on the first line that is not a JSON object."""
    records = []
    for number, line in enumerate(log.read_text().splitlines(), 1):
        try:
            record = json.loads(line)
        except ValueError:
            pytest.fail(f"line {number} is not JSON: {line!r}")
        assert isinstance(record, dict), line
        records.append(record)
    return records


def ended(records: list[dict[str, Any]], task: str) -> list[dict[str, Any]]:
    return [r for r in records if r.get("task_name") == task and r.get("outcome")]


def all_ended(records: list[dict[str, Any]], order_id: str) -> bool:
    """Whether every step of the order, and its shipment's notification, logged how it ended."""
    mine = [r for r in records if r.get("order_id") == order_id]
    return all(ended(mine, task) for task in STEPS) and any(
        "OrderShipped" in r["message"] for r in ended(mine, "notifications.notify"))


def test_a_worker_writes_one_json_object_per_line_with_each_task_s_context(infra: Settings,
                                                                          tmp_path: Path) -> None:
    mark = uuid.uuid4().hex[:10]
    # The gateway approves tok_visa (masked: tok_…visa); the rest are this test's own.
    secrets = {"token": "tok_visa", "email": f"logs{mark}@example.com",
               "phone": f"+1555{uuid.uuid4().int % 10**7:07d}", "address": f"9 Ledger{mark} Row"}
    order = make_order(sku=SKU, token=secrets["token"],
                       contact={"email": secrets["email"], "phone": secrets["phone"]},
                       shippingAddress={"line1": secrets["address"], "city": "Springfield",
                                        "postalCode": "12345", "country": "US"})
    set_stock(infra, SKU, 10)
    log = tmp_path / "worker.log"
    with otlp_sink() as sink, worker_process(
            ALL_QUEUES, log, extra_args=["--pool", "prefork", "-c", "2"],
            env={"ORDERS_LOG_FORMAT": "auto", "OTEL_TRACES_EXPORTER": "otlp",
                 "OTEL_EXPORTER_OTLP_ENDPOINT": sink, "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
                 "OTEL_SERVICE_NAME": "orders-worker"}):
        wait_for(lambda: " ready." in log.read_text(), timeout=60)
        place_order.delay(order)
        assert wait_final(infra, order["orderId"])["status"] == "completed"
        wait_for(lambda: all_ended(lines_of(log), order["orderId"]), timeout=60)
    records = lines_of(log)
    text = log.read_text()

    for record in records:
        assert {"time", "level", "logger", "message", "service"} <= record.keys(), record
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", record["time"]), record
    assert {r["service"] for r in records} == {"orders,inventory,payments,shipping,notifications"}
    assert any(" ready." in r["message"] for r in records)
    assert any("starting:" in r["message"] and "orders-sqs://" in r["message"] for r in records)  # the banner

    mine = [r for r in records if r.get("order_id") == order["orderId"]]
    correlation = {r["correlation_id"] for r in mine if "correlation_id" in r}
    assert len(correlation) == 1, correlation  # one chain: one root id
    for task, (step, queue) in STEPS.items():
        lines = [r for r in mine if r.get("task_name") == task]
        received = [r for r in lines if r["message"].endswith("] received")]
        assert received and all(r["step"] == step and r["task_id"] for r in received), lines
        [done] = ended(lines, task)
        assert done["outcome"] in ("succeeded", "ignored") and done["step"] == step, done
        assert done["queue"] == queue and done["correlation_id"] in correlation, done
        assert re.fullmatch(r"[0-9a-f]{32}", done.get("trace_id", "")), done
        assert re.fullmatch(r"[0-9a-f]{16}", done.get("span_id", "")), done
    for notified in ended(mine, "notifications.notify"):  # OrderPlaced, OrderShipped, ...: SNS's deliveries
        assert notified["outcome"] == "succeeded" and notified["queue"] == "notifications", notified
        assert notified["correlation_id"] in correlation and "trace_id" in notified, notified

    found = [name for name, value in secrets.items() if value.lower() in text.lower()]
    assert found == [], f"in clear in the worker's log: {found}"
