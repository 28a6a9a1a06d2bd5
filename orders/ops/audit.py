"""The ledger audit: the payment gateway's ledger, the orders and the stock, reconciled.

`audit` reads three tables with paginated, strongly consistent Scans (the orders
table first, then the gateway's, then the stock: an order read as final has made all
its money moves before the ledger is read) and checks (orders.ops.audit_checks):

- each order's captured minus refunded is its total once `completed`, zero once
  `cancelled`, `rejected` or `failed`; no order is captured twice; no money moved
  for an order the store does not have;
- a `failed` order is reported as awaiting a person, whatever its money;
- each product's counters: stock set + restocked == available + held + sold, held
  equal to its active holds, nothing negative;
- no order rests in a state that is not final longer than the step it waits for
  allows (orders.ops.audit_bounds), or `stuck_after` seconds if given;
- every order not final is in the `in-flight` index the stuck-order sweeper reads
  (one in flight since before the release that made the index is not, until its
  next step); with `index`, the audit puts those in (OrderStore.index_in_flight)
  and counts them in `indexed` instead of reporting them.

`orders audit` prints it; the fault campaign calls `audit` and reads `counts`.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from orders.aws.gateway import LedgerEntry, ledger
from orders.aws.stock import HOLD_SK, StockCount
from orders.aws.store import IN_FLIGHT, OrderStore
from orders.aws.tables import scan
from orders.domain.records import Hold, OrderRecord
from orders.domain.states import HoldState, OrderState
from orders.domain.times import parse_time
from orders.ops.audit_bounds import allowed_seconds
from orders.ops.audit_checks import (
    Kind,
    Problem,
    money_of,
    money_problems,
    stock_problems,
    stuck_problem,
    unknown_orders,
    unstocked_holds,
)
from orders.settings import Settings


def iso(value: str | None) -> str | None:
    """A stored time as ISO 8601 UTC with a Z (None stays None)."""
    if value is None:
        return None
    return parse_time(value).isoformat(timespec="microseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class OrderLine:
    """One order as the audit saw it: where it is, when it was placed and ended, its money."""

    order_id: str
    status: OrderState
    placed_at: str | None
    finished_at: str | None
    captured: Decimal
    refunded: Decimal

    def to_json(self) -> dict[str, Any]:
        return {"orderId": self.order_id, "status": self.status.value, "placedAt": iso(self.placed_at),
                "finishedAt": iso(self.finished_at), "captured": str(self.captured),
                "refunded": str(self.refunded)}


@dataclass(frozen=True)
class Audit:
    """What the audit found: every order, every problem, and the figures the campaign prints."""

    orders: list[OrderLine]
    problems: list[Problem]
    counts: dict[str, int]

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        """What `orders audit --json` prints."""
        return {"orders": [o.to_json() for o in self.orders],
                "problems": [p.to_json() for p in self.problems], "counts": dict(self.counts)}


@dataclass
class OrderTable:
    """What the orders table holds: order records, stock holds, and items that are neither."""

    records: list[OrderRecord]
    holds: list[Hold]
    unreadable: list[Problem]
    #: Orders not final whose item lacks the `in-flight` index's keys.
    unindexed: list[OrderRecord] = field(default_factory=list)


UNINDEXED = ("not final, and missing from the in-flight index: the stuck-order sweeper cannot see it until "
             "its next step (`orders audit --index` adds it)")
#: What reading a hand-edited or otherwise damaged item raises: a finding, never the audit's end.
DAMAGED = (KeyError, ValueError, TypeError, ArithmeticError)


def read_order_table(settings: Settings) -> OrderTable:
    """Every order and hold: one paginated, strongly consistent Scan of the orders table."""
    found = OrderTable([], [], [])
    for data in OrderStore(settings).scan():
        _sort(data, found)
    return found


def read_order(data: dict[str, Any]) -> OrderRecord:
    """An order item as a record whose times can be compared and printed; one of DAMAGED if it cannot be
    (a hand edit: a state no release knows, a time that is not one)."""
    record = OrderRecord.from_data(data)
    for at in (record.placed_at, *(e.at for e in record.history)):
        iso(at)  # the audit and the sweeper compare and print these times: refuse a damaged one here
    return record


def _sort(data: dict[str, Any], found: OrderTable) -> None:
    try:
        if data.get("sk") == "order":
            record = read_order(data)
            found.records.append(record)
            if not record.status.is_final and IN_FLIGHT not in data:
                found.unindexed.append(record)
        elif data.get("sk") == HOLD_SK:
            found.holds.append(Hold.from_data(data))
    except DAMAGED as exc:  # a damaged item is a finding
        found.unreadable.append(_damaged(f"{data.get('sk')} item", exc, order_id=str(data.get("pk"))))


def read_stock(settings: Settings) -> tuple[list[StockCount], list[Problem]]:
    """Every product's counters (one paginated, strongly consistent Scan of the stock table), and a
    finding for each item whose counters cannot be read (a hand edit that stored text or a map):
    the audit and the recount go on with the others instead of stopping at it."""
    counts, unreadable = [], []
    for data in scan(settings, "stock"):
        try:
            counts.append(StockCount.from_data(data))
        except DAMAGED as exc:
            unreadable.append(_damaged("stock item", exc, sku=str(data.get("sku"))))
    return counts, unreadable


def _damaged(what: str, exc: Exception, order_id: str | None = None, sku: str | None = None) -> Problem:
    return Problem(Kind.UNREADABLE, f"{what}: {type(exc).__name__}: {exc}", order_id, sku)


def audit(settings: Settings, stuck_after: float | None = None, now: datetime | None = None,
          index: bool = False) -> Audit:
    """Reconcile the ledger, the orders and the stock of `settings`' environment (module docstring);
    with `index`, put the orders in flight missing from the `in-flight` index into it."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    table = read_order_table(settings)
    indexed = _index(settings, table.unindexed) if index else 0
    entries: dict[str, list[LedgerEntry]] = defaultdict(list)
    for entry in ledger(settings):
        entries[entry.order_id].append(entry)
    counts, unreadable_stock = read_stock(settings)
    lines, problems = _orders(settings, table.records, entries, stuck_after, now)
    problems += unknown_orders(entries, {r.order_id for r in table.records})
    problems += _stock(counts, table.holds) + table.unreadable + unreadable_stock
    if not index:
        problems += [Problem(Kind.UNINDEXED, UNINDEXED, record.order_id) for record in table.unindexed]
    return Audit(lines, problems, {**_figures(table.records, problems, len(counts)), "indexed": indexed})


