"""Poison messages against real workers: none crashes, stalls or spins a worker; each is in its DLQ
within seconds, whole, with its reason; then archived, alerted on and counted like any dead letter."""

from __future__ import annotations

import base64
import json
import random
import threading
from typing import Any

import pytest

import tasks.ops  # noqa: F401  (worker hooks: failure records, metrics)
from orders.aws import clients, metrics
from orders.celery import app
from orders.domain.errors import FailureCategory
from orders.ops import archive, dead_letters, watch
from orders.runtime import quarantine
from orders.runtime.queue_urls import queue_url
from orders.settings import Settings
from orders.topology import QUEUES_BY_NAME
from tests.helpers import wait_for, worker, worker_process
from tests.integration.test_dlq import alerts_queue, read_alerts
from tests.integration.test_metrics import stat
from tests.integration.test_transport import use_transport_options

pytestmark = pytest.mark.integration

ran: list[int] = []
lock = threading.Lock()


@app.task(name="ops.poison_probe")
def probe(n: int) -> None:
    with lock:
        ran.append(n)


@app.task(name="payments.poison_probe")
def payments_probe(n: int) -> int:
    return n


def envelope(headers: Any = None, body: Any = None, properties: Any = None, raw_body: str | None = None,
             **extra: Any) -> str:
    """A kombu envelope as Celery sends it, with any part replaced."""
    if raw_body is None:
        raw_body = base64.b64encode(json.dumps([[1], {}, {}] if body is None else body).encode()).decode()
    message = {"body": raw_body, "content-encoding": "utf-8", "content-type": "application/json",
               "headers": {"task": "ops.poison_probe", "id": "task-1", "lang": "py"} if headers is None
               else headers,
               "properties": {"body_encoding": "base64", "delivery_tag": "t",
                              "delivery_info": {"exchange": "", "routing_key": "x"}}
               if properties is None else properties, **extra}
    return json.dumps(message)


def random_text(seed: int, size: int = 2000) -> str:
    """Arbitrary characters, as many as SQS accepts in a body (it refuses most control characters)."""
    rng = random.Random(seed)
    return "".join(chr(c) for c in rng.choices(range(0x20, 0x2FFF), k=size) if not 0xD800 <= c <= 0xDFFF)


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


#: name -> (SQS body, what its reason says)
POISON: dict[str, tuple[str, str]] = {
    "headers-not-an-object": (envelope(headers="task=payments.charge"), "headers is str, not an object"),
    "properties-not-an-object": (envelope(properties=["x"]), "properties is list, not an object"),
    "task-without-id": (envelope(headers={"task": "ops.poison_probe"}), "has no id"),
    "deeply-nested-envelope": (_nested(50_000), "nested too deeply"),
    "deeply-nested-body": (envelope(raw_body=base64.b64encode(_nested(50_000).encode()).decode()),
                           "nested too deeply"),
    "5000-digit-integer": (envelope(priority="BIG").replace('"BIG"', "7" * 5000), "Exceeds the limit"),
    "5000-digit-integer-in-body": (envelope(raw_body=base64.b64encode(
        b"[[" + b"9" * 5000 + b"], {}, {}]").decode()), "body does not decode"),
    "undecodable-body": (envelope(raw_body=base64.b64encode(b"{not json").decode()), "body does not decode"),
    "arbitrary-text": (random_text(1), "envelope is not JSON"),
    "arbitrary-bytes-in-base64": (base64.b64encode(random.Random(2).randbytes(3000)).decode(),
                                  "envelope is not JSON"),
    "unknown-task": (envelope(headers={"task": "nope.never_registered", "id": "task-2"}),
                     "unknown task 'nope.never_registered'"),
}


def send(settings: Settings, queue: str, body: str) -> str:
    sqs = clients.client("sqs", settings)
    return str(sqs.send_message(QueueUrl=queue_url(settings, queue), MessageBody=body,
                                MessageAttributes={"sender": {"DataType": "String", "StringValue": "fuzz"}}
                                )["MessageId"])


