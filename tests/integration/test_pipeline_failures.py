"""The pipeline when things go wrong: invalid input, duplicates, poison messages, FIFO retries."""

from __future__ import annotations

import base64
import json

import pytest

from orders import place_order
from orders.aws import clients
from orders.aws.gateway import Gateway
from orders.aws.stock import get_stock, set_stock
from orders.aws.store import OrderStore
from orders.aws.tables import to_item
from orders.celery import app
from orders.domain.errors import InvalidOrder, RetryableError
from orders.domain.order import validate
from orders.runtime.dependencies import dependencies, fail_order
from orders.runtime.queue_urls import queue_url
from orders.runtime.step_tasks import StepTask
from orders.steps.reservation import take
from tests.helpers import wait_for
from tests.integration.pipeline_support import (
    drain_events,
    make_order,
    pipeline,
    statuses,
    subscribe_probe,
    wait_final,
)


def depth(settings, name):
    attrs = clients.client("sqs", settings).get_queue_attributes(
        QueueUrl=queue_url(settings, name) if not name.endswith("dlq") and "-dlq" not in name
        else clients.client("sqs", settings).get_queue_url(QueueName=settings.prefix + name)["QueueUrl"],
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])
    return sum(int(v) for v in attrs["Attributes"].values())


def test_invalid_order_is_refused_at_the_door_with_every_problem(infra):
    set_stock(infra, "SKU-1", 5)
    bad = make_order(quantity=0, currency="ZZZ", customerId=None,
                     items=[{"sku": "SKU-1", "quantity": 0, "unitPrice": "1.00"},
                            {"sku": "NOPE", "quantity": 1, "unitPrice": "1.00"}])
    with pytest.raises(InvalidOrder) as info:
        place_order.delay(bad)
    assert info.value.problems == [
        "currency: unknown currency 'ZZZ' (known: AUD, CAD, CHF, EUR, GBP, JPY, USD)",
        "customerId: required",
        "items[0].quantity: must be between 1 and 1000, got 0",
        "totalAmount: must be positive, got 0.00",
        "items: unknown sku NOPE",
    ]
    assert depth(infra, "orders") == 0 and OrderStore(infra).get(bad["orderId"]) is None


def test_malformed_messages_reaching_a_worker_end_rejected(infra):
    set_stock(infra, "SKU-1", 5)
    probe = subscribe_probe(infra)
    wrong_total = make_order(totalAmount="999.00")
    place_order.apply_async((wrong_total,))  # bypasses the door, as a hand-made message would
    app.send_task("orders.place", args=("not", "an", "order"))
    with pipeline(["orders"]):
        record = wait_final(infra, wrong_total["orderId"])
        events: list[dict] = []
        wait_for(lambda: events.extend(e for e in drain_events(infra, probe)
                                       if e["eventType"] == "OrderRejected") or len(events) >= 2,
                 timeout=60)
    assert (record["status"], record["reason"]) == ("rejected", "invalid-order")
    assert record["problems"] == ["totalAmount: 999.00 does not equal the sum of the items (10.00)"]
    assert statuses(record) == ["placed", "rejected"]
    other = next(e for e in events if e["orderId"] != wrong_total["orderId"])
    assert other["orderId"].startswith("invalid-")
    assert other["data"]["problems"] == ["message: orders.place takes one order, got 3 argument(s)"]
    assert OrderStore(infra).get(other["orderId"])["status"] == "rejected"


def test_duplicated_messages_and_orders_charge_once(infra):
    set_stock(infra, "SKU-2", 10)
    order = make_order(sku="SKU-2", quantity=3)
    place_order.delay(order)
    place_order.delay(order)  # the same order placed twice (two messages on a standard queue)
    args, kwargs = (order,), {"placed_at": "2026-01-01T00:00:00.000000Z"}
    place_order.apply_async(args, kwargs, task_id="dup-1")  # one message delivered twice
    place_order.apply_async(args, kwargs, task_id="dup-1")
    with pipeline():
        record = wait_final(infra, order["orderId"])
        for _ in range(3):  # late duplicates of every step's message
            for task in ("inventory.reserve", "payments.charge", "shipping.create_shipment"):
                options = {"MessageGroupId": "SKU-2", "MessageDeduplicationId": f"x{_}"} \
                    if task.startswith("inventory") else {}
                app.send_task(task, args=(order["orderId"],), **options)
        wait_for(lambda: all(depth(infra, q) == 0 for q in ("orders", "inventory.fifo", "payments",
                                                              "shipping", "notifications")), timeout=60)
    final = OrderStore(infra).get(order["orderId"])
    assert final["status"] == "completed" and final["version"] == record["version"]
    assert statuses(final) == ["placed", "validated", "reserved", "paid", "shipped", "completed"]
    # However often the charge ran, the gateway's one capture (keyed by order) is the order's.
    assert Gateway(infra).lookup(f"{order['orderId']}:charge")["paymentId"] == final["payment"]["paymentId"]
    assert get_stock(infra, "SKU-2") == {"sku": "SKU-2", "available": 7, "reserved": 0}
    notified = OrderStore(infra).load(order["orderId"])
    assert sorted(notified.notifications) == ["OrderPlaced", "OrderShipped"]
    assert notified.notifications_sent == 2  # one claim, hence one message, per event type


