"""No payment token, email, phone or address in clear anywhere a run writes (docs/security.md, "Redaction").

One run of real processes on the session's emulator: a worker process on every queue
(prefork, INFO logs), beat, and Flower on the control plane. Orders with values of their
own (random emails, phones, address lines, a random card token): a standard one placed
with `place_order.delay()` whose charge is retried twice, a VIP one through the HTTP API
(the priority FIFO queue), one refunded (the carrier refuses postal code 00000 after the
capture), one declined (an unknown token), one refused at both doors for its bad email,
and one whose placement message is dead-lettered and archived. Then everything the run
wrote is scanned for each value (tests/plaintext.py looks through JSON, base64 and form
encoding):

- every item of every table of the namespace;
- every SQS, SNS and DynamoDB request and answer body on the wire (orders.emulator.wire_log),
  which holds every message sent and received, and every item written, deleted or not;
- every event delivered to a queue subscribed (raw) to every topic;
- the worker's, beat's and Flower's output, and this process's log records;
- Flower's API: /api/tasks and /api/task/info/ID of each task;
- what operators read: `orders status ID` (and --json), `orders dlq list|show` (and --json),
  `orders audit --json`, the door's refusals (InvalidOrder, the API's 400).
"""

from __future__ import annotations

import json
import logging
import socket
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from orders import place_order
from orders.aws import clients
from orders.aws.stock import set_stock
from orders.cli import cli
from orders.domain.errors import InvalidOrder
from orders.domain.sensitive import ENVELOPE_VERSIONS
from orders.emulator.server import free_port
from orders.emulator.wire_log import wire_calls
from orders.ops import archive
from orders.ops.dead_letters import dlq_url
from orders.runtime.queue_urls import queue_url
from orders.settings import Settings
from orders.topology import QUEUES_BY_NAME
from tests.helpers import logged_process, wait_for
from tests.integration.pipeline_support import ALL_QUEUES, make_order, subscribe_probe, wait_final
from tests.plaintext import findings

pytestmark = pytest.mark.integration

SKU = "SKU-SCAN"
CELERY = [sys.executable, "-m", "celery", "-A", "orders"]


def customer(tag: str) -> tuple[dict[str, Any], dict[str, str]]:
    """Order fields of a customer of its own, and the values that must never show in clear."""
    mark = uuid.uuid4().hex[:10]
    digits = f"555{uuid.uuid4().int % 10**7:07d}"
    fields = {"contact": {"email": f"scan{mark}@example.com", "phone": f"+1{digits}"},
              "shippingAddress": {"line1": f"17 Quill{mark} Lane", "city": f"Vale{mark}",
                                  "postalCode": "12345", "country": "US"}}
    return fields, {f"{tag} email": f"scan{mark}", f"{tag} phone": digits,
                    f"{tag} address": f"quill{mark}", f"{tag} city": f"vale{mark}"}


@contextmanager
def stack(logs: Path) -> Iterator[str]:
    """A worker process on every queue, beat and Flower; Flower's URL once it hears the worker."""
    name = f"scan-{uuid.uuid4().hex[:6]}@{socket.gethostname()}"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with ExitStack() as processes:
        processes.enter_context(logged_process(
            [*CELERY, "worker", "-Q", ",".join(ALL_QUEUES), "-n", name, "-c", "4", "--loglevel", "INFO"],
            # The dead-lettered placement stays in its DLQ for `orders dlq show` to be scanned.
            logs / "worker.log", env={"ORDERS_AUTO_REDRIVE": "0", "ORDERS_SWEEP_STUCK": "0"}))
        processes.enter_context(logged_process(
            [*CELERY, "beat", "--loglevel", "INFO", "-s", str(logs / "beat-schedule")], logs / "beat.log",
            env={"ORDERS_DLQ_WATCH_SECONDS": "3", "ORDERS_RESERVATION_SWEEP_SECONDS": "3"}))
        processes.enter_context(logged_process(
            [*CELERY, "flower", f"--port={port}", "--address=127.0.0.1"], logs / "flower.log",
            env={"FLOWER_UNAUTHENTICATED_API": "true"}))
        wait_for(lambda: (get(url + "/api/workers?status=true") or {}).get(name), timeout=60)
        yield url


