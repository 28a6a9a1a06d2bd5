"""How an order moves: admission at the door, routing, the chain of steps, retries and hand-offs.

The chain, one task per service queue, each handing the order id to the next
once its own state change is recorded:

    orders.place ─▶ [orders.review] ─▶ inventory.reserve ─▶ payments.charge ─▶ shipping.create_shipment
                    (large orders)                           │ declined: release, cancel
                                                             └ after capture, a failure ─▶ payments.refund

Routing: VIP orders enter through `orders-priority.fifo` (message group = the
customer, deduplication id = the order id); the others through `orders`.
Orders above `settings.review_threshold` pass the review step first.
Inventory messages join the FIFO group of the order's first product (its first line).

Hand-offs are explicit sends, not a Celery chain in the message, because the
next step depends on the outcome (cancel, refund) and on the order (FIFO ids).
A step that finds its own state change already recorded (the message came
twice, or the worker died after recording) publishes its events and hands
off again; the events keep their ids and the next step is idempotent too.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from celery import Task

from orders.aws import sns
from orders.aws.stock import unknown_skus
from orders.aws.store import OrderStore
from orders.domain.errors import InvalidOrder, RetryableError
from orders.domain.events import Event, event
from orders.domain.order import ID_PATTERN, Order, needs_review, validate
from orders.settings import Settings, get_settings

log = logging.getLogger(__name__)

TASKS = {"place": "orders.place", "review": "orders.review", "reserve": "inventory.reserve",
         "charge": "payments.charge", "ship": "shipping.create_shipment", "refund": "payments.refund"}
PRIORITY_QUEUE = "orders-priority.fifo"


def admit(settings: Settings, raw: Any) -> tuple[Order, dict[str, Any]]:
    """Validate an order at the door (shape and known SKUs) and choose its entry queue.

    Raises InvalidOrder listing every problem; nothing has been sent then.
    """
    order = check(settings, raw)
    return order, entry_options(order)


def check(settings: Settings, raw: Any) -> Order:
    """The validated order, or InvalidOrder with every problem, unknown SKUs included.

    The SKUs are looked up with one BatchGetItem, even when the order has other
    problems, so that the caller hears about everything at once.
    """
    problems: list[str] = []
    order = None
    try:
        order = validate(raw)
    except InvalidOrder as exc:
        problems = exc.problems
    items = raw.get("items") if isinstance(raw, dict) else None
    skus = [i["sku"] for i in items or [] if isinstance(i, dict) and isinstance(i.get("sku"), str)
            and ID_PATTERN.match(i["sku"])] if isinstance(items, list) else []
    problems += [f"items: unknown sku {sku}" for sku in unknown_skus(settings, skus)] if skus else []
    if problems or order is None:
        raise InvalidOrder(problems)
    return order


def entry_options(order: Order) -> dict[str, Any]:
    """Where `orders.place` goes: VIP customers through the priority FIFO queue."""
    if order.is_vip:
        return {"queue": PRIORITY_QUEUE, "MessageGroupId": order.customer_id,
                "MessageDeduplicationId": order.order_id}
    return {"queue": "orders"}


def is_large(settings: Settings, order: Order) -> bool:
    return needs_review(order, settings.review_threshold)


def next_step(record: dict[str, Any], step: str) -> str | None:
    """The step after `step` on the happy path (the review step only for large orders)."""
    if step == "place":
        return "review" if record.get("needsReview") else "reserve"
    return {"review": "reserve", "reserve": "charge", "charge": "ship"}.get(step)


def hand_off(record: dict[str, Any], step: str | None) -> None:
    """Send the order id to `step`'s task (FIFO ids for the inventory queue)."""
    if step is None:
        return
    from orders.celery import app

    order_id = record["orderId"]
    options: dict[str, Any] = {}
    if step == "reserve":
        options = {"MessageGroupId": record["order"]["items"][0]["sku"],  # Order.lead_sku
                   "MessageDeduplicationId": f"{order_id}.reserve"}
    app.send_task(TASKS[step], args=(order_id,), **options)


def finish(settings: Settings, record: dict[str, Any], events: Sequence[Event],
           then: str | None = None) -> dict[str, Any]:
    """Publish a step's events together, hand off to the next step, return the task's JSON result."""
    if events:
        sns.publish(settings, events)
    hand_off(record, then)
    return {"orderId": record["orderId"], "status": record["status"], "reason": record.get("reason"),
            "next": TASKS.get(then or "")}


def ready_for(record: dict[str, Any] | None, *expected: str) -> bool:
    """Whether the order waits for this step (or failed there and its message was redriven)."""
    if record is None:
        return False
    if record["status"] == "failed":
        return record.get("failedFrom") in expected
    return record["status"] in expected


def done_by(record: dict[str, Any] | None, step: str) -> bool:
    """Whether the order's latest state change was made by `step` (so it may need re-announcing)."""
    history = (record or {}).get("history") or []
    return bool(history) and history[-1].get("step") == step


