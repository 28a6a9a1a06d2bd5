"""A task that fails unexpectedly is retried on kombu's backoff policy, not once per visibility timeout;
one whose error is retryable retries within its time budget, then leaves its message to SQS."""

import dataclasses
import threading
import time
import uuid

import pytest

from orders.aws import clients
from orders.celery import app
from orders.domain.errors import RetryableError
from orders.runtime.queue_urls import queue_url
from orders.runtime.step_tasks import RETRYING_SINCE, StepTask
from orders.topology import QUEUES_BY_NAME
from tests.helpers import wait_for, worker

attempts: list[str] = []
lock = threading.Lock()


@app.task(name="payments.probe_fails_unexpectedly")
def fails_unexpectedly(token: str) -> None:
    with lock:
        attempts.append(token)
    raise KeyError("a bug: fails on every delivery")


#: (token, retries, the header's time of first failure, when it ran) of each run of the probe below.
runs: list[tuple[str, int, float | None, float]] = []


@app.task(base=StepTask, bind=True, name="payments.probe_always_throttled")
def always_throttled(self: StepTask, token: str) -> None:
    with lock:
        runs.append((token, self.request.retries, getattr(self.request, RETRYING_SINCE, None), time.time()))
    raise RetryableError("throttled, every time")


def test_retries_stop_once_their_time_budget_is_spent_and_sqs_takes_over(infra):
    budget, cap = 6, 2
    app.reconfigure(dataclasses.replace(infra, retry_budget_seconds=budget, retry_backoff_max=cap))
    spec, sqs, token = QUEUES_BY_NAME["payments"], clients.client("sqs", infra), uuid.uuid4().hex
    dlq = sqs.get_queue_url(QueueName=spec.dlq_sqs_name(infra))["QueueUrl"]
    always_throttled.delay(token)
    with worker(["payments"], concurrency=2):
        dead = wait_for(lambda: sqs.receive_message(QueueUrl=dlq, WaitTimeSeconds=1).get("Messages"),
                        timeout=90)
    mine = [run for run in runs if run[0] == token]
    first, retried = mine[0], mine[1:]
    assert first[1:3] == (0, None) and len(dead) == 1
    # Every retry carries the time of the first failure, and the budget is counted from it.
    (since,) = {run[2] for run in retried}
    assert first[3] <= since <= retried[0][3]
    # Each retry waited at least half its ceiling (1, 2, 2, ... s): a handful fit in the budget.
    last = max(run[1] for run in mine)
    assert 2 <= last <= budget * 2
    # The last retry's message gave up on each delivery, until its DLQ took it.
    assert [run[1] for run in mine].count(last) == spec.max_receive_count
    print(f"\n{last} retries within a {budget} s budget (pauses up to {cap} s): the last began "
          f"{max(run[3] for run in mine if run[1] == last) - since:.1f} s after the first failure")


@pytest.mark.parametrize("forged", [1e12, float("nan"), float("inf"), "yesterday"])
def test_a_forged_time_of_first_failure_cannot_make_a_step_retry_forever(infra, forged):
    """Anyone who may send to the queue writes the header: a future time, NaN or infinity is not
    believed (the budget then counts from the first run seen), so the message still reaches its DLQ."""
    budget, cap = 3, 1
    app.reconfigure(dataclasses.replace(infra, retry_budget_seconds=budget, retry_backoff_max=cap))
    spec, sqs, token = QUEUES_BY_NAME["payments"], clients.client("sqs", infra), uuid.uuid4().hex
    dlq = sqs.get_queue_url(QueueName=spec.dlq_sqs_name(infra))["QueueUrl"]
    always_throttled.apply_async((token,), headers={RETRYING_SINCE: forged})
    with worker(["payments"], concurrency=2):
        dead = wait_for(lambda: sqs.receive_message(QueueUrl=dlq, WaitTimeSeconds=1).get("Messages"),
                        timeout=90)
    mine = [run for run in runs if run[0] == token]
    assert len(dead) == 1 and 1 <= max(run[1] for run in mine) <= budget * 2


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
