"""The charge step: capture the order's total once, against its active hold; a decline cancels.

An order whose payment was never recorded ends through `end_unpaid`: cancelled,
unless the gateway holds a capture for it (a charge worker died between taking the
money and recording it, or captured after the expiry sweep), in which case it goes to
`refunding` and the refund step gives the money back. Nobody is charged for an order
that is cancelled.
"""

from __future__ import annotations

import logging

from orders.domain.details import Payment
from orders.domain.errors import ConcurrentUpdate, PaymentDeclined
from orders.domain.events import Event, event
from orders.domain.records import Change, Hold, OrderRecord
from orders.domain.sensitive import Field
from orders.domain.states import HoldState, OrderState, PaymentStatus, Step
from orders.domain.writes import Guard, Write
from orders.steps.flow import COMPENSATION, next_step
from orders.steps.ports import Deps
from orders.steps.reservation import hold_of, released_event
from orders.steps.state_machine import Outcome, commit, run_step

log = logging.getLogger(__name__)

EXPIRED = "reservation-expired"


def charge(deps: Deps, order_id: object) -> Outcome:
    """Charge a reserved order; a message that finds it ended by the expiry sweep makes sure any
    capture goes back (`refund_late_capture`, `refund_again`)."""
    outcome = run_step(deps, order_id, Step.CHARGE, (OrderState.RESERVED,),
                       lambda record: charge_reserved(deps, record), announce)
    record = outcome.record
    if not outcome.skipped or record is None:
        return outcome
    if record.status is OrderState.CANCELLED and record.reason == EXPIRED and record.payment is None:
        return refund_late_capture(deps, outcome)
    if record.standing().status is OrderState.REFUNDING and record.last_step is Step.EXPIRE:
        return refund_again(outcome)
    return outcome


def charge_reserved(deps: Deps, record: OrderRecord) -> tuple[OrderRecord, list[Event]]:
    """Take the money and sell the held units together; cancel (releasing them) on a decline."""
    order = record.order()
    hold = hold_of(deps.stock, record)
    if hold is None or hold.state is not HoldState.ACTIVE or hold.expired():
        return expired(deps, record, hold)
    # The token, and nothing else, is opened: in memory, for the gateway's call only.
    token = order.opened(Field.PAYMENT_TOKEN, deps.fields.open)
    quote = deps.gateway.quote(order.order_id, order.total, order.currency, token)
    settled = charge_at_once(deps, record, hold, *quote) if quote is not None else None
    if settled is not None:
        return settled
    deps.confirm(record)  # the gateway takes the money before our write checks the record
    try:
        payment = deps.gateway.charge(order.order_id, order.total, order.currency, token)
    except PaymentDeclined as exc:
        declined = Change(OrderState.CANCELLED, Step.CHARGE, "payment-declined",
                          payment=Payment.declined(str(exc)))
        write, cancelled = deps.orders.prepare(record, declined)
        commit(deps.orders, [*deps.stock.release(hold), write])
        return cancelled, [released_event(record, hold, "payment-declined")]
    write, paid = deps.orders.prepare(record, Change(OrderState.PAID, Step.CHARGE, payment=payment))
    refusal = deps.orders.transact([*deps.stock.commit(hold), write])
    if refusal is None:
        return paid, []
    if Guard.HOLD in refusal.failed:  # the hold expired (and was released) between the check and now
        return deps.orders.transition(record, Change(OrderState.REFUNDING, Step.CHARGE, EXPIRED,
                                                     payment=payment)), []
    raise ConcurrentUpdate(f"order {order.order_id} changed while being charged: {list(refusal.codes)}")


def charge_at_once(deps: Deps, record: OrderRecord, hold: Hold, charged: Write,
                   payment: Payment) -> tuple[OrderRecord, list[Event]] | None:
    """The gateway's record of the charge, the hold and the order in one transaction (one call);
    None when the gateway had settled the charge already (an earlier call), for `charge` to replay.

    Since the capture commits with `paid`, a transaction refused by the hold's condition
    (it ran out meanwhile) took no money: the order ends unpaid, as a hold found expired does.
    """
    if payment.status is PaymentStatus.DECLINED:
        return decline(deps, record, hold, payment, charged)
    write, paid = deps.orders.prepare(record, Change(OrderState.PAID, Step.CHARGE, payment=payment))
    refusal = deps.orders.transact([charged, *deps.stock.commit(hold), write])
    if refusal is None:
        return paid, []
    if Guard.PAYMENT in refusal.failed:
        return None
    if Guard.HOLD in refusal.failed and Guard.ORDER not in refusal.failed:
        return expired(deps, record, deps.stock.load_hold(record.order_id))
    raise ConcurrentUpdate(f"order {record.order_id} changed while being charged: {list(refusal.codes)}")


