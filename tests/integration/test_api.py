"""The order-submission API over a provisioned namespace, with a real worker on every queue."""

import json
import subprocess
import sys
import urllib.request
import uuid
from pathlib import Path

import pytest

from orders.aws import clients
from orders.aws.store import OrderStore
from orders.celery import app
from orders.emulator.server import free_port
from orders.harness.order_mix import OrderMix
from orders.harness.runner import OrderReader
from orders.infra import provisioning
from orders.runtime.queue_urls import queue_url
from orders.topology import QUEUES
from tests.helpers import wait_for, worker, worker_process

FINAL = {"completed", "cancelled", "rejected", "failed"}


@pytest.fixture
def client(infra):
    from orders.api.app import create_app
    from orders.harness.runner import seed_catalogue

    seed_catalogue(infra, OrderMix().stock(10))
    return create_app(infra).test_client()


def _order(order_id):
    return OrderMix(run_id=order_id).order(order_id, "cust-0001", [], ("card", "tok_visa")) | {
        "items": [{"sku": "SKU-1001", "quantity": 2, "unitPrice": "24.90"}], "totalAmount": "49.80"}


def test_a_valid_order_is_accepted_and_followed_to_completion(infra, client):
    with worker([q.name for q in QUEUES]):
        response = client.post("/orders", json=_order("api-ok-1"))
        assert response.status_code == 202, response.json
        assert response.json["orderId"] == "api-ok-1"
        assert response.headers["Location"] == "/orders/api-ok-1"

        def final_and_notified():  # the customer's notifications are the last writes
            got = client.get("/orders/api-ok-1")
            if got.status_code != 200 or got.json["status"] not in FINAL:
                return None
            return got.json if len(got.json["notifications"]) == 2 else None

        record = wait_for(final_and_notified, timeout=60)
    assert record["status"] == "completed", record
    assert record["orderId"] == "api-ok-1"
    assert [h["status"] for h in record["history"]][-1] == "completed"
    # The demo's batched reader sees exactly what the API shows.
    assert OrderReader(infra).get_many(["api-ok-1", "no-such-order"]) == {"api-ok-1": record}


def test_an_invalid_order_is_refused_with_every_problem(client):
    order = _order("api-bad-1")
    order["currency"] = "XXX"
    order["items"][0]["quantity"] = 0
    del order["customerId"]
    response = client.post("/orders", json=order)
    assert response.status_code == 400
    problems = " ".join(response.json["problems"])
    assert len(response.json["problems"]) >= 3
    assert "currency" in problems and "quantity" in problems and "customerId" in problems
    assert client.get("/orders/api-bad-1").status_code == 404


def test_a_body_that_is_not_an_object_is_refused(client):
    response = client.post("/orders", data="not json", content_type="application/json")
    assert response.status_code == 400
    assert "JSON object" in response.json["problems"][0]


def test_health_and_unknown_orders(client):
    assert client.get("/health").json["status"] == "ok"
    deep = client.get("/health?deep=1")
    assert deep.status_code == 200 and set(deep.json["queues"]) == {q.name for q in QUEUES}
    assert client.get("/orders/no-such-order").status_code == 404


def test_orders_api_serves_http(infra):
    port = free_port()
    proc = subprocess.Popen([str(Path(sys.executable).with_name("orders")), "api", "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        def health():
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as r:
                    return json.loads(r.read())
            except OSError:
                return None

        assert wait_for(health, timeout=30)["env"] == infra.env
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def depth(settings, name):
    """(visible, in flight) messages of one declared queue."""
    attrs = clients.client("sqs", settings).get_queue_attributes(
        QueueUrl=queue_url(settings, name),
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]), int(attrs["ApproximateNumberOfMessagesNotVisible"])


def test_an_api_for_another_namespace_places_there_and_nowhere_else(infra, emulator, tmp_path):
    from orders.api.app import create_app
    from orders.harness.runner import seed_catalogue

    # This process's app serves namespace A (`infra`); the API is created for namespace B,
    # the only one with a catalogue: a validation that looked in A would refuse the SKU.
    other = emulator.settings({"ORDERS_ENV": f"t{uuid.uuid4().hex[:10]}", "ORDERS_WAIT_TIME_SECONDS": "1"})
    provisioning.up(other)
    seed_catalogue(other, OrderMix().stock(10))
    assert app.settings.env == infra.env != other.env
    api = create_app(other).test_client()

    response = api.post("/orders", json=_order("api-b-1"))
    assert response.status_code == 202, response.json
    entry = ["orders", "orders-priority.fifo"]
    assert sum(sum(depth(other, name)) for name in entry) == 1  # in B's entry queue
    with worker_process(entry, tmp_path / "worker-b.log", extra_args=["--pool", "solo"],
                        env={"ORDERS_ENV": other.env}):
        record = wait_for(lambda: (got := api.get("/orders/api-b-1")).status_code == 200 and got.json,
                          timeout=60)
    assert record["orderId"] == "api-b-1" and record["history"][0]["status"] == "placed"
    assert OrderStore(other).get("api-b-1") is not None  # B's table
    # Nothing in A: no message in any of its queues, no record in its table or through its API.
    assert {q.name: depth(infra, q.name) for q in QUEUES} == {q.name: (0, 0) for q in QUEUES}
    assert OrderStore(infra).get("api-b-1") is None
    assert create_app(infra).test_client().get("/orders/api-b-1").status_code == 404
