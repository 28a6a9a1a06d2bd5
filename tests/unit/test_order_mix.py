"""The demo's order mix: reproducible, every kind present, valid orders valid, invalid ones not."""

from collections import Counter
from decimal import Decimal

import pytest

from orders.harness.order_mix import HOT, MIXES, PREMIUM, SCARCE, WEIGHTS, OrderMix, apportion


@pytest.mark.parametrize("n", [7, 30, 301, 1000])
def test_apportion_gives_every_kind_its_share(n):
    counts = apportion(n, WEIGHTS)
    assert sum(counts.values()) == n
    assert all(c >= 1 for c in counts.values())
    for kind, weight in WEIGHTS.items():
        assert abs(counts[kind] - n * weight) <= len(WEIGHTS) * weight + 1


def test_apportion_of_fewer_orders_than_kinds():
    counts = apportion(3, WEIGHTS)
    assert sum(counts.values()) == 3
    assert counts["regular"] >= 1


def test_same_seed_same_orders_and_unique_ids():
    first, again = OrderMix(seed=5, run_id="r1").orders(50), OrderMix(seed=5, run_id="r1").orders(50)
    assert [p.order for p in first] == [p.order for p in again]
    assert [p.kind for p in first] != [p.kind for p in OrderMix(seed=6, run_id="r1").orders(50)]
    ids = [p.order_id for p in first]
    assert len(set(ids)) == 50 and all(i.startswith("r1-") for i in ids)


def _total(order):
    return sum(Decimal(i["unitPrice"]) * i["quantity"] for i in order["items"])


def test_valid_orders_add_up_and_carry_no_floats():
    for planned in OrderMix(seed=2).orders(200):
        if planned.kind == "invalid":
            continue
        order = planned.order
        assert Decimal(order["totalAmount"]) == _total(order)
        assert isinstance(order["totalAmount"], str)
        assert all(isinstance(i["unitPrice"], str) and i["quantity"] > 0 for i in order["items"])
        assert order["customerTier"] in ("standard", "vip")
        assert order["contact"]["email"] and order["shippingAddress"]["city"]


def test_each_kind_exercises_its_case():
    mix = OrderMix(seed=3, review_threshold=Decimal("5000"))
    by_kind = {}
    for planned in mix.orders(300):
        by_kind.setdefault(planned.kind, []).append(planned.order)
    assert all(o["customerTier"] == "vip" for o in by_kind["vip"])
    assert all(Decimal(o["totalAmount"]) > Decimal("5000") for o in by_kind["large"])
    assert {o["payment"]["token"] for o in by_kind["declined"]} <= {
        "tok_chargeDeclined", "tok_insufficientFunds", "wallet_declined"}
    assert {o["payment"]["token"] for o in by_kind["transient"]} == {"tok_processingError"}
    assert all(o["items"][0]["sku"] == SCARCE.sku for o in by_kind["scarce"])
    assert {o["payment"]["token"] for o in by_kind["regular"]} <= {"tok_visa", "tok_mastercard", "wallet_ok"}


def test_invalid_orders_are_broken():
    mix = OrderMix(seed=4)
    for planned in (p for p in mix.orders(300) if p.kind == "invalid"):
        order = planned.order
        broken = (
            "customerId" not in order or "payment" not in order or order["currency"] != "USD"
            or any(not isinstance(i["quantity"], int) or i["quantity"] <= 0 for i in order["items"])
            or any(Decimal(i["unitPrice"]) < 0 for i in order["items"])
        )
        assert broken, order


def test_stock_is_scarce_only_for_the_scarce_product():
    mix = OrderMix(seed=1, review_threshold=Decimal("5000"))
    counts = Counter(p.kind for p in mix.orders(300))
    stock = mix.stock(300)
    assert 1 <= stock[SCARCE.sku] < counts["scarce"]
    assert stock[PREMIUM.sku] >= counts["large"] * mix.large_quantity()
    assert mix.large_quantity() * PREMIUM.price > Decimal("5000")


def test_the_hot_mix_leads_nine_orders_in_ten_with_one_product():
    mix = OrderMix(seed=4, weights=MIXES["hot"])
    planned = mix.orders(200)
    leads = Counter(p.order["items"][0]["sku"] for p in planned)
    assert leads[HOT.sku] >= 180
    assert {p.kind for p in planned} == {"hot", "regular"}
    assert mix.stock(200)[HOT.sku] >= 2 * 200
