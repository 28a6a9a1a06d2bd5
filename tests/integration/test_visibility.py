"""Real worker processes on the emulator: a worker killed with SIGKILL gives its messages back within
the receive visibility, not its queue's visibility timeout; a task that outlives that visibility is
not redelivered while it runs; a warm shutdown gives its prefetched messages back at once.

The seconds measured are printed (`pytest -s` shows them); the assertions are about behaviour.
"""

from __future__ import annotations

import os
import signal
import statistics
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from kombu import Connection

from orders.aws import clients
from orders.aws.batching import Batcher, delete_message_batch
from orders.celery import app
from orders.harness.processes import ChildProcess, stop_all, wait_ready
from orders.runtime import transport
from orders.runtime.queue_urls import queue_url
from orders.topology import QUEUES_BY_NAME
from tests.helpers import wait_for
from tests.integration.test_transport import depth

pytestmark = pytest.mark.integration


@app.task(name="ops.visibility_hold")
def hold(n: int, log: str, seconds: float) -> None:
    """Record that message `n` started (where, when), work for `seconds`, record that it ended."""
    with open(log, "a") as out:
        out.write(f"start {n} {os.getpid()} {time.time()}\n")
    time.sleep(seconds)
    with open(log, "a") as out:
        out.write(f"end {n} {os.getpid()} {time.time()}\n")


def events(log: Path, kind: str) -> list[tuple[int, float]]:
    """(message, time) of every `kind` ('start' or 'end') the tasks recorded."""
    if not log.exists():
        return []
    rows = [line.split() for line in log.read_text().splitlines()]
    return [(int(n), float(at)) for what, n, _, at in rows if what == kind]


def worker_process(name: str, tmp_path: Path, pool: str, concurrency: int, queue: str = "orders",
                   **env: str) -> ChildProcess:
    """`celery worker` on one queue, in its own process group (killed whole)."""
    cmd = [sys.executable, "-m", "celery", "-A", "orders", "worker", "-Q", queue, "-n", f"{name}@%h",
           "--loglevel", "INFO", "--without-heartbeat", "-I", __name__,
           "--pool", pool, "-c", str(concurrency)]
    return ChildProcess(name, cmd, {**os.environ, **env}, tmp_path / f"{name}.log", ready_text=" ready.")


@contextmanager
def running(*children: ChildProcess) -> Iterator[None]:
    """Start the workers and wait until they are ready; SIGKILL whatever is left of them at the end."""
    for child in children:
        child.start()
    try:
        wait_ready(children, timeout=60)
        yield
    finally:
        stop_all(children, timeout=0)


def test_a_killed_workers_messages_come_back_within_the_receive_visibility(infra, tmp_path):
    log, n, visibility = tmp_path / "tasks.log", 8, 6
    for i in range(n):
        hold.delay(i, str(log), 3600)
    # Prefork, two slots: two messages running in the pool's children, six prefetched.
    first = worker_process("first", tmp_path, "prefork", 2, ORDERS_RECEIVE_VISIBILITY=str(visibility))
    second = worker_process("second", tmp_path, "threads", n, ORDERS_RECEIVE_VISIBILITY=str(visibility))
    with running(first):
        wait_for(lambda: len(events(log, "start")) == 2 and depth(infra, "orders") == (0, n), timeout=30)
        with running(second):
            killed_at = time.time()
            first.signal_group(signal.SIGKILL)
            wait_for(lambda: len([1 for _, at in events(log, "start") if at > killed_at]) == n, timeout=110)
    again = {i: at - killed_at for i, at in events(log, "start") if at > killed_at}
    queue_timeout = QUEUES_BY_NAME["orders"].visibility_timeout
    print(f"\nkill to redelivery of {n} held messages (2 running, {n - 2} prefetched), receive visibility "
          f"{visibility} s, queue's {queue_timeout} s: median {statistics.median(again.values()):.1f} s, "
          f"max {max(again.values()):.1f} s")
    assert sorted(again) == list(range(n))
    assert max(again.values()) < queue_timeout, "they waited out the queue's own visibility timeout"


@pytest.mark.parametrize("queue", ["orders", "inventory.fifo"])
def test_a_task_that_outlives_the_receive_visibility_is_not_redelivered_while_it_runs(infra, tmp_path, queue):
    log, visibility, seconds = tmp_path / "tasks.log", 3, 10.0
    group = {"MessageGroupId": "g"} if queue.endswith(".fifo") else {}
    hold.apply_async((0, str(log), seconds), queue=queue, **group)
    # Two idle workers long-polling the queue: either would take the message if it became visible.
    workers = [worker_process(name, tmp_path, "threads", 2, queue, ORDERS_RECEIVE_VISIBILITY=str(visibility))
               for name in ("one", "two")]
    with running(*workers):
        wait_for(lambda: events(log, "end"), timeout=60)
        wait_for(lambda: depth(infra, queue) == (0, 0), timeout=10)  # acked: deleted
        stop_all(workers)  # a warm shutdown: each logs its heartbeat's summary
    beats = [line.split("sqs-visibility: ", 1)[1] for w in workers for line in w.log_text().splitlines()
             if "sqs-visibility: " in line]
    print(f"\n{queue}: a {seconds:.0f} s task under a {visibility} s receive visibility: "
          f"{len(events(log, 'start'))} start(s); heartbeats: {beats}")
    assert [n for n, _ in events(log, "start")] == [0], "the message was redelivered while its task ran"


