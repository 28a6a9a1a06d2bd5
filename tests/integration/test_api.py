"""The order-submission API over a provisioned namespace, with a real worker on every queue.

Every request carries an API key of client "client-a" (`keyed`); what a missing or another
client's key gets is in test_api_keys.py.
"""

import json
import subprocess
import sys
import time
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


CLIENT = "client-a"


def keyed(settings, client_name=CLIENT):
    """A test client of the API for `settings` that sends a new key of `client_name` with every request."""
    from orders.api.app import create_app
    from orders.aws.api_keys import ApiKeys

    key, _ = ApiKeys(settings).create(client_name)
    api = create_app(settings).test_client()
    api.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {key}"
    return api


@pytest.fixture
def client(infra):
    from orders.harness.runner import seed_catalogue

    seed_catalogue(infra, OrderMix().stock(10))
    return keyed(infra)


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
    from orders.harness.runner import seed_catalogue

    # This process's app serves namespace A (`infra`); the API is created for namespace B,
    # the only one with a catalogue: a validation that looked in A would refuse the SKU.
    other = emulator.settings({"ORDERS_ENV": f"t{uuid.uuid4().hex[:10]}", "ORDERS_WAIT_TIME_SECONDS": "1"})
    provisioning.up(other)
    seed_catalogue(other, OrderMix().stock(10))
    assert app.settings.env == infra.env != other.env
    api = keyed(other)  # B's key: the API looks keys up in its own environment

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
    assert keyed(infra).get("/orders/api-b-1").status_code == 404


def entry_depth(settings):
    """Messages waiting in the two entry queues (no worker runs in these tests)."""
    return sum(sum(depth(settings, name)) for name in ("orders", "orders-priority.fifo"))


def test_a_body_over_the_limit_is_413_and_nothing_is_sent(infra, client):
    from orders.api.openapi import MAX_BODY_BYTES

    order = _order("api-big-1") | {"padding": "x" * MAX_BODY_BYTES}
    response = client.post("/orders", json=order)
    assert response.status_code == 413 and "error" in response.json
    assert entry_depth(infra) == 0


@pytest.mark.parametrize("body,says", [
    (json.dumps(_order("api-c-1") | {"currency": ["USD"]}), "currency: unknown currency a list"),
    (json.dumps(_order("api-c-2") | {"currency": {"code": "USD"}}), "currency: unknown currency a dict"),
    ("[" * 10_000 + "]" * 10_000, "JSON nested too deeply"),
    (json.dumps(_order("api-d-1") | {"contact": {"a": json.loads("[" * 17 + "]" * 17)}}),
     "nested deeper than 16"),
    ('{"orderId": ' + "1" * 5000 + "}", "Exceeds the limit"),
    (b'{"orderId": "\xff\xfe"}', "JSON object"),
    (json.dumps(_order("api-nl-1\n")), "orderId: must not contain control characters"),
    (json.dumps(_order("api-e-1") | {"contact": {"email": "a" * 16_000 + "@b.co"}}),
     "contact.email: is 16005 characters long"),
])
def test_malformed_orders_get_400_with_the_problem_never_a_500(infra, client, body, says):
    response = client.post("/orders", data=body, content_type="application/json")
    assert response.status_code == 400, response.data[:300]
    assert any(says in p for p in response.json["problems"]), response.json
    assert all(len(p) < 300 for p in response.json["problems"])
    assert entry_depth(infra) == 0


def test_unknown_ids_and_routes_are_4xx(client):
    assert client.get("/orders/ord-1%0A").status_code == 404
    assert client.get("/orders/" + "x" * 5000).status_code == 404
    assert client.get("/nope").status_code == 404 and client.delete("/orders").status_code == 405
    assert client.post("/orders", data="{}", content_type="text/plain").status_code == 400


