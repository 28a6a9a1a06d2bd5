"""Validation under any input: InvalidOrder with short problems, or a valid order that round-trips.

Profiles: tests/fuzzing.py (`ORDERS_FUZZ=full` for 10,000 examples a property).
"""

from __future__ import annotations

import json
from decimal import ROUND_FLOOR, Decimal
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from orders.domain.errors import InvalidOrder
from orders.domain.order import (
    ADDRESS_LIMITS,
    CURRENCIES,
    MAX_LINES,
    MAX_PROBLEMS,
    MAX_QUANTITY,
    MAX_TOTAL,
    MAX_UNIT_PRICE,
    Order,
    validate,
)
from tests.fuzzing import json_values, python_values

#: The longest a problem may be: a path, what is wrong, and a clipped quote.
MAX_PROBLEM_CHARS = 300

ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
ids = st.builds(str.__add__, st.text(ALNUM, min_size=1, max_size=1), st.text(ALNUM + "_.:-", max_size=63))
safe_text = st.text(st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), min_size=1, max_size=16)
words = safe_text.filter(lambda t: t.strip() != "")


@st.composite
def valid_orders(draw: st.DrawFn) -> dict[str, Any]:
    """An order the contract allows (money as strings or numbers, optional fields or not)."""
    currency = draw(st.sampled_from(sorted(CURRENCIES)))
    places = CURRENCIES[currency]
    skus = draw(st.lists(ids, min_size=1, max_size=MAX_LINES, unique=True))
    lines = []
    for sku in skus:  # each line's share of the total limit at most
        quantity = draw(st.integers(1, MAX_QUANTITY))
        share = min(MAX_UNIT_PRICE, MAX_TOTAL / len(skus) / quantity)
        most = share.scaleb(places).to_integral_value(ROUND_FLOOR)
        price = Decimal(draw(st.integers(1, max(1, int(most))))).scaleb(-places)
        lines.append((sku, quantity, price))
    as_number = draw(st.booleans())
    amount = (lambda d: int(d) if places == 0 else float(d)) if as_number else str
    total = sum((q * price for _, q, price in lines), Decimal(0))
    address = {"line1": draw(words), "city": draw(words), "postalCode": draw(words), "country": "GB"}
    address.update(draw(st.dictionaries(st.sampled_from(["name", "line2", "region"]), words)))
    method = draw(st.sampled_from(["card", "wallet"]))
    contact = {"email": draw(st.from_regex(r"\A[a-z0-9.+]{1,20}@[a-z0-9-]{1,20}\.[a-z]{2,6}\Z"))}
    if draw(st.booleans()):
        contact["phone"] = draw(st.from_regex(r"\A\+?[0-9 ()-]{6,20}\Z"))
    return {
        "orderId": draw(ids), "customerId": draw(ids),
        "customerTier": draw(st.sampled_from(["standard", "vip"])),
        "items": [{"sku": s, "quantity": q, "unitPrice": amount(p)} for s, q, p in lines],
        "totalAmount": amount(total), "currency": currency,
        "payment": {"method": method, "token": ("tok_" if method == "card" else "wallet_") + draw(
            st.from_regex(r"\A[A-Za-z0-9_-]{1,40}\Z"))},
        "shippingAddress": {k: v[:ADDRESS_LIMITS.get(k, 2)] for k, v in address.items()}, "contact": contact,
    }


def refused_or_round_trips(raw: Any) -> Order | None:
    """The property: InvalidOrder with at most MAX_PROBLEMS short problems, or an order that
    survives JSON and validation again unchanged."""
    try:
        order = validate(raw)
    except InvalidOrder as exc:
        assert exc.problems and len(exc.problems) <= MAX_PROBLEMS + 1
        assert all(isinstance(p, str) and len(p) <= MAX_PROBLEM_CHARS for p in exc.problems), exc.problems
        return None
    again = validate(json.loads(json.dumps(order.to_json())))
    assert again == order and again.fingerprint() == order.fingerprint()
    return order


@given(python_values)
def test_fuzz_any_value_is_refused_or_round_trips(raw: Any) -> None:
    refused_or_round_trips(raw)


@given(st.dictionaries(st.sampled_from(["orderId", "customerId", "customerTier", "items", "totalAmount",
                                        "currency", "payment", "shippingAddress", "contact", "other"]),
                       json_values))
def test_fuzz_any_object_with_the_order_fields_is_refused_or_round_trips(raw: dict[str, Any]) -> None:
    refused_or_round_trips(raw)


@given(valid_orders())
def test_fuzz_every_valid_order_is_accepted_and_round_trips(raw: dict[str, Any]) -> None:
    assert refused_or_round_trips(raw) is not None, validate(raw)


FIELDS = ["orderId", "customerTier", "totalAmount", "currency", "items", "items.0", "items.0.sku",
          "items.0.quantity", "items.0.unitPrice", "payment", "payment.token", "payment.method",
          "shippingAddress", "shippingAddress.line1", "shippingAddress.country", "contact", "contact.email",
          "contact.phone"]


@given(valid_orders(), st.sampled_from(FIELDS), python_values)
def test_fuzz_one_field_of_a_valid_order_replaced_by_anything(raw: dict[str, Any], path: str,
                                                              value: Any) -> None:
    *parents, last = path.split(".")
    target: Any = raw
    for part in parents:
        target = target[int(part)] if isinstance(target, list) else target[part]
    target[int(last) if isinstance(target, list) else last] = value
    refused_or_round_trips(raw)
