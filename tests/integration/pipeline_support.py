"""Shared pieces of the pipeline's integration tests: orders, stock, workers, waiting."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

from celery import signals

from orders.aws.store import OrderStore
from orders.domain.states import FINAL_STATES
from orders.settings import Settings
from tests.helpers import wait_for, worker

ALL_QUEUES = ["orders", "orders-priority.fifo", "inventory.fifo", "payments", "shipping",
              "notifications"]


def make_order(sku: str = "SKU-1", quantity: int = 1, price: str = "10.00", tier: str = "standard",
               token: str = "tok_visa", **overrides: Any) -> dict[str, Any]:
    """A valid order for one product (its total is right), with `overrides` on top."""
    order = {
        "orderId": f"ord-{uuid.uuid4().hex[:12]}",
        "customerId": f"cust-{uuid.uuid4().hex[:6]}",
        "customerTier": tier,
        "items": [{"sku": sku, "quantity": quantity, "unitPrice": price}],
        "totalAmount": str(Decimal(price) * quantity),
        "currency": "USD",
        "payment": {"method": "wallet" if token.startswith("wallet_") else "card", "token": token},
        "shippingAddress": {"line1": "1 Main St", "city": "Springfield", "postalCode": "12345",
                            "country": "US"},
        "contact": {"email": "pat@example.com", "phone": "+15555550100"},
    }
    order.update(overrides)
    return order


@contextmanager
def pipeline(queues: list[str] | None = None, concurrency: int = 8) -> Iterator[Any]:
    """One real in-thread worker consuming every pipeline queue (or `queues`)."""
    with worker(queues or ALL_QUEUES, concurrency=concurrency) as w:
        yield w


#: (task, order id, task id) of task messages, in the order they were published.
Sent = list[tuple[str, str | None, str]]


@contextmanager
def recorded_sends() -> Iterator[Sent]:
    """Every task message this process publishes inside the block (the door's, and the hand-offs of
    its in-thread workers), through Celery's `before_task_publish` signal."""
    log: Sent = []

    def record(sender: str | None = None, headers: Any = None, body: Any = None, **_: Any) -> None:
        first = (body[0] or [None])[0] if body else None
        order_id = first.get("orderId") if isinstance(first, dict) else first
        log.append((str(sender), order_id if isinstance(order_id, str) else None, headers["id"]))

    signals.before_task_publish.connect(record, weak=False, dispatch_uid="tests.recorded_sends")
    try:
        yield log
    finally:
        signals.before_task_publish.disconnect(dispatch_uid="tests.recorded_sends")


def path(sent: Sent, order: dict[str, Any]) -> list[str]:
    """The tasks an order's chain sent, in order."""
    return [task for task, order_id, _ in sent if order_id == order["orderId"]]


def wait_status(settings: Settings, order_id: str, status: str, timeout: float = 60.0) -> None:
    """Wait until the order is in `status`."""
    wait_for(lambda: (OrderStore(settings).get(order_id) or {}).get("status") == status, timeout=timeout)


def wait_final(settings: Settings, order_id: str, timeout: float = 90.0) -> dict[str, Any]:
    """The order's public view once it reached a final state."""
    store = OrderStore(settings)

    def final() -> dict[str, Any] | None:
        record = store.get(order_id)
        return record if record and record["status"] in FINAL_STATES else None

    result: dict[str, Any] = wait_for(final, timeout=timeout, interval=0.1)
    return result


def statuses(record: dict[str, Any]) -> list[str]:
    return [entry["status"] for entry in record["history"]]


def subscribe_probe(settings: Settings) -> str:
    """A queue of the test's namespace subscribed (raw) to every topic: what was published."""
    from orders.aws import clients
    from orders.aws.sns import topic_arns
    from orders.infra.queues import queue_arn

    sqs, sns = clients.client("sqs", settings), clients.client("sns", settings)
    url = sqs.create_queue(QueueName=settings.prefix + "probe")["QueueUrl"]
    arn = queue_arn(url, settings)
    for topic in topic_arns(settings).values():
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn,
                      Attributes={"RawMessageDelivery": "true"})
    return str(url)


def drain_events(settings: Settings, url: str) -> list[dict[str, Any]]:
    """Every event in the probe queue so far, with its message attributes (as `_attributes`)."""
    import base64
    import json

    from orders.aws import clients

    sqs, found = clients.client("sqs", settings), []
    while True:
        messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0,
                                       MessageAttributeNames=["All"]).get("Messages", [])
        if not messages:
            return found
        for message in messages:
            body = json.loads(message["Body"])
            if "headers" in body:  # a customer event: the Celery message for notifications.notify
                body = json.loads(base64.b64decode(body["body"]))[0][0]
            body["_attributes"] = {k: v["StringValue"] for k, v in
                                   message.get("MessageAttributes", {}).items()}
            found.append(body)
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
