"""The order pipeline as one Celery canvas: built from the order, sent once, carried by every message.

    chain(orders.place.s(order, placed_at=...)   on orders, or orders-priority.fifo (VIP)
          | orders.review.si(order_id)           large orders only
          | inventory.reserve.si(order_id)       on inventory.fifo (group: lead sku, dedup: <id>.reserve)
          | payments.charge.si(order_id)
          | shipping.create_shipment.si(order_id))

The stages and their order come from orders.steps.flow; this module gives each its
signature and options. The first message carries the rest of the chain, and each step's
task, once its state change is recorded, returns and lets Celery send the next one (or
ends the chain there, or branches off it: orders.runtime.step_tasks).
"""

from __future__ import annotations

from typing import Any

from celery import Celery, chain
from celery.canvas import Signature
from celery.result import AsyncResult

from orders.domain.order import Order
from orders.domain.records import OrderRecord
from orders.domain.states import Step
from orders.steps.flow import Stage, stages

PRIORITY_QUEUE = "orders-priority.fifo"


def entry_options(order: Order) -> dict[str, Any]:
    """Where `orders.place` goes: VIP customers through the priority FIFO queue."""
    if order.is_vip:
        return {"queue": PRIORITY_QUEUE, "MessageGroupId": order.customer_id,
                "MessageDeduplicationId": order.order_id}
    return {"queue": "orders"}


def step_options(step: Step | None, order: Order) -> dict[str, Any]:
    """The FIFO ids of a step's message: inventory joins the group of the order's lead product."""
    if step is Step.RESERVE:
        return {"MessageGroupId": order.lead_sku, "MessageDeduplicationId": f"{order.order_id}.{step.value}"}
    return {}


def canvas(app: Celery, order: Order, placed_at: str | None, review: bool) -> chain:
    """The whole pipeline of a valid order, placement first (review only if `review`)."""
    head = app.signature("orders.place", args=(order.to_json(),),
                         kwargs={"placed_at": placed_at} if placed_at is not None else {})
    # Its argsrepr (what logs and Flower show) is orders.runtime.redaction's, set when it is sent.
    head.set(**entry_options(order))
    return chain(head, *(_signature(app, stage, order) for stage in stages(review)[1:]))


def resume(app: Celery, record: OrderRecord, step: Step) -> Signature:
    """The pipeline of a recorded order from `step` on: a branch (compensation, or a message
    that carries no chain). Compensation is its own signature: it ends the order."""
    order = record.order()
    signatures = [_signature(app, stage, order) for stage in stages(bool(record.needs_review), step)]
    return signatures[0] if len(signatures) == 1 else chain(*signatures)


def _signature(app: Celery, stage: Stage, order: Order) -> Signature:
    # The queue is the router's (the task's service): only what it cannot know is set here.
    return app.signature(stage.task, args=(order.order_id,), immutable=True).set(
        **step_options(stage.step, order))


def send(canvas: chain, producer: Any = None, **options: Any) -> AsyncResult:
    """Send a chain: its first message carries the rest. The handle of its last task (`.parent`
    leads back to the first) with no result backend needed.

    `options` are the first message's (task id, countdown, ...). `chain.apply_async` would
    drop `producer`, which a caller sending into another environment needs (the HTTP API):
    this does what it does (freeze every task, send the first with the others as its
    `chain`) and keeps it.
    """
    head, *rest = canvas.tasks
    head.set(**options)
    last = canvas.freeze()
    for signature in rest:
        # Freezing gives each task its id (the handle's) and the sender's reply_to, which only an
        # rpc:// result backend reads; every later message would carry it.
        signature.options.pop("reply_to", None)
    head.apply_async(producer=producer, chain=rest[::-1] or None)
    return last
