"""A chain's timeline, shared by every chain configuration that runs in workers (Celery, dramatiq).

Each hop appends its finish time to the timeline it was handed; the last hop pushes
the whole timeline to a Redis list on the control plane, so the benchmark sees each
chain complete without an AWS call of its own.
"""

from __future__ import annotations

import json
import time
from functools import lru_cache
from typing import Any

from orders.settings import get_settings

#: The stages, one per service queue, in the order an order goes through them.
STAGES = ("orders", "inventory", "payments", "shipping", "notifications")


def done_key(namespace: str) -> str:
    return f"orders-bench:{namespace}:done"


def stamp(timeline: list[Any]) -> list[Any]:
    """The timeline with this hop's finish time."""
    return [*timeline, time.time()]


def finish(timeline: list[Any]) -> None:
    """The last hop: stamp the timeline and hand it to the benchmark."""
    _redis().rpush(done_key(get_settings().env), json.dumps(stamp(timeline)))


@lru_cache(maxsize=1)
def _redis() -> Any:
    import redis

    url = get_settings().control_url
    if not url:
        raise RuntimeError("the chain benchmark needs ORDERS_CONTROL_URL (the emulator's Redis)")
    return redis.Redis.from_url(url)