def test_a_warm_shutdown_gives_prefetched_messages_back_at_once(infra, tmp_path):
    log, n = tmp_path / "tasks.log", 6
    for i in range(n):
        hold.delay(i, str(log), 3.0)
    # One slot: one message running, the others prefetched; the default 30 s receive visibility.
    worker = worker_process("one", tmp_path, "threads", 1, ORDERS_RECEIVE_VISIBILITY="30")
    with running(worker):
        wait_for(lambda: len(events(log, "start")) == 1 and depth(infra, "orders") == (0, n), timeout=30)
        worker.signal_group(signal.SIGTERM)
        assert worker.proc is not None and worker.proc.wait(timeout=30) == 0
        exited_at = time.time()
        after_exit = depth(infra, "orders")
    print(f"\nwarm shutdown with {n - 1} prefetched messages: (visible, in flight) right after exit "
          f"{after_exit} ({time.time() - exited_at:.2f} s after it), receive visibility 30 s")
    assert [i for i, _ in events(log, "end")] == [i for i, _ in events(log, "start")]  # it finished its task
    assert after_exit == (n - 1, 0), "prefetched messages were not made visible at shutdown"
    assert f"released {n - 1} unacked message(s) at once" in worker.log_text()


def test_a_channel_holds_what_it_delivered_until_acked_or_rejected_and_never_poison(infra):
    """The heartbeat's bookkeeping through kombu's own calls, on the emulator."""
    sqs, url = clients.client("sqs", infra), queue_url(infra, "orders")
    for n in range(3):
        hold.delay(n, os.devnull, 0)
    sqs.send_message(QueueUrl=url, MessageBody="not a task")
    received: list[dict[str, Any]] = []
    wait_for(lambda: received.extend(sqs.receive_message(  # as a worker receives them: attributes too
        QueueUrl=url, MaxNumberOfMessages=10, MessageSystemAttributeNames=["All"],
        MessageAttributeNames=["All"]).get("Messages", [])) or len(received) == 4)
    delivered: list[Any] = []

    def consume(message: Any) -> None:
        if len(delivered) == 2:
            raise RuntimeError("Celery could not take it")  # the second net: quarantined
        delivered.append(message)

    with Connection(f"{transport.SCHEME}://", transport_options=app.conf.broker_transport_options) as conn:
        channel = conn.default_channel
        channel.basic_consume("orders", False, consume, "test-consumer")
        assert channel._on_messages_ready(url, "orders", {"Messages": received}) == 4
        assert channel.heartbeat.holding() == 2  # neither the poison nor the one Celery failed on
        assert [m.delivery_tag in channel.heartbeat for m in delivered] == [True, True]
        delivered[0].ack()  # held until its delete is done
        delivered[1].reject(requeue=False)  # a failure: kombu's backoff (0 s in tests) sets its visibility
        assert channel.flush_acks()
        assert channel.heartbeat.holding() == 0
        channel.quarantine.close()
    assert depth(infra, "orders") == (1, 0)  # acked, moved, moved; the rejected one is back


def test_an_acked_message_stays_hidden_until_its_delete_is_done(infra):
    """A delete that waits (throttling, an outage) longer than its receive's visibility: the heartbeat keeps
    the message hidden meanwhile, so no consumer is handed it again; once deleted, it is held no more."""
    sqs, url = clients.client("sqs", infra), queue_url(infra, "orders")
    hold.delay(0, os.devnull, 0)
    received: list[dict[str, Any]] = []
    wait_for(lambda: received.extend(sqs.receive_message(  # as a worker receives, for a 1 s visibility
        QueueUrl=url, VisibilityTimeout=1, MessageSystemAttributeNames=["All"],
        MessageAttributeNames=["All"]).get("Messages", [])) or received)
    deleting = threading.Event()

    def slow_delete(client: Any, queue_url: str, entries: list[dict[str, Any]]) -> dict[str, Any]:
        deleting.wait(30)  # the real DeleteMessageBatch, answered only once the test says so
        return delete_message_batch(client, queue_url, entries)

    delivered: list[Any] = []
    options = {**app.conf.broker_transport_options, "receive_visibility": 1}  # a beat every 1/3 s
    with Connection(f"{transport.SCHEME}://", transport_options=options) as conn:
        channel = conn.default_channel
        channel._acks = Batcher("sqs-acks", slow_delete, linger=0)
        channel.basic_consume("orders", False, delivered.append, "test-consumer")
        assert channel._on_messages_ready(url, "orders", {"Messages": received}) == 1
        delivered[0].ack()
        again = [m for _ in range(3) for m in sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1)
                 .get("Messages", [])]  # three times the visibility, while the delete waits
        held_meanwhile = delivered[0].delivery_tag in channel.heartbeat
        deleting.set()
        assert channel._acks.close()
        assert channel.heartbeat.holding() == 0
    print(f"\nan ack whose delete waited 3 s under a 1 s receive visibility: received again {len(again)} "
          f"time(s), held meanwhile: {held_meanwhile}")
    assert again == [], "the message was handed out again while its delete waited"
    assert held_meanwhile
    assert depth(infra, "orders") == (0, 0)
