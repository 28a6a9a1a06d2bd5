"""The order service: `place_order` (validation at the door, then `orders.place`) and the review step."""

from __future__ import annotations

from typing import Any

from celery.result import AsyncResult

from orders.aws.tables import aws_errors
from orders.celery import app
from orders.domain.times import now_iso
from orders.runtime.step_tasks import StepTask, admit
from orders.steps.admission import place, reject_malformed
from orders.steps.review import review


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
    order, options = admit(app.settings, raw)
    return (order.to_json(),), {"placed_at": now_iso()}, options


@app.task(base=PlaceOrderTask, bind=True, name="orders.place")
def place_order(self: StepTask, order: Any = None, *extra: Any, placed_at: Any = None,
                **unexpected: Any) -> dict[str, Any]:
    """Record a placed order and start its chain; a malformed message ends `rejected`, never crashes."""
    placed = placed_at if isinstance(placed_at, str) else now_iso()
    correlation_id = str(self.request.root_id or self.request.id)
    if extra or unexpected:
        return self.conclude(reject_malformed(self.dependencies(), order, extra, unexpected, placed,
                                              correlation_id))
    return self.conclude(place(self.dependencies(), order, placed, correlation_id))


@app.task(base=StepTask, bind=True, name="orders.review")
def review_order(self: StepTask, order_id: Any = None) -> dict[str, Any]:
    """The review step of large orders (automated rules, simulated: see orders.domain.order)."""
    return self.conclude(review(self.dependencies(), order_id))
