"""After a failover or a failback, the orders in flight elsewhere resumed in the active region
(docs/multi-region.md, rules R2 and R6).

An order in flight when the switch flipped has its next message in the queues of the region
switched away from, out of reach (that region is down, or its workers stopped consuming). The
active region has its record, replicated: for each order not final whose home epoch is older than
the switch's, the message of the step it waits for is sent again here, with the rest of its
pipeline, as the stuck-order sweeper resumes an order. That step's own conditional write then
adopts the order (orders.aws.store: homeRegion and homeEpoch set, adoptedFrom recorded); the
charge is the processor's, idempotent per order (R3), and a reservation already made stands
(R4). The old region's message, if it is ever run, finds the order moved on and changes nothing.

Each order version is sent at most once (the sweeper's claim, in this region's archive table),
so a second run after a partial one sends only what the first did not. `placed` records (no
message can be rebuilt from them) and `failed` orders (a person's, or a redrive's) are listed,
not resumed.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from orders.aws import metrics, region_switch
from orders.domain.records import OrderRecord
from orders.domain.states import Step
from orders.domain.times import parse_time
from orders.ops import reconcile
from orders.ops.audit import read_order_table
from orders.ops.audit_bounds import step_budget, waiting_for
from orders.ops.sweeper import Claim, Resume, resume_once
from orders.settings import Settings

log = logging.getLogger(__name__)

#: How long after a flip the periodic pass looks for orders in flight elsewhere: past it, an order
#: still homed before the flip waits for a person: `orders region adopt` resumes it.
ADOPT_WINDOW_SECONDS = 3600.0


@dataclass(frozen=True)
class Adopted:
    """One order in flight elsewhere, and what was done with it."""

    record: OrderRecord
    step: Step | None
    action: str  # "resumed", "already-resumed" (this version was, by an earlier run), "left" (placed, failed)

    def to_json(self) -> dict[str, object]:
        return {"orderId": self.record.order_id, "status": self.record.status.value,
                "homeRegion": self.record.home_region, "homeEpoch": self.record.home_epoch,
                "step": self.step.value if self.step else None, "action": self.action}


def in_flight(records: Iterable[OrderRecord], epoch: int) -> list[OrderRecord]:
    """The orders not final whose home is older than `epoch` (placed or adopted before the flip)."""
    return [r for r in records if not r.status.is_final and (r.home_epoch or 0) < epoch]


def resume_in_flight(settings: Settings, resume: Resume, now: datetime | None = None,
                     records: Iterable[OrderRecord] | None = None) -> list[Adopted]:
    """Resume, in `settings`' region (the active one), every order in flight elsewhere; what was done.
    `records`: the orders table as already read (else it is read here)."""
    switch = region_switch.read(settings)
    if switch.active != settings.region:
        raise RuntimeError(f"region {settings.region} is not the active one ({switch.active} is): "
                           "orders are adopted only by the active region")
    now = now or datetime.now(UTC)
    records = read_order_table(settings).records if records is None else records
    done = [adopt(settings, record, resume, now) for record in in_flight(records, switch.epoch)]
    for outcome in done:
        log.warning("adoption: order %s (%s, home %s at epoch %s): %s", outcome.record.order_id,
                    outcome.record.status.value, outcome.record.home_region, outcome.record.home_epoch,
                    outcome.action)
    resumed = [a for a in done if a.action == "resumed"]
    metrics.count("OrdersAdopted", len(resumed), Region=str(settings.region))
    metrics.flush()
    return done


def adopt_after_flip(settings: Settings, resume: Resume, now: datetime | None = None) -> list[Adopted]:
    """The periodic pass (beat, every few seconds): `resume_in_flight` in the active region within
    ADOPT_WINDOW_SECONDS of the last flip (the records of a lost region's last writes arrive up to the
    replication delay after it, and a region that comes back sends what it had not), then the stock
    recounted from the holds (orders.ops.reconcile); nothing, and no read, elsewhere or later."""
    if not settings.switched:
        return []
    switch = region_switch.current(settings)
    if switch is None or switch.active != settings.region or switch.at is None:
        return []
    now = now or datetime.now(UTC)
    if (now - parse_time(switch.at)).total_seconds() > ADOPT_WINDOW_SECONDS:
        return []
    # One read of the products and the orders table serves both: late records bring late holds.
    first = reconcile.read(settings)
    adopted = resume_in_flight(settings, resume, now, first[1].records)
    reconcile.recount_stock(settings, first)
    return adopted


def adopt(settings: Settings, record: OrderRecord, resume: Resume, now: datetime) -> Adopted:
    """Send the step this order waits for, once per version of it."""
    step = waiting_for(record)
    if step is None or step is Step.PLACE:
        return Adopted(record, step, "left")
    claim = resume_once(settings, record, step, float(step_budget(settings, step)), resume, now)
    if claim is not Claim.RESUME:
        return Adopted(record, step, "already-resumed")
    return Adopted(record, step, "resumed")
