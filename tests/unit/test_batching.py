"""The batcher's timing rules, with a recording call in place of AWS (pure code)."""

from __future__ import annotations

import threading
import time

from orders.aws.batching import Batcher
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
