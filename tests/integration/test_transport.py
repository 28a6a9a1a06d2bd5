"""The fast paths of orders.runtime.transport keep at-least-once delivery (correctness, never speed).

Calls are counted by the emulator itself (kombu's receive path bypasses boto3's
hooks); entry outcomes by the batchers' own counters.
"""

from __future__ import annotations

import signal
import threading
from collections import Counter
from typing import Any

import pytest
from kombu import Connection

from orders.aws import clients
from orders.aws.batching import BatchEntryError, Batcher, delete_message_batch, send_message_batch
from orders.celery import app
from orders.runtime import transport
from orders.runtime.queue_urls import queue_url
from tests.helpers import calls, wait_for, worker, worker_process

pytestmark = pytest.mark.integration

deliveries: Counter[int] = Counter()
lock = threading.Lock()


@app.task(name="ops.transport_probe")
def transport_probe(n: int) -> None:
    with lock:
        deliveries[n] += 1


@app.task(name="notifications.transport_always_fails")
def always_fails() -> None:
    raise ValueError("poison")


def depth(settings: Any, name: str) -> tuple[int, int]:
    """(visible, in flight) messages of a declared queue."""
    attrs = clients.client("sqs", settings).get_queue_attributes(
        QueueUrl=queue_url(settings, name),
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]), int(attrs["ApproximateNumberOfMessagesNotVisible"])


def use_transport_options(**options: Any) -> None:
    """Change this test's transport options (the settings fixture resets them for the next test).

    The app's pools follow its configuration (orders.runtime.amqp): nothing to reset.
    """
    app.conf.broker_transport_options = {**app.conf.broker_transport_options, **options}


def test_every_message_runs_once_and_is_deleted_once(infra, emulator):
    deliveries.clear()
    before = transport.stats()["acks"]
    calls(emulator.endpoint, reset=True)
    with transport.batched_sends():
        for n in range(300):
            transport_probe.delay(n)
    sent = calls(emulator.endpoint)
    with worker(["orders"], concurrency=8):
        wait_for(lambda: len(deliveries) == 300, timeout=180)
    acks = transport.stats()["acks"] - before
    counted = calls(emulator.endpoint)

    assert sorted(deliveries) == list(range(300))
    assert set(deliveries.values()) == {1}, "a message ran twice"
    assert acks["ok"] == 300 and acks["failed"] == 0
    assert depth(infra, "orders") == (0, 0), "a message was left undeleted"
    assert sent["sqs:SendMessage"] == 0 and sent["sqs:SendMessageBatch"] == 30
    assert counted["sqs:DeleteMessage"] == 0
    assert 30 <= counted["sqs:DeleteMessageBatch"] < 300
    # Ten messages a receive under load (prefetch 80), plus the idle long polls around the run.
    assert counted["sqs:ReceiveMessage"] < 30 + 20, counted


def test_a_failed_delete_entry_leaves_its_message_for_redelivery(infra):
    sqs = clients.client("sqs", infra)
    url = queue_url(infra, "orders")
    sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": i, "MessageBody": i} for i in ("a", "b")])
    with Connection(f"{transport.SCHEME}://", transport_options=app.conf.broker_transport_options) as conn:
        channel = conn.default_channel
        got = [channel.basic_get("orders") for _ in range(2)]
        assert all(got), "both messages should be received"
        stale = got[1].delivery_info["sqs_message"]["ReceiptHandle"]
        # A handle SQS no longer accepts, as a stale one is on AWS.
        got[1].delivery_info["sqs_message"]["ReceiptHandle"] = "bogus-" + stale
        for message in got:
            message.ack()
        assert channel.flush_acks()
        assert channel.acks.stats["ok"] == 1 and channel.acks.stats["failed"] == 1
        sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=stale, VisibilityTimeout=0)
    again = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1)["Messages"]
    assert [m["Body"] for m in again] == [got[1].body.decode() if isinstance(got[1].body, bytes)
                                          else got[1].body]


