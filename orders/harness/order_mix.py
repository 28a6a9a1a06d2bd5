"""A realistic, reproducible mix of orders for the demo and the benchmark.

Every kind of order the pipeline must handle appears in proportion (and at
least once when there are enough orders): regular and VIP customers, large
orders that go through review, declined cards, transient gateway errors,
orders for a scarce product, and a few invalid ones. The same seed gives the
same orders; `run_id` keeps order ids unique across runs on one endpoint.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from orders.domain.states import OrderState
from orders.harness.summary import REFUSED

CENT = Decimal("0.01")


@dataclass(frozen=True)
class Product:
    """One catalogue entry."""

    sku: str
    name: str
    price: Decimal


CATALOGUE: tuple[Product, ...] = (
    Product("SKU-1001", "Espresso beans 1 kg", Decimal("24.90")),
    Product("SKU-1002", "Ceramic pour-over dripper", Decimal("32.00")),
    Product("SKU-1003", "Paper filters x100", Decimal("6.50")),
    Product("SKU-1004", "Burr grinder", Decimal("189.00")),
    Product("SKU-1005", "Gooseneck kettle", Decimal("79.95")),
    Product("SKU-1006", "Travel mug", Decimal("19.99")),
    Product("SKU-1007", "Milk frother", Decimal("45.00")),
    Product("SKU-1008", "Digital scale", Decimal("39.50")),
)
#: Expensive enough that a few make an order go above the review threshold.
PREMIUM = Product("SKU-9001", "Dual-boiler espresso machine", Decimal("2499.00"))
#: Stocked below demand on purpose: about half its orders find none left.
SCARCE = Product("SKU-7001", "Limited-edition grinder", Decimal("349.00"))

#: Share of each kind of order; every kind appears once a run has this many orders.
WEIGHTS: Mapping[str, float] = {
    "regular": 0.55, "vip": 0.15, "large": 0.04, "declined": 0.08,
    "transient": 0.06, "scarce": 0.08, "invalid": 0.04,
}
#: What each kind should end as: some scarce orders find no stock left and some
#: large ones come from customers the review declines, by design.
EXPECTED: Mapping[str, tuple[str, ...]] = {
    "regular": (OrderState.COMPLETED,), "vip": (OrderState.COMPLETED,),
    "large": (OrderState.COMPLETED, OrderState.CANCELLED), "declined": (OrderState.CANCELLED,),
    "transient": (OrderState.COMPLETED,), "scarce": (OrderState.COMPLETED, OrderState.CANCELLED),
    "invalid": (REFUSED, OrderState.REJECTED),
    "hot": (OrderState.COMPLETED,),
}
#: The product of a flash sale (`MIXES["hot"]`): one FIFO message group on the inventory queue.
HOT = CATALOGUE[0]
#: The mixes a run can ask for: the demo's (every case), and a flash sale where nine
#: orders in ten are simple orders led by one product (`HOT`), the rest regular.
MIXES: Mapping[str, Mapping[str, float]] = {
    "demo": WEIGHTS,
    "hot": {"hot": 0.9, "regular": 0.1},
}
APPROVING = (("card", "tok_visa"), ("card", "tok_mastercard"), ("wallet", "wallet_ok"))
DECLINING = (("card", "tok_chargeDeclined"), ("card", "tok_insufficientFunds"),
             ("wallet", "wallet_declined"))
CITIES = (("London", "EC1A 1BB"), ("Leeds", "LS1 4AP"), ("Bristol", "BS1 5TR"),
          ("Glasgow", "G1 1XQ"), ("Cardiff", "CF10 1EP"))


@dataclass(frozen=True)
class PlannedOrder:
    """One order to place and the kind of case it exercises."""

    kind: str
    order: dict[str, Any]

    @property
    def order_id(self) -> str:
        return str(self.order.get("orderId", ""))


def apportion(n: int, weights: Mapping[str, float]) -> dict[str, int]:
    """Split n by weight (largest remainder), every kind at least once when n allows."""
    base = 1 if n >= len(weights) else 0
    rest = n - base * len(weights)
    total = sum(weights.values())
    shares = {k: rest * w / total for k, w in weights.items()}
    counts = {k: base + int(share) for k, share in shares.items()}
    left = n - sum(counts.values())
    for kind in sorted(shares, key=lambda k: shares[k] - int(shares[k]), reverse=True)[:left]:
        counts[kind] += 1
    return counts


class OrderMix:
    """Generates the orders of a run and the stock they need."""

    def __init__(self, seed: int = 1, run_id: str = "ord", review_threshold: Decimal = Decimal("5000"),
                 weights: Mapping[str, float] = WEIGHTS, currency: str = "USD"):
        self.seed = seed
        self.run_id = run_id
        self.review_threshold = Decimal(review_threshold)
        self.weights = dict(weights)
        self.currency = currency
        self.rng = random.Random(seed)

    def orders(self, n: int) -> list[PlannedOrder]:
        """n orders in a shuffled, seed-determined order."""
        self.rng = random.Random(self.seed)
        kinds = [k for k, c in apportion(n, self.weights).items() for _ in range(c)]
        self.rng.shuffle(kinds)
        return [PlannedOrder(kind, self._make(kind, i)) for i, kind in enumerate(kinds, 1)]

    def stock(self, n: int) -> dict[str, int]:
        """Stock to seed for n orders: plenty of everything except the scarce product."""
        counts = apportion(n, self.weights)
        stock = {p.sku: max(50, n * 6) for p in CATALOGUE}
        stock[PREMIUM.sku] = counts.get("large", 0) * self.large_quantity() + 5
        stock[SCARCE.sku] = max(1, counts.get("scarce", 0) // 2)
        return stock

    def large_quantity(self) -> int:
        """How many premium machines put an order above the review threshold."""
        return int(self.review_threshold // PREMIUM.price) + 1

    def _make(self, kind: str, i: int) -> dict[str, Any]:
        build: dict[str, Callable[[str], dict[str, Any]]] = {
            "regular": self._regular, "vip": self._vip, "large": self._large,
            "declined": self._declined, "transient": self._transient,
            "scarce": self._scarce, "invalid": self._invalid, "hot": self._hot,
        }
        return build[kind](f"{self.run_id}-{i:05d}")

    def _regular(self, order_id: str) -> dict[str, Any]:
        return self.order(order_id, f"cust-{self.rng.randrange(1, 400):04d}", self._basket(),
                          self.rng.choice(APPROVING))

    def _vip(self, order_id: str) -> dict[str, Any]:
        # Few VIP customers, so one customer's orders share a FIFO message group.
        return self.order(order_id, f"vip-{self.rng.randrange(1, 12):03d}", self._basket(),
                          self.rng.choice(APPROVING), tier="vip")

    def _large(self, order_id: str) -> dict[str, Any]:
        # The simulated review declines customers flagged by risk scoring (orders.domain.order).
        who = "flagged" if self.rng.random() < 0.25 else "cust"
        return self.order(order_id, f"{who}-{self.rng.randrange(1, 400):04d}",
                          [(PREMIUM, self.large_quantity())], self.rng.choice(APPROVING))

    def _declined(self, order_id: str) -> dict[str, Any]:
        return self.order(order_id, f"cust-{self.rng.randrange(1, 400):04d}", self._basket(),
                          self.rng.choice(DECLINING))

    def _transient(self, order_id: str) -> dict[str, Any]:
        return self.order(order_id, f"cust-{self.rng.randrange(1, 400):04d}", self._basket(),
                          ("card", "tok_processingError"))

    def _scarce(self, order_id: str) -> dict[str, Any]:
        return self.order(order_id, f"cust-{self.rng.randrange(1, 400):04d}",
                          [(SCARCE, 1)] + self._basket(max_lines=1), self.rng.choice(APPROVING))

    def _hot(self, order_id: str) -> dict[str, Any]:
        return self.order(order_id, f"cust-{self.rng.randrange(1, 400):04d}",
                          [(HOT, self.rng.randint(1, 2))], self.rng.choice(APPROVING))

    def _invalid(self, order_id: str) -> dict[str, Any]:
        order = self.order(order_id, f"cust-{self.rng.randrange(1, 400):04d}", self._basket(),
                           self.rng.choice(APPROVING))
        return self.rng.choice(BREAKAGES)(order)

    def _basket(self, max_lines: int = 3) -> list[tuple[Product, int]]:
        products = self.rng.sample(CATALOGUE, self.rng.randint(1, max_lines))
        return [(p, self.rng.randint(1, 3)) for p in products]

    def order(self, order_id: str, customer_id: str, lines: list[tuple[Product, int]],
              payment: tuple[str, str], tier: str = "standard") -> dict[str, Any]:
        """A valid order in the contract's shape (money as strings, never floats)."""
        items = [{"sku": p.sku, "quantity": q, "unitPrice": str(p.price)} for p, q in lines]
        total = sum((p.price * q for p, q in lines), Decimal(0)).quantize(CENT)
        city, postcode = self.rng.choice(CITIES)
        return {
            "orderId": order_id, "customerId": customer_id, "customerTier": tier,
            "items": items, "totalAmount": str(total), "currency": self.currency,
            "payment": {"method": payment[0], "token": payment[1]},
            "shippingAddress": {"name": customer_id.title(), "line1": "1 High Street",
                                "city": city, "postalCode": postcode, "country": "GB"},
            "contact": {"email": f"{customer_id}@example.com", "phone": "+447700900123"},
        }


def _zero_quantity_wrong_total(order: dict[str, Any]) -> dict[str, Any]:
    order["items"][0]["quantity"] = 0
    order["totalAmount"] = "1.00"
    return order


def _unknown_currency_and_sku(order: dict[str, Any]) -> dict[str, Any]:
    order["currency"] = "XXX"
    order["items"][0]["sku"] = "SKU-0000"
    return order


def _missing_fields(order: dict[str, Any]) -> dict[str, Any]:
    del order["customerId"]
    del order["payment"]
    return order


def _bad_types(order: dict[str, Any]) -> dict[str, Any]:
    order["items"][0]["quantity"] = "two"
    order["items"][0]["unitPrice"] = "-5.00"
    return order


BREAKAGES: tuple[Callable[[dict[str, Any]], dict[str, Any]], ...] = (
    _zero_quantity_wrong_total, _unknown_currency_and_sku, _missing_fields, _bad_types,
)
