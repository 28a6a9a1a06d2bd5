"""The raw ceiling: the same five-hop message flow as a plain boto3 loop, no Celery, no kombu.

Each hop is a few threads doing receive (10) -> send batch to the next queue ->
delete batch, the best that SQS's batch APIs allow; the producer sends batches
of ten. Messages carry a body the size of a Celery chain message, and their
timeline, so the figures are comparable with the pipeline's.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

from benchmarks.chain import CHAIN_QUEUES, LoadPlan, figures, on_schedule
from benchmarks.measure import PeakMemory, RunFigures, emulator_pid
from orders.aws import clients
from orders.harness.stack import Stack
from orders.runtime.queue_urls import queue_url
from orders.settings import Settings

#: About what a Celery message of the five-hop chain weighs once base64-encoded.
BODY_PADDING = "x" * 2500


class AwsOnly(Stack):
    """A stack without workers: the emulator and the provisioned namespace only."""

    def _start_children(self) -> None:
        self.children = []


class Flow:
    """The shared state of one raw run: its settings and queue URLs, the finished timelines, the stop flag."""

    def __init__(self, settings: Settings, urls: list[str], groups: int):
        self.settings = settings
        self.urls = urls
        self.groups = groups
        self.done: dict[int, list[float]] = {}  # by chain: SQS may deliver a message twice
        self.lock = threading.Lock()
        self.stop = threading.Event()

    def entries(self, bodies: list[dict[str, Any]], url: str) -> list[dict[str, Any]]:
        """SendMessageBatch entries; a FIFO queue gets a group per product and a dedup id."""
        out = []
        for i, body in enumerate(bodies):
            entry: dict[str, Any] = {"Id": str(i), "MessageBody": json.dumps(body)}
            if url.endswith(".fifo"):
                entry["MessageGroupId"] = f"sku-{body['n'] % self.groups}"
                entry["MessageDeduplicationId"] = f"{body['n']}-{len(body['t'])}"
            out.append(entry)
        return out


def hop(flow: Flow, index: int) -> None:
    """One thread of hop `index`: receive, pass on (or finish), delete; until told to stop."""
    sqs = clients.client("sqs", flow.settings)
    url = flow.urls[index]
    last = index == len(flow.urls) - 1
    while not flow.stop.is_set():
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
        if not got:
            continue
        bodies = [json.loads(m["Body"]) for m in got]
        now = time.time()
        for body in bodies:
            body["t"].append(now)
        if last:
            with flow.lock:
                flow.done.update((b["n"], b["t"]) for b in bodies)
        else:
            nxt = flow.urls[index + 1]
            sqs.send_message_batch(QueueUrl=nxt, Entries=flow.entries(bodies, nxt))
        sqs.delete_message_batch(QueueUrl=url, Entries=[
            {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got)])


def produce(flow: Flow, plan: LoadPlan) -> None:
    """Send the chains' first messages on the plan's schedule, ten per call."""
    sqs = clients.client("sqs", flow.settings)

    def send(ids: list[int]) -> None:
        bodies = [{"n": n, "pad": BODY_PADDING, "t": [time.time()]} for n in ids]
        sqs.send_message_batch(QueueUrl=flow.urls[0], Entries=flow.entries(bodies, flow.urls[0]))

    on_schedule(plan, send)


def run_raw(label: str, plan: LoadPlan, latency_ms: float = 0.0, endpoint: str | None = None,
            threads_per_hop: int = 2) -> RunFigures:
    """The ceiling for `plan`'s message volume on a fresh emulator with the same latency."""
    with AwsOnly(endpoint=endpoint, latency_ms=latency_ms, beat=False) as stack:
        flow = Flow(stack.settings, [queue_url(stack.settings, q) for q in CHAIN_QUEUES], plan.groups)
        stack.reset_calls()
        threads = [threading.Thread(target=hop, args=(flow, i), daemon=True)
                   for i in range(len(CHAIN_QUEUES)) for _ in range(threads_per_hop)]
        with PeakMemory([], emulator_pid=emulator_pid(stack)) as usage:
            for t in threads:
                t.start()
            produce(flow, plan)
            wait(lambda: len(flow.done) >= plan.orders, plan.timeout)
            flow.stop.set()
        calls = stack.calls() or {}
        for t in threads:
            t.join(timeout=5)
    result = figures(label, plan, list(flow.done.values()), calls, {})
    result.cpu_seconds = usage.cpu
    return result


def wait(predicate: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.1)
