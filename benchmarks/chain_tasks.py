"""Benchmark-only tasks: a five-hop chain over the service queues that does no work of its own.

Workers load this module with `-I benchmarks.chain_tasks`. Each hop appends
its finish time to the timeline it was handed; the last hop pushes the whole
timeline to a Redis list on the control plane, so the benchmark sees each chain
complete without an AWS call of its own.
"""

from __future__ import annotations

import json
import time
from functools import lru_cache
from typing import Any

from celery import chain

from orders.celery import app
from orders.settings import get_settings

#: The stages, one per service queue, in the order an order goes through them.
STAGES = ("orders", "inventory", "payments", "shipping", "notifications")


def done_key(namespace: str) -> str:
    return f"orders-bench:{namespace}:done"


@lru_cache(maxsize=1)
def _redis() -> Any:
    import redis

    url = get_settings().control_url
    if not url:
        raise RuntimeError("the chain benchmark needs ORDERS_CONTROL_URL (the emulator's Redis)")
    return redis.Redis.from_url(url)


def _hop(timeline: list[Any]) -> list[Any]:
    return [*timeline, time.time()]


@app.task(name="orders.bench_hop")
def orders_hop(timeline: list[Any]) -> list[Any]:
    return _hop(timeline)


@app.task(name="inventory.bench_hop")
def inventory_hop(timeline: list[Any]) -> list[Any]:
    return _hop(timeline)


@app.task(name="payments.bench_hop")
def payments_hop(timeline: list[Any]) -> list[Any]:
    return _hop(timeline)


@app.task(name="shipping.bench_hop")
def shipping_hop(timeline: list[Any]) -> list[Any]:
    return _hop(timeline)


@app.task(name="notifications.bench_done")
def notifications_done(timeline: list[Any]) -> None:
    _redis().rpush(done_key(get_settings().env), json.dumps(_hop(timeline)))


def chain_for(chain_id: str, group: str) -> Any:
    """The five hops of one chain; the FIFO hop is grouped like a product's reservations."""
    return chain(
        orders_hop.s([chain_id, time.time()]),
        inventory_hop.s().set(MessageGroupId=group),  # type: ignore[call-arg]
        payments_hop.s(),
        shipping_hop.s(),
        notifications_done.s(),
    )