def skipped(order_id: str, step: str, record: dict[str, Any] | None) -> dict[str, Any]:
    status = record["status"] if record else None
    log.info("%s: order %s is %s; nothing to do", step, order_id, status or "unknown")
    return {"orderId": order_id, "status": status, "reason": (record or {}).get("reason"),
            "paid": bool((record or {}).get("payment")), "skipped": True}


Act = Callable[[OrderStore, dict[str, Any]], tuple[dict[str, Any], list[Event]]]
Announce = Callable[[dict[str, Any]], tuple[list[Event], str | None]]


def run_step(settings: Settings, order_id: Any, step: str,
             expected: Sequence[str] | Callable[[dict[str, Any]], Sequence[str]],
             act: Act, announce: Announce) -> dict[str, Any]:
    """One pipeline step, safe to run twice.

    `act` makes the step's change (from one of the `expected` states) and returns
    the new record with any extra events; `announce` gives the events and next
    step of the state the order is in. A message for an order that is past this
    step, or unknown, is acknowledged and changes nothing.
    """
    store = OrderStore(settings)
    record = store.load(order_id) if isinstance(order_id, str) and order_id else None
    if record is not None and callable(expected):
        expected = expected(record)
    if ready_for(record, *expected):  # type: ignore[misc]
        assert record is not None
        record, extra = act(store, record)
        record_metrics(record)
    elif done_by(record, step):
        assert record is not None
        extra = []
    else:
        return skipped(str(order_id), step, record)
    events, then = announce(record)
    return finish(settings, record, [*events, *extra], then)


def end_unpaid(settings: Settings, store: OrderStore, record: dict[str, Any],
               step: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The update that ends an order whose payment was never recorded, and the record after it.

    `cancelled`, unless the gateway holds a capture for the order: a charge worker
    can die between taking the money and recording it, and its message may come
    back only after the reservation ran out. Then the order goes to `refunding`
    (the caller hands it to `payments.refund`), so nobody is charged for an
    order that is cancelled.
    """
    from orders.aws.gateway import Gateway

    reason = "reservation-expired"
    capture = Gateway(settings).capture_of(record["orderId"])
    if capture is None:
        return store.prepare(record, "cancelled", step, reason)
    log.warning("order %s: payment %s was captured but never recorded; refunding it",
                record["orderId"], capture.payment_id)
    return store.prepare(record, "refunding", step, reason, {"payment": capture.as_payment()})


def record_metrics(record: dict[str, Any]) -> None:
    """Stage latency of the change just made and, at a final state, the business metrics."""
    from orders.aws import metrics

    history = record.get("history") or []
    if len(history) >= 2:
        seconds = (parse_time(history[-1]["at"]) - parse_time(history[-2]["at"])).total_seconds()
        metrics.stage_time(history[-1]["status"], seconds)
    status = record["status"]
    if status == "completed":
        metrics.order_completed(record["totalAmount"], record["currency"],
                                parse_time(history[0]["at"]) if history else None)
    elif status == "cancelled":
        metrics.order_cancelled(record.get("reason") or "unknown")
    elif status == "rejected":
        metrics.order_rejected()


def fail_order(settings: Settings, order_id: str, reason: str) -> bool:
    """Mark an order failed (its message reached a DLQ) and publish OrderFailed."""
    store = OrderStore(settings)
    if not store.mark_failed(order_id, reason):
        return False
    record = store.load(order_id)
    if record:
        sns.publish(settings, [event("OrderFailed", record, {"reason": reason})])
    return True


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


class StepTask(Task):  # type: ignore[misc]
    """Base of the pipeline's tasks: bounded retries of RetryableError only, with backoff and jitter.

    Anything else a task raises is a bug or a poison message: the message is
    left un-acked (task_acks_on_failure=False), SQS redelivers it and after
    maxReceiveCount moves it to the queue's DLQ.
    """

    abstract = True
    autoretry_for = (RetryableError,)
    retry_backoff = True  # 1 s, 2 s, 4 s, ... (full jitter), capped by settings.retry_backoff_max
    retry_backoff_max = 600
    retry_jitter = True
    max_retries = 5

    def retry(self, args: Any = None, kwargs: Any = None, exc: Any = None, throw: bool = True,
              eta: Any = None, countdown: Any = None, max_retries: Any = None, **options: Any) -> Any:
        """A retry that keeps its FIFO message group and gets a fresh deduplication id.

        FIFO queues take no per-message delay: the countdown is held by the
        worker that receives the retry (Celery's ETA), which is why the cap
        stays far below every visibility timeout.
        """
        if countdown is not None:
            countdown = min(countdown, get_settings().retry_backoff_max)
        properties = self.request.properties or {}
        if properties.get("MessageGroupId"):
            original = str(properties.get("MessageDeduplicationId") or self.request.id)
            base = re.sub(r"\.r\d+$", "", original)
            options.setdefault("MessageGroupId", properties["MessageGroupId"])
            options.setdefault("MessageDeduplicationId", f"{base}.r{self.request.retries + 1}")
        return super().retry(args, kwargs, exc, throw, eta, countdown, max_retries, **options)
