"""The order of the steps: the pipeline's definition, in one place.

    place ─▶ [review] ─▶ reserve ─▶ charge ─▶ ship
             (large orders)          │ declined: release, cancel
                                     └ after capture, a failure ─▶ refund (compensation)

`PIPELINE` lists the stages in order, each with the task that runs it (by name: a
name is part of every message in flight, and the runtime turns the list into one
Celery chain, orders.runtime.pipeline). A stage that records a step of the order's
state machine names that step; a check (`step=None`) only lets an order on or ends
it. Inserting a stage is one line here, plus its task (docs/pipeline.md shows one).
"""

from __future__ import annotations

from dataclasses import dataclass

from orders.domain.records import OrderRecord
from orders.domain.states import Step


@dataclass(frozen=True)
class Stage:
    """One stage of the pipeline: the task that runs it, the step it records, which orders pass it."""

    task: str
    step: Step | None = None  # None: a check, which records no state of its own
    review_only: bool = False  # only for orders large enough to need review


#: The pipeline, in order.
PIPELINE: tuple[Stage, ...] = (
    Stage("orders.place", Step.PLACE),
    Stage("orders.review", Step.REVIEW, review_only=True),
    Stage("inventory.reserve", Step.RESERVE),
    Stage("payments.charge", Step.CHARGE),
    Stage("shipping.create_shipment", Step.SHIP),
)
#: Where an order goes when a step after the capture fails: the money goes back. A branch
#: off the pipeline, not a stage of it: it ends the order.
COMPENSATION = Step.REFUND
REFUND = Stage("payments.refund", COMPENSATION)
#: The step each pipeline task runs, by task name (logs and spans label a task's lines with it).
STEP_OF_TASK: dict[str, str] = {stage.task: stage.step.value for stage in (*PIPELINE, REFUND)
                                if stage.step is not None}


def stages(review: bool, start: Step = Step.PLACE) -> list[Stage]:
    """The stages an order passes from `start` on (`start` included) when nothing ends it early."""
    if start is COMPENSATION:
        return [REFUND]
    first = next((i for i, s in enumerate(PIPELINE) if s.step is start), None)
    if first is None:  # a hand outside the pipeline (the expiry sweep, the DLQ watcher)
        return []
    return [PIPELINE[first], *(s for s in PIPELINE[first + 1:] if review or not s.review_only)]


def task_of(step: Step) -> str:
    """The name of the task that runs `step`."""
    return next(s.task for s in (*PIPELINE, REFUND) if s.step is step)


def following(step: Step, review: bool) -> Step | None:
    """The step after `step` on the happy path of an order that needs review (or not)."""
    later = [s.step for s in stages(review, step)[1:] if s.step is not None]
    return later[0] if later else None


def next_step(record: OrderRecord, step: Step) -> Step | None:
    """The step after `step` for this order (the review step only for large orders)."""
    return following(step, bool(record.needs_review))


def happy_path(review: bool) -> list[Step]:
    """Every step an order passes when nothing ends it early, placement first."""
    return [s.step for s in stages(review) if s.step is not None]
