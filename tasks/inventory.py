"""The inventory service (inventory.fifo): reservations, the expiry sweep and restocks."""

from __future__ import annotations

from typing import Any

from orders.celery import app
from orders.runtime.step_tasks import StepTask
from orders.steps.expiry import sweep
from orders.steps.reservation import reserve
from orders.steps.restocking import restock as add_stock


@app.task(base=StepTask, bind=True, name="inventory.reserve")
def reserve_stock(self: StepTask, order_id: Any = None) -> dict[str, Any]:
    """Reserve every line of the order at once (all or nothing), or cancel it as out of stock."""
    return self.conclude(reserve(self.dependencies(), order_id))


@app.task(base=StepTask, bind=True, name="inventory.release_expired")
def release_expired(self: StepTask) -> dict[str, Any]:
    """Periodic (beat): give back every expired hold and cancel the orders still waiting on one."""
    return {"released": sweep(self.dependencies(), self.settle)}


@app.task(base=StepTask, bind=True, name="inventory.restock")
def restock(self: StepTask, sku: str, quantity: int, restock_id: str) -> dict[str, Any]:
    """Add stock once per restock id (`orders inventory restock` sends these)."""
    result, events = add_stock(self.dependencies().stock, sku, int(quantity), restock_id)
    self.publish(events)
    return result
