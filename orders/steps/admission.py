"""Admission: an order checked at the door, then recorded (placed, validated) or rejected with every problem.

The door (`place_order.delay`, the API) and the place step both `check`: messages
can be hand-made, so the step validates again before recording anything. The door seals the
sensitive fields (`seal`) before anything is sent; a place message that still carries one in
clear (sent with `send_task`, past the door) is sealed by the step before it is recorded.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from orders.domain.errors import InvalidOrder
from orders.domain.events import Event, event
from orders.domain.order import ID_PATTERN, MAX_LINES, Order, needs_review, validate
from orders.domain.records import OrderRecord
from orders.domain.states import OrderState, Step
from orders.steps.flow import next_step
from orders.steps.ports import Deps, Fields, Inventory
from orders.steps.state_machine import Outcome, record_metrics, skipped

log = logging.getLogger(__name__)


def check(stock: Inventory, raw: Any) -> Order:
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
    skus = _well_formed_skus(raw)
    problems += [f"items: unknown sku {sku}" for sku in stock.unknown_skus(skus)] if skus else []
    if problems or order is None:
        raise InvalidOrder(problems)
    return order


def _well_formed_skus(raw: Any) -> list[str]:
    """The SKUs worth looking up: well formed, of the first MAX_LINES lines only (an order with
    more lines is refused for that; its size must not decide how many lookups are made)."""
    items = raw.get("items") if isinstance(raw, dict) else None
    if not isinstance(items, list):
        return []
    return [i["sku"] for i in items[:MAX_LINES] if isinstance(i, dict) and isinstance(i.get("sku"), str)
            and ID_PATTERN.match(i["sku"])]


def seal(fields: Fields, order: Order) -> Order:
    """The order with its sensitive fields sealed (its fingerprint, of the plaintext, carried)."""
    return order.sealed(fields.seal) if order.in_clear() else order


def place(deps: Deps, raw: Any, placed_at: str, correlation_id: str) -> Outcome:
    """Validate again, record the order (once per order id) and announce OrderPlaced."""
    try:
        order = check(deps.stock, raw)
    except InvalidOrder as exc:
        return reject(deps, raw, exc.problems, placed_at, correlation_id)
    if order.in_clear():
        log.warning("order %s arrived with %s in clear (sent past the door): sealed before it is recorded",
                    order.order_id, ", ".join(f.value for f in order.in_clear()))
        order = seal(deps.fields, order)
    review = needs_review(order, deps.settings.review_threshold)
    record, created = deps.orders.create(order, placed_at, correlation_id, review)
    if created:
        record_metrics(deps.metrics, record)
    elif record.fingerprint != order.fingerprint():
        log.warning("order %s placed again with different content: ignored", order.order_id)
        return Outcome(order.order_id, record, conflict=True)
    elif not (record.standing().status is OrderState.VALIDATED and record.last_step is Step.PLACE):
        return skipped(order.order_id, Step.PLACE, record)  # past placement (a failed order: resumed)
    return Outcome(order.order_id, record, (placed_event(record, order),), next_step(record, Step.PLACE))


def placed_event(record: OrderRecord, order: Order) -> Event:
    return event("OrderPlaced", record, {"customerId": order.customer_id, "tier": order.tier,
                                         "totalAmount": str(order.total), "currency": order.currency,
                                         "lines": len(order.items), "review": bool(record.needs_review)})


def reject_malformed(deps: Deps, order: Any, extra: Sequence[Any], unexpected: Mapping[str, Any],
                     placed_at: str, correlation_id: str) -> Outcome:
    """A place message with other arguments than one order: rejected, never a crash."""
    problem = (f"message: orders.place takes one order, got {1 + len(extra)} argument(s)"
               + (f" and {', '.join(sorted(unexpected))}" if unexpected else ""))
    raw = {"args": [order, *extra], "kwargs": dict(unexpected)}
    return reject(deps, raw, [problem], placed_at, correlation_id)


def reject(deps: Deps, raw: Any, problems: list[str], placed_at: str, correlation_id: str) -> Outcome:
    """Record the refusal with every problem and announce OrderRejected (once per order id)."""
    order_id = rejected_id(raw)
    record, created = deps.orders.reject(order_id, problems, placed_at, correlation_id)
    if created:
        record_metrics(deps.metrics, record)
    elif record.status is not OrderState.REJECTED:
        return skipped(order_id, Step.PLACE, record)  # a valid order already holds this id
    log.warning("order %s rejected: %s", order_id, "; ".join(problems))
    return Outcome(order_id, record, (event("OrderRejected", record, {"problems": list(record.problems)}),))


def rejected_id(raw: Any) -> str:
    """The order's own id when usable, else one derived from the message content."""
    order_id = raw.get("orderId") if isinstance(raw, dict) else None
    if isinstance(order_id, str) and ID_PATTERN.match(order_id):
        return order_id
    digest = hashlib.sha256(json.dumps(raw, sort_keys=True, default=str).encode()).hexdigest()
    return f"invalid-{digest[:20]}"
