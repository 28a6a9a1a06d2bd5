"""The payment service (payments): charge through the simulated gateway, refund after a late failure."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from orders.aws import stock
from orders.aws.gateway import Gateway
from orders.aws.store import OrderStore
from orders.aws.tables import transact
from orders.celery import app
from orders.domain.errors import ConcurrentUpdate, PaymentDeclined
from orders.domain.events import Event, event
from orders.domain.order import validate
from orders.settings import Settings, get_settings
from orders.steps.workflow import StepTask, end_unpaid, hand_off, run_step


@app.task(base=StepTask, bind=True, name="payments.charge")
def charge(self: StepTask, order_id: Any = None) -> dict[str, Any]:
    """Capture the order's total once; a decline releases the stock and cancels the order."""
    return charge_order(get_settings(), order_id)


def charge_order(settings: Settings, order_id: Any) -> dict[str, Any]:
    def act(store: OrderStore, record: dict[str, Any]) -> tuple[dict[str, Any], list[Event]]:
        order = validate(record["order"])
        hold = stock.hold_of(settings, record)
        if hold is None or hold.state != "active" or hold.expired():
            return expired(settings, store, record, hold)
        try:
            capture = Gateway(settings).charge(order.order_id, order.total, order.currency,
                                               order.payment_token)
        except PaymentDeclined as exc:
            op, cancelled = store.prepare(record, "cancelled", "charge", "payment-declined",
                                          {"payment": {"status": "declined", "reason": str(exc)}})
            _commit(settings, [*stock.release_ops(settings, hold), {"Update": op}])
            return cancelled, [released(record, hold, "payment-declined")]
        payment = capture.as_payment()
        op, paid = store.prepare(record, "paid", "charge", fields={"payment": payment})
        codes = transact(settings, [*stock.commit_ops(settings, hold), {"Update": op}])
        if codes is None:
            return paid, []
        if codes[-2] == "ConditionalCheckFailed":  # the hold expired between the check and now
            return store.transition(record, "refunding", "charge", "reservation-expired",
                                    {"payment": payment}), []
        raise ConcurrentUpdate(f"order {order.order_id} changed while being charged: {codes}")

    def announce(record: dict[str, Any]) -> tuple[list[Event], str | None]:
        payment = record.get("payment") or {}
        if record["status"] in ("paid", "refunding"):
            return [event("PaymentCaptured", record, payment)], \
                "ship" if record["status"] == "paid" else "refund"
        cancelled = event("OrderCancelled", record, {"reason": record.get("reason")})
        if payment.get("status") == "declined":
            return [event("PaymentDeclined", record, payment), cancelled], None
        return [cancelled], None

    result = run_step(settings, order_id, "charge", ("reserved",), act, announce)
    if result.get("skipped") and (result["status"], result["reason"], result["paid"]) == \
            ("cancelled", "reservation-expired", False):
        refund_late_capture(settings, str(order_id))
    return result


def refund_late_capture(settings: Settings, order_id: str) -> None:
    """Send a capture that landed after its order was cancelled to `payments.refund`.

    The expiry sweep asks the gateway before it cancels an order whose reservation
    ran out (workflow.end_unpaid), but a charge already past its own hold check
    can capture in between; its commit then fails and its retry finds the order
    cancelled with no payment recorded, and ends here: the same decision as the
    sweep's, made again now that the capture exists, and the one refund path.
    """
    store = OrderStore(settings)
    record = store.load(order_id)
    if record is None or record["status"] != "cancelled" or record.get("payment"):
        return
    op, ended = end_unpaid(settings, store, record, "charge")
    if ended["status"] == "refunding":
        _commit(settings, [{"Update": op}])
        hand_off(ended, "refund")


def expired(settings: Settings, store: OrderStore, record: dict[str, Any],
            hold: stock.Hold | None) -> tuple[dict[str, Any], list[Event]]:
    """The hold is gone or out of time: cancel without charging (releasing it if still held),
    or refund a capture an earlier run of this step made before its worker died."""
    ops = stock.release_ops(settings, hold, "expired") if hold and hold.state == "active" else []
    op, ended = end_unpaid(settings, store, record, "charge")
    _commit(settings, [*ops, {"Update": op}])
    return ended, [released(record, hold, "reservation-expired")] if ops and hold else []


def released(record: dict[str, Any], hold: stock.Hold, reason: str) -> Event:
    return event("StockReleased", record, {"items": hold.as_data(), "reason": reason})


def _commit(settings: Settings, ops: list[dict[str, Any]]) -> None:
    codes = transact(settings, ops)
    if codes is not None:
        raise ConcurrentUpdate(f"transaction cancelled: {codes}")


@app.task(base=StepTask, bind=True, name="payments.refund")
def refund(self: StepTask, order_id: Any = None) -> dict[str, Any]:
    """Refund a captured payment after a later step failed, put sold units back, cancel the order."""
    return refund_order(get_settings(), order_id)


def refund_order(settings: Settings, order_id: Any) -> dict[str, Any]:
    def act(store: OrderStore, record: dict[str, Any]) -> tuple[dict[str, Any], list[Event]]:
        payment = record["payment"]
        refunded = Gateway(settings).refund(record["orderId"], payment["paymentId"],
                                            Decimal(payment["amount"]), payment["currency"])
        hold = stock.load_hold(settings, record["orderId"])
        ops = stock.return_ops(settings, hold) if hold and hold.state == "committed" else []
        op, cancelled = store.prepare(record, "cancelled", "refund", record.get("reason"),
                                      {"refund": refunded})
        _commit(settings, [*ops, {"Update": op}])
        return cancelled, [released(record, hold, "refunded")] if ops and hold else []

    def announce(record: dict[str, Any]) -> tuple[list[Event], str | None]:
        return [event("PaymentRefunded", record, record.get("refund") or {}),
                event("OrderCancelled", record, {"reason": record.get("reason")})], None

    return run_step(settings, order_id, "refund", ("refunding",), act, announce)
