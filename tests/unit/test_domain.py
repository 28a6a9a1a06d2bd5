"""The order domain: validation lists every problem; money stays decimal."""

from __future__ import annotations

from decimal import Decimal

import pytest

from orders.domain.errors import InvalidOrder
from orders.domain.order import MAX_LINES, needs_review, review_concerns, validate


def good(**overrides):
    order = {
        "orderId": "ord-1", "customerId": "cust-1", "customerTier": "vip",
        "items": [{"sku": "A", "quantity": 2, "unitPrice": "19.99"},
                  {"sku": "B", "quantity": 1, "unitPrice": 5}],
        "totalAmount": "44.98", "currency": "USD",
        "payment": {"method": "card", "token": "tok_visa"},
        "shippingAddress": {"line1": "1 Main St", "city": "Springfield", "postalCode": "12345",
                            "country": "US"},
        "contact": {"email": "pat@example.com", "phone": "+1 555 0100"},
    }
    order.update(overrides)
    return order


def problems(raw):
    with pytest.raises(InvalidOrder) as info:
        validate(raw)
    return info.value.problems


def test_a_valid_order_round_trips_with_decimal_money():
    order = validate(good())
    assert order.total == Decimal("44.98") and order.items[1].unit_price == Decimal("5.00")
    assert order.is_vip and order.lead_sku == "A"
    assert validate(good(items=list(reversed(good()["items"])))).lead_sku == "B"  # the first line
    again = validate(order.to_json())
    assert again == order and again.fingerprint() == order.fingerprint()
    assert order.to_json()["totalAmount"] == "44.98"


def test_float_amounts_are_read_through_their_decimal_text():
    order = validate(good(items=[{"sku": "A", "quantity": 3, "unitPrice": 0.1}], totalAmount=0.3))
    assert order.total == Decimal("0.30")


def test_every_problem_is_listed_at_once():
    found = problems({
        "orderId": "", "customerTier": "gold", "currency": "XYZ",
        "items": [{"sku": "A", "quantity": 0, "unitPrice": "abc"}, "junk",
                  {"sku": "A", "quantity": 1.5, "unitPrice": "-1"}],
        "totalAmount": True, "payment": {"method": "card", "token": "wallet_ok"},
        "shippingAddress": {"line1": "x", "country": "usa"}, "contact": {"email": "nope"},
    })
    expected = [
        "orderId: required", "customerId: required", "customerTier: must be one of",
        "currency: unknown currency 'XYZ'", "items[0].quantity: must be between 1 and",
        "items[0].unitPrice: must be a decimal amount", "items[1]: must be an object",
        "items[2].quantity: must be a whole number", "items[2].unitPrice: must be positive",
        "items[2].sku: A appears on more than one line", "totalAmount: must be a decimal amount",
        "payment.token: a card token starts with 'tok_'", "shippingAddress.city: required",
        "shippingAddress.postalCode: required", "shippingAddress.country: must be an ISO 3166",
        "contact.email: must be an email address",
    ]
    for fragment in expected:
        assert any(p.startswith(fragment) for p in found), (fragment, found)
    assert len(found) == len(expected)


def test_total_must_equal_the_sum_of_the_items():
    assert problems(good(totalAmount="45.00")) == [
        "totalAmount: 45.00 does not equal the sum of the items (44.98)"]


def test_currency_precision_and_limits():
    assert problems(good(items=[{"sku": "A", "quantity": 1, "unitPrice": "1.005"}],
                         totalAmount="1.005")) == [
        "items[0].unitPrice: 1.005 has more than 2 decimal places",
        "totalAmount: 1.005 has more than 2 decimal places"]
    lines = [{"sku": f"S{n}", "quantity": 1, "unitPrice": "1"} for n in range(MAX_LINES + 1)]
    assert problems(good(items=lines, totalAmount=str(MAX_LINES + 1))) == [
        f"items: {MAX_LINES + 1} lines is above the limit of {MAX_LINES}"]
    yen = validate(good(currency="JPY", items=[{"sku": "A", "quantity": 2, "unitPrice": "500"}],
                        totalAmount=1000))
    assert yen.total == Decimal("1000")


@pytest.mark.parametrize("raw", [None, "order", 42, ["a"]])
def test_anything_but_an_object_is_refused(raw):
    assert problems(raw)[0].startswith("order: must be a JSON object")


def test_missing_sections_are_named():
    found = problems({"orderId": "o", "customerId": "c", "items": [], "totalAmount": "1",
                      "currency": "USD"})
    assert found == ["items: must be a non-empty list",
                     "payment: required: an object with method and token",
                     "shippingAddress: required: an object with line1, city, postalCode, country",
                     "contact: required: an object with email (and optionally phone)"]


def test_review_step_rules():
    order = validate(good())
    assert needs_review(order, Decimal("40")) and not needs_review(order, Decimal("44.98"))
    assert review_concerns(order, Decimal("40")) == []
    assert review_concerns(order, Decimal("4"))[0].startswith("total 44.98 USD is above")
    flagged = validate(good(customerId="flagged-7"))
    assert review_concerns(flagged, Decimal("40")) == ["customer flagged-7 is flagged by risk scoring"]
