"""The API against hostile headers and with secrets about, over the real emulator: an API key (or
anything sent as one) is never in a log line, an answer or an exception message, only its hint; an
oversize or hostile Authorization header is 401 without a lookup; a hostile Idempotency-Key is 400 and
claims nothing; a 503's log lines name the request, not the order's payment token or contact."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from orders.api.app import create_app
from orders.api.auth import UNAUTHORIZED
from orders.aws import clients
from orders.aws.api_keys import HINT_LENGTH, ApiKeys
from orders.emulator.server import free_port
from orders.harness.order_mix import OrderMix
from orders.harness.runner import seed_catalogue
from orders.settings import Settings
from tests.helpers import calls
from tests.integration.test_api import _order, entry_depth

pytestmark = pytest.mark.integration

#: Bearer values a client may send by mistake or by malice (each follows "Bearer " unless it starts so).
HOSTILE_TOKENS = ["A" * 1_000_000, " " * 1_000_000 + "x y", "a " * 500_000, "ok_" + "\x00" * 43,
                  "ok_" + "é" * 43, "ключ", "\x1b[2J\x1b[31mok_", "ok_" + "A" * 42 + "\u200b",
                  "ok_" + "A" * 44, "%s%s%n", "Bearer Bearer"]


@pytest.fixture
def live_key(infra: Settings) -> str:
    seed_catalogue(infra, OrderMix().stock(10))
    key, _ = ApiKeys(infra).create("client-a")
    return key


def test_a_hostile_authorization_header_is_401_at_once_and_no_key_is_ever_logged_or_answered(
        infra: Settings, emulator: Any, live_key: str, caplog: pytest.LogCaptureFixture) -> None:
    revoked, _ = ApiKeys(infra).create("client-b")
    ApiKeys(infra).revoke("client-b")
    headers = [f"Bearer {token}" for token in HOSTILE_TOKENS] + [
        "\x00" * 10_000, "Basic " + "=" * 100_000, "Bearer", f"Bearer {live_key}\x00",
        f"Bearer {live_key}\x7f", f"Bearer\t{live_key}", f"Bearer {live_key} {live_key}", live_key,
        f"Bearer {revoked}"]
    api = create_app(infra).test_client()
    before = calls(emulator.endpoint)["dynamodb:GetItem"]
    with caplog.at_level(logging.DEBUG):
        for header in headers:
            answer = api.post("/orders", json=_order("hostile-1"), headers={"Authorization": header})
            assert answer.status_code == 401, header[:80]
            assert answer.json == {"error": UNAUTHORIZED}
            assert live_key not in answer.get_data(as_text=True) and revoked not in str(answer.headers)
    # Only the revoked key, well formed, was looked up (by its digest); nothing else reached DynamoDB.
    assert calls(emulator.endpoint)["dynamodb:GetItem"] - before == 1
    assert caplog.records and all(r.getMessage().startswith("401 ") for r in caplog.records
                                  if r.name == "orders.api")
    logged = caplog.text
    assert live_key not in logged and live_key[HINT_LENGTH:] not in logged
    assert revoked not in logged and f"unknown or revoked key {revoked[:HINT_LENGTH]}..." in logged
    assert "A" * 1000 not in logged and "ключ" not in logged
    assert entry_depth(infra) == 0
    # The same key, sent properly, still works: nothing above locked it out.
    ok = api.post("/orders", json=_order("hostile-1"), headers={"Authorization": f"Bearer {live_key}"})
    assert ok.status_code == 202


@pytest.mark.parametrize("key", ["k" * 256, "k" * 1_000_000, "", " ", "k y", "k\x00y", "k\x1by", "k\x7fy",
                                 "ключ", "k\u00e9", "k\ty", "k\u2028y"])
def test_a_hostile_idempotency_key_is_400_and_claims_nothing(infra: Settings, live_key: str,
                                                              key: str) -> None:
    api = create_app(infra).test_client()
    answer = api.post("/orders", json=_order("idem-1"),
                      headers={"Authorization": f"Bearer {live_key}", "Idempotency-Key": key})
    assert answer.status_code == 400, answer.get_data(as_text=True)[:300]
    assert any("Idempotency-Key" in problem for problem in answer.json["problems"])
    assert len(answer.get_data()) < 500  # the key is not echoed back
    assert entry_depth(infra) == 0
    table = f"{infra.prefix}idempotency"
    assert clients.client("dynamodb", infra).scan(TableName=table)["Count"] == 0


def test_the_longest_idempotency_key_is_accepted(infra: Settings, live_key: str) -> None:
    api = create_app(infra).test_client()
    headers = {"Authorization": f"Bearer {live_key}", "Idempotency-Key": "~" * 255}
    first = api.post("/orders", json=_order("idem-2"), headers=headers)
    assert first.status_code == 202, first.json
    again = api.post("/orders", json=_order("idem-2"), headers=headers)
    assert again.headers["Idempotent-Replayed"] == "true"


def test_a_503s_log_names_the_request_not_the_orders_token_contact_or_key(
        infra: Settings, emulator: Any, live_key: str, caplog: pytest.LogCaptureFixture) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    sqs_down = emulator.settings({"ORDERS_ENV": infra.env, "AWS_ENDPOINT_URL_SQS": closed})
    order = _order("secret-1") | {"payment": {"method": "card", "token": "tok_SECRET4242"}, "contact": {
        "email": "private.person@example.com", "phone": "+447700900999"}}
    with caplog.at_level(logging.INFO):
        answer = create_app(sqs_down).test_client().post(
            "/orders", json=order, headers={"Authorization": f"Bearer {live_key}"})
    assert answer.status_code == 503
    request_id = answer.headers["X-Request-Id"]
    api_lines = [r for r in caplog.records if r.name == "orders.api"]
    assert api_lines and all(request_id in r.getMessage() for r in api_lines)
    logged = caplog.text  # every logger's lines, tracebacks included
    for secret in ("tok_SECRET4242", "private.person", "+447700900999", "1 High Street", live_key):
        assert secret not in logged, secret


def test_api_key_revoke_repeats_only_the_hint_of_a_key_given_whole(infra: Settings, live_key: str) -> None:
    from click.testing import CliRunner

    from orders.cli import cli

    def revoke() -> Any:
        return CliRunner().invoke(cli, ["api-key", "revoke", "client-a", "--key", live_key],
                                  catch_exceptions=False)

    first, again = revoke(), revoke()  # the second finds no live key, and says which it looked for
    assert first.exit_code == 0 and f"revoked {live_key[:HINT_LENGTH]}..." in first.output
    assert again.exit_code == 1 and f"starting with {live_key[:HINT_LENGTH]!r}" in again.stderr
    assert live_key not in first.output + again.output
