"""Order processing on Celery, Amazon SQS and SNS.

`from orders import place_order` and `celery -A orders` (which looks up
`orders.app`) are the public entry points. Both are loaded on first use, so
that importing a lower layer (`import orders.domain`) does not pull in Celery,
kombu or boto3.
"""

from __future__ import annotations

from typing import Any

__all__ = ["app", "place_order"]


def __getattr__(name: str) -> Any:
    if name == "app":
        from orders.celery import app

        return app
    if name == "place_order":
        from tasks.orders import place_order

        return place_order
    raise AttributeError(f"module 'orders' has no attribute {name!r}")
