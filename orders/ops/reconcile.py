"""After a failover, each product's counters recounted from the holds (docs/multi-region.md, rules R4, R6).

A stock item is one DynamoDB item that both regions may write around a flip: the old region's last
writes (replicated late, or only when it comes back) and the new region's. Global tables keep the
later image whole and drop the other's change silently, so a product's counters can miss a
reservation, a sale or a release whose hold (an item of its own, per order) did survive. The holds
are the truth; the counters are recounted from them:

    reserved  = units of the active holds
    sold      = units of the holds committed since the stock was last set (`stockSetAt`)
    available = stockSet + restocked - sold - reserved

(`stockSet` and `restocked` are the operator's: a set or a restock, kept as the item says.) Each
product is written on condition that its version is the one read before the holds were, so a
reservation that moves it meanwhile wins, and the next run recounts it. A product set before
`stockSetAt` was recorded counts every committed hold.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from orders.aws import clients
from orders.aws.stock import StockCount
from orders.aws.tables import aws_errors, condition_failed, table_name, to_item
from orders.domain.records import Hold
from orders.domain.states import HoldState
from orders.domain.times import now_iso
from orders.ops.audit import OrderTable, read_order_table, read_stock, units_by_sku
from orders.settings import Settings

log = logging.getLogger(__name__)

#: Passes of a recount, and the pause between them: a product that moved while it was recounted
#: (orders resumed at the flip reserve and sell at once) is recounted again.
PASSES, PAUSE_SECONDS = 10, 0.5
#: The counters recounted.
COUNTERS = ("available", "reserved", "sold")


@dataclass(frozen=True)
class Recount:
    """One product whose counters did not match its holds, and what was done."""

    sku: str
    was: dict[str, int]
    now: dict[str, int]
    written: bool  # False: the product moved meanwhile (the next run recounts it)

    def to_json(self) -> dict[str, Any]:
        return {"sku": self.sku, "was": self.was, "now": self.now, "written": self.written}


def read(settings: Settings) -> tuple[list[StockCount], OrderTable]:
    """The products, then the orders table (its holds): in that order, so that a hold that moves after
    the products were read changes its product's version and the recount's conditional write refuses."""
    counts, unreadable = read_stock(settings)
    for problem in unreadable:  # left as it is: `orders audit` reports it until an operator fixes it
        log.warning("stock %s not recounted: its %s", problem.sku, problem.detail)
    return counts, read_order_table(settings)


def recount_stock(settings: Settings, first: tuple[list[StockCount], OrderTable] | None = None
                  ) -> list[Recount]:
    """Recount every product whose counters differ from its holds (module docstring), again for those
    that moved meanwhile, up to PASSES times; the last word on each product recounted. `first`: the
    products and holds already read (by `read`), for the first pass."""
    done: dict[str, Recount] = {}
    skus: set[str] | None = None  # None: every product
    for attempt in range(PASSES):
        if attempt:
            time.sleep(PAUSE_SECONDS)
        counts, table = first if first is not None and not attempt else read(settings)
        found = [_recount(settings, c, table.holds) for c in counts if skus is None or c.sku in skus]
        done.update((r.sku, r) for r in found if r is not None)
        skus = {r.sku for r in found if r is not None and not r.written}
        if not skus:
            break
    for recount in done.values():
        log.warning("stock %s recounted from its holds: %s -> %s%s", recount.sku, recount.was, recount.now,
                    "" if recount.written else " (not written: it kept moving)")
    return list(done.values())


def expected(count: StockCount, holds: list[Hold]) -> dict[str, int]:
    """The counters one product's holds call for."""
    reserved = units_by_sku(holds)[count.sku]
    sold = units_by_sku(holds, HoldState.COMMITTED, since=count.set_at)[count.sku]
    stocked = (count.stock_set or 0) + count.restocked
    return {"available": stocked - sold - reserved, "reserved": reserved, "sold": sold}


def _recount(settings: Settings, count: StockCount, holds: list[Hold]) -> Recount | None:
    want = expected(count, holds)
    was = {name: getattr(count, name) for name in COUNTERS}
    if want == was:
        return None
    return Recount(count.sku, was, want, _write(settings, count, want))


def _write(settings: Settings, count: StockCount, counters: dict[str, int]) -> bool:
    try:
        with aws_errors():
            clients.client("dynamodb", settings).update_item(
                TableName=table_name(settings, "stock"), Key=to_item({"sku": count.sku}),
                UpdateExpression="SET available = :a, reserved = :r, sold = :s, version = version + :one, "
                                 "updatedAt = :now, reconciledAt = :now",
                ConditionExpression="version = :v",
                ExpressionAttributeValues=to_item({":a": counters["available"], ":r": counters["reserved"],
                                                   ":s": counters["sold"], ":one": 1, ":now": now_iso(),
                                                   ":v": count.version}))
        return True
    except Exception as exc:
        if condition_failed(exc):
            return False
        raise
