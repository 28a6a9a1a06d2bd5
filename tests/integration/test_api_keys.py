"""The API's keys and what it does with them, against the real emulator: 401 without a valid key, each
client its own orders and Idempotency-Keys, `orders api-key` with `orders api` over HTTP, and answers
with no internal text when AWS fails (for real: the API pointed at a closed port, not a mock); and
Flower behind the login docker-compose gives it (FLOWER_BASIC_AUTH)."""

from __future__ import annotations

import base64
import json
import logging
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest

from orders.api.app import create_app
from orders.api.auth import UNAUTHORIZED
from orders.api.idempotency import ClaimState, IdempotencyKeys
from orders.api.ownership import OrderOwners
from orders.aws import clients
from orders.aws.api_keys import KEY_PATTERN, ApiKeys, digest
from orders.aws.store import OrderStore
from orders.emulator.server import free_port
from orders.harness.order_mix import OrderMix
from orders.harness.runner import seed_catalogue
from orders.settings import Settings
from tests.helpers import logged_process, wait_for, worker
from tests.integration.test_api import _order, entry_depth, keyed

pytestmark = pytest.mark.integration

ORDERS = str(Path(sys.executable).with_name("orders"))
#: What no answer may contain: where AWS is, what failed inside, how.
INTERNALS = ("127.0.0.1", "localhost", "Could not connect", "endpoint", "Traceback", "botocore", "kombu",
             "Exception", "dynamodb", "sqs", "ResourceNotFound")


@pytest.fixture
def catalogue(infra: Settings) -> Settings:
    seed_catalogue(infra, OrderMix().stock(10))
    return infra


def test_without_a_valid_key_everything_but_the_public_routes_is_401(infra: Settings) -> None:
    keys = ApiKeys(infra)
    revoked, _ = keys.create("gone")
    api = create_app(infra).test_client()
    bearer = {"Authorization": f"Bearer {revoked}"}
    assert api.get("/orders/ord-1", headers=bearer).status_code == 404  # a live key: let in
    assert [k.client for k in keys.revoke("gone")] == ["gone"]
    headers = [None, "Basic dXNlcjpwYXNz", "Bearer", "Bearer not-a-key", f"Bearer ok_{'A' * 43}",
               f"Bearer {revoked}", f"Bearer {revoked} trailing"]
    routes = [("POST", "/orders"), ("GET", "/orders/ord-1"), ("GET", "/health?deep=1"), ("GET", "/nope"),
              ("DELETE", "/orders")]
    for header in headers:
        for method, path in routes:
            answer = api.open(path, method=method, json=_order("ord-1"),
                              headers={"Authorization": header} if header else {})
            assert answer.status_code == 401, (header, method, path)
            assert answer.json == {"error": UNAUTHORIZED} and answer.headers["X-Request-Id"]
            challenge = answer.headers["WWW-Authenticate"]
            assert challenge.startswith('Bearer realm="orders"')
            assert ('error="invalid_token"' in challenge) == (header is not None)
    assert entry_depth(infra) == 0
    # Public: the shallow health check and the document, with no key at all.
    assert api.get("/health").status_code == 200 and api.get("/openapi.json").status_code == 200
    good, _ = keys.create("ok")
    assert api.get("/orders/ord-1", headers={"Authorization": f"bearer  {good}"}).status_code == 404


def test_a_client_reads_only_the_orders_it_placed(catalogue: Settings) -> None:
    from tasks.orders import place_order

    a, b = keyed(catalogue, "client-a"), keyed(catalogue, "client-b")
    with worker(["orders", "orders-priority.fifo"]):
        assert a.post("/orders", json=_order("own-1")).status_code == 202
        mine = wait_for(lambda: (got := a.get("/orders/own-1")).status_code == 200 and got.json, timeout=60)
        place_order.delay(_order("other-1"))  # placed other than through the API
        wait_for(lambda: OrderStore(catalogue).load("other-1") is not None, timeout=60)
    assert mine["orderId"] == "own-1" and mine["history"][0]["status"] == "placed"

    theirs, unknown = b.get("/orders/own-1"), b.get("/orders/own-2")
    assert theirs.status_code == unknown.status_code == 404
    assert theirs.json | {"orderId": "-"} == unknown.json | {"orderId": "-"}  # the same answer
    assert a.get("/orders/other-1").status_code == 404  # no client placed it
    # Nor can a client make another's order, or one placed otherwise, its own by placing under its id.
    sent = entry_depth(catalogue)
    for api, order_id in ((b, "own-1"), (a, "other-1"), (b, "other-1")):
        refused = api.post("/orders", json=_order(order_id), headers={"Idempotency-Key": f"k-{order_id}"})
        assert refused.status_code == 409 and "already in use" in refused.json["error"]
    assert entry_depth(catalogue) == sent
    assert b.get("/orders/own-1").status_code == 404 and a.get("/orders/other-1").status_code == 404
    # Its owner placing it again is harmless, as it was.
    assert a.post("/orders", json=_order("own-1")).status_code == 202


