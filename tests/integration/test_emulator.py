"""The embedded emulator's own fixes to moto behave as AWS does."""

import threading
import time
import urllib.request

from orders import aws


def test_a_fifo_long_poll_sees_a_group_freed_while_it_waits(emulator, settings):
    sqs = aws.client("sqs", settings)
    url = sqs.create_queue(QueueName=settings.prefix + "longpoll.fifo",
                           Attributes={"FifoQueue": "true"})["QueueUrl"]
    for i in range(3):
        sqs.send_message(QueueUrl=url, MessageBody=str(i), MessageGroupId="g", MessageDeduplicationId=str(i))
    (first,) = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1)["Messages"]
    free_the_group = lambda: sqs.delete_message(QueueUrl=url, ReceiptHandle=first["ReceiptHandle"])  # noqa: E731
    threading.Timer(1.0, free_the_group).start()
    started = time.monotonic()
    got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1, WaitTimeSeconds=10).get("Messages", [])
    # moto alone returned nothing after the full 10 s: it froze the groups in flight at the poll's start.
    assert [m["Body"] for m in got] == ["1"]
    assert time.monotonic() - started < 9


def test_the_emulator_counts_calls_at_the_server(emulator, settings):
    urllib.request.urlopen(urllib.request.Request(emulator.endpoint + "/_orders/calls", method="POST"))
    aws.client("sqs", settings).list_queues(QueueNamePrefix=settings.prefix)
    counts = urllib.request.urlopen(emulator.endpoint + "/_orders/calls").read().decode()
    assert '"sqs:ListQueues": 1' in counts
