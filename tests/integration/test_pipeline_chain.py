"""The pipeline as one Celery chain: what the placed message carries, where a chain stops or branches,
and the delivery guarantees of its hand-offs (retries, duplicates, a worker killed, a send that fails).

Every message sent from this process (the door, and the in-thread workers' hand-offs) is
recorded through Celery's `before_task_publish` signal, so a test sees which steps an
order's chain sent, not only where the order ended.
"""

from __future__ import annotations

import base64
import json
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from celery import chain, signals
from celery.exceptions import Ignore, Reject

from orders import place_order
from orders.aws import clients
from orders.aws.gateway import Gateway
from orders.aws.stock import get_stock, set_stock
from orders.celery import app
from orders.domain.errors import RetryableError
from orders.domain.events import Event
from orders.domain.times import now_iso
from orders.runtime import publishing, transport
from orders.runtime.queue_urls import queue_url
from orders.runtime.redaction import order_in
from orders.runtime.step_tasks import StepTask
from orders.topology import QUEUES_BY_NAME
from tests.helpers import calls, wait_for, worker, worker_process
from tests.integration.pipeline_support import (
    ALL_QUEUES,
    Sent,
    drain_events,
    make_order,
    path,
    pipeline,
    recorded_sends,
    statuses,
    subscribe_probe,
    wait_final,
    wait_status,
)

pytestmark = pytest.mark.integration

@contextmanager
def finished_runs() -> Iterator[list[tuple[str, str | None, str | None, dict[str, Any]]]]:
    """(task, order id, Celery's state, result) of every task run that ends in this process's workers."""
    runs: list[tuple[str, str | None, str | None, dict[str, Any]]] = []

    def record(task: Any = None, args: Any = None, state: str | None = None, retval: Any = None,
               **_: Any) -> None:
        runs.append((task.name, order_in(args), state, retval if isinstance(retval, dict) else {}))

    signals.task_postrun.connect(record, weak=False, dispatch_uid="tests.finished_runs")
    try:
        yield runs
    finally:
        signals.task_postrun.disconnect(dispatch_uid="tests.finished_runs")


@pytest.fixture
def sent() -> Iterator[Sent]:
    with recorded_sends() as log:
        yield log


def depth(settings: Any, name: str) -> tuple[int, int]:
    """(visible, in flight) messages of a declared queue."""
    attrs = clients.client("sqs", settings).get_queue_attributes(
        QueueUrl=queue_url(settings, name),
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]), int(attrs["ApproximateNumberOfMessagesNotVisible"])


def dead_letters(settings: Any, name: str) -> list[dict[str, Any]]:
    sqs = clients.client("sqs", settings)
    dlq = sqs.get_queue_url(QueueName=QUEUES_BY_NAME[name].dlq_sqs_name(settings))["QueueUrl"]
    return list(sqs.receive_message(QueueUrl=dlq, MaxNumberOfMessages=10, VisibilityTimeout=0,
                                    WaitTimeSeconds=0).get("Messages", []))


def received(settings: Any, name: str) -> list[dict[str, Any]]:
    """The task messages waiting in a queue, decoded: SQS attributes, Celery headers and body."""
    messages = clients.client("sqs", settings).receive_message(
        QueueUrl=queue_url(settings, name), MaxNumberOfMessages=10, WaitTimeSeconds=1,
        MessageSystemAttributeNames=["MessageGroupId", "MessageDeduplicationId"]).get("Messages", [])
    decoded = []
    for message in messages:
        envelope = json.loads(base64.b64decode(message["Body"]))  # kombu base64-encodes bodies on SQS
        decoded.append({"attributes": message.get("Attributes", {}), "headers": envelope["headers"],
                        "body": json.loads(base64.b64decode(envelope["body"]))})
    return decoded


