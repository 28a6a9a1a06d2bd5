"""The chain benchmark's peer: the same five-hop no-op chains as dramatiq actors on dramatiq-sqs.

One dramatiq worker process per queue (`--processes 1 --threads N`, N the Celery
workers' concurrency), on the same emulator, its calls counted at the same server
and its CPU read the same way as the Celery configurations'. The chains are
placed on the same schedule, one SendMessage each: dramatiq-sqs has no batch send.
dramatiq-sqs makes standard queues only, so the inventory hop keeps no per-product
order (ours and stock run it on a FIFO queue with 50 message groups).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from benchmarks.chain import LoadPlan, measure_chains, on_schedule
from benchmarks.measure import RunFigures
from benchmarks.timelines import STAGES
from orders.harness.processes import ChildProcess, wait_ready
from orders.harness.stack import Stack

NOTE = "dramatiq-sqs 0.4.4 supports standard queues only: the inventory hop has no FIFO message group"
READY = "Worker process is ready for action."
#: Where `benchmarks` is importable from, for the workers (the checkout's root).
CHECKOUT = str(Path(__file__).resolve().parent.parent)


class DramatiqStack(Stack):
    """The emulator and the namespace of a Stack, with a dramatiq worker per queue instead of Celery's."""

    def __init__(self, threads: int, endpoint: str | None = None, latency_ms: float = 0.0):
        super().__init__(endpoint=endpoint, latency_ms=latency_ms, beat=False)
        self.threads = threads

    def _start_children(self) -> None:
        self.children = [self._dramatiq_worker(stage) for stage in STAGES]
        for child in self.children:
            child.start()
        wait_ready(self.children, self.startup_timeout)

    def _dramatiq_worker(self, queue: str) -> ChildProcess:
        cmd = [sys.executable, "-m", "dramatiq", "benchmarks.dramatiq_actors:setup", "--path", CHECKOUT,
               "--processes", "1", "--threads", str(self.threads), "--queues", queue,
               "--worker-shutdown-timeout", "5000"]
        log = self._log(f"dramatiq-{queue}")
        return ChildProcess(f"worker {queue}", cmd, self.env, log, ready_text=READY)


def place(plan: LoadPlan, stack: Stack, prefix: str) -> None:
    """Send each chain's first hop on the plan's schedule, through a broker on the stack's settings."""
    from benchmarks.dramatiq_actors import declare, make_broker

    producer = make_broker(stack.settings)
    first = declare(producer)[STAGES[0]]
    producer._ensure_queue(first.queue_name)  # looked up once here, not by each placer at once

    def send(ids: list[int]) -> None:
        for i in ids:
            first.send([f"{prefix}{i}", time.time()])

    on_schedule(plan, send)


def run_dramatiq(label: str, plan: LoadPlan, latency_ms: float = 0.0, endpoint: str | None = None,
                 concurrency: int = 8) -> RunFigures:
    """One run of the peer configuration on a fresh emulator (or `endpoint`)."""
    with DramatiqStack(concurrency, endpoint=endpoint, latency_ms=latency_ms) as stack:
        result = measure_chains(label, plan, stack, lambda: place(plan, stack, prefix=f"{label}-"))
    result.notes.append(NOTE)
    return result
