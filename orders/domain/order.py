"""The order, its line items and money: plain Python, validated at the door, no AWS and no Celery.

Money is `Decimal` everywhere inside; JSON carries it as strings (numbers are
accepted on the way in and converted through their decimal text, so 19.99
stays 19.99). `validate` lists every problem of an order, not just the first.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from orders.domain.errors import InvalidOrder

#: Known currencies and their minor-unit exponent (2 = cents).
CURRENCIES: dict[str, int] = {"USD": 2, "EUR": 2, "GBP": 2, "CAD": 2, "AUD": 2, "CHF": 2, "JPY": 0}
TIERS = ("standard", "vip")
PAYMENT_METHODS = {"card": "tok_", "wallet": "wallet_"}
#: Sane limits. 50 lines keep the reservation inside one DynamoDB transaction (100 items).
MAX_LINES = 50
MAX_QUANTITY = 1000
MAX_UNIT_PRICE = Decimal("100000")
MAX_TOTAL = Decimal("1000000")
#: Ids end up in DynamoDB keys and SQS group/dedup ids (128 chars of [A-Za-z0-9!-~]).
ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
ADDRESS_FIELDS = ("line1", "city", "postalCode", "country")
EMAIL_PATTERN = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
PHONE_PATTERN = re.compile(r"^\+?[0-9 ()-]{6,20}$")
#: Customers whose id starts with this are declined by the (simulated) review step.
REVIEW_FLAGGED_PREFIX = "flagged"


@dataclass(frozen=True)
class LineItem:
    """One line of an order: a product, how many, at what unit price."""

    sku: str
    quantity: int
    unit_price: Decimal

    @property
    def subtotal(self) -> Decimal:
        return self.unit_price * self.quantity


@dataclass(frozen=True)
class Order:
    """A validated order; `to_json()` gives back the public shape with money as strings."""

    order_id: str
    customer_id: str
    tier: str
    items: tuple[LineItem, ...]
    total: Decimal
    currency: str
    payment_method: str
    payment_token: str
    shipping_address: dict[str, Any] = field(default_factory=dict)
    contact: dict[str, Any] = field(default_factory=dict)

    @property
    def is_vip(self) -> bool:
        return self.tier == "vip"

    @property
    def skus(self) -> list[str]:
        return [item.sku for item in self.items]

    @property
    def lead_sku(self) -> str:
        """The product whose FIFO message group an order's inventory messages join: its first line's.

        (The first line rather than, say, the smallest sku, so that multi-line orders
        spread over the catalogue's groups instead of piling onto one.)
        """
        return self.items[0].sku

    def to_json(self) -> dict[str, Any]:
        return {
            "orderId": self.order_id,
            "customerId": self.customer_id,
            "customerTier": self.tier,
            "items": [{"sku": i.sku, "quantity": i.quantity, "unitPrice": str(i.unit_price)}
                      for i in self.items],
            "totalAmount": str(self.total),
            "currency": self.currency,
            "payment": {"method": self.payment_method, "token": self.payment_token},
            "shippingAddress": dict(self.shipping_address),
            "contact": dict(self.contact),
        }

    def fingerprint(self) -> str:
        """A digest of the content, to tell a duplicate placement from a conflicting one."""
        canonical = json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:32]


class _Problems:
    """Collects every problem found while reading an order."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, where: str, what: str) -> None:
        self.items.append(f"{where}: {what}")


def validate(raw: Any) -> Order:
    """The order in `raw` (a JSON-like dict), or InvalidOrder listing every problem."""
    if not isinstance(raw, Mapping):
        raise InvalidOrder([f"order: must be a JSON object, got {type(raw).__name__}"])
    p = _Problems()
    currency = _currency(raw.get("currency"), p)
    places = CURRENCIES.get(currency or "", 2)
    order_id = _identifier(raw.get("orderId"), "orderId", p)
    customer_id = _identifier(raw.get("customerId"), "customerId", p)
    tier = _choice(raw.get("customerTier", "standard"), "customerTier", TIERS, p)
    items = _items(raw.get("items"), places, p)
    total = _money(raw.get("totalAmount"), "totalAmount", places, p, maximum=MAX_TOTAL)
    if total is not None and items is not None and len(items) == len(raw.get("items") or ()):
        expected = sum((i.subtotal for i in items), Decimal(0))
        if total != expected:
            p.add("totalAmount", f"{total} does not equal the sum of the items ({expected})")
    method, token = _payment(raw.get("payment"), p)
    address = _address(raw.get("shippingAddress"), p)
    contact = _contact(raw.get("contact"), p)
    if p.items:
        raise InvalidOrder(p.items)
    assert order_id and customer_id and tier and items is not None and total is not None
    assert currency and method and token
    return Order(order_id, customer_id, tier, tuple(items), total, currency, method, token,
                 address, contact)


def _identifier(value: Any, where: str, p: _Problems) -> str | None:
    if value is None or value == "":
        p.add(where, "required")
    elif not isinstance(value, str) or not ID_PATTERN.match(value):
        p.add(where, "must be 1-64 letters, digits or _.:- (starting with a letter or digit)")
    else:
        return value
    return None


def _choice(value: Any, where: str, allowed: tuple[str, ...], p: _Problems) -> str | None:
    if value not in allowed:
        p.add(where, f"must be one of {', '.join(allowed)}, got {value!r}")
        return None
    return str(value)


def _currency(value: Any, p: _Problems) -> str | None:
    if value is None:
        p.add("currency", "required")
    elif value not in CURRENCIES:
        p.add("currency", f"unknown currency {value!r} (known: {', '.join(sorted(CURRENCIES))})")
    else:
        return str(value)
    return None


def to_decimal(value: Any) -> Decimal | None:
    """A finite Decimal from a string, int, Decimal or float (through its text); None if not one."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float, Decimal)):
        return None
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def _money(value: Any, where: str, places: int, p: _Problems,
           maximum: Decimal = MAX_UNIT_PRICE) -> Decimal | None:
    if value is None:
        p.add(where, "required")
        return None
    number = to_decimal(value)
    if number is None:
        p.add(where, f"must be a decimal amount, got {value!r}")
    elif number <= 0:
        p.add(where, f"must be positive, got {number}")
    elif number > maximum:
        p.add(where, f"{number} is above the limit of {maximum}")
    elif -number.as_tuple().exponent > places:  # type: ignore[operator]
        p.add(where, f"{number} has more than {places} decimal places")
    else:
        return number.quantize(Decimal(1).scaleb(-places))
    return None


def _quantity(value: Any, where: str, p: _Problems) -> int | None:
    whole = isinstance(value, int) or (isinstance(value, Decimal) and value == value.to_integral_value())
    if isinstance(value, bool) or not whole:
        p.add(where, f"must be a whole number, got {value!r}")
    elif not 1 <= value <= MAX_QUANTITY:
        p.add(where, f"must be between 1 and {MAX_QUANTITY}, got {value}")
    else:
        return int(value)
    return None


def _items(value: Any, places: int, p: _Problems) -> list[LineItem] | None:
    if not isinstance(value, list) or not value:
        p.add("items", "must be a non-empty list")
        return None
    if len(value) > MAX_LINES:
        p.add("items", f"{len(value)} lines is above the limit of {MAX_LINES}")
    items, seen = [], set()
    for n, raw in enumerate(value):
        where = f"items[{n}]"
        if not isinstance(raw, Mapping):
            p.add(where, "must be an object with sku, quantity and unitPrice")
            continue
        sku = _identifier(raw.get("sku"), f"{where}.sku", p)
        quantity = _quantity(raw.get("quantity"), f"{where}.quantity", p)
        price = _money(raw.get("unitPrice"), f"{where}.unitPrice", places, p)
        if sku in seen:
            p.add(f"{where}.sku", f"{sku} appears on more than one line; combine them")
        seen.add(sku)
        if sku and quantity and price:
            items.append(LineItem(sku, quantity, price))
    return items


def _payment(value: Any, p: _Problems) -> tuple[str | None, str | None]:
    if not isinstance(value, Mapping):
        p.add("payment", "required: an object with method and token")
        return None, None
    method = _choice(value.get("method"), "payment.method", tuple(PAYMENT_METHODS), p)
    token = value.get("token")
    if not isinstance(token, str) or not token:
        p.add("payment.token", "required")
        return method, None
    if method and not token.startswith(PAYMENT_METHODS[method]):
        p.add("payment.token", f"a {method} token starts with {PAYMENT_METHODS[method]!r}")
        return method, None
    return method, token


def _address(value: Any, p: _Problems) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        p.add("shippingAddress", "required: an object with " + ", ".join(ADDRESS_FIELDS))
        return {}
    for name in ADDRESS_FIELDS:
        if not isinstance(value.get(name), str) or not value.get(name, "").strip():
            p.add(f"shippingAddress.{name}", "required")
    country = value.get("country")
    if isinstance(country, str) and country and not re.fullmatch(r"[A-Z]{2}", country):
        p.add("shippingAddress.country", f"must be an ISO 3166 two-letter code, got {country!r}")
    return {k: v for k, v in value.items() if isinstance(v, str)}


def _contact(value: Any, p: _Problems) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        p.add("contact", "required: an object with email (and optionally phone)")
        return {}
    email, phone = value.get("email"), value.get("phone")
    if not isinstance(email, str) or not EMAIL_PATTERN.match(email):
        p.add("contact.email", f"must be an email address, got {email!r}")
    if phone is not None and (not isinstance(phone, str) or not PHONE_PATTERN.match(phone)):
        p.add("contact.phone", f"must be a phone number, got {phone!r}")
    return {k: v for k, v in value.items() if k in ("email", "phone") and isinstance(v, str)}


def needs_review(order: Order, threshold: Decimal) -> bool:
    """Whether an order is large enough for the review step."""
    return order.total > threshold


def review_concerns(order: Order, threshold: Decimal) -> list[str]:
    """The (simulated) automated review of a large order: why it should not proceed, if anything.

    Rules: a customer flagged by risk scoring (simulated: ids starting with
    'flagged') is declined; so is an order above ten times the review threshold.
    """
    concerns = []
    if order.customer_id.startswith(REVIEW_FLAGGED_PREFIX):
        concerns.append(f"customer {order.customer_id} is flagged by risk scoring")
    if order.total > threshold * 10:
        concerns.append(f"total {order.total} {order.currency} is above the automatic approval "
                        f"limit of {threshold * 10}")
    return concerns