def test_the_placed_message_carries_the_rest_of_the_pipeline_as_a_chain(infra):
    set_stock(infra, "SKU-C1", 10)
    regular, large = make_order(sku="SKU-C1"), make_order(sku="SKU-C1", quantity=3, price="2000.00")
    vip = make_order(sku="SKU-C1", tier="vip")
    handles = {o["orderId"]: place_order.delay(o) for o in (regular, large, vip)}
    placed = {m["body"][0][0]["orderId"]: m for m in received(infra, "orders")
              + received(infra, "orders-priority.fifo")}

    def rest(order: dict[str, Any]) -> list[dict[str, Any]]:
        # The chain travels reversed: Celery pops the next step off its end.
        return list(reversed(placed[order["orderId"]]["body"][2]["chain"]))

    oid = regular["orderId"]
    assert [(s["task"], s["args"], s["immutable"]) for s in rest(regular)] == [
        ("inventory.reserve", [oid], True), ("payments.charge", [oid], True),
        ("shipping.create_shipment", [oid], True)]
    assert rest(regular)[0]["options"]["MessageGroupId"] == "SKU-C1"
    assert rest(regular)[0]["options"]["MessageDeduplicationId"] == f"{oid}.reserve"
    assert [s["task"] for s in rest(large)] == ["orders.review", "inventory.reserve", "payments.charge",
                                                 "shipping.create_shipment"]
    assert placed[vip["orderId"]]["attributes"] == {"MessageGroupId": vip["customerId"],
                                                    "MessageDeduplicationId": vip["orderId"]}
    # Logs and Flower show the order's id, not the customer's address, contact or payment token.
    assert placed[oid]["headers"]["argsrepr"] == f"(order {oid}: 1 line, 10.00 USD, standard)"
    # delay() returns the last task's handle; its parents lead back to the placed message.
    handle, ids = handles[oid], []
    while handle is not None:
        ids.append(handle.id)
        handle = handle.parent
    assert ids[::-1] == [placed[oid]["headers"]["id"], *(s["options"]["task_id"] for s in rest(regular))]


def test_an_order_ends_where_its_outcome_says_and_every_message_is_acked(infra, sent):
    set_stock(infra, "SKU-E1", 20)
    set_stock(infra, "SKU-E0", 0)
    orders = {
        "completed": make_order(sku="SKU-E1"),
        "declined": make_order(sku="SKU-E1", token="tok_chargeDeclined"),
        "out of stock": make_order(sku="SKU-E0"),
        "review declined": make_order(sku="SKU-E1", quantity=3, price="2000.00", customerId="flagged-e"),
        "undeliverable": make_order(sku="SKU-E1", shippingAddress={
            "line1": "1 Main St", "city": "Springfield", "postalCode": "00000", "country": "US"}),
        "rejected": make_order(sku="SKU-UNKNOWN"),
    }
    for name, order in orders.items():
        if name == "rejected":  # past the door's catalogue check: its chain goes, the place step refuses it
            place_order.apply_async((order,), {"placed_at": now_iso()})
        else:
            place_order.delay(order)
    with pipeline(), finished_runs() as runs:
        ends = {name: wait_final(infra, order["orderId"]) for name, order in orders.items()}
        wait_for(lambda: all(depth(infra, q) == (0, 0) for q in ALL_QUEUES), timeout=60)
    assert {name: (r["status"], r["reason"]) for name, r in ends.items()} == {
        "completed": ("completed", None), "declined": ("cancelled", "payment-declined"),
        "out of stock": ("cancelled", "out-of-stock"), "review declined": ("cancelled", "review-declined"),
        "undeliverable": ("cancelled", "undeliverable-address"), "rejected": ("rejected", "invalid-order")}
    steps = ["orders.place", "inventory.reserve", "payments.charge", "shipping.create_shipment"]
    assert path(sent, orders["completed"]) == steps
    assert path(sent, orders["declined"]) == steps[:3]
    assert path(sent, orders["out of stock"]) == steps[:2]
    assert path(sent, orders["review declined"]) == ["orders.place", "orders.review"]
    assert path(sent, orders["rejected"]) == ["orders.place"]
    # Compensation is a branch: the refund replaces the shipping task (Celery's Task.replace: same id).
    assert path(sent, orders["undeliverable"]) == [*steps, "payments.refund"]
    ids = {task: tid for task, order_id, tid in sent if order_id == orders["undeliverable"]["orderId"]}
    assert ids["payments.refund"] == ids["shipping.create_shipment"]
    # A step that ends its order's chain returns and says so: no Celery Ignore (whose ExceptionInfos cost
    # the worker 1.2 ms of CPU and more), so Celery, Flower and the metrics see a success. Only the branch
    # raises Ignore, after sending the refund under its own id (Task.replace).
    states = {(task, order_id): (state, r.get("ended")) for task, order_id, state, r in runs}
    assert {state for state, _ in states.values()} == {"SUCCESS", "IGNORED"}, runs
    assert states[("payments.charge", orders["declined"]["orderId"])] == ("SUCCESS", True)
    assert states[("inventory.reserve", orders["out of stock"]["orderId"])] == ("SUCCESS", True)
    assert states[("orders.review", orders["review declined"]["orderId"])] == ("SUCCESS", True)
    assert states[("shipping.create_shipment", orders["undeliverable"]["orderId"])] == ("IGNORED", None)
    assert states[("shipping.create_shipment", orders["completed"]["orderId"])] == ("SUCCESS", None)
    assert [key for key, (state, _) in states.items() if state == "IGNORED"] == \
        [("shipping.create_shipment", orders["undeliverable"]["orderId"])]
    # A business outcome is acknowledged, never dead-lettered.
    assert all(not dead_letters(infra, q) for q in ALL_QUEUES)


