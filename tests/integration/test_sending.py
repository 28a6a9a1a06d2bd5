"""Producers' sends against the real emulator: what a caller gets when SQS refuses connections (a closed
port, real boto3 and kombu)."""

from __future__ import annotations

from typing import Any

import pytest

from orders.celery import app
from orders.domain.errors import RetryableError
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
