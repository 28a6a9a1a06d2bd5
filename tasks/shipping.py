"""The shipping service (shipping): book the shipment with the (SIMULATED) carrier; the order completes."""

from __future__ import annotations

from typing import Any

from orders.celery import app
from orders.runtime.step_tasks import StepTask
from orders.steps.shipment import ship


@app.task(base=StepTask, bind=True, name="shipping.create_shipment")
def create_shipment(self: StepTask, order_id: Any = None) -> dict[str, Any]:
    """Book the shipment once (the tracking number is recorded per order) and complete the order."""
    return self.conclude(ship(self.dependencies(), order_id))