ran: Counter[str] = Counter()


@app.task(name="notifications.chain_probe_ignores")
def ignores() -> None:
    ran["ignore"] += 1
    raise Ignore()


@app.task(name="notifications.chain_probe_rejects")
def rejects() -> None:
    ran["reject"] += 1
    raise Reject("what an ended order must not do", requeue=False)


def test_on_our_transport_ignore_acks_and_reject_leaves_the_message_for_its_dlq(infra):
    """Why a step never ends its chain with Reject: Reject(requeue=False) on a queue with a RedrivePolicy
    is not deleted (kombu leaves it for SQS to dead-letter), so an ended order would land in a DLQ; Ignore
    (Celery's way, which the steps avoid for its CPU: StepTask.end) and a plain return are acked."""
    ran.clear()
    sqs = clients.client("sqs", infra)
    sqs.set_queue_attributes(QueueUrl=queue_url(infra, "notifications"),
                             Attributes={"VisibilityTimeout": "1"})
    ignores.delay()
    rejects.delay()
    with worker(["notifications"], concurrency=2):
        dead = wait_for(lambda: dead_letters(infra, "notifications"), timeout=60)
    assert ran == {"ignore": 1, "reject": QUEUES_BY_NAME["notifications"].max_receive_count}
    assert [json.loads(base64.b64decode(m["Body"]))["headers"]["task"] for m in dead] == \
        ["notifications.chain_probe_rejects"]
    assert depth(infra, "notifications") == (0, 0)


fifo_seen: list[dict[str, Any]] = []
after_retry: list[str] = []
lock = threading.Lock()


@app.task(base=StepTask, bind=True, name="inventory.chain_flaky_probe")
def flaky(self: StepTask) -> str:
    with lock:
        fifo_seen.append(dict(self.request.properties or {}))
        if len(fifo_seen) == 1:
            raise RetryableError("first attempt fails")
    return "ok"


@app.task(name="shipping.chain_after_probe")
def after() -> None:
    after_retry.append("ran")


def test_a_retry_keeps_the_rest_of_its_chain_its_message_group_and_gets_a_new_dedup_id(infra):
    fifo_seen.clear()
    after_retry.clear()
    first = flaky.si().set(MessageGroupId="SKU-9", MessageDeduplicationId="chain-probe")
    chain(first, after.si()).apply_async()
    with worker(["inventory.fifo", "shipping"]):
        wait_for(lambda: after_retry, timeout=60)
    assert [p.get("MessageGroupId") for p in fifo_seen] == ["SKU-9", "SKU-9"]
    assert [p.get("MessageDeduplicationId") for p in fifo_seen] == ["chain-probe", "chain-probe.r1"]
    assert after_retry == ["ran"]