def dlq_messages(settings: Settings, queue: str, want: int) -> dict[str, dict[str, Any]]:
    """The DLQ's messages by their original message id, once `want` have arrived (read, then released)."""
    spec = QUEUES_BY_NAME[queue]
    found: dict[str, dict[str, Any]] = {}

    def arrived() -> bool:
        for letter in dead_letters.scan(settings, spec, limit=100, hold=2):
            found[letter.message_attributes[quarantine.SOURCE_ID]["StringValue"]] = {
                "body": letter.body, "attributes": letter.message_attributes, "letter": letter}
        return len(found) >= want

    wait_for(arrived, timeout=30, interval=0.5)
    dead_letters.release(settings, [m["letter"] for m in found.values()])
    return found


def queue_depth(settings: Settings, queue: str) -> int:
    attrs = clients.client("sqs", settings).get_queue_attributes(
        QueueUrl=queue_url(settings, queue),
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])


def test_every_poison_shape_goes_to_its_dlq_at_once_and_the_worker_goes_on(infra):
    settings = infra
    alerts_url = alerts_queue(settings)
    ran.clear()
    with worker(["orders"], concurrency=2):
        probe.delay(0)
        wait_for(lambda: ran == [0])
        sent = {send(settings, "orders", body): name for name, (body, _) in POISON.items()}
        for n in range(1, 6):  # good messages after the poison
            probe.delay(n)
        wait_for(lambda: sorted(ran) == list(range(6)), timeout=30)
        moved = dlq_messages(settings, "orders", want=len(POISON))
        wait_for(lambda: queue_depth(settings, "orders") == 0, timeout=10)  # deleted once copied

    assert set(moved) == set(sent), "every poison message is in the DLQ, once"
    for message_id, copy in moved.items():
        name = sent[message_id]
        body, reason = POISON[name]
        assert copy["body"] == body, f"{name}: the DLQ copy is not the message as sent"
        assert copy["attributes"]["sender"]["StringValue"] == "fuzz", f"{name}: its own attribute was lost"
        assert reason in copy["attributes"][quarantine.REASON]["StringValue"], name
        assert copy["attributes"][quarantine.SOURCE]["StringValue"] == "orders"

    # The watcher archives each with its reason, alerts once per message, and counts them.
    arrivals = watch.watch(settings)
    assert len(arrivals) == len(POISON)
    for arrival in arrivals:
        name = sent[arrival.letter.message_attributes[quarantine.SOURCE_ID]["StringValue"]]
        assert arrival.category == FailureCategory.INVALID_INPUT
        assert POISON[name][1] in arrival.why, (name, arrival.why)
        stored = archive.archived(settings, [arrival.letter])[arrival.letter.message_id]
        assert POISON[name][1] in stored["why"] and archive.archived_body(stored) == POISON[name][0]
    alerts = read_alerts(settings, alerts_url, want=len(POISON))
    assert {a["classification"] for a in alerts} == {"invalid-input"}
    metrics.flush()
    wait_for(lambda: stat(settings, "PoisonMessages", "Sum", Queue="orders", Reason="envelope") >= 4,
             timeout=30)


def test_a_worker_process_survives_the_message_that_used_to_kill_it(infra, tmp_path):
    """The issue's reproduction: `celery worker -Q payments -P threads -c 2` and a plain SendMessage whose
    kombu envelope has a string for `headers`."""
    settings = infra
    log = tmp_path / "worker.log"
    with worker_process(["payments"], log, ["-I", __name__, "-P", "threads", "-c", "2"]) as proc:
        payments_probe.delay(0)
        wait_for(lambda: log.read_text().count("succeeded in") == 1, timeout=60)
        shapes = ["headers-not-an-object", "properties-not-an-object", "task-without-id",
                  "deeply-nested-envelope", "5000-digit-integer", "undecodable-body", "unknown-task"]
        sent = {send(settings, "payments", POISON[name][0]): name for name in shapes}
        for n in range(1, 4):
            payments_probe.delay(n)
        wait_for(lambda: log.read_text().count("succeeded in") == 4, timeout=60)
        moved = dlq_messages(settings, "payments", want=len(shapes))
        assert proc.poll() is None, "the worker process exited:\n" + log.read_text()[-3000:]
    assert set(moved) == set(sent)
    for message_id, copy in moved.items():
        assert POISON[sent[message_id]][1] in copy["attributes"][quarantine.REASON]["StringValue"]
    assert "Unrecoverable error" not in log.read_text()