def get(url: str) -> Any:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return json.loads(response.read())
    except (OSError, ValueError):
        return None


def api_client(settings: Settings) -> Any:
    from orders.api.app import create_app
    from orders.aws.api_keys import ApiKeys

    key, _ = ApiKeys(settings).create("scan-client")
    api = create_app(settings).test_client()
    api.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {key}"
    return api


def dead_letter_a_placement(settings: Settings, order: dict[str, Any]) -> None:
    """Send `order` as the door does, then move its message, as sent, to the orders DLQ."""
    sqs = clients.client("sqs", settings)
    source = queue_url(settings, "orders")
    place_order.delay(order)
    messages = wait_for(lambda: sqs.receive_message(QueueUrl=source, WaitTimeSeconds=1).get("Messages"))
    sqs.send_message(QueueUrl=dlq_url(settings, QUEUES_BY_NAME["orders"]), MessageBody=messages[0]["Body"])
    sqs.delete_message(QueueUrl=source, ReceiptHandle=messages[0]["ReceiptHandle"])


def all_idle(settings: Settings) -> bool:
    sqs = clients.client("sqs", settings)
    counts = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]

    def left(queue: str) -> int:
        attributes = sqs.get_queue_attributes(QueueUrl=queue_url(settings, queue), AttributeNames=counts)
        return sum(int(v) for v in attributes["Attributes"].values())

    return all(left(q) == 0 for q in ALL_QUEUES)


def table_items(settings: Settings) -> dict[str, Any]:
    ddb = clients.client("dynamodb", settings)
    names = [t for page in ddb.get_paginator("list_tables").paginate() for t in page["TableNames"]
             if t.startswith(settings.prefix)]
    return {f"table {t}": [i for page in ddb.get_paginator("scan").paginate(TableName=t)
                           for i in page.get("Items", [])] for t in names}


def probe_bodies(settings: Settings, url: str) -> list[str]:
    sqs, bodies = clients.client("sqs", settings), []
    while messages := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0,
                                          MessageAttributeNames=["All"]).get("Messages", []):
        for m in messages:
            bodies.append(json.dumps(m))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    return bodies


def flower_pages(url: str) -> dict[str, Any]:
    tasks = get(url + "/api/tasks") or {}
    return {"flower /api/tasks": tasks,
            **{f"flower /api/task/info/{tid}": get(f"{url}/api/task/info/{tid}") for tid in tasks}}


def cli_outputs(order_ids: list[str]) -> dict[str, str]:
    runner, outputs = CliRunner(), {}
    commands = [["dlq", "list"], ["dlq", "show", "orders"], ["dlq", "show", "orders", "--json"],
                ["audit", "--json"],
                *(["status", oid, *flag] for oid in order_ids for flag in ([], ["--json"]))]
    for args in commands:
        result = runner.invoke(cli, args)
        outputs["orders " + " ".join(args)] = result.output + repr(result.exception or "")
    return outputs


