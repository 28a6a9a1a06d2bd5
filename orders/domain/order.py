"""The order, its line items and money: plain Python, validated at the door, no AWS and no Celery.

Money is `Decimal` everywhere inside; JSON carries it as strings (numbers are
accepted on the way in and converted through their decimal text, so 19.99
stays 19.99). `validate` lists every problem of an order, not just the first.

Validation takes any input and runs in time linear in what it reads: every
field's type and length are checked before anything else looks at it, no
pattern can backtrack, and a problem quotes at most QUOTE_CHARS of a value, never one of
the sensitive fields' (orders.domain.sensitive: the payment token, the contact, the address).
Each sensitive field comes in clear (validated fully: at the door) or sealed (its envelope's
shape only: what a worker reads); `Order.sealed` seals the fields still in clear.
Text fields refuse control characters (line breaks included) and lone
surrogates, which would break a label, a log line or the UTF-8 that AWS takes.
Fields the order does not know are ignored (never stored or sent). The limits
below are the contract, documented in docs/reliability.md.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal, InvalidOperation
from typing import Any

from orders.domain.errors import InvalidOrder
from orders.domain.sensitive import (
    MAX_SEALED_CHARS,
    SEALED_KEY,
    Field,
    Sealed,
    UnreadableField,
    looks_sealed,
    sealed_value,
)

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
MAX_ID_LENGTH = 64
ID_PATTERN = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}\Z")
#: The longest text of an amount ("123456.78"); longer text is refused before it is parsed.
MAX_AMOUNT_CHARS = 32
MAX_TOKEN_LENGTH = 128
TOKEN_PATTERN = re.compile(r"\A[A-Za-z0-9_-]{1,128}\Z")
#: RFC 5321's limits of an address and of its local part.
MAX_EMAIL_LENGTH = 254
MAX_EMAIL_LOCAL_LENGTH = 64
MAX_PHONE_LENGTH = 21  # "+" and 20 digits, spaces, parentheses or dashes
PHONE_PATTERN = re.compile(r"\A\+?[0-9 ()-]{6,20}\Z")
ADDRESS_FIELDS = ("line1", "city", "postalCode", "country")
#: Every field a shipping address may have and its longest length (the others are ignored);
#: `country` is an ISO 3166 two-letter code.
ADDRESS_LIMITS: dict[str, int] = {"name": 100, "line1": 100, "line2": 100, "city": 60, "region": 60,
                                  "postalCode": 16}
#: What the largest valid order weighs as JSON at most (tests/unit/test_domain.py builds it):
#: far below DynamoDB's 400 KB item and SQS's 256 KiB message, with room for the chain's copies.
MAX_ORDER_BYTES = 32_768
#: Characters of an offending value a problem quotes, and problems listed at most.
QUOTE_CHARS = 40
MAX_PROBLEMS = 100
#: Control characters (line breaks included), Unicode line separators and lone surrogates.
UNSAFE_TEXT = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
#: Customers whose id starts with this are declined by the (simulated) review step.
REVIEW_FLAGGED_PREFIX = "flagged"
#: An order's fingerprint, carried by a sealed order (it is computed on the plaintext).
FINGERPRINT_PATTERN = re.compile(r"\A[0-9a-f]{32}\Z")
SEALED_RULE = f'must be {{"{SEALED_KEY}": "ofe1..."}} (an envelope of at most {MAX_SEALED_CHARS} characters)'
#: seal(order id, field, plaintext) -> envelope text; open(order id, field, envelope text) -> plaintext.
Sealer = Callable[[str, Field, str], str]
Opener = Callable[[str, Field, str], str]


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
    # Out of repr: an order printed (a log line, a traceback's locals) shows no sensitive field.
    payment_token: str | Sealed = field(repr=False)
    shipping_address: dict[str, Any] | Sealed = field(default_factory=dict, repr=False)
    contact: dict[str, Any] | Sealed = field(default_factory=dict, repr=False)
    #: The fingerprint of the plaintext, carried once the fields are sealed (their ciphertexts
    #: differ each time the same order is sealed).
    digest: str | None = None

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
            "payment": {"method": self.payment_method, "token": _as_json(self.payment_token)},
            "shippingAddress": _as_json(self.shipping_address),
            "contact": _as_json(self.contact),
            **({"fingerprint": self.digest} if self.digest else {}),
        }

    def fingerprint(self) -> str:
        """A digest of the content, to tell a duplicate placement from a conflicting one.

        Computed on the plaintext at the door and carried once sealed; an order sealed
        without it (a hand-made message) gets the digest of its ciphertexts.
        """
        if self.digest:
            return self.digest
        canonical = json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:32]

    def value_of(self, name: Field) -> str | dict[str, Any] | Sealed:
        """A sensitive field's value as the order carries it (sealed, or in clear before sealing)."""
        return {Field.PAYMENT_TOKEN: self.payment_token, Field.CONTACT: self.contact,
                Field.SHIPPING_ADDRESS: self.shipping_address}[name]

    def in_clear(self) -> list[Field]:
        """The sensitive fields not sealed yet."""
        return [name for name in Field if not isinstance(self.value_of(name), Sealed)]

    def sealed(self, seal: Sealer) -> Order:
        """This order with each field still in clear sealed by `seal`, its fingerprint kept."""
        def one(name: Field) -> Any:
            value = self.value_of(name)
            if isinstance(value, Sealed):
                return value
            text = value if isinstance(value, str) else json.dumps(value, sort_keys=True,
                                                                    separators=(",", ":"))
            return Sealed(seal(self.order_id, name, text))

        return replace(self, payment_token=one(Field.PAYMENT_TOKEN), contact=one(Field.CONTACT),
                       shipping_address=one(Field.SHIPPING_ADDRESS), digest=self.fingerprint())

    def opened(self, name: Field, open_: Opener) -> Any:
        """A field's plaintext (the token's text, the contact's or address's object), opened by
        `open_` in memory; UnreadableField if it does not open."""
        value = self.value_of(name)
        if not isinstance(value, Sealed):
            return value
        text = open_(self.order_id, name, value.text)
        if name is Field.PAYMENT_TOKEN:
            return text
        try:
            found = json.loads(text)
        except ValueError:
            found = None
        if not isinstance(found, dict):
            raise UnreadableField(f"order {self.order_id}: {name.value} did not open to an object")
        return found


