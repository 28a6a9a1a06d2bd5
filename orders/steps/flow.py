"""The order of the steps: the pipeline's definition, in one place.

    place ─▶ [review] ─▶ reserve ─▶ charge ─▶ ship
             (large orders)          │ declined: release, cancel
                                     └ after capture, a failure ─▶ refund (compensation)

Each step says where an order goes next from the state it left it in; the runtime
turns that into a message (today a hand-off to the next task).
"""

from __future__ import annotations

from orders.domain.records import OrderRecord
from orders.domain.states import Step

#: After each step but the first, on the happy path.
_FOLLOWS: dict[Step, Step] = {Step.REVIEW: Step.RESERVE, Step.RESERVE: Step.CHARGE, Step.CHARGE: Step.SHIP}
#: Where an order goes when a step after the capture fails: the money goes back.
COMPENSATION = Step.REFUND


def following(step: Step, review: bool) -> Step | None:
    """The step after `step` on the happy path of an order that needs review (or not)."""
    if step is Step.PLACE:
        return Step.REVIEW if review else Step.RESERVE
    return _FOLLOWS.get(step)


def next_step(record: OrderRecord, step: Step) -> Step | None:
    """The step after `step` for this order (the review step only for large orders)."""
    return following(step, bool(record.needs_review))


def happy_path(review: bool) -> list[Step]:
    """Every step an order passes when nothing ends it early, placement first."""
    path = [Step.PLACE]
    while (then := following(path[-1], review)) is not None:
        path.append(then)
    return path
