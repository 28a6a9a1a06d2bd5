"""The Lambda consumer (orders.aws_lambda.handler) on real messages received from the emulator's
queues, handed over in the exact shape an SQS event source mapping delivers them.

The test plays the event source mapping: it receives with the queue's own visibility timeout and
the system attributes a mapping asks for, builds the event, calls the handler, and (where it says
so) deletes what the handler did not report, as the mapping does with ReportBatchItemFailures.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from typing import Any

import pytest

import tasks.ops  # noqa: F401  (the failure records and task metrics, as every worker connects them)
from orders import place_order
from orders.aws import clients
from orders.aws.gateway import Gateway
from orders.aws.stock import set_stock
from orders.aws.store import OrderStore
from orders.aws_lambda import handler
from orders.celery import app
from orders.domain.errors import RetryableError
from orders.infra.queues import queue_arn
from orders.ops import archive, dead_letters
from orders.runtime.queue_urls import queue_url
from orders.runtime.step_tasks import StepTask
from orders.settings import Settings
from orders.topology import QUEUES_BY_NAME
from tests.helpers import wait_for
from tests.integration.pipeline_support import make_order, statuses

#: What an event source mapping's records carry in `attributes` (FIFO queues add the last three).
SYSTEM_ATTRIBUTES = ["ApproximateReceiveCount", "SentTimestamp", "SenderId",
                     "ApproximateFirstReceiveTimestamp", "SequenceNumber", "MessageGroupId",
                     "MessageDeduplicationId"]
PIPELINE = ["orders", "orders-priority.fifo", "inventory.fifo", "payments", "shipping", "notifications"]

attempts: list[str] = []
lock = threading.Lock()


@app.task(name="notifications.lambda_probe_fails")
def always_fails(token: str) -> None:
    with lock:
        attempts.append(token)
    raise RuntimeError(f"poison message {token}: fails on every delivery")


@app.task(base=StepTask, bind=True, name="notifications.lambda_probe_flaky")
def flaky(self: StepTask, token: str) -> str:
    with lock:
        attempts.append(token)
    if attempts.count(token) == 1:
        raise RetryableError("the first attempt fails")
    return "ok"


@app.task(name="shipping.lambda_probe_record")
def record_shipping(token: str) -> None:
    with lock:
        attempts.append(token)


@app.task(name="inventory.lambda_probe_record")
def record_inventory(token: str) -> None:
    with lock:
        attempts.append(token)


class LambdaContext:
    """The part of Lambda's context object the handler reads: the time the invocation has left."""

    function_name = "test-worker"

    def __init__(self, seconds: float = 30.0):
        self.ends = time.monotonic() + seconds

    def get_remaining_time_in_millis(self) -> int:
        return int((self.ends - time.monotonic()) * 1000)


def receive(settings: Settings, queue: str, wait: float = 10.0, count: int = 1) -> list[dict[str, Any]]:
    """At least `count` messages of a queue, received as a mapping receives them (the queue's visibility)."""
    sqs, url, got = clients.client("sqs", settings), queue_url(settings, queue), []

    def more() -> bool:
        got.extend(sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0,
                                       MessageSystemAttributeNames=SYSTEM_ATTRIBUTES,
                                       MessageAttributeNames=["All"]).get("Messages", []))
        return len(got) >= count

    wait_for(more, timeout=wait)
    return got


