"""A region lost while orders flow, taken over, then given back: the sequence the failover test asserts
on and the failover benchmark measures (docs/multi-region.md, "The failover test").

`run` places the demo's order mix steadily (orders.harness.regions.Producer), takes the primary
dark a third of the way in, lets the caller fail over (a person's command, or the watcher), waits
for the standby to finish what it took and adopted, brings the primary back, lets the caller fail
back, waits for every order to end, then reads the ledger: the audit over the merged tables (given
a minute for the stock recount to catch up with the orders resumed at the flip), the captures per
order, and what the two regions still disagree on (given a minute for replication to drain).
Nothing here asserts: the `FailoverRun` says what happened.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from orders.aws.gateway import Movement, ledger
from orders.aws.store import OrderStore
from orders.harness.order_mix import EXPECTED, OrderMix
from orders.harness.regions import (
    PRIMARY,
    STANDBY,
    Placement,
    Producer,
    TwoRegions,
    first_final_after,
    statuses,
    wait_final,
)
from orders.harness.runner import seed_catalogue
from orders.ops.audit import Problem, audit
from orders.settings import Settings

FINAL = ("completed", "cancelled", "rejected")
#: How long the ledger and the regions are given to converge once every order has ended.
SETTLE_SECONDS = 60.0


@dataclass
class FailoverRun:
    """What one run did and found (times in epoch seconds)."""

    kinds: dict[str, str]
    placements: list[Placement] = field(default_factory=list)
    dark_at: float = 0.0
    flip_at: float | None = None
    accepted_by_primary: set[str] = field(default_factory=set)
    standby_finished: dict[str, str] = field(default_factory=dict)
    first_final: float | None = None
    replicated_before_failback: bool = False
    final: dict[str, str] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    captures: Counter[str] = field(default_factory=Counter)
    apart: dict[str, tuple[str, str | None]] = field(default_factory=dict)
    #: The history of each order that ended otherwise than its kind should, as the primary has it.
    stories: dict[str, list[str]] = field(default_factory=dict)

    @property
    def refused(self) -> set[str]:
        """Orders no region accepted (the invalid ones, at the door)."""
        return {p.order_id for p in self.placements if p.region is None}

    @property
    def in_standby(self) -> set[str]:
        return {p.order_id for p in self.placements if p.region == STANDBY}

    @property
    def every(self) -> set[str]:
        """Every order some region accepted."""
        return {p.order_id for p in self.placements} - self.refused

    @property
    def rpo(self) -> set[str]:
        """Orders the primary had accepted that the standby never had until the primary came back."""
        return self.accepted_by_primary - set(self.standby_finished)

    @property
    def unexpected(self) -> dict[str, str]:
        """Orders that ended otherwise than their kind should (orders.harness.order_mix.EXPECTED)."""
        return {i: s for i, s in self.final.items() if s not in EXPECTED[self.kinds[i]]}

    def figures(self) -> dict[str, object]:
        """The run's figures, as the benchmark prints them and the test reports them."""
        return {
            "orders accepted (refused at the door)": f"{len(self.every)} ({len(self.refused)})",
            "accepted by the primary before the loss": len(self.accepted_by_primary),
            "RPO: of those, not in the standby": len(self.rpo),
            "the loss to the flip": f"{self.flip_at - self.dark_at:.1f} s" if self.flip_at else "no flip",
            "RTO: the loss to a new order final": (f"{self.first_final - self.dark_at:.1f} s"
                                                   if self.first_final else "none"),
            "placements tried again": sum(p.tries - 1 for p in self.placements),
            "final after failback": f"{sum(s in FINAL for s in self.final.values())} of {len(self.every)}",
            "ended otherwise than their kind should": len(self.unexpected),
            "audit problems": len(self.problems),
            "orders captured twice": sum(n > 1 for n in self.captures.values()),
            "orders the regions disagree on": len(self.apart),
        }


def run(regions: TwoRegions, orders: int, rate: float, fail_over: Callable[[], float | None],
        fail_back: Callable[[], None], seed: int = 16) -> FailoverRun:
    """The sequence of the module's docstring; `fail_over` returns when the switch flipped (or None)."""
    primary, standby = regions.region(PRIMARY), regions.region(STANDBY)
    mix = OrderMix(seed=seed, run_id="fo")
    planned = mix.orders(orders)
    outcome = FailoverRun({p.order_id: p.kind for p in planned})
    seed_catalogue(primary, mix.stock(orders))
    assert regions.replicator is not None
    regions.replicator.wait(60)  # the standby has the catalogue
    producer = Producer([p.order for p in planned], rate).start()

    time.sleep(orders / rate / 3)  # a third placed: orders in flight at every step
    outcome.dark_at = time.time()
    regions.go_dark(PRIMARY)
    dark_at = outcome.dark_at
    outcome.accepted_by_primary = {p.order_id for p in producer.placements.values()
                                   if p.region == PRIMARY and p.accepted_at and p.accepted_at < dark_at}
    outcome.flip_at = fail_over()

    producer.join(timeout=orders / rate + 240)
    outcome.placements = list(producer.placements.values())
    # The standby finishes what it took and what it adopted: every order it knows ends final.
    outcome.standby_finished = wait_final(standby, outcome.in_standby | set(statuses(standby)), timeout=180)
    outcome.first_final = first_final_after(standby, outcome.in_standby)

    regions.come_back(PRIMARY)
    outcome.replicated_before_failback = regions.replicator.wait(120)
    fail_back()
    outcome.final = wait_final(primary, outcome.every, timeout=180)
    outcome.stories = _stories(primary, set(outcome.unexpected))
    regions.replicator.wait(120)
    outcome.problems = _settled_audit(regions)
    outcome.captures = Counter(e.order_id for e in ledger(primary) if e.kind is Movement.CAPTURE)
    outcome.apart = _disagreement(regions)
    return outcome


def _stories(settings: Settings, order_ids: set[str]) -> dict[str, list[str]]:
    """Each order's history (`status by step: reason`, with the time), for a failure to say why: those
    orders' records alone, not the whole table."""
    if not order_ids:
        return {}
    return {r.order_id: [f"{h.at} {h.status.value} by {h.step.value}" + (f": {h.reason}" if h.reason else "")
                         for h in r.history]
            for r in OrderStore(settings).load_many(sorted(order_ids)).values()}


def _settled_audit(regions: TwoRegions) -> list[Problem]:
    """The primary's audit, once clean or SETTLE_SECONDS on: the stock recount catches up with the orders
    resumed at the flip (failback's, then beat's ops.adopt_in_flight every 15 s)."""
    deadline = time.monotonic() + SETTLE_SECONDS
    while True:
        problems = audit(regions.region(PRIMARY), now=datetime.now(UTC)).problems
        if not problems or time.monotonic() > deadline:
            return problems
        time.sleep(5)


def _disagreement(regions: TwoRegions) -> dict[str, tuple[str, str | None]]:
    """What the regions' order tables still disagree on (status by order), once replication has drained
    or SETTLE_SECONDS on."""
    assert regions.replicator is not None
    deadline = time.monotonic() + SETTLE_SECONDS
    while True:
        here, there = statuses(regions.region(PRIMARY)), statuses(regions.region(STANDBY))
        if here == there or time.monotonic() > deadline:
            return {i: (s, there.get(i)) for i, s in here.items() if there.get(i) != s}
        regions.replicator.wait(30)