def test_the_openapi_document_is_served_with_the_limits(client):
    from orders.domain.order import MAX_LINES

    spec = client.get("/openapi.json").json
    assert spec["openapi"].startswith("3.")
    order = spec["paths"]["/orders"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert order["properties"]["items"]["maxItems"] == MAX_LINES
    assert {p["name"] for p in spec["paths"]["/orders"]["post"]["parameters"]} == {"Idempotency-Key"}
    # A bearer key everywhere but the two public operations; each protected one documents its 401.
    scheme = spec["components"]["securitySchemes"]["apiKey"]
    assert scheme["type"] == "http" and scheme["scheme"] == "bearer"
    assert spec["security"] == [{"apiKey": []}]
    operations = {op["operationId"]: op for path in spec["paths"].values() for op in path.values()}
    assert {name for name, op in operations.items() if op.get("security") == []} == {"health", "openapi"}
    assert all("401" in op["responses"] for name, op in operations.items() if name != "openapi")
    assert "Retry-After" in operations["placeOrder"]["responses"]["503"]["headers"]


def test_a_retried_request_with_the_same_idempotency_key_creates_nothing(infra, client):
    order = {k: v for k, v in _order("unused").items() if k != "orderId"}  # the API gives the id
    first = client.post("/orders", json=order, headers={"Idempotency-Key": "key-1"})
    assert first.status_code == 202, first.json
    again = client.post("/orders", json=order, headers={"Idempotency-Key": "key-1"})
    assert again.status_code == 202 and again.json == first.json
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.headers["Location"] == first.headers["Location"]
    assert entry_depth(infra) == 1, "the retry sent a second order"

    other = client.post("/orders", json=order | {"customerId": "cust-0002"},
                        headers={"Idempotency-Key": "key-1"})
    assert other.status_code == 409 and "another request body" in other.json["error"]
    assert entry_depth(infra) == 1

    # Without a key the same body is another order, as before.
    assert client.post("/orders", json=order).status_code == 202
    assert entry_depth(infra) == 2


def test_an_invalid_request_claims_no_key_and_a_failed_one_can_be_retried(infra, client):
    from orders.api.idempotency import ClaimState, IdempotencyKeys, fingerprint

    bad = _order("api-k-1") | {"currency": "XXX"}
    assert client.post("/orders", json=bad, headers={"Idempotency-Key": "key-2"}).status_code == 400
    good = _order("api-k-1")
    assert client.post("/orders", json=good, headers={"Idempotency-Key": "key-2"}).status_code == 202

    keys = IdempotencyKeys(infra, CLIENT)
    # A request being answered elsewhere: the duplicate is told to retry, nothing is sent.
    assert keys.claim("key-3", fingerprint(good), "api-k-3", None)
    assert not keys.claim("key-3", fingerprint(good), "api-k-4", None)  # a concurrent duplicate loses
    busy = client.post("/orders", json=good, headers={"Idempotency-Key": "key-3"})
    assert busy.status_code == 409 and busy.headers["Retry-After"] == "1"
    # One that got a 503: the retry places under the claim's order id.
    keys.reopen("key-3")
    retried = client.post("/orders", json=good, headers={"Idempotency-Key": "key-3"})
    assert retried.status_code == 202 and retried.json["orderId"] == "api-k-3"
    assert entry_depth(infra) == 2
    claim = keys.get("key-3")
    assert claim is not None and claim.state is ClaimState.DONE
    assert client.post("/orders", json=good, headers={"Idempotency-Key": "bad key"}).status_code == 400


def test_idempotency_keys_expire_after_a_day(infra, client):
    from orders.api.idempotency import TTL_SECONDS

    ddb = clients.client("dynamodb", infra)
    table = f"{infra.prefix}idempotency"
    ttl = ddb.describe_time_to_live(TableName=table)["TimeToLiveDescription"]
    assert ttl["TimeToLiveStatus"] == "ENABLED" and ttl["AttributeName"] == "expiresAt"
    first = client.post("/orders", json=_order("api-ttl-1"), headers={"Idempotency-Key": "key-4"})
    assert first.status_code == 202
    item = ddb.get_item(TableName=table, Key={"key": {"S": f"{CLIENT} key-4"}})["Item"]
    assert abs(int(item["expiresAt"]["N"]) - (time.time() + TTL_SECONDS)) < 60
    # Past its time the key is free again, even before DynamoDB deletes the item.
    ddb.update_item(TableName=table, Key={"key": {"S": f"{CLIENT} key-4"}},
                    UpdateExpression="SET expiresAt = :past",
                    ExpressionAttributeValues={":past": {"N": str(int(time.time()) - 1)}})
    other = _order("api-ttl-2")
    assert client.post("/orders", json=other, headers={"Idempotency-Key": "key-4"}).status_code == 202
    assert entry_depth(infra) == 2


def test_place_order_delay_refuses_what_the_door_refuses_before_anything_is_stored_or_sent(infra, client):
    from orders.domain.errors import InvalidOrder
    from tasks.orders import place_order

    good = _order("door-1")
    for bad in (good | {"currency": ["USD"]}, good | {"orderId": "door-1\n"},
                good | {"contact": {"email": "a" * 1_000_000 + "@b.co"}},
                good | {"items": [{"sku": "SKU-1001", "quantity": 10**5000, "unitPrice": "1"}]},
                good | {"items": [good["items"][0]] * 10_000}):
        with pytest.raises(InvalidOrder) as refused:
            place_order.delay(bad)
        assert all(len(p) < 300 for p in refused.value.problems)
    assert entry_depth(infra) == 0 and OrderStore(infra).get("door-1") is None


def test_a_key_whose_request_died_mid_way_is_taken_over_after_a_while(infra, client):
    from orders.api.idempotency import STALE_CLAIM_SECONDS, IdempotencyKeys, fingerprint

    good = _order("api-k-5")
    # A request claimed the key, then the API died.
    assert IdempotencyKeys(infra, CLIENT).claim("key-5", fingerprint(good), "api-k-5", None)
    assert client.post("/orders", json=good, headers={"Idempotency-Key": "key-5"}).status_code == 409
    past = int((time.time() - STALE_CLAIM_SECONDS - 5) * 1000)
    clients.client("dynamodb", infra).update_item(
        TableName=f"{infra.prefix}idempotency", Key={"key": {"S": f"{CLIENT} key-5"}},
        UpdateExpression="SET claimedAt = :past", ExpressionAttributeValues={":past": {"N": str(past)}})
    taken = client.post("/orders", json=good, headers={"Idempotency-Key": "key-5"})
    assert taken.status_code == 202 and taken.json["orderId"] == "api-k-5"
    assert entry_depth(infra) == 1