def receive_none(settings: Settings, queue: str) -> list[dict[str, Any]]:
    return list(clients.client("sqs", settings).receive_message(
        QueueUrl=queue_url(settings, queue), MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", []))


def event(settings: Settings, queue: str, messages: list[dict[str, Any]]) -> dict[str, Any]:
    """The event an SQS event source mapping passes to its function for these messages."""
    arn = queue_arn(queue_url(settings, queue), settings)
    return {"Records": [esm_record(settings, arn, m) for m in messages]}


def esm_record(settings: Settings, arn: str, message: dict[str, Any]) -> dict[str, Any]:
    record = {
        "messageId": message["MessageId"], "receiptHandle": message["ReceiptHandle"], "body": message["Body"],
        "attributes": message.get("Attributes", {}),
        "messageAttributes": {name: {"stringValue": value.get("StringValue"), "stringListValues": [],
                                     "binaryListValues": [], "dataType": value["DataType"]}
                              for name, value in message.get("MessageAttributes", {}).items()},
        "md5OfBody": message["MD5OfBody"], "eventSource": "aws:sqs", "eventSourceARN": arn,
        "awsRegion": settings.region,
    }
    if message.get("MD5OfMessageAttributes"):
        record["md5OfMessageAttributes"] = message["MD5OfMessageAttributes"]
    return record


def failures(result: dict[str, Any]) -> list[str]:
    return [item["itemIdentifier"] for item in result["batchItemFailures"]]


def headers_of(message: dict[str, Any]) -> dict[str, Any]:
    """A message's kombu envelope headers (base64 as kombu sends it, raw JSON from SNS); {} if none."""
    body = message["Body"]
    try:
        envelope = json.loads(body if body.lstrip().startswith("{") else base64.b64decode(body))
    except ValueError:
        return {}
    headers = envelope.get("headers") if isinstance(envelope, dict) else None
    return headers if isinstance(headers, dict) else {}


def task_of(message: dict[str, Any]) -> str:
    return str(headers_of(message).get("task"))


def deliver(settings: Settings, queue: str) -> int:
    """One poll of an event source mapping: receive, invoke, delete what was not reported. How many ran."""
    messages = clients.client("sqs", settings).receive_message(
        QueueUrl=queue_url(settings, queue), MaxNumberOfMessages=10, WaitTimeSeconds=0,
        MessageSystemAttributeNames=SYSTEM_ATTRIBUTES, MessageAttributeNames=["All"]).get("Messages", [])
    if not messages:
        return 0
    failed = set(failures(handler(event(settings, queue, messages), LambdaContext())))
    done = [m for m in messages if m["MessageId"] not in failed]
    for m in done:
        clients.client("sqs", settings).delete_message(QueueUrl=queue_url(settings, queue),
                                                       ReceiptHandle=m["ReceiptHandle"])
    return len(done)


def not_visible(settings: Settings, queue: str) -> int:
    attrs = clients.client("sqs", settings).get_queue_attributes(
        QueueUrl=queue_url(settings, queue), AttributeNames=["ApproximateNumberOfMessagesNotVisible"])
    return int(attrs["Attributes"]["ApproximateNumberOfMessagesNotVisible"])


def test_a_step_runs_and_its_next_step_appears_on_the_next_queue(infra):
    set_stock(infra, "SKU-1", 5)
    order = make_order()
    place_order.delay(order)
    (placed,) = receive(infra, "orders")

    result = handler(event(infra, "orders", [placed]), LambdaContext())

    assert result == {"batchItemFailures": []}
    assert OrderStore(infra).get(order["orderId"])["status"] == "validated"
    (reserve,) = receive(infra, "inventory.fifo")
    assert task_of(reserve) == "inventory.reserve"
    assert reserve["Attributes"]["MessageGroupId"] == "SKU-1"
    # The mapping deletes what succeeded, not the handler: the message is still in flight.
    assert not_visible(infra, "orders") == 1


def test_an_order_goes_through_every_step_on_lambda_alone(infra):
    set_stock(infra, "SKU-1", 5)
    order = make_order(quantity=2)
    place_order.delay(order)
    store = OrderStore(infra)

    def progressed() -> bool:
        for queue in PIPELINE:
            deliver(infra, queue)
        record = store.get(order["orderId"]) or {}
        return record.get("status") == "completed" and {"OrderPlaced", "OrderShipped"} <= set(
            record.get("notifications", {}))

    wait_for(progressed, timeout=60, interval=0.2)
    record = store.get(order["orderId"])
    assert statuses(record) == ["placed", "validated", "reserved", "paid", "shipped", "completed"]


def test_a_failing_message_is_reported_left_redelivered_and_reaches_its_dlq(infra):
    spec = QUEUES_BY_NAME["notifications"]
    token = uuid.uuid4().hex
    always_fails.delay(token)
    seen = []
    for attempt in range(1, spec.max_receive_count + 1):
        (message,) = receive(infra, "notifications")  # nothing is ever deleted
        seen.append((message["MessageId"], message["Attributes"]["ApproximateReceiveCount"]))
        result = handler(event(infra, "notifications", [message]), LambdaContext())
        assert failures(result) == [message["MessageId"]]
        assert attempts.count(token) == attempt

    assert [count for _, count in seen] == ["1", "2"] and len({mid for mid, _ in seen}) == 1
    time.sleep(0.5)
    assert receive_none(infra, "notifications") == []  # received maxReceiveCount times: moved
    letters = wait_for(lambda: dead_letters.scan(infra, spec, hold=0), timeout=10)
    assert [letter.message_id for letter in letters] == [seen[0][0]]
    # The worker's failure hook ran: the DLQ tools show the task's error.
    recorded = archive.failures(infra, letters)[letters[0].key]
    assert recorded["failures"] == 2 and token in recorded["error"]


def test_a_retry_is_sent_as_a_new_message_and_runs_at_its_eta(infra):
    token = uuid.uuid4().hex
    flaky.delay(token)
    (first,) = receive(infra, "notifications")

    assert handler(event(infra, "notifications", [first]), LambdaContext()) == {"batchItemFailures": []}
    (retry,) = receive(infra, "notifications")
    assert retry["MessageId"] != first["MessageId"] and task_of(retry) == "notifications.lambda_probe_flaky"
    assert handler(event(infra, "notifications", [retry]), LambdaContext()) == {"batchItemFailures": []}
    assert attempts.count(token) == 2


def test_a_message_due_after_the_invocation_comes_back_at_its_eta(infra):
    token = uuid.uuid4().hex
    record_shipping.apply_async((token,), countdown=4)
    (later,) = receive(infra, "shipping")

    # Due in 4 s, with 3 s left: handed back, hidden until its ETA rather than the queue's 300 s.
    result = handler(event(infra, "shipping", [later]), LambdaContext(seconds=3))
    assert failures(result) == [later["MessageId"]] and attempts.count(token) == 0
    assert receive_none(infra, "shipping") == []
    (again,) = receive(infra, "shipping", wait=10)
    assert again["MessageId"] == later["MessageId"]
    assert handler(event(infra, "shipping", [again]), LambdaContext()) == {"batchItemFailures": []}
    assert attempts.count(token) == 1


def test_a_duplicate_message_charges_once(infra):
    set_stock(infra, "SKU-1", 5)
    order = make_order()
    place_order.delay(order)
    for queue in ("orders", "inventory.fifo"):
        wait_for(lambda queue=queue: deliver(infra, queue), timeout=10)
    (charge,) = receive(infra, "payments")
    assert handler(event(infra, "payments", [charge]), LambdaContext()) == {"batchItemFailures": []}
    paid = OrderStore(infra).get(order["orderId"])

    # The same message again, as SQS redelivers it when a delete was lost (its receive count is 2).
    clients.client("sqs", infra).change_message_visibility(
        QueueUrl=queue_url(infra, "payments"), ReceiptHandle=charge["ReceiptHandle"], VisibilityTimeout=0)
    (again,) = receive(infra, "payments")
    assert again["MessageId"] == charge["MessageId"] and again["Attributes"]["ApproximateReceiveCount"] == "2"
    assert handler(event(infra, "payments", [again]), LambdaContext()) == {"batchItemFailures": []}

    assert OrderStore(infra).get(order["orderId"]) == paid  # nothing changed the second time
    assert Gateway(infra).lookup(f"{order['orderId']}:charge")["paymentId"] == paid["payment"]["paymentId"]
    # The redelivered charge sends its hand-off again (the first run might have died before sending
    # it): the shipment is made once all the same.
    wait_for(lambda: deliver(infra, "shipping") == 0
             and OrderStore(infra).get(order["orderId"])["status"] == "completed", timeout=20)
    final = OrderStore(infra).get(order["orderId"])
    assert statuses(final) == ["placed", "validated", "reserved", "paid", "shipped", "completed"]
    assert final["payment"] == paid["payment"]


def envelope(headers: Any, body: bytes, content_type: str = "application/json") -> str:
    """A kombu envelope as kombu's SQS transport sends it (base64 of the JSON)."""
    payload = {"body": base64.b64encode(body).decode(), "content-encoding": "utf-8",
               "content-type": content_type, "headers": headers,
               "properties": {"body_encoding": "base64", "delivery_tag": "x",
                              "delivery_info": {"exchange": "", "routing_key": "shipping"}}}
    return base64.b64encode(json.dumps(payload).encode()).decode()


@pytest.mark.parametrize("queue", ["shipping", "inventory.fifo"])
def test_poison_messages_go_to_the_dlq_with_their_reason_and_never_hold_up_the_batch(infra, queue):
    """Bodies that are not messages, envelopes kombu cannot read, an undecodable task body, an unknown
    task: each is copied to the queue's DLQ at once, with its reason and its own attributes, and
    reported done (the mapping then deletes the original). The good message runs, on a FIFO queue too:
    a poison message is no failure that holds its group back."""
    sqs, url, token = clients.client("sqs", infra), queue_url(infra, queue), uuid.uuid4().hex
    fifo = QUEUES_BY_NAME[queue].fifo
    probe = record_inventory if fifo else record_shipping
    task = {"task": probe.name, "id": uuid.uuid4().hex, "lang": "py"}
    poison = ["this is not JSON", base64.b64encode(b"\x00\xff not text").decode(),
              envelope(["not", "a", "mapping"], b"[[], {}, {}]"), envelope(task, b"{not json"),
              envelope(task, b"[[], {}, {}]", content_type="application/x-python-serialize")]
    mark = {"origin": {"DataType": "String", "StringValue": token}}
    for i, body in enumerate(poison):
        options = {"MessageGroupId": "g", "MessageDeduplicationId": f"p{i}"} if fifo else {}
        sqs.send_message(QueueUrl=url, MessageBody=body, MessageAttributes=mark, **options)
    group = {"MessageGroupId": "g", "MessageDeduplicationId": "unknown"} if fifo else {}
    app.send_task(f"{queue.split('.')[0]}.no_such_task", args=(1,), queue=queue, **group)
    good_id = probe.apply_async((token,), queue=queue, **({"MessageGroupId": "g"} if fifo else {})).id
    messages = receive(infra, queue, count=len(poison) + 2)

    result = handler(event(infra, queue, messages), LambdaContext())

    assert failures(result) == []
    assert attempts.count(token) == 1
    dlq = sqs.get_queue_url(QueueName=infra.prefix + QUEUES_BY_NAME[queue].dlq_name)["QueueUrl"]
    moved: list[dict[str, Any]] = []
    wait_for(lambda: bool(moved.extend(sqs.receive_message(
        QueueUrl=dlq, MaxNumberOfMessages=10, MessageAttributeNames=["All"]).get("Messages", []))
        or len(moved) > len(poison)), timeout=10)
    refused = [m["Body"] for m in messages if headers_of(m).get("id") != good_id]
    assert sorted(m["Body"] for m in moved) == sorted(refused)
    for message in moved:
        attributes = message["MessageAttributes"]
        assert attributes["orders.poison.reason"]["StringValue"]
        assert attributes["orders.poison.queue"]["StringValue"] == queue
        if message["Body"] in poison:
            assert attributes["origin"]["StringValue"] == token
