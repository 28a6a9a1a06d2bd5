"""Benchmark-only tasks: a five-hop chain over the service queues that does no work of its own.

Workers load this module with `-I benchmarks.chain_tasks`; each hop stamps the
timeline it was handed and the last one hands it to the benchmark (benchmarks.timelines).
"""

from __future__ import annotations

import time
from typing import Any

from celery import chain

from benchmarks.timelines import finish, stamp
from orders.celery import app


@app.task(name="orders.bench_hop")
def orders_hop(timeline: list[Any]) -> list[Any]:
    return stamp(timeline)


@app.task(name="inventory.bench_hop")
def inventory_hop(timeline: list[Any]) -> list[Any]:
    return stamp(timeline)


@app.task(name="payments.bench_hop")
def payments_hop(timeline: list[Any]) -> list[Any]:
    return stamp(timeline)


@app.task(name="shipping.bench_hop")
def shipping_hop(timeline: list[Any]) -> list[Any]:
    return stamp(timeline)


@app.task(name="notifications.bench_done")
def notifications_done(timeline: list[Any]) -> None:
    finish(timeline)


def chain_for(chain_id: str, group: str) -> Any:
    """The five hops of one chain; the FIFO hop is grouped like a product's reservations."""
    return chain(
        orders_hop.s([chain_id, time.time()]),
        inventory_hop.s().set(MessageGroupId=group),  # type: ignore[call-arg]
        payments_hop.s(),
        shipping_hop.s(),
        notifications_done.s(),
    )
