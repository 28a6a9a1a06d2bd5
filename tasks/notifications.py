"""The notification service (notifications): tell the customer about each customer event, once.

The events come from SNS (the queue's subscription to `order-status`, filtered on
`event_type`) as `notifications.notify` task messages; orders.steps.notification
claims and renders them.
"""

from __future__ import annotations

from typing import Any

from orders.celery import app
from orders.runtime.step_tasks import StepTask
from orders.steps.notification import notify as notify_customer


@app.task(base=StepTask, bind=True, name="notifications.notify")
def notify(self: StepTask, event: Any = None) -> dict[str, Any]:
    """Send the customer notification for one event (once per order and event type)."""
    return notify_customer(self.dependencies().orders, event)
