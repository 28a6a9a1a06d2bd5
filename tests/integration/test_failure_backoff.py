"""A task that fails unexpectedly is retried on kombu's backoff policy, not once per visibility timeout."""

import threading
import uuid

from orders.aws import clients
from orders.celery import app
from orders.runtime.queue_urls import queue_url
from orders.topology import QUEUES_BY_NAME
from tests.helpers import wait_for, worker

attempts: list[str] = []
lock = threading.Lock()


@app.task(name="payments.probe_fails_unexpectedly")
def fails_unexpectedly(token: str) -> None:
    with lock:
        attempts.append(token)
    raise KeyError("a bug: fails on every delivery")


def test_a_poison_payment_reaches_its_dlq_without_waiting_out_the_visibility_timeout(infra):
    spec = QUEUES_BY_NAME["payments"]
    sqs = clients.client("sqs", infra)
    live = sqs.get_queue_attributes(QueueUrl=queue_url(infra, "payments"),
                                    AttributeNames=["VisibilityTimeout"])["Attributes"]
    # The real 600 s: five failed receives would take 50 minutes without the policy.
    assert live["VisibilityTimeout"] == "600"
    token = uuid.uuid4().hex
    fails_unexpectedly.delay(token)
    dlq = sqs.get_queue_url(QueueName=spec.dlq_sqs_name(infra))["QueueUrl"]
    with worker(["payments"], pool="solo", concurrency=1):
        dead = wait_for(lambda: sqs.receive_message(QueueUrl=dlq, WaitTimeSeconds=1).get("Messages"),
                        timeout=90)
    assert attempts.count(token) == spec.max_receive_count == 5
    assert len(dead) == 1


def test_the_policy_backs_off_three_fold_up_to_a_minute():
    assert QUEUES_BY_NAME["payments"].failure_backoff(5) == {1: 5, 2: 15, 3: 45, 4: 60, 5: 60}
    assert QUEUES_BY_NAME["notifications"].failure_backoff(0) == {1: 0, 2: 0}
