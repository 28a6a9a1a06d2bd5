"""The background batcher's rules (timing, bounds, merging, flush, close, fork, retries and waiting out
an outage), with a recording call in place of AWS (pure code)."""

from __future__ import annotations

import os
import threading
import time

import pytest
from botocore.exceptions import ClientError

from orders.aws.background import BackgroundBatcher
from orders.aws.batching import (
    MAX_ATTEMPTS,
    MAX_PATIENCE,
    RESULT_TIMEOUT,
    BatchEntryError,
    Batcher,
    delete_message_batch,
    patience,
    publish_batch,
    send_message_batch,
    wait_out_outages,
)
from orders.aws.errors import Backoff
from orders.runtime.transport import ack_linger


def test_a_target_with_no_linger_goes_at_once_and_the_others_wait_for_theirs():
    sent: list[tuple[str, int]] = []
    both_sent = threading.Event()

    def call(client, target, entries):
        sent.append((target, len(entries)))
        if len(sent) == 2:
            both_sent.set()
        return {"Successful": [{"Id": e["Id"]} for e in entries]}

    # The SQS transport's acks: a FIFO queue's message group waits for its delete.
    batcher = Batcher("acks", call, linger=30.0, linger_for=lambda url: ack_linger(url, 30.0))
    fifo = batcher.submit(None, "q.fifo", {"ReceiptHandle": "a"})
    standard = batcher.submit(None, "q", {"ReceiptHandle": "b"})
    fifo.result(timeout=5)
    time.sleep(0.3)
    assert sent == [("q.fifo", 1)] and not standard.done()  # still lingering (30 s)
    assert batcher.flush(timeout=5) and both_sent.is_set()
    assert sent == [("q.fifo", 1), ("q", 1)]
    batcher.close()


def recorder():
    """A send function that records (target, items) and a way to wait for n calls."""
    sent: list[tuple[str, list]] = []
    lock = threading.Condition()

    def send(target, items):
        with lock:
            sent.append((target, list(items)))
            lock.notify_all()

    def wait_for(n: int) -> list[tuple[str, list]]:
        with lock:
            assert lock.wait_for(lambda: len(sent) >= n, timeout=5), sent
            return list(sent)

    return send, wait_for


def test_a_full_queue_refuses_new_items_without_waiting():
    send, _ = recorder()
    batcher = BackgroundBatcher("bounded", send, linger=30.0, max_pending=3)
    assert batcher.submit_many("t", [1, 2, 3]) == 3
    assert not batcher.submit("t", 4)
    assert batcher.flush(timeout=5) and batcher.submit("t", 5)
    batcher.close()


def test_items_with_one_key_merge_while_they_wait():
    send, wait_for = recorder()
    batcher = BackgroundBatcher("merging", send, linger=30.0, merge_key=lambda item: item[0],
                                merge=lambda into, item: into[1].append(item[1][0]))
    for key, value in [("a", 1), ("b", 2), ("a", 3)]:
        batcher.submit("t", (key, [value]))
    assert batcher.pending() == 2
    assert batcher.flush(timeout=5)
    assert wait_for(1) == [("t", [("a", [1, 3]), ("b", [2])])]
    batcher.close()


def test_flush_does_not_wait_for_items_put_back_as_not_awaited():
    calls: list[list[int]] = []

    def send(target, items):
        calls.append(items)
        if len(calls) == 1:  # as metrics do when CloudWatch fails: kept for the next interval
            batcher.requeue(target, [(item, time.monotonic()) for item in items], awaited=False)

    batcher = BackgroundBatcher("kept", send, linger=30.0)
    batcher.submit("t", 1)
    started = time.monotonic()
    assert batcher.flush(timeout=5) and time.monotonic() - started < 2
    assert calls == [[1]] and batcher.pending() == 1
    batcher.close(timeout=0.1)


