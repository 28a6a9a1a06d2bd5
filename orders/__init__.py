"""Order processing on Celery, Amazon SQS and SNS."""

from orders.celery import app

__all__ = ["app"]