def _as_json(value: Any) -> Any:
    if isinstance(value, Sealed):
        return value.to_json()
    return dict(value) if isinstance(value, dict) else value


class _Problems:
    """Collects every problem found while reading an order (at most MAX_PROBLEMS are kept)."""

    def __init__(self) -> None:
        self.items: list[str] = []
        self.dropped = 0

    def add(self, where: str, what: str) -> None:
        if len(self.items) < MAX_PROBLEMS:
            self.items.append(f"{where}: {what}")
        else:
            self.dropped += 1

    def listed(self) -> list[str]:
        return self.items + ([f"... and {self.dropped} more problem(s)"] if self.dropped else [])


def show(value: Any) -> str:
    """A value as a problem quotes it: text clipped to QUOTE_CHARS, other things by their type."""
    if isinstance(value, str):
        clipped = repr(value[:QUOTE_CHARS])
        return clipped + (f" (cut, {len(value)} characters)" if len(value) > QUOTE_CHARS else "")
    if value is None or isinstance(value, bool | float):
        return repr(value)
    if isinstance(value, int):
        return repr(value) if abs(value) < 10**QUOTE_CHARS else "a very large integer"
    if isinstance(value, Decimal):
        text = str(value)
        return text if len(text) <= QUOTE_CHARS else "a very long number"
    return f"a {type(value).__name__}"


def validate(raw: Any) -> Order:
    """The order in `raw` (a JSON-like dict), or InvalidOrder listing every problem."""
    if not isinstance(raw, Mapping):
        raise InvalidOrder([f"order: must be a JSON object, got {type(raw).__name__}"])
    p = _Problems()
    currency = _currency(raw.get("currency"), p)
    order_id = _identifier(raw.get("orderId"), "orderId", p)
    customer_id = _identifier(raw.get("customerId"), "customerId", p)
    tier = _choice(raw.get("customerTier", "standard"), "customerTier", TIERS, p)
    raw_items = raw.get("items")
    items = _items(raw_items, currency, p)
    total = _money(raw.get("totalAmount"), "totalAmount", currency, p, maximum=MAX_TOTAL)
    if total is not None and items is not None and len(items) == len(raw_items or ()):
        expected = sum((i.subtotal for i in items), Decimal(0))
        if total != expected:
            p.add("totalAmount", f"{total} does not equal the sum of the items ({expected})")
    method, token = _payment(raw.get("payment"), p)
    address = _sealed_or(raw.get("shippingAddress"), "shippingAddress", p, _address)
    contact = _sealed_or(raw.get("contact"), "contact", p, _contact)
    digest = _fingerprint(raw.get("fingerprint"), p)
    if p.items:
        raise InvalidOrder(p.listed())
    assert order_id and customer_id and tier and items is not None and total is not None
    assert currency and method and token
    order = Order(order_id, customer_id, tier, tuple(items), total, currency, method, token,
                  address, contact)
    # A fingerprint is carried by sealed orders only: an order in clear is its own.
    return replace(order, digest=digest) if digest and len(order.in_clear()) < len(Field) else order