def test_poison_messages_land_in_the_dlq_and_the_order_shows_failed(infra):
    sqs = clients.client("sqs", infra)
    shipping = queue_url(infra, "shipping")
    # Redeliver after 1 s instead of 300 s, so three receives take seconds (this namespace only).
    sqs.set_queue_attributes(QueueUrl=shipping, Attributes={"VisibilityTimeout": "1"})
    store = OrderStore(infra)
    store.ddb.put_item(TableName=store.table, Item=to_item({
        "pk": "ord-poison", "sk": "order", "orderId": "ord-poison", "status": "paid", "version": 1,
        "order": {"broken": True}, "history": [{"status": "paid", "at": "2026-01-01T00:00:00Z",
                                                 "step": "charge"}], "notifications": {}}))
    app.send_task("shipping.create_shipment", args=("ord-poison",))
    sqs.send_message(QueueUrl=shipping, MessageBody="this is not JSON")
    with pipeline(["shipping"]):
        wait_for(lambda: depth(infra, "shipping-dlq") == 2, timeout=90)
    dead = sqs.receive_message(QueueUrl=sqs.get_queue_url(QueueName=infra.prefix + "shipping-dlq")
                               ["QueueUrl"], MaxNumberOfMessages=10, VisibilityTimeout=0)["Messages"]
    bodies = sorted(m["Body"] for m in dead)
    assert bodies[1] == "this is not JSON"
    celery_message = json.loads(base64.b64decode(bodies[0]))  # kombu base64-encodes bodies on SQS
    assert celery_message["headers"]["task"] == "shipping.create_shipment"
    assert celery_message["headers"]["argsrepr"] == "('ord-poison',)"
    assert fail_order(infra, "ord-poison", "dead-lettered from shipping")
    record = store.get("ord-poison")
    assert (record["status"], record["reason"], record["failedFrom"]) == \
        ("failed", "dead-lettered from shipping", "paid")
    assert not store.mark_failed("ord-poison", "again")  # already failed: nothing changes


seen: list[dict] = []


@app.task(base=StepTask, bind=True, name="inventory.flaky_probe")
def flaky_probe(self):
    seen.append(dict(self.request.properties or {}))
    if len(seen) == 1:
        raise RetryableError("first attempt fails")
    return "ok"


def test_a_fifo_retry_keeps_its_message_group_and_gets_a_new_dedup_id(infra):
    seen.clear()
    flaky_probe.apply_async(MessageGroupId="SKU-9", MessageDeduplicationId="probe-1")
    with pipeline(["inventory.fifo"]):
        wait_for(lambda: len(seen) == 2, timeout=60)
    assert [p.get("MessageGroupId") for p in seen] == ["SKU-9", "SKU-9"]
    assert [p.get("MessageDeduplicationId") for p in seen] == ["probe-1", "probe-1.r1"]


def test_a_step_that_died_after_recording_is_finished_by_the_redelivered_message(infra):
    set_stock(infra, "SKU-K", 5)
    order = validate(make_order(sku="SKU-K", quantity=2))
    store = OrderStore(infra)
    record, _ = store.create(order, "2026-01-01T00:00:00.000000Z", "corr-k", False)
    take(dependencies(infra), record, order)  # the worker committed the reservation, then died
    assert store.get(order.order_id)["status"] == "reserved"
    app.send_task("inventory.reserve", args=(order.order_id,), MessageGroupId="SKU-K",
                  MessageDeduplicationId=f"{order.order_id}.reserve")  # SQS redelivers it
    with pipeline(["inventory.fifo", "payments", "shipping"]):
        final = wait_final(infra, order.order_id)
    assert final["status"] == "completed"
    assert statuses(final) == ["placed", "validated", "reserved", "paid", "shipped", "completed"]
    assert get_stock(infra, "SKU-K") == {"sku": "SKU-K", "available": 3, "reserved": 0}


def test_a_charge_that_recorded_paid_and_could_not_announce_it_is_resumed_by_its_redrive(infra):
    """The issue's reproduction: `payment-notifications` deleted, the charge records `paid` and captures,
    its publish fails until its message is dead-lettered, the watcher marks the order failed from
    `paid`; with the topic back (`orders infra up`) and the message redriven, the order completes."""
    from click.testing import CliRunner

    from orders.aws.sns import topic_arns
    from orders.cli import cli
    from orders.infra import provisioning
    from orders.ops import watch

    set_stock(infra, "SKU-P", 5)
    order = make_order(sku="SKU-P", quantity=2)
    clients.client("sns", infra).delete_topic(TopicArn=topic_arns(infra)["payment-notifications"])
    place_order.delay(order)
    with pipeline():
        wait_for(lambda: depth(infra, "payments-dlq") == 1 and depth(infra, "payments") == 0, timeout=90)
        watch.watch(infra)
        failed = OrderStore(infra).get(order["orderId"])
        assert (failed["status"], failed["failedFrom"]) == ("failed", "paid")
        provisioning.up(infra)
        result = CliRunner().invoke(cli, ["dlq", "redrive", "payments", "--all"])
        assert result.exit_code == 0, result.output
        final = wait_for(lambda: (r := OrderStore(infra).get(order["orderId"])) and r["status"] == "completed"
                         and r, timeout=60)
    assert statuses(final)[-4:] == ["paid", "failed", "shipped", "completed"]
    assert final["reason"] is None and "failedFrom" not in final
    assert Gateway(infra).lookup(f"{order['orderId']}:charge")["captures"] == 1
    assert get_stock(infra, "SKU-P") == {"sku": "SKU-P", "available": 3, "reserved": 0}
