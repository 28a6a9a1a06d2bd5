"""The pipeline's canvas as built from an order (no broker: signatures are plain data until sent)."""

from __future__ import annotations

from dataclasses import asdict
from decimal import Decimal
from typing import Any

import pytest

from orders.celery import app
from orders.domain.events import event
from orders.domain.order import validate
from orders.domain.records import OrderRecord
from orders.domain.states import OrderState, Step
from orders.runtime import pipeline
from orders.runtime.publishing import events_from
from tests.unit.test_steps import make_order


def tasks(canvas: Any) -> list[tuple[str, tuple[Any, ...], dict[str, Any]]]:
    return [(s.task, tuple(s.args), dict(s.options)) for s in canvas.tasks]


def test_the_canvas_of_an_order_is_its_whole_pipeline_with_each_step_s_options():
    order = validate(make_order(sku="A", quantity=2))
    canvas = pipeline.canvas(app, order, "2026-01-01T00:00:00.000000Z", review=False)
    head, *rest = tasks(canvas)
    assert head[0] == "orders.place" and head[1] == (order.to_json(),)
    assert canvas.tasks[0].kwargs == {"placed_at": "2026-01-01T00:00:00.000000Z"}
    assert head[2] == {"queue": "orders"}  # argsrepr is set where the message is built (runtime.amqp)
    assert rest == [("inventory.reserve", ("ord-1",),
                     {"MessageGroupId": "A", "MessageDeduplicationId": "ord-1.reserve"}),
                    ("payments.charge", ("ord-1",), {}), ("shipping.create_shipment", ("ord-1",), {})]
    assert all(s.immutable for s in canvas.tasks[1:])  # the previous step's result is not their argument


def test_vip_orders_enter_through_the_priority_queue_and_large_ones_pass_review():
    vip = validate(make_order(customerTier="vip"))
    head = pipeline.canvas(app, vip, None, review=True).tasks[0]
    assert head.options["queue"] == "orders-priority.fifo" and head.kwargs == {}
    assert (head.options["MessageGroupId"], head.options["MessageDeduplicationId"]) == ("cust-1", "ord-1")
    assert [t for t, _, _ in tasks(pipeline.canvas(app, vip, None, review=True))][:3] == [
        "orders.place", "orders.review", "inventory.reserve"]


def test_a_branch_resumes_the_pipeline_from_a_step_and_compensation_stands_alone():
    order = validate(make_order())
    record = OrderRecord("ord-1", OrderState.PAID, 4, content=order.to_json(), needs_review=False,
                         total_amount=Decimal(20))
    assert pipeline.resume(app, record, Step.REFUND).task == "payments.refund"
    assert [t for t, _, _ in tasks(pipeline.resume(app, record, Step.CHARGE))] == [
        "payments.charge", "shipping.create_shipment"]


def test_the_publishing_task_takes_events_and_refuses_anything_else():
    placed = event("OrderPlaced", OrderRecord("ord-1", OrderState.VALIDATED, 1, correlation_id="c"), {"a": 1})
    assert events_from([asdict(placed)]) == [placed]
    assert events_from([asdict(placed)])[0].event_id == placed.event_id  # the same id: duplicates drop
    for poison in (None, "OrderPlaced", [{"type": "OrderPlaced"}], [{**asdict(placed), "type": "Nope"}]):
        with pytest.raises(ValueError):
            events_from(poison)