def _sealed_or(value: Any, where: str, p: _Problems, clear: Callable[[Any, _Problems], Any]) -> Any:
    """A sensitive object sealed (its envelope's shape checked) or in clear (`clear` validates it)."""
    if not looks_sealed(value):
        return clear(value, p)
    found = sealed_value(value)
    if found is None:
        p.add(where, SEALED_RULE)
    return found


def _fingerprint(value: Any, p: _Problems) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not FINGERPRINT_PATTERN.match(value):
        p.add("fingerprint", "must be 32 lowercase hexadecimal digits")
        return None
    return value


def _text(value: Any, where: str, p: _Problems, limit: int, required: bool = True,
          secret: bool = False) -> str | None:
    """`value` if it is acceptable text of at most `limit` characters; else a problem, None.

    A `secret` value (a sensitive field's) is described by its type, never quoted.
    """
    if value is None or value == "":
        if required:
            p.add(where, "required")
    elif not isinstance(value, str):
        p.add(where, f"must be text, got {'a ' + type(value).__name__ if secret else show(value)}")
    elif len(value) > limit:  # before anything reads it
        p.add(where, f"is {len(value)} characters long, above the limit of {limit}")
    elif UNSAFE_TEXT.search(value):
        p.add(where, "must not contain control characters, line breaks or lone surrogates")
    else:
        return value
    return None


def _identifier(value: Any, where: str, p: _Problems) -> str | None:
    text = _text(value, where, p, MAX_ID_LENGTH)
    if text is not None and not ID_PATTERN.match(text):
        p.add(where, f"must be 1-{MAX_ID_LENGTH} letters, digits or _.:- (starting with a letter or digit)")
        return None
    return text


def _choice(value: Any, where: str, allowed: tuple[str, ...], p: _Problems) -> str | None:
    if not isinstance(value, str) or value not in allowed:
        p.add(where, f"must be one of {', '.join(allowed)}, got {show(value)}")
        return None
    return value


def _currency(value: Any, p: _Problems) -> str | None:
    if value is None:
        p.add("currency", "required")
    elif not isinstance(value, str) or value not in CURRENCIES:
        p.add("currency", f"unknown currency {show(value)} (known: {', '.join(sorted(CURRENCIES))})")
    else:
        return value
    return None


def to_decimal(value: Any) -> Decimal | None:
    """A finite Decimal from a string, int, Decimal or float (through its text); None if not one."""
    if isinstance(value, bool) or not isinstance(value, str | int | float | Decimal):
        return None
    if isinstance(value, str) and len(value) > MAX_AMOUNT_CHARS:
        return None  # no amount is this long: never parsed
    try:
        # An int goes in whole (its text could be too long for str()); the others through their text.
        number = Decimal(value) if isinstance(value, int) else Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        return None
    return number if number.is_finite() else None


def minor_units(currency: str | None) -> int:
    """The decimal places of a currency's minor unit (2 = cents; 2 for a currency not known)."""
    return CURRENCIES.get(currency or "", 2)


def decimal_places(amount: Decimal) -> int:
    """How many decimal places a finite amount is written with (25.50: 2; 300 and 3E+2: 0)."""
    exponent = amount.as_tuple().exponent
    return -exponent if isinstance(exponent, int) and exponent < 0 else 0


def in_currency(amount: Decimal, currency: str | None) -> Decimal:
    """`amount` written with its currency's minor units (25.00 USD, 300 JPY); finer amounts unrounded."""
    places = minor_units(currency)
    return amount if decimal_places(amount) > places else amount.quantize(Decimal(1).scaleb(-places))


def _money(value: Any, where: str, currency: str | None, p: _Problems,
           maximum: Decimal = MAX_UNIT_PRICE) -> Decimal | None:
    if value is None:
        p.add(where, "required")
        return None
    number = to_decimal(value)
    if number is None:
        p.add(where, f"must be a decimal amount, got {show(value)}")
    elif number <= 0:
        p.add(where, f"must be positive, got {show(number)}")
    elif number > maximum:
        p.add(where, f"{show(number)} is above the limit of {maximum}")
    elif decimal_places(number) > minor_units(currency):
        p.add(where, f"{show(number)} has more than {minor_units(currency)} decimal places")
    else:
        return in_currency(number, currency)
    return None


