"""How long an order may rest in a state that is not final: derived from the step it waits for.

An order waits in each state for one step (`reserved` for the charge, `paid` for
the shipment, `refunding` for the refund). That step's retries keep its message going
for at most the retry span from its first failure (orders.runtime.step_tasks.retry_span:
the retry budget, and a last send waiting out an SQS outage); its last message is then
delivered at most `maxReceiveCount` times by the queue it runs on, each delivery held
at most the queue's visibility timeout (the task's time limit stays below it); once SQS
has moved it to the DLQ, the watcher marks the order `failed` within one pass. Past the
sum, the order is stuck: no step of the pipeline will move it any more.
"""

from __future__ import annotations

import math

from orders.domain.records import OrderRecord
from orders.domain.states import OrderState, Step
from orders.runtime.step_tasks import retry_span
from orders.settings import Settings
from orders.steps.flow import COMPENSATION, following, task_of
from orders.topology import queues_for_task

#: The step each resting state waits for (`validated` waits for the review or the reservation:
#: see `waiting_for`). No step leaves an order in `shipped` (the shipment completes it in the
#: same write), but a record found there waits for the shipment all the same.
WAITS_FOR: dict[OrderState, Step] = {
    OrderState.PLACED: Step.PLACE,
    OrderState.REVIEWED: Step.RESERVE,
    OrderState.RESERVED: Step.CHARGE,
    OrderState.PAID: Step.SHIP,
    OrderState.SHIPPED: Step.SHIP,
    OrderState.REFUNDING: COMPENSATION,
}


def waiting_for(record: OrderRecord) -> Step | None:
    """The step that moves the order on from where it is (None for a final order)."""
    if record.status is OrderState.VALIDATED:
        return following(Step.PLACE, bool(record.needs_review))
    return WAITS_FOR.get(record.status)


def step_budget(settings: Settings, step: Step) -> int:
    """Seconds an order may wait for `step` before the watcher has marked it failed (module docstring)."""
    deliveries = max(q.max_receive_count * q.visibility_timeout for q in queues_for_task(task_of(step)))
    return math.ceil(retry_span(settings) + deliveries + settings.dlq_watch_seconds)


def shortest_budget(settings: Settings) -> int:
    """The least time any resting state is allowed: an order placed more recently cannot be stuck."""
    steps = {*WAITS_FOR.values(), following(Step.PLACE, True), following(Step.PLACE, False)}
    return min(step_budget(settings, step) for step in steps if step is not None)


def allowed_seconds(settings: Settings, record: OrderRecord,
                    stuck_after: float | None = None) -> float | None:
    """How long the order may stay in its state: `stuck_after` if given, else its step's budget;
    None for a final order."""
    step = waiting_for(record)
    if step is None:
        return None
    return stuck_after if stuck_after is not None else float(step_budget(settings, step))