def test_idempotency_keys_are_each_clients_own(catalogue: Settings) -> None:
    a, b = keyed(catalogue, "client-a"), keyed(catalogue, "client-b")
    order = {k: v for k, v in _order("unused").items() if k != "orderId"}
    other = order | {"customerId": "cust-0002"}
    same_key = {"Idempotency-Key": "shared-key"}
    first_a, first_b = a.post("/orders", json=order, headers=same_key), b.post("/orders", json=other,
                                                                                 headers=same_key)
    assert first_a.status_code == first_b.status_code == 202, (first_a.json, first_b.json)
    assert first_a.json["orderId"] != first_b.json["orderId"]
    assert a.post("/orders", json=order, headers=same_key).json == first_a.json
    assert b.post("/orders", json=other, headers=same_key).json == first_b.json
    # B's key is B's: A's body under it is another body for B's claim, never A's answer.
    assert b.post("/orders", json=order, headers=same_key).status_code == 409
    assert entry_depth(catalogue) == 2


def _call(port: int, method: str, path: str, body: Any = None, key: str | None = None) -> tuple[int, Any]:
    """(status, JSON body) of one request to `orders api` over HTTP."""
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method,
                                     headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as refused:
        return refused.code, json.loads(refused.read())


def _orders(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([ORDERS, *args], capture_output=True, text=True, timeout=60)


def test_api_key_create_prints_the_key_last_and_it_opens_the_http_api(catalogue: Settings,
                                                                       tmp_path: Path) -> None:
    created = _orders("api-key", "create", "cli-client")
    assert created.returncode == 0, created.stderr
    key = created.stdout.splitlines()[-1]
    assert KEY_PATTERN.match(key), created.stdout
    # Stored as its digest: the key itself is in no item, and `list` never shows it.
    items = clients.client("dynamodb", catalogue).scan(TableName=f"{catalogue.prefix}api-keys")["Items"]
    assert [item["keyHash"]["S"] for item in items] == [digest(key)] and key not in json.dumps(items)
    listed = _orders("api-key", "list")
    assert "cli-client" in listed.stdout and key[:10] in listed.stdout and key not in listed.stdout

    port = free_port()
    with logged_process([ORDERS, "api", "--port", str(port)], tmp_path / "api.log"):  # one process
        wait_for(lambda: _status(port) == 200, timeout=30)
        assert _call(port, "POST", "/orders", _order("http-1"))[0] == 401
        status, body = _call(port, "POST", "/orders", _order("http-1"), key)
        assert status == 202 and body["orderId"] == "http-1"
        assert _orders("api-key", "revoke", "cli-client").returncode == 0
        assert _call(port, "GET", "/orders/http-1", key=key) == (401, {"error": UNAUTHORIZED})
        assert _orders("api-key", "revoke", "cli-client").returncode == 1  # none live


def _status(port: int) -> int | None:
    try:
        return _call(port, "GET", "/health")[0]
    except OSError:
        return None


def test_when_sqs_is_down_placing_is_503_with_no_internal_text_and_a_retry_places_once(
        catalogue: Settings, emulator: Any, caplog: pytest.LogCaptureFixture) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    sqs_down = emulator.settings({"ORDERS_ENV": catalogue.env, "AWS_ENDPOINT_URL_SQS": closed})
    key, _ = ApiKeys(catalogue).create("client-a")
    headers = {"Authorization": f"Bearer {key}", "Idempotency-Key": "k-503"}
    order = {k: v for k, v in _order("unused").items() if k != "orderId"}  # the API gives the id
    with caplog.at_level(logging.INFO, logger="orders.api"):
        failed = create_app(sqs_down).test_client().post("/orders", json=order, headers=headers)
    _assert_no_internals(failed, caplog.text)
    # Nothing half-done: no message; the key's claim open for a retry; the id reserved to its client.
    assert entry_depth(catalogue) == 0
    claim = IdempotencyKeys(catalogue, "client-a").get("k-503")
    assert claim is not None and claim.state is ClaimState.OPEN
    assert OrderOwners(catalogue).owner(claim.order_id) == "client-a"
    # SQS back: the retry with the same key places under the same order id, once.
    api = create_app(catalogue).test_client()
    retried = api.post("/orders", json=order, headers=headers)
    assert retried.status_code == 202 and retried.json["orderId"] == claim.order_id
    replayed = api.post("/orders", json=order, headers=headers)
    assert replayed.headers["Idempotent-Replayed"] == "true" and replayed.json == retried.json
    assert entry_depth(catalogue) == 1


def test_when_aws_is_down_every_route_is_503_not_401_and_the_shallow_health_check_still_answers(
        caplog: pytest.LogCaptureFixture) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    down = Settings.from_env({"ORDERS_ENV": "tdown", "AWS_ENDPOINT_URL": closed,
                              "AWS_DEFAULT_REGION": "us-east-1"}).with_credentials("testing", "testing")
    api = create_app(down).test_client()
    headers = {"Authorization": f"Bearer ok_{'A' * 43}"}  # well formed: looked up
    for method, path in [("POST", "/orders"), ("GET", "/orders/ord-1"), ("GET", "/health?deep=1")]:
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="orders.api"):
            answer = api.open(path, method=method, json=_order("ord-1"), headers=headers)
        _assert_no_internals(answer, caplog.text)
    assert api.get("/health").status_code == 200


