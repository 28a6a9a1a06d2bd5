"""A worker's receives ride through SQS throttling, a whole-SQS outage and a queue that is gone for a
while: consumption never ends, and failed receives are backed off rather than retried at once.

Real `celery worker` processes on the real emulator, whose fault injection answers SQS
calls with throttling (400 RequestThrottled) or, in an outage, 503. kombu's
asynchronous receive raised on the throttling answer: the worker process died
("Unrecoverable error") or, raised in a timer, never received again. Faults are
global to the session's emulator: each test clears them when it ends, whatever happened.

Figures (failed receives, their rate, log lines) are printed; the assertions are about behaviour.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import pytest

from orders.aws import clients
from orders.emulator.faults import clear_faults, fault_report, set_faults, start_outage
from orders.infra import provisioning
from orders.runtime import transport
from orders.runtime.queue_urls import queue_url
from tests.helpers import calls, wait_for
from tests.integration.test_transport import depth
from tests.integration.test_visibility import events, hold, running, worker_process

pytestmark = pytest.mark.integration

THROTTLE_RATE, THROTTLED_TASK_SECONDS = 0.4, 0.5
OUTAGE_SECONDS = 8.0
#: Failed receives per second an unbacked-off loop far exceeds (it retried about 100 a second).
BACKED_OFF_RATE = 3.0
#: What a worker logs when a receive fails (orders.runtime.async_sqs), and when it dies.
FAILED_RECEIVE_LOG = "ReceiveMessage of orders failed"
DEATHS = ("Unrecoverable error", "Error in timer")
#: What a worker logs when an ack's DeleteMessage failed for good (orders.aws.batching): SQS redelivers it.
LOST_ACK_LOG = "sqs-acks batch entry for"


@pytest.fixture
def faults(infra, emulator):
    """The emulator's endpoint, its faults cleared before and after the test."""
    clear_faults(emulator.endpoint)
    try:
        yield emulator.endpoint
    finally:
        clear_faults(emulator.endpoint)


def send(log: Any, numbers: range, seconds: float = 0.05) -> None:
    """One `hold` task per number, working `seconds`, sent in batches."""
    with transport.batched_sends():
        for n in numbers:
            hold.delay(n, str(log), seconds)


def failed_receives(endpoint: str) -> int:
    """ReceiveMessage calls the emulator answered with a fault so far."""
    injected = fault_report(endpoint)["injected"]
    return sum(count for key, count in injected.items() if key.startswith("sqs:ReceiveMessage:"))


def check_alive(worker: Any) -> None:
    assert worker.running, "the worker process exited:\n" + worker.log_tail(40)
    died = [line for line in worker.log_text().splitlines() if any(d in line for d in DEATHS)]
    assert died == [], "\n".join(died)


def ended(log) -> set[int]:
    """The tasks that have ended at least once."""
    return {n for n, _ in events(log, "end")}


def test_a_worker_keeps_receiving_through_throttling_and_after_it(faults, tmp_path):
    log, during, after = tmp_path / "tasks.log", 20, 5
    # Sent before the faults (the test's own sends are not under test), and worked through under them:
    # one slot, two prefetched, half a second each, so the worker receives all along.
    send(log, range(during), seconds=THROTTLED_TASK_SECONDS)
    worker = worker_process("throttled", tmp_path, "threads", 1, ORDERS_PREFETCH_MULTIPLIER="2")
    with running(worker):
        set_faults(faults, error_rate=THROTTLE_RATE, services=("sqs",), kinds=("throttle",))
        wait_for(lambda: len(ended(log)) >= during, timeout=60)  # distinct tasks: a rerun is not one more
        throttled = failed_receives(faults)
        clear_faults(faults)
        send(log, range(during, during + after))  # consumption did not end: these run too
        wait_for(lambda: len(ended(log)) >= during + after, timeout=30)
        check_alive(worker)
        logged = worker.log_text().count(FAILED_RECEIVE_LOG)
        lost_acks = worker.log_text().count(LOST_ACK_LOG)
    runs = Counter(n for n, _ in events(log, "start"))
    twice = sorted(n for n, count in runs.items() if count > 1)
    print(f"\n{THROTTLE_RATE:.0%} of SQS calls throttled while {during} tasks ran: {throttled} "
          f"ReceiveMessage throttled, {logged} log line(s) about them; {during + after} tasks, "
          f"{sum(runs.values())} runs, {lost_acks} ack(s) lost to the throttling")
    assert throttled > 0, "the throttling met no receive"
    assert sorted(runs) == list(range(during + after)), "a task never ran"
    # At least once: only a message whose delete failed for good (its ack lost) may run again.
    assert len(twice) <= lost_acks, f"tasks {twice} ran twice"


