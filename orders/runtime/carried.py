"""The order as a step left it, carried in the chain's next message: the next step's first call is its write.

A step that lets its order go on along the chain knows the record exactly as it wrote it.
Rather than have the next step read it again (a GetItem before every write), the record
rides in a header of the next message (`orders_record`), which that step takes as a guess
(orders.steps.ports.Deps.given): its write is conditional on the version and state it read
there, so a record out of date (a message delivered twice, redriven from its DLQ, or made
by hand) changes nothing and the step reads the order and decides again
(orders.steps.state_machine.run_step). A header rather than an argument: a worker of an
older release ignores it, and the task's arguments (what logs and Flower show) stay the
order id. The record's sensitive fields are sealed, as in the place message.

Celery's tracer sends the chain's next message from the request's `chain` (the remaining
signatures, next one last) once the task returns: the header goes on that signature's
options just before, so it reaches the next message only.
"""

from __future__ import annotations

from typing import Any

from orders.domain.errors import InvalidOrder
from orders.domain.records import OrderRecord

HEADER = "orders_record"


def attach(chain: list[Any] | None, task: str, record: OrderRecord) -> None:
    """Carry `record` in the chain's next message, if that message is `task`'s."""
    if not chain or not isinstance(chain[-1], dict) or chain[-1].get("task") != task:
        return
    following = dict(chain[-1])
    options = dict(following.get("options") or {})
    options["headers"] = {**(options.get("headers") or {}), HEADER: record.carried()}
    following["options"] = options
    chain[-1] = following


def given(request: Any) -> OrderRecord | None:
    """The record this task's message carried, if any (a guess: see the module's docstring).

    Only a record of its own order whose sensitive fields are sealed: a field in clear would be
    used as it is (a forged shipping address), while a sealed one opens only under its order's id
    and field (orders.aws.field_crypto); the stored records are always sealed.
    """
    record = OrderRecord.from_carried(getattr(request, HEADER, None))
    if record is None:
        return None
    try:
        order = record.order()
    except (InvalidOrder, KeyError, ValueError, TypeError):
        return None
    return record if order.order_id == record.order_id and not order.in_clear() else None
