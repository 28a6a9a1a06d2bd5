"""The pipeline's steps as Celery tasks: the base task (bounded retries, FIFO ids kept), the routing of
each step's message, and what happens after a step (its events published, the next step sent).

Routing: VIP orders enter through `orders-priority.fifo` (message group = the
customer, deduplication id = the order id); the others through `orders`.
Inventory messages join the FIFO group of the order's first product (its first line),
with the deduplication id `<order id>.reserve`.

Hand-offs are explicit sends, not a Celery chain in the message, because the next
step depends on the outcome (cancel, refund) and on the order (FIFO ids): each
step's Outcome names it (orders.steps.flow) and `StepTask.conclude` sends it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Protocol, cast

from celery import Task

from orders.domain.errors import RetryableError
from orders.domain.events import Event
from orders.domain.order import Order
from orders.domain.records import OrderRecord
from orders.domain.states import Step
from orders.runtime import publishing
from orders.runtime.dependencies import dependencies
from orders.settings import Settings
from orders.steps.admission import check
from orders.steps.ports import Deps
from orders.steps.state_machine import Outcome

#: The Celery task of each step (names are a contract: messages in flight carry them).
TASKS: dict[Step, str] = {Step.PLACE: "orders.place", Step.REVIEW: "orders.review",
                          Step.RESERVE: "inventory.reserve", Step.CHARGE: "payments.charge",
                          Step.SHIP: "shipping.create_shipment", Step.REFUND: "payments.refund"}
PRIORITY_QUEUE = "orders-priority.fifo"


def admit(settings: Settings, raw: Any) -> tuple[Order, dict[str, Any]]:
    """Validate an order at the door (shape and known SKUs) and choose its entry queue.

    Raises InvalidOrder listing every problem; nothing has been sent then.
    """
    order = check(dependencies(settings).stock, raw)
    return order, entry_options(order)


def entry_options(order: Order) -> dict[str, Any]:
    """Where `orders.place` goes: VIP customers through the priority FIFO queue."""
    if order.is_vip:
        return {"queue": PRIORITY_QUEUE, "MessageGroupId": order.customer_id,
                "MessageDeduplicationId": order.order_id}
    return {"queue": "orders"}


def step_options(step: Step, order: Order) -> dict[str, Any]:
    """The message options of `step` for an order (FIFO ids for the inventory queue)."""
    if step is Step.RESERVE:
        return {"MessageGroupId": order.lead_sku, "MessageDeduplicationId": f"{order.order_id}.{step.value}"}
    return {}


def task_result(outcome: Outcome) -> dict[str, Any]:
    """A step task's JSON result."""
    record = outcome.record
    status = record.status.value if record else None
    if outcome.conflict:
        return {"orderId": outcome.order_id, "status": status, "conflict": True}
    if outcome.skipped:
        return {"orderId": outcome.order_id, "status": status, "reason": record.reason if record else None,
                "paid": bool(record and record.payment), "skipped": True}
    return {"orderId": outcome.order_id, "status": status, "reason": record.reason if record else None,
            "next": TASKS.get(outcome.then) if outcome.then else None}


class _AppWithSettings(Protocol):
    settings: Settings


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

    @property
    def settings(self) -> Settings:
        """The settings of the app this task runs in (orders.celery.OrdersCelery.settings)."""
        return cast(_AppWithSettings, self.app).settings

    def dependencies(self) -> Deps:
        return dependencies(self.settings)

    def conclude(self, outcome: Outcome) -> dict[str, Any]:
        """Publish a step's events together, then send its next step; the task's JSON result."""
        self.publish(outcome.events)
        if outcome.then is not None and outcome.record is not None:
            self.hand_off(outcome.record, outcome.then)
        return task_result(outcome)

    def publish(self, events: Sequence[Event]) -> None:
        if events:
            publishing.publish(self.settings, events)

    def hand_off(self, record: OrderRecord, step: Step) -> None:
        """Send the order id to `step`'s task."""
        # Only the inventory queue's ids need the order's content: other hand-offs do not read it.
        options = step_options(step, record.order()) if step is Step.RESERVE else {}
        self.app.send_task(TASKS[step], args=(record.order_id,), **options)

    def retry(self, args: Any = None, kwargs: Any = None, exc: Any = None, throw: bool = True,
              eta: Any = None, countdown: Any = None, max_retries: Any = None, **options: Any) -> Any:
        """A retry that keeps its FIFO message group and gets a fresh deduplication id.

        FIFO queues take no per-message delay: the countdown is held by the
        worker that receives the retry (Celery's ETA), which is why the cap
        stays far below every visibility timeout.
        """
        if countdown is not None:
            countdown = min(countdown, self.settings.retry_backoff_max)
        properties = self.request.properties or {}
        if properties.get("MessageGroupId"):
            original = str(properties.get("MessageDeduplicationId") or self.request.id)
            base = re.sub(r"\.r\d+$", "", original)
            options.setdefault("MessageGroupId", properties["MessageGroupId"])
            options.setdefault("MessageDeduplicationId", f"{base}.r{self.request.retries + 1}")
        return super().retry(args, kwargs, exc, throw, eta, countdown, max_retries, **options)
