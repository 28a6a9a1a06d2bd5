"""Order processing on Celery, Amazon SQS and SNS."""

from orders.celery import app
from tasks.orders import place_order  # the public entry point: place_order.delay(order)

__all__ = ["app", "place_order"]