def test_close_sends_what_is_queued_and_refuses_more():
    send, wait_for = recorder()
    batcher = BackgroundBatcher("closing", send, linger=30.0, max_items=2)
    batcher.submit_many("t", [1, 2, 3])
    assert batcher.close(timeout=5)
    assert wait_for(2) == [("t", [1, 2]), ("t", [3])]
    with pytest.raises(RuntimeError):
        batcher.submit("t", 4)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_starts_empty_with_its_own_thread():
    sent: list[tuple[int, list[str]]] = []
    batcher = BackgroundBatcher("forked", lambda target, items: sent.append((os.getpid(), items)),
                                linger=30.0)
    batcher.submit("t", "parent's")  # lingers: the child must not send it
    pid = os.fork()
    if pid == 0:  # the child: only its own item, sent by its own thread
        ok = batcher.pending() == 0 and batcher.submit("t", "child's") and batcher.flush(timeout=5)
        os._exit(0 if ok and sent == [(os.getpid(), ["child's"])] else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert batcher.flush(timeout=5) and sent == [(os.getpid(), ["parent's"])]
    batcher.close()


class Outage:
    """A batch call that answers 503 (as botocore raises it) `failures` times, then sends."""

    def __init__(self, failures: int):
        self.failures = failures
        self.calls = 0

    def __call__(self, client, target, entries):
        self.calls += 1
        if self.calls <= self.failures:
            raise ClientError({"Error": {"Code": "ServiceUnavailable", "Message": "down"},
                               "ResponseMetadata": {"HTTPStatusCode": 503}}, "SendMessageBatch")
        return {"Successful": [{"Id": e["Id"], "MessageId": "m"} for e in entries]}


QUICK = Backoff(base=0.01, cap=0.05)


def test_a_thread_that_waits_out_outages_sends_after_more_failures_than_the_others_may_have():
    impatient = Batcher("sends", Outage(failures=MAX_ATTEMPTS + 5), linger=0.0, patient=True, backoff=QUICK)
    with pytest.raises(ClientError):
        impatient.submit(None, "q", {"MessageBody": "m"}).result(timeout=10)
    call = Outage(failures=MAX_ATTEMPTS + 5)
    patient = Batcher("sends", call, linger=0.0, patient=True, backoff=QUICK)
    result: list = []

    def task_thread():
        wait_out_outages(30)
        try:
            result.append(patient.submit(None, "q", {"MessageBody": "m"}).result(timeout=10))
        finally:
            wait_out_outages(0)

    thread = threading.Thread(target=task_thread)
    thread.start()
    thread.join(timeout=15)
    assert result == [{"Id": "0", "MessageId": "m"}] and call.calls == MAX_ATTEMPTS + 6
    assert patience() == 0.0  # the setting is the thread's own


def test_patience_is_bounded_and_only_sqs_sends_have_it_by_default():
    wait_out_outages(10 ** 6)
    try:
        assert patience() == MAX_PATIENCE < RESULT_TIMEOUT
    finally:
        wait_out_outages(0)
    assert Batcher("sends", send_message_batch).patient
    assert not Batcher("acks", delete_message_batch).patient
    assert not Batcher("publishes", publish_batch).patient


def test_a_patient_entry_still_gives_up_at_its_deadline_and_on_a_refusal():
    def refused(client, target, entries):
        return {"Failed": [{"Id": e["Id"], "Code": "InvalidParameterValue", "SenderFault": True}
                           for e in entries]}

    batcher = Batcher("sends", refused, linger=0.0, patient=True, backoff=QUICK)
    wait_out_outages(30)
    try:
        with pytest.raises(BatchEntryError):
            batcher.submit(None, "q", {"MessageBody": "m"}).result(timeout=5)
        assert batcher.stats["retried"] == 0
        down = Batcher("sends", Outage(failures=10 ** 6), linger=0.0, patient=True, backoff=QUICK,
                       retry_window=0.1)
        wait_out_outages(0.5)
        with pytest.raises(ClientError):
            down.submit(None, "q", {"MessageBody": "m"}).result(timeout=5)
    finally:
        wait_out_outages(0)


def test_equal_jitter_waits_between_half_and_all_of_each_capped_ceiling():
    backoff = Backoff(base=1.0, cap=60.0)
    assert [backoff.ceiling(n) for n in range(1, 9)] == [1, 2, 4, 8, 16, 32, 60, 60]
    for attempt in range(1, 12):
        for _ in range(50):
            assert backoff.ceiling(attempt) / 2 <= backoff.delay(attempt) <= backoff.ceiling(attempt)
    assert backoff.ceiling(10 ** 6) == 60  # no overflow however many retries
