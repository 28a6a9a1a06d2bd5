"""Celery tasks, one module per service: thin adapters over the domain code in `orders`."""