def _index(settings: Settings, records: list[OrderRecord]) -> int:
    """Put these orders into the `in-flight` index; how many were (one that changed meanwhile needs none)."""
    store = OrderStore(settings)
    return sum(store.index_in_flight(record) for record in records)


def _orders(settings: Settings, records: list[OrderRecord], entries: dict[str, list[LedgerEntry]],
            stuck_after: float | None, now: datetime) -> tuple[list[OrderLine], list[Problem]]:
    lines, problems = [], []
    for record in sorted(records, key=lambda r: (r.placed_at or "", r.order_id)):
        money = money_of(entries.get(record.order_id, []), record.currency)
        ended = record.history[-1].at if record.status.is_final and record.history else None
        lines.append(OrderLine(record.order_id, record.status, record.placed_at, ended,
                               money.captured, money.refunded))
        problems += money_problems(record, money)
        stuck = stuck_problem(record, allowed_seconds(settings, record, stuck_after), now)
        problems += [stuck] if stuck else []
    return lines, problems


def units_by_sku(holds: Iterable[Hold], state: HoldState = HoldState.ACTIVE,
                 since: str | None = None) -> Counter[str]:
    """The units of the holds in `state` (that left `active` at or after `since`, if given), by SKU."""
    units: Counter[str] = Counter()
    for hold in holds:
        if hold.state is state and (since is None or (hold.changed_at or "") >= since):
            for sku, quantity in hold.items:
                units[sku] += quantity
    return units


def _stock(counts: list[StockCount], holds: list[Hold]) -> list[Problem]:
    held = units_by_sku(holds)
    problems = [p for count in sorted(counts, key=lambda c: c.sku)
                for p in stock_problems(count, held.get(count.sku, 0))]
    return problems + unstocked_holds(held, (c.sku for c in counts))


def _figures(records: list[OrderRecord], problems: list[Problem], skus: int) -> dict[str, int]:
    """The counts: orders, how they ended, and each kind of problem."""
    kinds = Counter(p.kind for p in problems)
    final = sum(r.status.is_final for r in records)
    return {
        "orders": len(records), "final": final, "in_flight": len(records) - final,
        "failed": kinds[Kind.FAILED], "stuck": kinds[Kind.STUCK],
        "double_charges": kinds[Kind.DOUBLE_CHARGE],
        "money_mismatches": kinds[Kind.MONEY_MISMATCH] + kinds[Kind.UNKNOWN_ORDER],
        "oversold_units": sum(p.units for p in problems if p.kind is Kind.OVERSOLD),
        "lost_units": sum(p.units for p in problems if p.kind is Kind.STOCK_LOST),
        "skus": skus, "problems": len(problems),
    }
