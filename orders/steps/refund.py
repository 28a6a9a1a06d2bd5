"""The refund step (compensation): give a captured payment back, put sold units back on sale, cancel."""

from __future__ import annotations

from orders.domain.events import Event, event
from orders.domain.records import Change, OrderRecord
from orders.domain.states import HoldState, OrderState, Step
from orders.steps.ports import Deps
from orders.steps.reservation import released_event
from orders.steps.state_machine import Outcome, commit, run_step


def refund(deps: Deps, order_id: object) -> Outcome:
    """Refund an order in `refunding` once (the gateway is idempotent per order) and cancel it."""
    return run_step(deps, order_id, Step.REFUND, (OrderState.REFUNDING,),
                    lambda record: give_back(deps, record), announce)


def give_back(deps: Deps, record: OrderRecord) -> tuple[OrderRecord, list[Event]]:
    deps.confirm(record)  # the gateway gives the money back before our write checks the record
    payment = record.payment
    if payment is None or payment.payment_id is None or payment.amount is None or payment.currency is None:
        raise LookupError(f"order {record.order_id} is refunding but records no captured payment")
    refunded = deps.gateway.refund(record.order_id, payment.payment_id, payment.amount, payment.currency)
    hold = deps.stock.load_hold(record.order_id)
    sold = hold is not None and hold.state is HoldState.COMMITTED
    writes = deps.stock.put_back(hold) if hold is not None and sold else []
    why = record.standing().reason  # why it is refunded, not the DLQ's words if it failed meanwhile
    write, cancelled = deps.orders.prepare(record, Change(OrderState.CANCELLED, Step.REFUND, why,
                                                          refund=refunded))
    commit(deps.orders, [*writes, write])
    return cancelled, [released_event(record, hold, "refunded")] if hold is not None and sold else []


def announce(record: OrderRecord) -> tuple[list[Event], Step | None]:
    refunded = record.refund.to_data() if record.refund else {}
    return [event("PaymentRefunded", record, refunded),
            event("OrderCancelled", record, {"reason": record.reason})], None
