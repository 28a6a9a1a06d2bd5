"""The notification service (notifications): tell the customer about each customer event, once;
and the SNS publishing task for producers outside the pipeline.

The events come from SNS (the queue's subscription to `order-status`, filtered on
`event_type`) as `notifications.notify` task messages; orders.steps.notification
claims and renders them.
"""

from __future__ import annotations

from typing import Any

from orders.celery import app
from orders.runtime import publishing
from orders.runtime.step_tasks import StepTask
from orders.steps.notification import notify as notify_customer


@app.task(base=StepTask, bind=True, name="notifications.notify")
def notify(self: StepTask, event: Any = None) -> dict[str, Any]:
    """Send the customer notification for one event (once per order and event type)."""
    deps = self.dependencies()
    return notify_customer(deps.orders, deps.fields, event)


@app.task(base=StepTask, bind=True, name="notifications.publish")
def publish(self: StepTask, events: Any = None) -> dict[str, Any]:
    """Publish events to their SNS topics for a producer outside the pipeline (`publishing.publish_later`).

    Event ids are stable, so a message delivered twice publishes the same events again:
    subscribers drop the duplicate. SNS's transient failures retry (RetryableError).
    """
    decoded = publishing.events_from(events)
    publishing.publish(self.settings, decoded)
    return {"published": len(decoded)}
