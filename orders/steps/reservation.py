"""The reservation step: every line of an order held at once (all or nothing), or the order cancelled.

Partial availability policy: all or nothing. If any line cannot be reserved in
full, nothing is reserved and the order is cancelled as `out-of-stock` with every
short line named (no partial shipment, no back-order): the charge is for the whole
order, and a split order would need a second payment and shipment flow that this
pipeline does not have.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

from orders.domain.details import Shortage
from orders.domain.errors import ConcurrentUpdate, OutOfStock
from orders.domain.events import Event, event
from orders.domain.order import Order
from orders.domain.records import Change, Hold, OrderRecord, StockLevel
from orders.domain.states import OrderState, Step
from orders.domain.writes import Guard
from orders.steps.flow import next_step
from orders.steps.ports import Deps, Inventory
from orders.steps.state_machine import Outcome, run_step


class ShortOfStock(OutOfStock):
    """OutOfStock naming every short line."""

    def __init__(self, shortages: Sequence[Shortage]):
        self.shortages = tuple(shortages)
        super().__init__("out of stock: " + ", ".join(
            f"{s.sku} (requested {s.requested}, available {s.available})" for s in self.shortages))


def reserve(deps: Deps, order_id: object) -> Outcome:
    """Reserve every line of the order (large orders once reviewed), or cancel it as out of stock."""
    def expected(record: OrderRecord) -> tuple[OrderState, ...]:
        # A reviewed order is ready whatever its size: a chain built where the review threshold
        # is lower (a door configured apart from the workers) passes review on its way here.
        return (OrderState.REVIEWED,) if record.needs_review else (OrderState.VALIDATED, OrderState.REVIEWED)

    def act(record: OrderRecord) -> tuple[OrderRecord, list[Event]]:
        order = record.order()
        try:
            reserved, low = take(deps, record, order)
        except ShortOfStock as exc:
            out = Change(OrderState.CANCELLED, Step.RESERVE, "out-of-stock", shortages=exc.shortages)
            cancelled = deps.orders.transition(record, out)
            return cancelled, [event("OutOfStock", cancelled, s.to_data(), key=s.sku) for s in exc.shortages]
        return reserved, [event("StockLow", reserved, dict(level), key=level["sku"]) for level in low]

    return run_step(deps, order_id, Step.RESERVE, expected, act, announce)


def announce(record: OrderRecord) -> tuple[list[Event], Step | None]:
    if record.status is OrderState.RESERVED:
        items = [{"sku": i.sku, "quantity": i.quantity} for i in record.order().items]
        reserved = event("StockReserved", record,
                         {"items": items, "expiresAt": record.reservation_expires_at})
        return [reserved], next_step(record, Step.RESERVE)
    return [event("OrderCancelled", record, {"reason": record.reason,
                                             "shortages": [s.to_data() for s in record.shortages]})], None


def take(deps: Deps, record: OrderRecord, order: Order) -> tuple[OrderRecord, list[StockLevel]]:
    """Hold every line of `order` and move it to `reserved`, in one transaction: the new record,
    and the levels of the lines it left at the low-stock threshold or under (StockLow).

    The first try holds only lines that keep more than the threshold, so that, as it mostly
    does, it is the step's one call: no line is low and no level needs reading. ShortOfStock
    if any line is short (nothing is held then); ConcurrentUpdate if the order or its hold
    changed meanwhile (the caller reads it again).
    """
    expires = math.ceil(time.time() + deps.settings.reservation_ttl_seconds)  # whole seconds, never early
    hold = Hold.of(order, expires)
    write, reserved = deps.orders.prepare(record, Change(OrderState.RESERVED, Step.RESERVE,
                                                         reservation_expires_at=expires))
    threshold = deps.settings.low_stock_threshold
    # Taken with the reservations other threads make at that moment (one product's group: one call).
    refusal = deps.stock.take_with(hold, write, spare=max(0, threshold + 1))
    if refusal is None:
        return reserved, []
    if refusal.failed == {Guard.STOCK}:  # some line is short, or would be left low: take it as it is
        refusal = deps.stock.take_with(hold, write)
        if refusal is None:
            levels = deps.stock.levels(order.skus)
            return reserved, [level for level in levels.values() if level["available"] <= threshold]
    if Guard.STOCK in refusal.failed:
        raise ShortOfStock(shortages(deps.stock, hold))
    raise ConcurrentUpdate(f"order {order.order_id} or its hold changed while reserving: "
                           f"{list(refusal.codes)}")


def shortages(stock: Inventory, hold: Hold) -> list[Shortage]:
    """The lines of `hold` that the stock cannot cover now."""
    levels = stock.levels([sku for sku, _ in hold.items])
    available = {sku: levels[sku]["available"] if sku in levels else 0 for sku, _ in hold.items}
    return [Shortage(sku, q, available[sku]) for sku, q in hold.items if available[sku] < q]


def hold_of(stock: Inventory, record: OrderRecord) -> Hold | None:
    """The order's hold: read from the order while it is `reserved` (the hold is then active,
    since every change of an active hold moves the order too), else from its own item."""
    if record.status is OrderState.RESERVED and record.reservation_expires_at:
        return Hold.of(record.order(), record.reservation_expires_at)
    return stock.load_hold(record.order_id)


def released_event(record: OrderRecord, hold: Hold, reason: str) -> Event:
    return event("StockReleased", record, {"items": hold.as_data(), "reason": reason})
