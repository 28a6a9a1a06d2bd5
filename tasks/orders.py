"""The order service: `place_order` (validation at the door, then `orders.place`) and the review step."""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

from celery.result import AsyncResult

from orders.aws.store import OrderStore
from orders.aws.tables import aws_errors, now_iso
from orders.celery import app
from orders.domain.errors import InvalidOrder
from orders.domain.events import Event, event
from orders.domain.order import ID_PATTERN, Order, review_concerns, validate
from orders.settings import Settings, get_settings
from orders.steps.workflow import (
    StepTask,
    admit,
    check,
    done_by,
    finish,
    is_large,
    next_step,
    record_metrics,
    run_step,
    skipped,
)

log = logging.getLogger(__name__)


class PlaceOrderTask(StepTask):
    """`place_order.delay(order)` validates before anything is sent and picks the entry queue."""

    def delay(self, *args: Any, **kwargs: Any) -> AsyncResult:
        """Validate `order` (every problem, unknown SKUs too) and send it; InvalidOrder if invalid."""
        if len(args) != 1 or kwargs:
            raise TypeError("usage: place_order.delay(order)")
        message_args, message_kwargs, options = placement(args[0])
        with aws_errors():  # SQS unreachable or throttling: a RetryableError for the caller
            return self.apply_async(message_args, message_kwargs, **options)


def placement(raw: Any) -> tuple[tuple[Any, ...], dict[str, Any], dict[str, Any]]:
    """What `place_order.delay(raw)` sends: (args, kwargs, send options); InvalidOrder if invalid.

    Callers that send many orders together (a batching API, the benchmark) use it
    to send exactly what delay() would.
    """
    order, options = admit(get_settings(), raw)
    return (order.to_json(),), {"placed_at": now_iso()}, options


@app.task(base=PlaceOrderTask, bind=True, name="orders.place")
def place_order(self: StepTask, order: Any = None, *extra: Any, placed_at: Any = None,
                **unexpected: Any) -> dict[str, Any]:
    """Record a placed order and start its chain; a malformed message ends `rejected`, never crashes."""
    placed = placed_at if isinstance(placed_at, str) else now_iso()
    correlation_id = str(self.request.root_id or self.request.id)
    if extra or unexpected:
        settings = get_settings()
        problem = (f"message: orders.place takes one order, got {1 + len(extra)} argument(s)"
                   + (f" and {', '.join(sorted(unexpected))}" if unexpected else ""))
        raw = {"args": [order, *extra], "kwargs": unexpected}
        return reject(settings, OrderStore(settings), raw, [problem], placed, correlation_id)
    return place(get_settings(), order, placed, correlation_id)


def place(settings: Settings, raw: Any, placed_at: str, correlation_id: str) -> dict[str, Any]:
    """Validate again (messages can be hand-made), record, announce, hand off."""
    store = OrderStore(settings)
    try:
        order = check(settings, raw)
    except InvalidOrder as exc:
        return reject(settings, store, raw, exc.problems, placed_at, correlation_id)
    record, created = store.create(order, placed_at, correlation_id, is_large(settings, order))
    if created:
        record_metrics(record)
    elif record.get("fingerprint") != order.fingerprint():
        log.warning("order %s placed again with different content: ignored", order.order_id)
        return {"orderId": order.order_id, "status": record["status"], "conflict": True}
    elif not (record["status"] == "validated" and done_by(record, "place")):
        return skipped(order.order_id, "place", record)
    return finish(settings, record, [placed_event(record, order)], next_step(record, "place"))


def placed_event(record: dict[str, Any], order: Order) -> Event:
    return event("OrderPlaced", record, {"customerId": order.customer_id, "tier": order.tier,
                                         "totalAmount": str(order.total), "currency": order.currency,
                                         "lines": len(order.items), "review": bool(record["needsReview"])})


def reject(settings: Settings, store: OrderStore, raw: Any, problems: list[str], placed_at: str,
           correlation_id: str) -> dict[str, Any]:
    """Record the refusal with every problem and announce OrderRejected (once per order id)."""
    order_id = rejected_id(raw)
    record, created = store.reject(order_id, problems, placed_at, correlation_id)
    if created:
        record_metrics(record)
    elif record["status"] != "rejected":
        return skipped(order_id, "place", record)  # a valid order already holds this id
    log.warning("order %s rejected: %s", order_id, "; ".join(problems))
    return finish(settings, record, [event("OrderRejected", record, {"problems": record["problems"]})])


def rejected_id(raw: Any) -> str:
    """The order's own id when usable, else one derived from the message content."""
    order_id = raw.get("orderId") if isinstance(raw, dict) else None
    if isinstance(order_id, str) and ID_PATTERN.match(order_id):
        return order_id
    digest = hashlib.sha256(json.dumps(raw, sort_keys=True, default=str).encode()).hexdigest()
    return f"invalid-{digest[:20]}"


@app.task(base=StepTask, bind=True, name="orders.review")
def review_order(self: StepTask, order_id: Any = None) -> dict[str, Any]:
    """The review step of large orders (automated rules, simulated: see orders.domain.order)."""
    return review(get_settings(), order_id)


def review(settings: Settings, order_id: Any) -> dict[str, Any]:
    def act(store: OrderStore, record: dict[str, Any]) -> tuple[dict[str, Any], list[Event]]:
        concerns = review_concerns(validate(record["order"]), settings.review_threshold)
        if concerns:
            return store.transition(record, "cancelled", "review", "review-declined",
                                    {"problems": concerns}), []
        return store.transition(record, "reviewed", "review"), []

    def announce(record: dict[str, Any]) -> tuple[list[Event], str | None]:
        if record["status"] == "reviewed":
            return [event("OrderReviewed", record, {"decision": "approved"})], "reserve"
        return [event("OrderCancelled", record, {"reason": record.get("reason"),
                                                  "problems": record.get("problems") or []})], None

    return run_step(settings, order_id, "review", ("validated",), act, announce)
