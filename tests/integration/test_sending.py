"""Producers' sends against the real emulator: what a caller gets when SQS refuses connections (a closed
port, real boto3 and kombu), and whose AWS key a send is signed with when one process sends for two
settings (the emulator's access log records the key of every call)."""

from __future__ import annotations

from typing import Any

import pytest

from orders.api.app import create_app
from orders.aws.api_keys import ApiKeys
from orders.celery import app
from orders.domain.errors import RetryableError
from orders.emulator.access_log import access_records
from orders.emulator.server import free_port
from orders.harness.order_mix import OrderMix
from orders.harness.runner import seed_catalogue
from orders.settings import Settings
from tests.integration.test_api import _order, entry_depth

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("stock_transport", ["0", "1"])
def test_place_order_delay_when_sqs_refuses_connections_is_a_retryable_error(
        infra: Settings, emulator: Any, stock_transport: str) -> None:
    from tasks.orders import place_order

    seed_catalogue(infra, OrderMix().stock(10))  # validation (DynamoDB) passes; only SQS is down
    closed = f"http://127.0.0.1:{free_port()}"
    sqs_down = emulator.settings({"ORDERS_ENV": infra.env, "AWS_ENDPOINT_URL_SQS": closed,
                                  "ORDERS_STOCK_TRANSPORT": stock_transport})
    app.reconfigure(sqs_down)
    try:
        with pytest.raises(RetryableError) as refused:
            place_order.delay(_order("down-1"))
    finally:
        app.reconfigure(infra)
    assert str(refused.value).startswith("SQS unavailable: Could not connect to the endpoint URL")
    assert entry_depth(infra) == 0
    place_order.delay(_order("down-1"))  # SQS back: the same call places it
    assert entry_depth(infra) == 1


def test_apis_bound_to_other_aws_keys_each_send_with_their_own(infra: Settings) -> None:
    seed_catalogue(infra, OrderMix().stock(10))
    key, _ = ApiKeys(infra).create("client-a")
    bearer = {"Authorization": f"Bearer {key}"}
    endpoint = infra.endpoint_for("SQS")
    assert endpoint is not None
    sent_before = len(_sends(endpoint, infra))
    for n, aws_key in enumerate(("AKIDSENDERA", "AKIDSENDERB", "AKIDSENDERA")):
        api = create_app(infra.with_credentials(aws_key, f"secret-{aws_key}")).test_client()
        answer = api.post("/orders", json=_order(f"signed-{n}"), headers=bearer)
        assert answer.status_code == 202, answer.json
    assert _sends(endpoint, infra)[sent_before:] == ["AKIDSENDERA", "AKIDSENDERB", "AKIDSENDERA"]
    assert entry_depth(infra) == 3


def _sends(endpoint: str, settings: Settings) -> list[str]:
    """The access key of each SQS send into `settings`' queues, in the order the emulator served them."""
    return [record["key"] for record in access_records(endpoint)
            if record["call"] in ("sqs:SendMessage", "sqs:SendMessageBatch")
            and any(f":{settings.prefix}" in resource for _, resource in record["needs"])]