def test_failed_receives_are_backed_off_through_an_outage_and_the_worker_consumes_after_it(faults, infra,
                                                                                          tmp_path):
    log = tmp_path / "tasks.log"
    worker = worker_process("outage", tmp_path, "threads", 2)
    with running(worker):
        send(log, range(2))
        wait_for(lambda: len(events(log, "end")) == 2 and depth(infra, "orders") == (0, 0), timeout=30)
        start_outage(faults, "sqs", OUTAGE_SECONDS)
        wait_for(lambda: not any(o["active"] for o in fault_report(faults)["outages"]),
                 timeout=OUTAGE_SECONDS + 30, interval=0.5)
        failed = failed_receives(faults)
        send(log, range(2, 4))
        wait_for(lambda: len(events(log, "end")) == 4, timeout=30)
        check_alive(worker)
        logged = worker.log_text().count(FAILED_RECEIVE_LOG)
    print(f"\nwhole-SQS outage of {OUTAGE_SECONDS:.0f} s, one queue: {failed} ReceiveMessage failed "
          f"({failed / OUTAGE_SECONDS:.1f} a second), {logged} log line(s) about them")
    assert failed > 0, "the outage met no receive"
    assert failed < BACKED_OFF_RATE * OUTAGE_SECONDS, f"{failed} failed receives in {OUTAGE_SECONDS:.0f} s"
    assert logged < failed, "a log line per failed receive"
    assert sorted(n for n, _ in events(log, "end")) == [0, 1, 2, 3]


def test_a_queue_that_is_gone_is_an_error_polled_again_until_it_is_back(faults, infra, tmp_path):
    """A permanent error (the queue does not exist) is logged as an error, and the queue is polled again
    (at the longest backoff): once it is re-created, the worker consumes it without a restart."""
    log, url = tmp_path / "tasks.log", queue_url(infra, "orders")
    worker = worker_process("gone", tmp_path, "threads", 2)
    with running(worker):
        send(log, range(1))
        wait_for(lambda: len(events(log, "end")) == 1, timeout=30)
        clients.client("sqs", infra).delete_queue(QueueUrl=url)
        calls(faults, reset=True)
        gone_at = time.monotonic()
        # The first failed receive, then one more: the loop goes on after a permanent error.
        wait_for(lambda: calls(faults)["sqs:ReceiveMessage"] >= 2, timeout=30)
        gone_for, receives = time.monotonic() - gone_at, calls(faults)["sqs:ReceiveMessage"]
        provisioning.up(infra)
        send(log, range(1, 2))
        wait_for(lambda: len(events(log, "end")) == 2, timeout=30)
        check_alive(worker)
        errors = [line for line in worker.log_text().splitlines()
                  if FAILED_RECEIVE_LOG in line and "ERROR" in line]
    print(f"\nqueue gone for {gone_for:.1f} s: {receives} ReceiveMessage meanwhile; logged: {errors[:1]}")
    assert errors and any(code in errors[0] for code in ("QueueDoesNotExist", "NonExistentQueue")), errors
