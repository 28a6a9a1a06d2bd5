"""A producer process for the tracing test: `python -m tests.integration.tracing_producer ORDERS_JSON`.

Places the first order with `place_order.delay()` and the others through the HTTP API (its
Flask app, in this process), as application code and the API would: tracing is set up when the
Celery app is imported, from the OTEL_* variables the test gives this process.
"""

from __future__ import annotations

import json
import sys

from orders import place_order
from orders.api.app import create_app
from orders.aws.api_keys import ApiKeys
from orders.settings import get_settings


def main(orders: list[dict]) -> None:
    first, *rest = orders
    place_order.delay(first)
    settings = get_settings()
    key, _ = ApiKeys(settings).create("tracing-test")
    api = create_app(settings).test_client()
    for order in rest:
        answer = api.post("/orders", json=order, headers={"Authorization": f"Bearer {key}"})
        assert answer.status_code == 202, answer.get_data(as_text=True)


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