def test_any_other_failure_is_a_500_with_no_internal_text(emulator: Any,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    unprovisioned = emulator.settings({"ORDERS_ENV": f"t{uuid.uuid4().hex[:10]}"})  # no tables: AWS says so
    api = create_app(unprovisioned).test_client()
    with caplog.at_level(logging.INFO, logger="orders.api"):
        answer = api.get("/orders/ord-1", headers={"Authorization": f"Bearer ok_{'A' * 43}"})
    assert answer.status_code == 500
    request_id = answer.headers["X-Request-Id"]
    assert answer.json == {"error": "internal error", "requestId": request_id}
    assert not [word for word in INTERNALS if word.lower() in answer.get_data(as_text=True).lower()]
    assert request_id in caplog.text and "ResourceNotFound" in caplog.text


def _assert_no_internals(answer: Any, log: str) -> None:
    """A 503 that says when to retry and under which id the log has the details, and nothing else."""
    assert answer.status_code == 503 and answer.headers["Retry-After"] == "5"
    request_id = answer.headers["X-Request-Id"]
    assert len(request_id) == 32 and answer.json["requestId"] == request_id
    text = answer.get_data(as_text=True)
    assert not [word for word in INTERNALS if word.lower() in text.lower()], text
    assert request_id in log and "Could not connect" in log  # the details, in the log only


def _get(url: str, login: str | None = None) -> int | None:
    """The status of a GET (None while nothing answers), with HTTP basic auth if `login` is given."""
    headers = {"Authorization": "Basic " + base64.b64encode(login.encode()).decode()} if login else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as refused:
        return refused.code
    except OSError:
        return None


def test_flower_asks_for_the_login_compose_gives_it_in_flower_basic_auth(infra: Settings,
                                                                         tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    flower = [sys.executable, "-m", "celery", "-A", "orders", "flower", f"--port={port}",
              "--address=127.0.0.1"]
    with logged_process(flower, tmp_path / "flower.log", env={"FLOWER_BASIC_AUTH": "admin:s3cret"}):
        assert wait_for(lambda: _get(f"{url}/healthcheck"), timeout=60) == 200  # compose's health check
        for page in ("/", "/workers", "/tasks", "/api/workers"):
            assert _get(url + page) == 401 and _get(url + page, "admin:wrong") == 401, page
        assert _get(f"{url}/workers", "admin:s3cret") == 200