def test_a_fifo_poison_message_keeps_its_group_and_frees_it(infra):
    """On a FIFO queue the group waits for its message to be deleted: the move frees it at once."""
    settings = infra
    ran.clear()
    sqs = clients.client("sqs", settings)
    poison_body = POISON["headers-not-an-object"][0]
    sqs.send_message(QueueUrl=queue_url(settings, "inventory.fifo"), MessageBody=poison_body,
                     MessageGroupId="sku-7", MessageDeduplicationId="p-1")
    probe.apply_async((1,), queue="inventory.fifo", MessageGroupId="sku-7", MessageDeduplicationId="g-1")
    with worker(["inventory.fifo"], concurrency=2):
        wait_for(lambda: ran == [1], timeout=30)
        moved = dlq_messages(settings, "inventory.fifo", want=1)
    [copy] = moved.values()
    assert copy["body"] == poison_body and copy["letter"].group_id == "sku-7"


def test_a_message_kombu_or_celery_still_fails_on_is_quarantined_and_frees_its_slot(infra):
    """The second net: a message the envelope check let through but the consumer raised on (here
    Celery's callback is made to raise) is moved like poison, and the worker's loop goes on."""
    from kombu import Connection

    from orders.runtime import transport

    sqs = clients.client("sqs", infra)
    url = queue_url(infra, "orders")
    probe.delay(7)
    [message] = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1, MessageAttributeNames=["All"],
                                    MessageSystemAttributeNames=["All"])["Messages"]

    def consumer_fails(_message: Any) -> None:
        raise RuntimeError("Celery could not take it")

    with Connection(f"{transport.SCHEME}://", transport_options=app.conf.broker_transport_options) as conn:
        channel = conn.default_channel
        channel.basic_qos(prefetch_count=1)
        channel.basic_consume("orders", False, consumer_fails, "test-consumer")
        assert channel._on_messages_ready(url, "orders", {"Messages": [message]}) == 1
        assert channel.qos.can_consume_max_estimate() == 1  # its prefetch slot is free again
        moved = dlq_messages(settings=infra, queue="orders", want=1)
    [copy] = moved.values()
    assert copy["body"] == message["Body"]
    assert "RuntimeError: Celery could not take it" in copy["attributes"][quarantine.REASON]["StringValue"]
    wait_for(lambda: queue_depth(infra, "orders") == 0, timeout=10)


def test_a_poison_message_whose_dlq_is_unreachable_stays_in_its_queue_until_it_can_move(infra, caplog):
    """Never deleted without a copy: with its DLQ gone the message is refused, left, refused again when
    it comes back; once the DLQ is back it moves."""
    from orders.infra import provisioning

    settings = infra
    sqs = clients.client("sqs", settings)
    url = queue_url(settings, "orders")
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"VisibilityTimeout": "2"})
    sqs.delete_queue(QueueUrl=dead_letters.dlq_url(settings, QUEUES_BY_NAME["orders"]))
    body = POISON["headers-not-an-object"][0]
    send(settings, "orders", body)
    use_transport_options(receive_visibility=2)  # the 2 s visibility above, for the receives too
    with worker(["orders"], concurrency=2):
        # Refused twice (maxReceiveCount is 3: SQS's own redrive has not moved it either).
        wait_for(lambda: caplog.text.count("not moved (it stays in its queue)") >= 2, timeout=30)
        assert queue_depth(settings, "orders") == 1
        provisioning.up(settings)
        sqs.set_queue_attributes(QueueUrl=url, Attributes={"VisibilityTimeout": "2"})
        moved = dlq_messages(settings, "orders", want=1)
    assert [copy["body"] for copy in moved.values()] == [body]
    wait_for(lambda: queue_depth(settings, "orders") == 0, timeout=10)