def test_acks_of_two_queues_delete_from_each_and_find_each_queue_s_client_once(infra, monkeypatch):
    """An ack's SQS client is found once per queue (`Channel._deleting_client`), and each delete still goes
    to its own queue: both queues are empty after their acks, none of the messages comes back."""
    names = ("orders", "shipping")
    with Connection(f"{transport.SCHEME}://", transport_options=app.conf.broker_transport_options) as conn:
        channel = conn.default_channel
        producer = conn.Producer(channel)
        for name in names:  # as kombu sends them: their delivery info names their queue
            for i in range(3):
                producer.publish(f"{name}-{i}", routing_key=name)
        got = [channel.basic_get(name) for name in names for _ in range(3)]
        assert all(got), "every message should be received"
        looked_up: list[str] = []
        canonical = channel.canonical_queue_name
        monkeypatch.setattr(channel, "canonical_queue_name",
                            lambda name: looked_up.append(name) or canonical(name))
        for message in got:
            message.ack()
        assert channel.flush_acks()
        assert channel.acks.stats["failed"] == 0
        assert sorted(looked_up) == sorted(names), looked_up
    for name in names:
        assert depth(infra, name) == (0, 0), name


def test_warm_shutdown_flushes_pending_acks(infra, emulator):
    deliveries.clear()
    # Fewer acks than a full batch and a linger of an hour: only the shutdown flush sends them.
    use_transport_options(ack_linger=3600)
    for n in range(9):
        transport_probe.delay(n)
    before = transport.stats()["acks"]["submitted"]
    calls(emulator.endpoint, reset=True)
    with worker(["orders"], concurrency=4):
        wait_for(lambda: transport.stats()["acks"]["submitted"] - before == 9)
        assert calls(emulator.endpoint)["sqs:DeleteMessageBatch"] == 0
        assert depth(infra, "orders") == (0, 9)
    assert calls(emulator.endpoint)["sqs:DeleteMessageBatch"] == 1
    assert depth(infra, "orders") == (0, 0)


def test_a_worker_process_flushes_its_acks_on_sigterm(infra, emulator, tmp_path):
    """Production's warm shutdown: `celery worker` gets SIGTERM with acks still buffered."""
    for n in range(9):
        transport_probe.delay(n)
    log = tmp_path / "worker.log"
    calls(emulator.endpoint, reset=True)
    with worker_process(["orders"], log, ["-I", __name__, "--pool", "threads", "-c", "4"],
                        env={"ORDERS_ACK_LINGER": "3600"}) as proc:
        wait_for(lambda: log.read_text().count("succeeded in") == 9, timeout=60)
        assert calls(emulator.endpoint)["sqs:DeleteMessageBatch"] == 0
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    assert calls(emulator.endpoint)["sqs:DeleteMessageBatch"] == 1
    assert depth(infra, "orders") == (0, 0)
    assert "sqs-acks: 9 entries in 1 calls" in log.read_text()


def test_a_failing_task_reaches_its_dead_letter_queue(infra):
    sqs = clients.client("sqs", infra)
    url, dlq = queue_url(infra, "notifications"), sqs.get_queue_url(
        QueueName=infra.prefix + "notifications-dlq")["QueueUrl"]
    # One-second visibility so SQS redelivers within the test (maxReceiveCount is 2).
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"VisibilityTimeout": "1"})
    always_fails.delay()
    with worker(["notifications"], concurrency=2):
        wait_for(lambda: int(sqs.get_queue_attributes(
            QueueUrl=dlq, AttributeNames=["ApproximateNumberOfMessages"]
        )["Attributes"]["ApproximateNumberOfMessages"]) == 1, timeout=30)
    assert depth(infra, "notifications") == (0, 0)


def test_a_batched_send_whose_entry_fails_raises_and_the_others_go(infra):
    sqs = clients.client("sqs", infra)
    url = queue_url(infra, "shipping")
    batcher = Batcher("test-sends", send_message_batch, linger=0.2)
    good = batcher.submit(sqs, url, {"MessageBody": "good"})
    bad = batcher.submit(sqs, url, {"MessageBody": "bad", "DelaySeconds": 901})  # over SQS's 900
    assert batcher.flush()
    assert good.result()["MessageId"]
    with pytest.raises(BatchEntryError) as failure:
        bad.result()
    assert failure.value.sender_fault and batcher.stats["calls"] == 1
    assert batcher.stats["failed"] == 1 and batcher.stats["retried"] == 0
    assert depth(infra, "shipping") == (1, 0)


