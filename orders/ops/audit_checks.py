"""The ledger audit's rules, as plain functions over what the tables hold: money, charges, stock, time.

Each rule returns the problems it finds; orders.ops.audit reads the tables and runs them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from orders.aws.gateway import LedgerEntry, Movement
from orders.aws.stock import StockCount
from orders.domain.order import in_currency
from orders.domain.records import OrderRecord
from orders.domain.states import OrderState
from orders.domain.times import parse_time


class Kind(StrEnum):
    """What a problem is (the `kind` of its JSON)."""

    MONEY_MISMATCH = "money-mismatch"  # a final order's captured minus refunded is not what it should be
    DOUBLE_CHARGE = "double-charge"  # more than one capture for one order
    UNKNOWN_ORDER = "unknown-order"  # money moved for an order the store does not have
    FAILED = "failed"  # an order in `failed`: its message is in a DLQ, awaiting a person
    STUCK = "stuck"  # not final, for longer than the step it waits for allows
    OVERSOLD = "oversold"  # more units sold or held than were ever stocked
    STOCK_LOST = "stock-lost"  # units stocked that are nowhere: not on sale, held or sold
    HELD_MISMATCH = "held-mismatch"  # the stock table's held units differ from the active holds
    UNCOUNTED = "stock-uncounted"  # a product written before the counters: nothing to check it against
    UNINDEXED = "not-indexed"  # not final, but missing from the in-flight index the stuck-order sweeper reads
    UNREADABLE = "unreadable-record"  # an orders item that is no order or hold; a stock item with no counters


@dataclass(frozen=True)
class Problem:
    """One discrepancy: its kind, the order or product, a sentence, and the units of stock it concerns."""

    kind: Kind
    detail: str
    order_id: str | None = None
    sku: str | None = None
    units: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind.value, "orderId": self.order_id, "sku": self.sku, "detail": self.detail}

    def line(self) -> str:
        """The one-line human form."""
        subject = f"order {self.order_id}" if self.order_id else f"sku {self.sku}" if self.sku else "-"
        return f"{self.kind.value}: {subject}: {self.detail}"


@dataclass(frozen=True)
class Money:
    """What the gateway's ledger holds for one order."""

    captured: Decimal
    refunded: Decimal
    captures: tuple[LedgerEntry, ...]
    currencies: frozenset[str]

    @property
    def net(self) -> Decimal:
        return self.captured - self.refunded


def zero(currency: str | None) -> Decimal:
    """No money, written with the currency's minor units (0.00 for USD, 0 for JPY)."""
    return in_currency(Decimal(0), currency)


def money_of(entries: Sequence[LedgerEntry], currency: str | None) -> Money:
    """The sums of an order's ledger entries."""
    captures = tuple(e for e in entries if e.kind is Movement.CAPTURE)
    refunded = sum((e.amount for e in entries if e.kind is Movement.REFUND), zero(currency))
    return Money(sum((e.amount for e in captures), zero(currency)), refunded, captures,
                 frozenset(e.currency for e in entries))


def expected_net(record: OrderRecord) -> Decimal | None:
    """What captured minus refunded must be: the total once completed, zero once ended any other way
    (a failed order included: money held for an order that is not completed); None while in flight."""
    if record.status is OrderState.COMPLETED:
        return record.total_amount if record.total_amount is not None else zero(record.currency)
    return zero(record.currency) if record.status.is_final else None


def money_problems(record: OrderRecord, money: Money) -> list[Problem]:
    """A double charge, a final order whose money does not add up, a failed order awaiting a person."""
    problems, oid, currency = [], record.order_id, record.currency or "?"
    if len(money.captures) > 1:
        taken = ", ".join(f"{e.id} {e.amount} {e.currency}" for e in money.captures)
        problems.append(Problem(Kind.DOUBLE_CHARGE, f"{len(money.captures)} captures: {taken}", oid))
    expected = expected_net(record)
    foreign = sorted(money.currencies - {currency})
    if expected is not None and (money.net != expected or foreign):
        detail = (f"{record.status.value} order: captured {money.captured} - refunded {money.refunded} "
                  f"= {money.net} {currency}, should be {expected}")
        problems.append(Problem(Kind.MONEY_MISMATCH, detail + (f" (entries in {', '.join(foreign)})"
                                                                if foreign else ""), oid))
    if record.status is OrderState.FAILED:
        held = f"; {money.net} {currency} captured and not refunded" if money.net else ""
        problems.append(Problem(Kind.FAILED, f"failed from {record.failed_from or '?'} ({record.reason}): "
                                f"awaits a redrive (orders dlq show){held}", oid))
    return problems


def unknown_orders(entries_by_order: dict[str, list[LedgerEntry]], known: set[str]) -> list[Problem]:
    """Money the gateway moved for orders the store does not have."""
    return [Problem(Kind.UNKNOWN_ORDER, "the gateway holds " + ", ".join(
                f"{e.kind.value} {e.id} {e.amount} {e.currency}" for e in entries) + " for no known order",
                    order_id)
            for order_id, entries in sorted(entries_by_order.items()) if order_id not in known]


def stock_problems(count: StockCount, held: int) -> list[Problem]:
    """A product's counters against each other, and its held units against its active holds."""
    if count.stock_set is None:
        return [Problem(Kind.UNCOUNTED, f"no stockSet counter (available {count.available}, held "
                        f"{count.reserved}): `orders inventory set` starts the count", sku=count.sku)]
    problems, stocked = [], count.stock_set + count.restocked
    where = (f"available {count.available} + held {count.reserved} + sold {count.sold} = {count.accounted}, "
             f"set {count.stock_set} + restocked {count.restocked} = {stocked}")
    if count.accounted > stocked:
        units = count.accounted - stocked
        problems.append(Problem(Kind.OVERSOLD, f"{_units(units)} more than were stocked: {where}",
                                sku=count.sku, units=units))
    elif count.accounted < stocked:
        units = stocked - count.accounted
        problems.append(Problem(Kind.STOCK_LOST, f"{_units(units)} stocked and now nowhere: {where}",
                                sku=count.sku, units=units))
    if count.available < 0:
        problems.append(Problem(Kind.OVERSOLD, f"available is {count.available}: units sold or held that "
                                "were not there", sku=count.sku, units=-count.available))
    if count.reserved != held:
        problems.append(Problem(Kind.HELD_MISMATCH, f"the stock table holds {count.reserved} units, "
                                f"active holds {held}", sku=count.sku))
    return problems


def unstocked_holds(held: dict[str, int], skus: Iterable[str]) -> list[Problem]:
    """Active holds on products the stock table does not have."""
    known = set(skus)
    return [Problem(Kind.HELD_MISMATCH, f"active holds take {_units(units)} of a product the stock table "
                    "does not have", sku=sku) for sku, units in sorted(held.items()) if sku not in known]


def _units(n: int) -> str:
    return f"{n} unit" if n == 1 else f"{n} units"


def stuck_problem(record: OrderRecord, allowed: float | None, now: datetime) -> Problem | None:
    """The order, if it has rested in its state longer than `allowed` seconds."""
    since = record.history[-1].at if record.history else record.updated_at or record.placed_at
    if allowed is None or since is None:
        return None
    age = (now - parse_time(since)).total_seconds()
    if age <= allowed:
        return None
    return Problem(Kind.STUCK, f"{record.status.value} since {since} ({age:.0f} s); "
                   f"its next step allows {allowed:.0f} s", record.order_id)
