"""docs/pipeline.md's example, exactly: a fraud check inserted into the pipeline in one place.

The rule and the task below are the example's; the test puts the stage into
`orders.steps.flow.PIPELINE` (the one line the example adds) for its own duration.
"""

from __future__ import annotations

from typing import Any

import pytest

from orders import place_order
from orders.aws.gateway import Gateway
from orders.aws.stock import get_stock, set_stock
from orders.celery import app
from orders.domain.events import Event, event
from orders.domain.records import Change, OrderRecord
from orders.domain.states import OrderState, Step
from orders.runtime.step_tasks import StepTask
from orders.steps import flow
from orders.steps.flow import Stage
from orders.steps.ports import Deps
from orders.steps.state_machine import Outcome, run_step
from tests.integration.pipeline_support import (
    make_order,
    path,
    pipeline,
    recorded_sends,
    statuses,
    wait_final,
)

pytestmark = pytest.mark.integration

BLOCKED = frozenset({"cust-blocked"})  # stands for a real screening service


def screen(deps: Deps, order_id: object) -> Outcome | None:
    """Cancel a blocked customer's order before any stock is held; None lets it on."""
    record = deps.orders.load(order_id) if isinstance(order_id, str) else None
    if record is None or record.customer_id not in BLOCKED:
        return None

    def act(record: OrderRecord) -> tuple[OrderRecord, list[Event]]:
        suspected = Change(OrderState.CANCELLED, Step.REVIEW, "fraud-suspected")  # a review decision
        return deps.orders.transition(record, suspected), []

    def announce(record: OrderRecord) -> tuple[list[Event], Step | None]:
        return [event("OrderCancelled", record, {"reason": record.reason})], None

    return run_step(deps, order_id, Step.REVIEW, (OrderState.VALIDATED, OrderState.REVIEWED), act, announce)


@app.task(base=StepTask, bind=True, name="orders.fraud_check")
def fraud_check(self: StepTask, order_id: Any = None) -> dict[str, Any]:
    """The fraud check: a blocked customer's order ends here; the others go on."""
    outcome = screen(self.dependencies(), order_id)
    return self.conclude(outcome) if outcome else {"orderId": order_id, "screened": "passed"}


WITH_FRAUD_CHECK = (
    Stage("orders.place", Step.PLACE),
    Stage("orders.review", Step.REVIEW, review_only=True),
    Stage("orders.fraud_check"),  # the new stage: a check, before any stock is held
    Stage("inventory.reserve", Step.RESERVE),
    Stage("payments.charge", Step.CHARGE),
    Stage("shipping.create_shipment", Step.SHIP),
)


def test_a_fraud_check_inserted_in_one_place_screens_every_order(infra, monkeypatch):
    monkeypatch.setattr(flow, "PIPELINE", WITH_FRAUD_CHECK)
    set_stock(infra, "SKU-F", 10)
    good, blocked = make_order(sku="SKU-F", quantity=2), make_order(sku="SKU-F", customerId="cust-blocked")
    large = make_order(sku="SKU-F", quantity=3, price="2000.00")
    with recorded_sends() as sent:
        for order in (good, blocked, large):
            place_order.delay(order)
        with pipeline():
            ends = [wait_final(infra, o["orderId"]) for o in (good, blocked, large)]
    assert path(sent, good) == ["orders.place", "orders.fraud_check", "inventory.reserve", "payments.charge",
                                "shipping.create_shipment"]
    assert path(sent, large)[:4] == ["orders.place", "orders.review", "orders.fraud_check",
                                     "inventory.reserve"]
    assert path(sent, blocked) == ["orders.place", "orders.fraud_check"]  # the chain ended at the check
    assert statuses(ends[0]) == ["placed", "validated", "reserved", "paid", "shipped", "completed"]
    assert statuses(ends[2])[-1] == "completed"
    assert (ends[1]["status"], ends[1]["reason"]) == ("cancelled", "fraud-suspected")
    assert Gateway(infra).lookup(f"{blocked['orderId']}:charge") is None
    assert get_stock(infra, "SKU-F") == {"sku": "SKU-F", "available": 5, "reserved": 0}
