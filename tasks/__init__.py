"""Celery tasks, one module per service: thin adapters over the steps in orders.steps."""
