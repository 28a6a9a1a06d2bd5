"""Reservations that arrive together are one transaction (orders.aws.reservations), against the emulator.

Ten threads reserve at once, as an inventory worker's pool runs one receive of a product's
message group: the stock, the holds and the orders end as ten reservations made one by one
would leave them, with one TransactWriteItems instead of ten. A batch the store refuses (a
product short of the sum, an order moved meanwhile, one order twice) is made alone, each
reservation answered for itself.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from orders.aws.stock import Stock, set_stock
from orders.aws.store import OrderStore
from orders.domain.errors import ConcurrentUpdate, OutOfStock
from orders.domain.order import Order, validate
from orders.domain.records import Change, OrderRecord
from orders.domain.states import OrderState, Step
from orders.ops.audit import read_order_table, read_stock, units_by_sku
from orders.runtime.dependencies import dependencies
from orders.settings import Settings
from orders.steps.reservation import take
from tests.helpers import calls
from tests.integration.pipeline_support import make_order


def placed(settings: Settings, n: int, sku: str, quantity: int = 1) -> list[tuple[OrderRecord, Order]]:
    store = OrderStore(settings)
    pairs = []
    for _ in range(n):
        order = validate(make_order(sku=sku, quantity=quantity))
        pairs.append((store.create(order, "2026-01-01T00:00:00.000000Z", "c", False)[0], order))
    return pairs


def at_once(pairs: list[tuple[OrderRecord, Order]], settings: Settings, linger: float = 0.5) -> list[Any]:
    """Reserve every order from its own thread, all released together; each one's outcome."""
    # The threads meet at a barrier; a loaded machine may wake them over more than the 20 ms
    # a worker's threads need, so they are given longer to meet.
    deps = dependencies(dataclasses.replace(settings, reserve_linger=linger))
    gate = threading.Barrier(len(pairs))

    def attempt(pair: tuple[OrderRecord, Order]) -> Any:
        gate.wait()
        try:
            return take(deps, *pair)[0].status
        except OutOfStock:
            return OutOfStock
        except ConcurrentUpdate:
            return ConcurrentUpdate

    with ThreadPoolExecutor(len(pairs)) as pool:
        return list(pool.map(attempt, pairs))


def transactions(settings: Settings, run: Callable[[], Any]) -> tuple[Any, int]:
    calls(str(settings.endpoint_url), reset=True)
    result = run()
    return result, calls(str(settings.endpoint_url))["dynamodb:TransactWriteItems"]


def ledger_holds(settings: Settings, sku: str) -> None:
    """The stock item's counters still add up, and its reserved units are its active holds'."""
    count = next(c for c in read_stock(settings)[0] if c.sku == sku)
    assert count.stock_set is not None and count.stock_set + count.restocked == count.accounted
    assert units_by_sku(read_order_table(settings).holds)[sku] == count.reserved


def test_ten_reservations_of_one_product_at_once_are_one_transaction(infra):
    set_stock(infra, "SKU-FLASH", 100)
    pairs = placed(infra, 10, "SKU-FLASH", quantity=2)
    outcomes, made = transactions(infra, lambda: at_once(pairs, infra))
    assert outcomes == [OrderState.RESERVED] * 10
    assert made == 1
    stock = Stock(infra)
    assert stock.level("SKU-FLASH") == {"sku": "SKU-FLASH", "available": 80, "reserved": 20}
    assert all(stock.load_hold(r.order_id).items == (("SKU-FLASH", 2),) for r, _ in pairs)
    store = OrderStore(infra)
    assert all(store.load(r.order_id).status is OrderState.RESERVED for r, _ in pairs)
    ledger_holds(infra, "SKU-FLASH")


def test_a_batch_short_of_the_sum_is_made_alone_and_takes_exactly_what_there_is(infra):
    set_stock(infra, "SKU-LAST", 25)
    pairs = placed(infra, 10, "SKU-LAST", quantity=3)
    outcomes, made = transactions(infra, lambda: at_once(pairs, infra))
    # 30 asked of 25: the batch is refused, then each alone: eight holds of three, two out of stock.
    assert sorted(map(str, outcomes)).count(str(OrderState.RESERVED)) == 8
    assert outcomes.count(OutOfStock) == 2
    assert made >= 11
    assert Stock(infra).level("SKU-LAST") == {"sku": "SKU-LAST", "available": 1, "reserved": 24}
    ledger_holds(infra, "SKU-LAST")


def test_an_order_moved_meanwhile_refuses_only_itself(infra):
    set_stock(infra, "SKU-MOVE", 50)
    pairs = placed(infra, 6, "SKU-MOVE")
    store = OrderStore(infra)
    moved, _ = pairs[0]
    store.transition(moved, Change(OrderState.CANCELLED, Step.RESERVE, "customer-cancelled"))
    outcomes = at_once(pairs, infra)  # the first carries a record that is out of date
    assert outcomes[0] is ConcurrentUpdate
    assert outcomes[1:] == [OrderState.RESERVED] * 5
    assert Stock(infra).level("SKU-MOVE") == {"sku": "SKU-MOVE", "available": 45, "reserved": 5}
    assert Stock(infra).load_hold(moved.order_id) is None
    ledger_holds(infra, "SKU-MOVE")


def test_one_order_reserved_twice_at_once_holds_its_units_once(infra):
    set_stock(infra, "SKU-TWICE", 100)
    pairs = placed(infra, 3, "SKU-TWICE", quantity=2)
    outcomes = at_once([*pairs, pairs[0]], infra)  # its message delivered twice, both runs at once
    assert outcomes[1:3] == [OrderState.RESERVED] * 2
    assert sorted(map(str, (outcomes[0], outcomes[3]))) == sorted(map(str, (OrderState.RESERVED,
                                                                            ConcurrentUpdate)))
    assert Stock(infra).level("SKU-TWICE") == {"sku": "SKU-TWICE", "available": 94, "reserved": 6}
    ledger_holds(infra, "SKU-TWICE")