@pytest.mark.timeout(400)
def test_no_sensitive_value_in_clear_anywhere_the_run_wrote(infra: Settings, emulator: Any, tmp_path: Path,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    settings = infra
    secrets = {"approved token": "tok_visa", "retried token": "tok_processingError",
               "vip token": "tok_mastercard"}
    caplog.set_level(logging.INFO)
    set_stock(settings, SKU, 100)
    probe = subscribe_probe(settings)
    orders: dict[str, dict[str, Any]] = {}
    # The standard order's payment fails twice before it is approved: its retries are scanned too.
    for tag, extra in [("standard", {"token": "tok_processingError"}),
                       ("vip", {"tier": "vip", "token": "tok_mastercard"}),
                       ("refunded", {}), ("declined", {"token": f"tok_scan{uuid.uuid4().hex[:12]}"}),
                       ("bad email", {}), ("dead-lettered", {})]:
        fields, values = customer(tag)
        orders[tag] = make_order(sku=SKU, **{"token": "tok_visa", **extra}, **fields)
        secrets.update(values)
    secrets["declined token"] = orders["declined"]["payment"]["token"].removeprefix("tok_")
    orders["refunded"]["shippingAddress"]["postalCode"] = "00000"
    bad_email = secrets["bad email email"] = f"bad-email-{uuid.uuid4().hex[:10]}"
    orders["bad email"]["contact"]["email"] = bad_email
    refusals: dict[str, Any] = {}

    wire_calls(emulator.endpoint, "start")
    try:
        dead_letter_a_placement(settings, orders["dead-lettered"])
        with stack(tmp_path) as flower:
            place_order.delay(orders["standard"])
            place_order.delay(orders["refunded"])
            place_order.delay(orders["declined"])
            with pytest.raises(InvalidOrder) as refused:
                place_order.delay(orders["bad email"])
            refusals["InvalidOrder at the door"] = f"{refused.value!r} {refused.value}"
            api = api_client(settings)
            accepted = api.post("/orders", json=orders["vip"])
            assert accepted.status_code in (200, 201, 202), accepted.get_data(as_text=True)
            refusals["API 400"] = api.post("/orders", json=orders["bad email"]).get_data(as_text=True)
            finals = {tag: wait_final(settings, orders[tag]["orderId"])["status"]
                      for tag in ("standard", "vip", "refunded", "declined")}
            wait_for(lambda: table_items(settings)[f"table {archive.table_name(settings)}"], timeout=60)
            wait_for(lambda: all_idle(settings), timeout=120)  # a loaded machine (two test processes)
            pages = wait_for(lambda: (p := flower_pages(flower)) and not any(
                t.get("state") in ("RECEIVED", "STARTED") for t in p["flower /api/tasks"].values()) and p)
    finally:
        wire = wire_calls(emulator.endpoint, "stop")

    assert finals == {"standard": "completed", "vip": "completed", "refunded": "cancelled",
                      "declined": "cancelled"}, finals
    assert wire["dropped"] == 0 and len(wire["calls"]) > 100
    sources: dict[str, Any] = {
        **table_items(settings),
        **{f"wire {n} {c['call']}": c for n, c in enumerate(wire["calls"])},
        **{f"event {n}": body for n, body in enumerate(probe_bodies(settings, probe))},
        **{f"{p.stem} log": p.read_text() for p in tmp_path.glob("*.log")},
        "this process's log": "\n".join(r.getMessage() for r in caplog.records),
        **pages, **refusals,
        **cli_outputs([o["orderId"] for o in orders.values()]),
    }
    assert len(pages["flower /api/tasks"]) >= 15
    # The scan sees the orders: each one's customer id (not sensitive) is found through the layers
    # of the wire's bodies and in the items, where the sensitive values would be.
    sent = {f"{tag} customer": o["customerId"] for tag, o in orders.items() if tag != "bad email"}
    for where in ("wire ", "table "):
        part = {name: source for name, source in sources.items() if name.startswith(where)}
        seen = {found.split(": ")[-1] for found in findings(sent, part)}
        assert seen == set(sent), (where, seen)
    found = findings(secrets, sources)
    assert not found, f"{len(found)} plaintext(s) found:\n" + "\n".join(sorted(found)[:80])
    # Operators and Flower see "sealed" or a summary line, not ciphertext.
    shown = {k: v for k, v in sources.items() if k.startswith(("orders ", "flower ", "worker", "beat"))}
    envelopes = [f"{version}." for version in ENVELOPE_VERSIONS]
    assert [k for k, v in shown.items() if any(e in json.dumps(v) for e in envelopes)] == []
    assert '"sealed"' in sources["orders dlq show orders --json"]