def decline(deps: Deps, record: OrderRecord, hold: Hold, payment: Payment,
            charged: Write) -> tuple[OrderRecord, list[Event]] | None:
    """Cancel the order and release its hold with the gateway's record of the decline (one
    transaction); None if the gateway had settled the charge already."""
    write, cancelled = deps.orders.prepare(record, Change(OrderState.CANCELLED, Step.CHARGE,
                                                          "payment-declined", payment=payment))
    refusal = deps.orders.transact([charged, *deps.stock.release(hold), write])
    if refusal is not None and Guard.PAYMENT in refusal.failed:
        return None
    if refusal is not None:
        raise ConcurrentUpdate(f"transaction cancelled: {list(refusal.codes)}")
    return cancelled, [released_event(record, hold, "payment-declined")]


def announce(record: OrderRecord) -> tuple[list[Event], Step | None]:
    payment = record.payment.to_data() if record.payment else {}
    if record.status is OrderState.PAID:
        return [event("PaymentCaptured", record, payment)], next_step(record, Step.CHARGE)
    if record.status is OrderState.REFUNDING:
        return [event("PaymentCaptured", record, payment)], COMPENSATION
    cancelled = event("OrderCancelled", record, {"reason": record.reason})
    if record.payment and record.payment.status is PaymentStatus.DECLINED:
        return [event("PaymentDeclined", record, payment), cancelled], None
    return [cancelled], None


def expired(deps: Deps, record: OrderRecord, hold: Hold | None) -> tuple[OrderRecord, list[Event]]:
    """The hold is gone or out of time: cancel without charging (releasing it if still held),
    or refund a capture an earlier run of this step made before its worker died."""
    releasing = hold is not None and hold.state is HoldState.ACTIVE
    writes = deps.stock.release(hold, HoldState.EXPIRED) if hold is not None and releasing else []
    write, ended = end_unpaid(deps, record, Step.CHARGE)
    commit(deps.orders, [*writes, write])
    return ended, [released_event(record, hold, EXPIRED)] if hold is not None and releasing else []


def refund_late_capture(deps: Deps, skipped: Outcome) -> Outcome:
    """Send a capture that landed after its order was cancelled to the refund step.

    The expiry sweep asks the gateway before it cancels an order whose reservation
    ran out (`end_unpaid`), but a charge already past its own hold check can capture
    in between; its commit then fails and its retry finds the order cancelled with no
    payment recorded, and ends here: the same decision as the sweep's, made again now
    that the capture exists, and the one refund path.
    """
    record = deps.orders.load(skipped.order_id)
    if record is None or record.status is not OrderState.CANCELLED or record.payment:
        return skipped
    write, ended = end_unpaid(deps, record, Step.CHARGE)
    if ended.status is not OrderState.REFUNDING:
        return skipped
    commit(deps.orders, [write])
    return Outcome(skipped.order_id, skipped.record, skipped=True, then=COMPENSATION)


def refund_again(skipped: Outcome) -> Outcome:
    """Send the refund of an order the expiry sweep found captured again.

    The sweep sends the refund once its write is done; a sweep that died in between
    is not redelivered for this order (its hold is no longer active), but this order's
    charge message still comes (the sweep ended the order while the charge was due): it
    sends the refund, which runs once whoever sends it.
    """
    return Outcome(skipped.order_id, skipped.record, skipped=True, then=COMPENSATION)


def end_unpaid(deps: Deps, record: OrderRecord, step: Step) -> tuple[Write, OrderRecord]:
    """The write that ends an order whose payment was never recorded, and the record after it:
    `cancelled`, or `refunding` when the gateway holds a capture (see the module's docstring)."""
    found = deps.gateway.capture_of(record.order_id)
    if found is None:
        return deps.orders.prepare(record, Change(OrderState.CANCELLED, step, EXPIRED))
    log.warning("order %s: payment %s was captured but never recorded; refunding it",
                record.order_id, found.payment_id)
    return deps.orders.prepare(record, Change(OrderState.REFUNDING, step, EXPIRED, payment=found))
