"""Test-only tasks for the monitoring tests; workers started as processes import them with `-I`."""

from __future__ import annotations

from orders.celery import app


@app.task(name="ops.monitoring_add")
def monitoring_add(x: int, y: int) -> int:
    return x + y


@app.task(name="ops.monitoring_fail")
def monitoring_fail(reason: str) -> None:
    raise ValueError(reason)