def test_a_publish_whose_batch_fails_raises_in_the_publisher(infra):
    too_big = "x" * (1024 * 1024 + 1)  # over SQS's message size limit
    with pytest.raises(Exception, match="TooLong"):
        with transport.batched_sends():
            transport_probe.delay(1)
            transport_probe.apply_async((too_big,), queue="orders")
    with pytest.raises(Exception, match="TooLong"):
        transport_probe.delay(too_big)


def test_fifo_group_and_dedup_ids_survive_batching(infra, emulator):
    calls(emulator.endpoint, reset=True)
    with transport.batched_sends():
        for n, (group, dedup) in enumerate([("sku-1", "d1"), ("sku-2", "d2"), ("sku-1", "d3"),
                                            ("sku-1", "d1")]):  # the last one repeats d1
            transport_probe.apply_async((n,), queue="inventory.fifo",
                                        MessageGroupId=group, MessageDeduplicationId=dedup)
    assert calls(emulator.endpoint)["sqs:SendMessageBatch"] == 1
    got = clients.client("sqs", infra).receive_message(
        QueueUrl=queue_url(infra, "inventory.fifo"), MaxNumberOfMessages=10, WaitTimeSeconds=1,
        MessageSystemAttributeNames=["MessageGroupId", "MessageDeduplicationId"])["Messages"]
    seen = sorted((m["Attributes"]["MessageGroupId"], m["Attributes"]["MessageDeduplicationId"])
                  for m in got)
    assert seen == [("sku-1", "d1"), ("sku-1", "d3"), ("sku-2", "d2")]


def test_a_delete_batch_is_retried_when_sqs_is_at_fault(infra):
    """A whole-call failure that SQS would call transient is retried, not dropped."""
    sqs = clients.client("sqs", infra)
    url = queue_url(infra, "orders")
    sqs.send_message(QueueUrl=url, MessageBody="m")
    handle = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1)["Messages"][0]["ReceiptHandle"]
    attempts = []

    def flaky(client: Any, target: str, entries: list[dict[str, Any]]) -> dict[str, Any]:
        attempts.append(len(entries))
        if len(attempts) == 1:
            return {"Successful": [], "Failed": [{"Id": e["Id"], "SenderFault": False,
                                                  "Code": "InternalError", "Message": "x"}
                                                 for e in entries]}
        return delete_message_batch(client, target, entries)

    batcher = Batcher("test-acks", flaky, linger=0.01)
    future = batcher.submit(sqs, url, {"ReceiptHandle": handle})
    assert future.result(timeout=10) and attempts == [1, 1]
    assert batcher.stats["retried"] == 1 and batcher.stats["ok"] == 1
    assert depth(infra, "orders") == (0, 0)


def test_unbatched_it_is_still_our_transport_one_call_per_ack_and_send_and_poison_guarded(infra, emulator):
    """ORDERS_BATCH_ACKS=0 turns the batching off, not the transport: poison still goes to its DLQ."""
    deliveries.clear()
    use_transport_options(batch_acks=False, batch_sends=False)
    sqs = clients.client("sqs", infra)
    calls(emulator.endpoint, reset=True)
    with transport.batched_sends():
        for n in range(5):
            transport_probe.delay(n)
    sqs.send_message(QueueUrl=queue_url(infra, "orders"), MessageBody="this is not a task")
    dlq = sqs.get_queue_url(QueueName=infra.prefix + "orders-dlq")["QueueUrl"]
    with worker(["orders"], concurrency=2):
        wait_for(lambda: len(deliveries) == 5 and depth(infra, "orders") == (0, 0), timeout=30)
    counted = calls(emulator.endpoint)
    assert sorted(deliveries) == list(range(5))
    assert sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["ApproximateNumberOfMessages"])[
        "Attributes"]["ApproximateNumberOfMessages"] == "1"
    # Five tasks, the poison message, its DLQ copy; five acks and the poison's delete.
    assert (counted["sqs:SendMessage"], counted["sqs:DeleteMessage"]) == (7, 6), counted
    assert counted["sqs:SendMessageBatch"] == counted["sqs:DeleteMessageBatch"] == 0