def _quantity(value: Any, where: str, p: _Problems) -> int | None:
    whole = isinstance(value, int) or (isinstance(value, Decimal) and value.is_finite()
                                       and value == value.to_integral_value())
    if isinstance(value, bool) or not whole:
        p.add(where, f"must be a whole number, got {show(value)}")
    elif not 1 <= value <= MAX_QUANTITY:
        p.add(where, f"must be between 1 and {MAX_QUANTITY}, got {show(value)}")
    else:
        return int(value)
    return None


def _items(value: Any, currency: str | None, p: _Problems) -> list[LineItem] | None:
    if not isinstance(value, list) or not value:
        p.add("items", "must be a non-empty list")
        return None
    if len(value) > MAX_LINES:  # its lines are not read: the order is refused anyway
        p.add("items", f"{len(value)} lines is above the limit of {MAX_LINES}")
        return None
    items, seen = [], set()
    for n, raw in enumerate(value):
        where = f"items[{n}]"
        if not isinstance(raw, Mapping):
            p.add(where, "must be an object with sku, quantity and unitPrice")
            continue
        sku = _identifier(raw.get("sku"), f"{where}.sku", p)
        quantity = _quantity(raw.get("quantity"), f"{where}.quantity", p)
        price = _money(raw.get("unitPrice"), f"{where}.unitPrice", currency, p)
        if sku in seen:
            p.add(f"{where}.sku", f"{sku} appears on more than one line; combine them")
        seen.add(sku)
        if sku and quantity and price:
            items.append(LineItem(sku, quantity, price))
    return items


def _payment(value: Any, p: _Problems) -> tuple[str | None, str | Sealed | None]:
    if not isinstance(value, Mapping):
        p.add("payment", "required: an object with method and token")
        return None, None
    method = _choice(value.get("method"), "payment.method", tuple(PAYMENT_METHODS), p)
    if looks_sealed(value.get("token")):
        return method, _sealed_or(value.get("token"), "payment.token", p, lambda _v, _p: None)
    token = _text(value.get("token"), "payment.token", p, MAX_TOKEN_LENGTH, secret=True)
    if token is None:
        return method, None
    if method and not token.startswith(PAYMENT_METHODS[method]):
        p.add("payment.token", f"a {method} token starts with {PAYMENT_METHODS[method]!r}")
        return method, None
    if not TOKEN_PATTERN.match(token):
        p.add("payment.token", "must be letters, digits, _ and -")
        return method, None
    return method, token


def _address(value: Any, p: _Problems) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        p.add("shippingAddress", "required: an object with " + ", ".join(ADDRESS_FIELDS))
        return {}
    address = {}
    for name, limit in ADDRESS_LIMITS.items():
        text = _text(value.get(name), f"shippingAddress.{name}", p, limit, required=name in ADDRESS_FIELDS,
                     secret=True)
        if text is not None and name in ADDRESS_FIELDS and not text.strip():
            p.add(f"shippingAddress.{name}", "required")
        elif text is not None:
            address[name] = text
    country = _text(value.get("country"), "shippingAddress.country", p, QUOTE_CHARS, secret=True)
    if country is not None and not re.fullmatch(r"[A-Z]{2}", country):
        p.add("shippingAddress.country", "must be an ISO 3166 two-letter code")
    elif country is not None:
        address["country"] = country
    return address


def _contact(value: Any, p: _Problems) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        p.add("contact", "required: an object with email (and optionally phone)")
        return {}
    contact = {}
    email = _text(value.get("email"), "contact.email", p, MAX_EMAIL_LENGTH, secret=True)
    if email is not None and not is_email(email):
        p.add("contact.email", "must be an email address (one @, a domain with a dot, no spaces)")
    elif email is not None:
        contact["email"] = email
    phone = _text(value.get("phone"), "contact.phone", p, MAX_PHONE_LENGTH, required=False, secret=True)
    if phone is not None and not PHONE_PATTERN.match(phone):
        p.add("contact.phone", "must be a phone number (6 to 20 digits, spaces, ()- and a leading +)")
    elif phone is not None:
        contact["phone"] = phone
    return contact


def is_email(text: str) -> bool:
    """One @, a local part and a domain with a dot inside, no spaces (linear: no pattern)."""
    local, at, domain = text.rpartition("@")
    return (bool(at) and 0 < len(local) <= MAX_EMAIL_LOCAL_LENGTH and "@" not in local
            and "." in domain[1:-1] and not any(c.isspace() for c in text))


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
