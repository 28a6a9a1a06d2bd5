"""A task whose own time limit outlives its queue's visibility timeout: the worker must refuse it."""

from orders.celery import app


@app.task(name="notifications.probe_too_slow", time_limit=300)
def too_slow() -> None:
    """notifications has a 60 s visibility timeout: SQS would redeliver this mid-run."""
