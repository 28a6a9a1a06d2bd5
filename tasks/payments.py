"""The payment service (payments): charge through the simulated gateway, refund after a late failure."""

from __future__ import annotations

from typing import Any

from orders.celery import app
from orders.runtime.step_tasks import StepTask
from orders.steps.charge import charge as charge_step
from orders.steps.refund import refund as refund_step


@app.task(base=StepTask, bind=True, name="payments.charge")
def charge(self: StepTask, order_id: Any = None) -> dict[str, Any]:
    """Capture the order's total once; a decline releases the stock and cancels the order."""
    return self.conclude(charge_step(self.dependencies(), order_id))


@app.task(base=StepTask, bind=True, name="payments.refund")
def refund(self: StepTask, order_id: Any = None) -> dict[str, Any]:
    """Refund a captured payment after a later step failed, put sold units back, cancel the order."""
    return self.conclude(refund_step(self.dependencies(), order_id))
