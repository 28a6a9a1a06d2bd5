"""The inventory service (inventory.fifo): reservations, the expiry sweep and restocks."""

from __future__ import annotations

import logging
from typing import Any

from orders.aws import stock
from orders.aws.sns import publish
from orders.aws.store import OrderStore
from orders.aws.tables import transact
from orders.celery import app
from orders.domain.errors import OutOfStock
from orders.domain.events import Event, event
from orders.domain.order import validate
from orders.settings import Settings, get_settings
from orders.steps.workflow import StepTask, end_unpaid, hand_off, run_step

log = logging.getLogger(__name__)


@app.task(base=StepTask, bind=True, name="inventory.reserve")
def reserve_stock(self: StepTask, order_id: Any = None) -> dict[str, Any]:
    """Reserve every line of the order at once (all or nothing), or cancel it as out of stock."""
    return reserve(get_settings(), order_id)


def reserve(settings: Settings, order_id: Any) -> dict[str, Any]:
    def expected(record: dict[str, Any]) -> tuple[str, ...]:
        return ("reviewed",) if record.get("needsReview") else ("validated",)

    def act(store: OrderStore, record: dict[str, Any]) -> tuple[dict[str, Any], list[Event]]:
        order = validate(record["order"])
        try:
            reserved = stock.reserve(settings, store, record, order)
        except OutOfStock as exc:
            shortages = getattr(exc, "shortages", [])
            cancelled = store.transition(record, "cancelled", "reserve", "out-of-stock",
                                         {"shortages": shortages})
            return cancelled, [event("OutOfStock", cancelled, s, key=s["sku"]) for s in shortages]
        levels = stock.stock_levels(settings, order.skus)
        return reserved, [event("StockLow", reserved, level, key=sku) for sku, level in levels.items()
                          if level["available"] <= settings.low_stock_threshold]

    def announce(record: dict[str, Any]) -> tuple[list[Event], str | None]:
        if record["status"] == "reserved":
            items = [{"sku": i["sku"], "quantity": i["quantity"]} for i in record["order"]["items"]]
            return [event("StockReserved", record, {"items": items,
                                                    "expiresAt": record.get("reservationExpiresAt")})], \
                "charge"
        return [event("OrderCancelled", record, {"reason": record.get("reason"),
                                                 "shortages": record.get("shortages") or []})], None

    return run_step(settings, order_id, "reserve", expected, act, announce)


@app.task(base=StepTask, bind=True, name="inventory.release_expired")
def release_expired(self: StepTask) -> dict[str, Any]:
    """Periodic (beat): give back every expired hold and cancel the orders still waiting on one."""
    return sweep(get_settings())


def sweep(settings: Settings, now: float | None = None) -> dict[str, Any]:
    released = [order_id for order_id in stock.expired_holds(settings, now)
                if expire(settings, order_id, now)]
    if released:
        log.info("released %d expired reservation(s)", len(released))
    return {"released": released}


def expire(settings: Settings, order_id: str, now: float | None = None) -> bool:
    """Release one expired hold; an order still waiting for payment is cancelled with it
    (or refunded, if its payment was captured but never recorded: workflow.end_unpaid)."""
    store = OrderStore(settings)
    hold, record = stock.load_hold(settings, order_id), store.load(order_id)
    if hold is None or not hold.expired(now):
        return False
    ops = stock.release_ops(settings, hold, "expired")
    waiting = record is not None and record["status"] == "reserved"
    if record is not None and waiting:
        op, record = end_unpaid(settings, store, record, "expire")
        ops.append({"Update": op})
    if transact(settings, ops) is not None:
        log.info("hold of %s changed during the sweep; the next sweep looks again", order_id)
        return False
    record = record or {"orderId": order_id}
    events = [event("StockReleased", record, {"items": hold.as_data(), "reason": "reservation-expired"})]
    if waiting and record["status"] == "cancelled":
        events.append(event("OrderCancelled", record, {"reason": "reservation-expired"}))
    publish(settings, events)
    if waiting and record["status"] == "refunding":
        hand_off(record, "refund")  # payments.refund gives the money back and cancels
    return True


@app.task(base=StepTask, bind=True, name="inventory.restock")
def restock(self: StepTask, sku: str, quantity: int, restock_id: str) -> dict[str, Any]:
    """Add stock once per restock id (`orders inventory restock` sends these)."""
    settings = get_settings()
    added = stock.restock(settings, sku, int(quantity), restock_id)
    level = stock.get_stock(settings, sku)
    if added:
        publish(settings, [Event("StockRestocked", "", restock_id, {**(level or {}), "added": quantity},
                                 key=restock_id)])
    return {"sku": sku, "added": added, "stock": level}
