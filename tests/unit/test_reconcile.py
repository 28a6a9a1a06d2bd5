"""A product's counters recounted from its holds after a failover (orders.ops.reconcile.expected)."""

from __future__ import annotations

from orders.ops.reconcile import expected


def hold(state: str, quantity: int, changed: str = "2026-12-06T10:00:00Z", sku: str = "SKU-1") -> dict:
    return {"pk": f"o-{state}-{quantity}", "sk": "reservation", "state": state, "changedAt": changed,
            "items": [{"sku": sku, "quantity": quantity}, {"sku": "OTHER", "quantity": 9}]}


def test_active_holds_are_reserved_committed_ones_sold_and_the_rest_on_sale():
    product = {"sku": "SKU-1", "stockSet": 20, "restocked": 5, "available": 99, "reserved": -1, "sold": 0,
               "stockSetAt": "2026-12-06T09:00:00Z"}
    holds = [hold("active", 2), hold("active", 1), hold("committed", 4), hold("released", 3),
             hold("expired", 1), hold("returned", 2)]
    assert expected(product, holds) == {"available": 25 - 4 - 3, "reserved": 3, "sold": 4}


def test_a_sale_before_the_stock_was_last_set_is_not_counted_again():
    product = {"sku": "SKU-1", "stockSet": 10, "restocked": 0, "stockSetAt": "2026-12-06T09:00:00Z"}
    holds = [hold("committed", 4, changed="2026-12-06T08:59:59Z"), hold("committed", 1)]
    assert expected(product, holds) == {"available": 9, "reserved": 0, "sold": 1}


def test_a_product_set_before_the_set_time_was_kept_counts_every_sale():
    product = {"sku": "SKU-1", "stockSet": 10, "restocked": 0}
    assert expected(product, [hold("committed", 4, changed="2020-01-01T00:00:00Z")])["sold"] == 4
