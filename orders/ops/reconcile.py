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
from collections import Counter
from dataclasses import dataclass
from typing import Any

from orders.aws import clients
from orders.aws.stock import HOLD_SK
from orders.aws.store import OrderStore
from orders.aws.tables import aws_errors, condition_failed, scan, table_name, to_item
from orders.domain.states import HoldState
from orders.domain.times import now_iso
from orders.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Recount:
    """One product whose counters did not match its holds, and what was done."""

    sku: str
    was: dict[str, int]
    now: dict[str, int]
    written: bool  # False: the product moved meanwhile (the next run recounts it)

    def to_json(self) -> dict[str, Any]:
        return {"sku": self.sku, "was": self.was, "now": self.now, "written": self.written}


#: Passes of a recount, and the pause between them: a product that moved while it was recounted
#: (orders resumed at the flip reserve and sell at once) is recounted again.
PASSES, PAUSE_SECONDS = 10, 0.5


def recount_stock(settings: Settings) -> list[Recount]:
    """Recount every product whose counters differ from its holds (module docstring), again for those
    that moved meanwhile, up to PASSES times; the last word on each product recounted."""
    done: dict[str, Recount] = {}
    skus: set[str] | None = None  # None: every product
    for attempt in range(PASSES):
        if attempt:
            time.sleep(PAUSE_SECONDS)
        found = _recount_pass(settings, skus)
        done.update((r.sku, r) for r in found)
        skus = {r.sku for r in found if not r.written}
        if not skus:
            break
    return list(done.values())


def _recount_pass(settings: Settings, skus: set[str] | None) -> list[Recount]:
    products = [p for p in scan(settings, "stock")  # first: a hold that moves after this changes the version
                if skus is None or p["sku"] in skus]
    holds = [item for item in OrderStore(settings).scan() if item.get("sk") == HOLD_SK]
    done = []
    for product in products:
        want = expected(product, holds)
        was = {name: int(product.get(name, 0)) for name in want}
        if want != was:
            done.append(Recount(str(product["sku"]), was, want, _write(settings, product, want)))
    for recount in done:
        log.warning("stock %s recounted from its holds: %s -> %s%s", recount.sku, recount.was, recount.now,
                    "" if recount.written else " (not written: it moved meanwhile)")
    return done


def expected(product: dict[str, Any], holds: list[dict[str, Any]]) -> dict[str, int]:
    """The counters one product's holds call for."""
    sku, since = product["sku"], str(product.get("stockSetAt") or "")
    units: Counter[str] = Counter()
    for hold in holds:
        for line in hold.get("items") or ():
            if line.get("sku") != sku:
                continue
            state = hold.get("state")
            if state == HoldState.ACTIVE:
                units["reserved"] += int(line["quantity"])
            elif state == HoldState.COMMITTED and str(hold.get("changedAt") or "") >= since:
                units["sold"] += int(line["quantity"])
    stocked = int(product.get("stockSet", 0)) + int(product.get("restocked", 0))
    return {"available": stocked - units["sold"] - units["reserved"], "reserved": units["reserved"],
            "sold": units["sold"]}


def _write(settings: Settings, product: dict[str, Any], counts: dict[str, int]) -> bool:
    try:
        with aws_errors():
            clients.client("dynamodb", settings).update_item(
                TableName=table_name(settings, "stock"), Key=to_item({"sku": product["sku"]}),
                UpdateExpression="SET available = :a, reserved = :r, sold = :s, version = version + :one, "
                                 "updatedAt = :now, reconciledAt = :now",
                ConditionExpression="version = :v",
                ExpressionAttributeValues=to_item({":a": counts["available"], ":r": counts["reserved"],
                                                   ":s": counts["sold"], ":one": 1, ":now": now_iso(),
                                                   ":v": product.get("version", 0)}))
        return True
    except Exception as exc:
        if condition_failed(exc):
            return False
        raise
