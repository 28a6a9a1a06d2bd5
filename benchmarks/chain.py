"""The transport-level benchmark: five-hop chains of no-op tasks, one worker process per queue.

This isolates what the transport costs (calls, latency, memory) from what the
tasks do. The chains are placed in bursts every `tick` seconds, each burst in
one `batched_sends()` block: with our transport a burst is one SendMessageBatch
per ten chains, with the stock transport one SendMessage per chain.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from benchmarks.measure import PeakMemory, Percentiles, RunFigures, emulator_pid, throughput
from benchmarks.timelines import STAGES, done_key
from orders.harness.stack import Stack, worker_args
from orders.settings import Settings

CHAIN_QUEUES = ("orders", "inventory.fifo", "payments", "shipping", "notifications")


@dataclass(frozen=True)
class LoadPlan:
    """How many chains, how fast (0: all at once), in bursts of `tick` seconds."""

    orders: int
    rate: float = 0.0
    tick: float = 0.25
    timeout: float = 300.0
    placers: int = 8
    groups: int = 50  # FIFO message groups (products) on the inventory hop


def place_chains(plan: LoadPlan, prefix: str) -> None:
    """Place every chain on schedule, ten per `batched_sends()` block."""
    from benchmarks.chain_tasks import chain_for
    from orders.runtime.transport import batched_sends

    def place(ids: list[int]) -> None:
        with batched_sends():
            for i in ids:
                chain_for(f"{prefix}{i}", f"sku-{i % plan.groups}").apply_async()

    on_schedule(plan, place)


def on_schedule(plan: LoadPlan, send: Callable[[list[int]], None]) -> None:
    """Call `send` with the ids of up to ten chains at a time, each `tick`'s burst split among
    `placers` threads, until the plan's chains are all placed."""
    per_tick = plan.orders if plan.rate <= 0 else max(1, round(plan.rate * plan.tick))
    t0 = time.monotonic()
    with ThreadPoolExecutor(plan.placers, thread_name_prefix="placer") as pool:
        for n, start in enumerate(range(0, plan.orders, per_tick)):
            time.sleep(max(0.0, t0 + n * plan.tick - time.monotonic()))
            ids = list(range(start, min(start + per_tick, plan.orders)))
            for future in [pool.submit(send, ids[i:i + 10]) for i in range(0, len(ids), 10)]:
                future.result()


def collect(redis: object, key: str, expected: int, timeout: float) -> list[list[float]]:
    """Wait for `expected` finished timelines (or the timeout); return those that finished."""
    deadline = time.monotonic() + timeout
    while redis.llen(key) < expected and time.monotonic() < deadline:  # type: ignore[attr-defined]
        time.sleep(0.2)
    return [json.loads(raw)[1:] for raw in redis.lrange(key, 0, -1)]  # type: ignore[attr-defined]


def figures(label: str, plan: LoadPlan, timelines: list[list[float]], calls: dict[str, int],
            peak: dict[str, int]) -> RunFigures:
    """Turn finished timelines ([placed, hop1, ..., hop5]) into the run's figures."""
    starts = [t[0] for t in timelines]
    ends = [t[-1] for t in timelines]
    stages = {name: Percentiles.of(t[i + 1] - t[i] for t in timelines) for i, name in enumerate(STAGES)}
    elapsed = max(ends) - min(starts) if timelines else 0.0
    return RunFigures(label=label, orders=plan.orders, completed=len(timelines), elapsed=elapsed,
                      throughput=throughput(len(timelines), min(starts, default=0), max(ends, default=0)),
                      end_to_end=Percentiles.of(e - s for s, e in zip(starts, ends, strict=True)),
                      stages=stages, calls=calls, peak_rss=peak)


def run_chains(label: str, plan: LoadPlan, batch: bool, latency_ms: float = 0.0,
               endpoint: str | None = None, concurrency: int = 8) -> RunFigures:
    """One configuration: start a stack, place the chains, wait for them, report."""
    args = worker_args(concurrency, "-I", "benchmarks.chain_tasks")
    env = {"ORDERS_BATCH_ACKS": "1" if batch else "0", "ORDERS_STOCK_TRANSPORT": "0" if batch else "1",
           # Every hop of a chain is a step on its way (the fifth runs on the notifications queue only
           # for a fifth worker): none waits the longer pause of a queue off the orders' path.
           "ORDERS_OFF_PATH_RECEIVE_WAIT": str(Settings.from_env().receive_batch_wait)}
    with Stack(endpoint=endpoint, latency_ms=latency_ms, extra_env=env, queues=CHAIN_QUEUES,
               worker_args=args, beat=False) as stack:
        return measure_chains(label, plan, stack, lambda: place_chains(plan, prefix=f"{label}-"))


def measure_chains(label: str, plan: LoadPlan, stack: Stack, place: Callable[[], None]) -> RunFigures:
    """On a started stack whose workers finish chains into the control plane (benchmarks.timelines):
    count calls from now, `place` the chains, wait for them, report."""
    import redis

    store = redis.Redis.from_url(stack.settings.control_url or "")
    key = done_key(stack.settings.env)
    stack.reset_calls()
    with PeakMemory(stack.children, emulator_pid=emulator_pid(stack)) as memory:
        place()
        timelines = collect(store, key, plan.orders, plan.timeout)
    calls = stack.calls() or {}
    store.delete(key)
    result = figures(label, plan, timelines, calls, memory.peak)
    result.cpu_seconds = memory.cpu
    return result
