"""The full pipeline under load: the demo's order mix through every worker, as production runs it.

Built on the demo's harness (orders.harness.stack, orders.harness.runner): a fresh emulator
and namespace per configuration, one worker process per queue, beat, the
order mix placed at a steady rate. Placing goes through `PlacementBuffer`,
which does what an order API that batches would do: it validates each order
at once (a refusal is reported to the caller, as `place_order.delay` does) and
sends what arrived in the last `tick` seconds together. With the stock
transport those sends are one SendMessage each.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from benchmarks.measure import PeakMemory, Percentiles, RunFigures, emulator_pid, task_runs
from orders.harness.stack import Stack, worker_args


@dataclass(frozen=True)
class PipelinePlan:
    """How many orders of the mix, how fast, and how long to wait for the last ones."""

    orders: int
    rate: float = 20.0
    tick: float = 0.25
    timeout: float = 300.0
    seed: int = 1
    mix: str = "demo"  # a key of orders.harness.order_mix.MIXES: "hot" is a flash sale on one product


class PlacementBuffer:
    """The runner's `send`: validate now (as `place_order.delay` does), send every `tick` seconds.

    A flush sends its orders from a few threads, ten per `batched_sends()` block,
    so placing never holds the run back, with either transport.
    """

    def __init__(self, tick: float, senders: int = 4):
        self.tick = tick
        self.pending: list[tuple[tuple[Any, ...], dict[str, Any], dict[str, Any]]] = []
        self.errors: list[str] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.pool = ThreadPoolExecutor(senders, thread_name_prefix="placement")
        self.thread = threading.Thread(target=self._run, name="placement", daemon=True)
        self.thread.start()

    def send(self, raw: dict[str, Any]) -> None:
        from tasks.orders import placement

        message = placement(raw)  # InvalidOrder for the caller, as delay() raises
        with self.lock:
            self.pending.append(message)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=60)
        self.pool.shutdown(wait=True)

    def _run(self) -> None:
        while not self.stop.wait(self.tick):
            self._flush()
        self._flush()

    def _flush(self) -> None:
        with self.lock:
            batch, self.pending = self.pending, []
        for future in [self.pool.submit(self._send, batch[i:i + 10]) for i in range(0, len(batch), 10)]:
            future.result()

    def _send(self, orders: list[tuple[tuple[Any, ...], dict[str, Any], dict[str, Any]]]) -> None:
        from orders.runtime.transport import batched_sends
        from tasks.orders import place_order

        try:
            with batched_sends():
                for args, kwargs, options in orders:
                    place_order.apply_async(args, kwargs, **options)
        except Exception as exc:  # noqa: BLE001 - counted and reported, never silent
            self.errors.append(f"{len(orders)} order(s): {exc!r}")


def run_pipeline(label: str, plan: PipelinePlan, batch: bool, latency_ms: float = 0.0,
                 endpoint: str | None = None, concurrency: int = 8,
                 extra_env: dict[str, str] | None = None) -> RunFigures:
    """One configuration of the pipeline: start, seed, place, follow, report (`extra_env`: the workers')."""
    from orders.harness.order_mix import MIXES, OrderMix
    from orders.harness.runner import run_orders, seed_catalogue

    env = {"ORDERS_BATCH_ACKS": "1" if batch else "0", "ORDERS_STOCK_TRANSPORT": "0" if batch else "1",
           **(extra_env or {})}
    with Stack(endpoint=endpoint, latency_ms=latency_ms, extra_env=env,
               worker_args=worker_args(concurrency)) as stack:
        settings = stack.settings
        mix = OrderMix(seed=plan.seed, run_id=f"{label}-{stack.namespace.rsplit('-', 1)[-1]}",
                       review_threshold=settings.review_threshold, weights=MIXES[plan.mix])
        planned = mix.orders(plan.orders)
        seed_catalogue(settings, mix.stock(plan.orders))
        if stack.emulator is not None:
            warm_emulator(settings)
        stack.reset_calls()
        placement = PlacementBuffer(plan.tick)
        with PeakMemory(stack.children, emulator_pid=emulator_pid(stack)) as memory:
            try:
                result = run_orders(settings, planned, plan.rate, plan.timeout, send=placement.send)
            finally:
                placement.close()
        calls = stack.calls() or {}
        runs = task_runs(stack.children)
    run = figures(label, plan, result.outcomes, calls, memory.peak, placement.errors)
    run.cpu_seconds = memory.cpu
    run.emulator_rss = memory.emulator_rss
    run.task_runs = runs
    run.observer_calls = dict(result.following.calls)
    run.observer_cpu_seconds = round(result.following.cpu_seconds + memory.sampling_cpu, 2)
    return run


def warm_emulator(settings: Any) -> None:
    """Load, before the measured window, what the emulator loads at a service's first call and keeps.

    moto's ECS brings EC2's data with it (about 130 MB, and half a second holding moto's dispatcher
    lock, every other call waiting): beat's `ops.sample_queues` asks ECS within a run's first minute,
    so a run of a minute or more counted it in the memory kept per order (about 100 KB an order of
    1,200) and in its latency. Asked here, for a cluster that does not exist, as the sampler asks."""
    from orders.aws import ecs
    from orders.topology import cluster_name

    ecs.running_tasks(settings, cluster_name(settings), ["warm-up"])


def figures(label: str, plan: PipelinePlan, outcomes: list[Any], calls: dict[str, int],
            peak: dict[str, int], send_errors: list[str]) -> RunFigures:
    """Per-stage and end-to-end latency of the orders that reached a final state."""
    from collections import defaultdict

    from orders.harness.summary import final_time, stage_durations, throughput

    finals = [(o, t) for o in outcomes if (t := final_time(o)) is not None and o.placed_at is not None]
    stages: dict[str, list[float]] = defaultdict(list)
    for outcome, _ in finals:
        for name, seconds in stage_durations(outcome):
            stages[name].append(seconds)
    accepted = [o for o in outcomes if o.placed_at is not None and o.refused is None]
    elapsed, rate = throughput(outcomes, [t for _, t in finals])
    unfinished = len(accepted) - len(finals)
    notes = [f"{unfinished} accepted order(s) not final"] if unfinished else []
    return RunFigures(label=label, orders=len(accepted), completed=len(finals), elapsed=elapsed,
                      throughput=rate, end_to_end=Percentiles.of(t - o.placed_at for o, t in finals),
                      stages={name: Percentiles.of(v) for name, v in stages.items()},
                      calls=calls, peak_rss=peak, notes=notes + send_errors)
