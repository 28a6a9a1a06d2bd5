"""What the topology promises at run time: DLQs after maxReceiveCount, FIFO order and dedup,
SNS filter policies; through real workers where a worker is part of the promise."""

import base64
import json
import threading
import uuid

from orders.aws import clients
from orders.aws.sns import topic_arns
from orders.celery import app
from orders.runtime.queue_urls import queue_url
from orders.topology import QUEUES
from tests.helpers import wait_for, worker

recorded: list[str] = []
attempts: list[str] = []
lock = threading.Lock()


@app.task(name="inventory.probe_record_fifo")
def record(value: str) -> None:
    with lock:
        recorded.append(value)


@app.task(name="notifications.probe_always_fails")
def always_fails(token: str) -> None:
    with lock:
        attempts.append(token)
    raise RuntimeError("poison message: fails on every delivery")


def dlq_url(settings, spec):
    return clients.client("sqs", settings).get_queue_url(QueueName=spec.dlq_sqs_name(settings))["QueueUrl"]


def receive(settings, url, visibility=None, wait=0):
    extra = {} if visibility is None else {"VisibilityTimeout": visibility}
    return clients.client("sqs", settings).receive_message(
        QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=wait,
        MessageSystemAttributeNames=["ApproximateReceiveCount"], **extra).get("Messages", [])


def test_a_message_received_more_than_max_receive_count_times_lands_in_its_dlq(infra):
    sqs = clients.client("sqs", infra)
    for spec in QUEUES:
        url = queue_url(infra, spec.name)
        fifo = {"MessageGroupId": "g", "MessageDeduplicationId": "d"} if spec.fifo else {}
        sqs.send_message(QueueUrl=url, MessageBody=f"poison for {spec.name}", **fifo)
        counts = []
        for _ in range(spec.max_receive_count):
            # VisibilityTimeout=0: the message is back at once, as after a crashed worker.
            (message,) = receive(infra, url, visibility=0)
            counts.append(int(message["Attributes"]["ApproximateReceiveCount"]))
        assert counts == list(range(1, spec.max_receive_count + 1)), spec.name
        assert receive(infra, url, visibility=0) == [], spec.name  # one receive too many: moved
        (dead,) = receive(infra, dlq_url(infra, spec))
        assert dead["Body"] == f"poison for {spec.name}"


def test_a_task_that_always_fails_reaches_the_dlq_through_a_real_worker(infra):
    spec = next(q for q in QUEUES if q.name == "notifications")
    sqs, url = clients.client("sqs", infra), queue_url(infra, "notifications")
    # A 60 s visibility timeout would make this test wait minutes: the test's own namespace
    # gets 2 s, so each failed delivery comes back quickly, as it would after 60 s in production.
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"VisibilityTimeout": "2"})
    token = uuid.uuid4().hex
    always_fails.delay(token)
    with worker(["notifications"], pool="solo", concurrency=1):
        wait_for(lambda: attempts.count(token) >= spec.max_receive_count, timeout=40)
        dead = wait_for(lambda: receive(infra, dlq_url(infra, spec), wait=1), timeout=20)
    assert attempts.count(token) == spec.max_receive_count == 2
    headers = json.loads(base64.b64decode(dead[0]["Body"]))["headers"]  # kombu's SQS encoding
    assert headers["task"] == "notifications.probe_always_fails" and token in headers["argsrepr"]


def test_a_fifo_group_keeps_its_order_and_drops_a_duplicate(infra):
    recorded.clear()
    for group in ("sku-1", "sku-2"):
        for n in range(1, 6):
            record.apply_async((f"{group}:{n}",), MessageGroupId=group,
                               MessageDeduplicationId=f"{infra.env}-{group}-{n}")
    # The same update again (a producer retrying after a timeout): same dedup id, dropped.
    record.apply_async(("sku-1:3 again",), MessageGroupId="sku-1",
                       MessageDeduplicationId=f"{infra.env}-sku-1-3")
    with worker(["inventory.fifo"], pool="solo", concurrency=1):
        wait_for(lambda: len(recorded) >= 10, timeout=30)
        wait_for(lambda: receive(infra, queue_url(infra, "inventory.fifo")) == [], timeout=10)
    assert [v for v in recorded if v.startswith("sku-1")] == [f"sku-1:{n}" for n in range(1, 6)]
    assert [v for v in recorded if v.startswith("sku-2")] == [f"sku-2:{n}" for n in range(1, 6)]
    assert len(recorded) == 10


def test_the_priority_queue_drops_a_resent_identical_message(infra):
    sqs, url = clients.client("sqs", infra), queue_url(infra, "orders-priority.fifo")
    for _ in range(2):  # content-based deduplication: no dedup id needed
        sqs.send_message(QueueUrl=url, MessageBody='{"order_id": "o-1"}', MessageGroupId="customer-7")
    assert [m["Body"] for m in receive(infra, url)] == ['{"order_id": "o-1"}']


def test_the_notifications_queue_gets_only_the_events_its_filter_policy_names(infra):
    sns = clients.client("sns", infra)
    topic = topic_arns(infra)["order-status"]

    def publish(body, event_type=None):
        attrs = {} if event_type is None else {
            "event_type": {"DataType": "String", "StringValue": event_type}}
        sns.publish(TopicArn=topic, Message=body, MessageAttributes=attrs)

    publish('{"n": 1}', "OrderPlaced")
    publish('{"n": 2}', "StockReserved")   # internal: customers are not told
    publish('{"n": 3}')                    # no attributes: matches no filter
    publish('{"n": 4}', "OrderShipped")
    url = queue_url(infra, "notifications")
    bodies = []
    for _ in range(3):
        bodies += [m["Body"] for m in receive(infra, url, wait=1)]
    # Raw delivery: the body is the published message itself, not an SNS envelope.
    assert sorted(bodies) == ['{"n": 1}', '{"n": 4}']