def test_a_worker_killed_between_its_write_and_the_next_send_is_finished_once_by_the_redelivery(
        infra, tmp_path):
    """SIGKILL at the worst moment: the reservation is recorded, the charge message not yet sent."""
    set_stock(infra, "SKU-K", 5)
    sqs = clients.client("sqs", infra)
    # The killed worker's message comes back after 2 s rather than 300 (this namespace only).
    sqs.set_queue_attributes(QueueUrl=queue_url(infra, "inventory.fifo"),
                             Attributes={"VisibilityTimeout": "2"})
    order = make_order(sku="SKU-K", quantity=2)
    place_order.delay(order)
    log = tmp_path / "worker.log"
    dies = ["--pool", "threads", "-I", "tests.integration.die_before_publish"]
    with worker_process(["orders", "inventory.fifo"], log, dies,
                        env={"DIE_BEFORE_PUBLISHING": "payments.charge"}) as proc:
        assert proc.wait(timeout=60) == -9  # it killed itself before sending the charge
    wait_status(infra, order["orderId"], "reserved")
    assert depth(infra, "payments") == (0, 0)  # the charge was never sent...
    with pipeline(["inventory.fifo", "payments", "shipping"]):  # ...and the reservation's message comes back
        final = wait_final(infra, order["orderId"])
    assert statuses(final) == ["placed", "validated", "reserved", "paid", "shipped", "completed"]
    assert get_stock(infra, "SKU-K") == {"sku": "SKU-K", "available": 3, "reserved": 0}
    assert Gateway(infra).lookup(f"{order['orderId']}:charge")["attempts"] == 1


def test_a_step_whose_next_message_cannot_be_stored_is_not_acked(infra, tmp_path):
    """The chain's next message is sent by Celery's tracer, in the task's thread, before the ack:
    when SQS refuses it, the step's message stays in its queue and its redelivery goes on."""
    set_stock(infra, "SKU-N", 5)
    sqs = clients.client("sqs", infra)
    order = make_order(sku="SKU-N", quantity=2)
    log = tmp_path / "worker.log"
    # A failed message hides for 3 s (kombu's backoff policy) in this worker: time to stop it.
    with worker_process(["orders", "inventory.fifo"], log, ["--pool", "threads"],
                        env={"ORDERS_FAILURE_BACKOFF": "3"}):
        wait_for(lambda: " ready." in log.read_text(), timeout=60)
        sqs.delete_queue(QueueUrl=queue_url(infra, "payments"))  # the worker looked its URL up at start
        place_order.delay(order)
        wait_status(infra, order["orderId"], "reserved")
        wait_for(lambda: "NonExistentQueue" in log.read_text(), timeout=30)
    assert sum(depth(infra, "inventory.fifo")) == 1 and not dead_letters(infra, "inventory.fifo")
    sqs.create_queue(QueueName=QUEUES_BY_NAME["payments"].sqs_name(infra))
    with pipeline(["inventory.fifo", "payments", "shipping"]):
        final = wait_final(infra, order["orderId"])
    assert statuses(final) == ["placed", "validated", "reserved", "paid", "shipped", "completed"]
    assert get_stock(infra, "SKU-N") == {"sku": "SKU-N", "available": 3, "reserved": 0}
    assert Gateway(infra).lookup(f"{order['orderId']}:charge")["attempts"] == 1


def test_the_chain_s_hand_offs_are_batched(infra, emulator, sent):
    orders = [make_order(sku=f"SKU-B{i}") for i in range(20)]  # one FIFO group each: reserved side by side
    for order in orders:
        set_stock(infra, order["items"][0]["sku"], 1)
    with transport.batched_sends():
        for order in orders:
            place_order.delay(order)
    before = transport.stats()["sends"]
    calls(emulator.endpoint, reset=True)
    with pipeline(["orders", "inventory.fifo", "payments", "shipping"], concurrency=10):
        for order in orders:
            assert wait_final(infra, order["orderId"])["status"] == "completed"
    sends, counted = transport.stats()["sends"] - before, calls(emulator.endpoint)
    assert sends["ok"] == 3 * len(orders)  # reserve, charge, ship: every hand-off the chain made
    assert counted["sqs:SendMessage"] == 0 and counted["sqs:SendMessageBatch"] == sends["calls"]
    assert sends["calls"] < sends["ok"], sends  # hand-offs of tasks that ran together shared calls


def test_producers_outside_the_pipeline_publish_through_the_publishing_task(infra):
    """The SNS path as a Celery task: the producer sends one message and does not wait on SNS."""
    probe = subscribe_probe(infra)
    restocked = Event("StockRestocked", "restock-7", "admin-tool", {"sku": "SKU-1", "quantity": 5}, key="r-7")
    publishing.publish_later([restocked])
    with worker(["notifications"]):
        events = wait_for(lambda: drain_events(infra, probe), timeout=60)
    assert [(e["eventType"], e["eventId"], e["data"]) for e in events] == [
        ("StockRestocked", restocked.event_id, {"sku": "SKU-1", "quantity": 5})]
    assert events[0]["_attributes"]["event_type"] == "StockRestocked"
