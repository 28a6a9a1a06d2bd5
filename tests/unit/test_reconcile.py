"""A product's counters recounted from its holds after a failover (orders.ops.reconcile.expected)."""

from __future__ import annotations

from orders.aws.stock import StockCount
from orders.domain.records import Hold
from orders.domain.states import HoldState
from orders.ops.reconcile import expected


def hold(state: str, quantity: int, changed: str = "2026-12-06T10:00:00Z", sku: str = "SKU-1") -> Hold:
    return Hold(f"o-{state}-{quantity}", ((sku, quantity), ("OTHER", 9)), 0, HoldState(state), changed)


def product(stock_set: int, restocked: int = 0, set_at: str | None = "2026-12-06T09:00:00Z", **counts: int
            ) -> StockCount:
    return StockCount("SKU-1", counts.get("available", 0), counts.get("reserved", 0), counts.get("sold", 0),
                      restocked, stock_set, 1, set_at)


def test_active_holds_are_reserved_committed_ones_sold_and_the_rest_on_sale():
    count = product(20, restocked=5, available=99, reserved=-1)
    holds = [hold("active", 2), hold("active", 1), hold("committed", 4), hold("released", 3),
             hold("expired", 1), hold("returned", 2)]
    assert expected(count, holds) == {"available": 25 - 4 - 3, "reserved": 3, "sold": 4}


def test_a_sale_before_the_stock_was_last_set_is_not_counted_again():
    holds = [hold("committed", 4, changed="2026-12-06T08:59:59Z"), hold("committed", 1)]
    assert expected(product(10), holds) == {"available": 9, "reserved": 0, "sold": 1}


def test_a_product_set_before_the_set_time_was_kept_counts_every_sale():
    old_sale = hold("committed", 4, changed="2020-01-01T00:00:00Z")
    assert expected(product(10, set_at=None), [old_sale])["sold"] == 4
