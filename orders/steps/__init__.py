"""The steps' business logic, written against small interfaces (orders.steps.ports): no Celery, no AWS SDK."""
