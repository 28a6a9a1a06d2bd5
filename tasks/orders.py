"""The order service: `place_order` (validation at the door, then the order's chain) and the review step."""

from __future__ import annotations

from typing import Any

from celery.result import AsyncResult

from orders.celery import app
from orders.domain.errors import InvalidOrder
from orders.domain.order import Order, needs_review, validate
from orders.domain.times import now_iso
from orders.runtime import pipeline, region_gate
from orders.runtime.dependencies import dependencies
from orders.runtime.publishing import send_errors
from orders.runtime.step_tasks import StepTask, admit
from orders.settings import Settings
from orders.steps.admission import place, reject_malformed, seal
from orders.steps.review import review


class PlaceOrderTask(StepTask):
    """`place_order.delay(order)` validates before anything is sent; sending it sends the order's pipeline."""

    def delay(self, *args: Any, **kwargs: Any) -> AsyncResult:
        """Validate `order` (every problem, unknown SKUs too) and send its pipeline; InvalidOrder if invalid.

        RetryableError if SQS cannot take the message now (unreachable, refusing connections,
        throttling), PermanentError if it refuses it (`send_errors`). The handle is the chain's
        last task's; `.parent` leads back to `orders.place`.
        """
        if len(args) != 1 or kwargs:
            raise TypeError("usage: place_order.delay(order)")
        target = region_gate.producing(app.settings)  # the active region's queues (multi-region)
        message_args, message_kwargs, options = placement(args[0], target)
        with send_errors():
            if target == app.settings:
                return self.apply_async(message_args, message_kwargs, **options)
            with app.producer_pool_for(target).acquire(block=True) as producer:
                return self.apply_async(message_args, message_kwargs, producer=producer, **options)

    def apply_async(self, args: Any = None, kwargs: Any = None, task_id: str | None = None,
                    producer: Any = None, *extra: Any, **options: Any) -> AsyncResult:
        """Send one order's whole pipeline (orders.runtime.pipeline), `options` on its first message.

        Celery's own sends of this task (the first message of a chain, a retry) carry
        the `chain` option and go as they are; so does a message that holds no valid
        order, for `orders.place` to reject.
        """
        canvas = None if "chain" in options or extra else _canvas(args, kwargs)
        if canvas is None:
            return super().apply_async(args, kwargs, task_id, producer, *extra, **options)
        return pipeline.send(canvas, producer, **({"task_id": task_id} if task_id else {}), **options)


def placement(raw: Any, settings: Settings | None = None
              ) -> tuple[tuple[Any, ...], dict[str, Any], dict[str, Any]]:
    """What `place_order.delay(raw)` sends: (args, kwargs, send options); InvalidOrder if invalid.

    The order is validated in clear, then its sensitive fields are sealed (orders.domain.sensitive):
    nothing is sent in clear. Callers that send many orders together (a batching API, the
    benchmark) use it and `place_order.apply_async(args, kwargs, **options)` to send exactly
    what delay() would.
    """
    settings = settings or app.settings
    order, options = admit(settings, raw)
    return (*message_arguments(seal(dependencies(settings).fields, order)), options)


def message_arguments(order: Order) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The arguments (args, kwargs) of a valid, sealed order's place message, as `_canvas` reads them back."""
    if order.in_clear():
        raise ValueError(f"order {order.order_id}: sensitive fields are sent sealed only (seal it first)")
    return (order.to_json(),), {"placed_at": now_iso()}


def _canvas(args: Any, kwargs: Any) -> Any:
    """The pipeline of the order in a place message's arguments, or None if they hold no valid order."""
    placed_at = (kwargs or {}).get("placed_at")
    if not (isinstance(args, (list, tuple)) and len(args) == 1 and set(kwargs or {}) <= {"placed_at"}
            and isinstance(placed_at, (str, type(None)))):
        return None
    try:
        order = validate(args[0])
    except InvalidOrder:
        return None
    # An order given to apply_async in clear is sealed here: no place message carries a field in clear.
    order = seal(dependencies(app.settings).fields, order)
    return pipeline.canvas(app, order, placed_at, needs_review(order, app.settings.review_threshold))


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
