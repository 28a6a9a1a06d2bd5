"""A region lost mid-run and taken over by the other, then given back (docs/multi-region.md, issue 16).

Three emulator processes (us-east-1, us-west-2, and us-east-2 outside both for the switch and the
payment processor), the replicator between the two regions, a worker per region serving every
queue, and this process placing orders with place_order.delay() throughout. The primary goes dark
(its worker SIGKILLed, its emulator SIGSTOPped: every call to it hangs) while orders are in
flight; `orders region failover` moves the writer and adopts the replicated orders in flight; the
standby finishes them and takes new ones; the primary comes back with its data and late writes,
`orders region failback` gives it the writer again and it finishes what only it knew. Then every
order placed is final exactly once, with no double charge and no oversold unit: the ledger audit
over the merged tables, and both regions' tables agree.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from datetime import UTC, datetime

import pytest
from click.testing import CliRunner

from orders.aws import region_switch
from orders.aws.gateway import ledger
from orders.cli import cli
from orders.harness.order_mix import EXPECTED, OrderMix
from orders.harness.regions import (
    PRIMARY,
    STANDBY,
    Producer,
    TwoRegions,
    first_final_after,
    statuses,
    wait_final,
)
from orders.harness.runner import seed_catalogue
from orders.ops.audit import audit, read_order_table
from orders.settings import get_settings

pytestmark = pytest.mark.timeout(600)

ORDERS, RATE = 60, 3.0
FINAL = ("completed", "cancelled", "rejected")


def operate(*args: str) -> str:
    """`orders ARGS...` as an operator runs it; its output (its exception raised, if it had one)."""
    result = CliRunner().invoke(cli, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 0, result.output
    return result.output


def as_operator(regions: TwoRegions, monkeypatch: pytest.MonkeyPatch) -> None:
    """This process's environment as an operator's shell would have it for `orders region ...`."""
    for name in [n for n in os.environ if n.startswith("AWS_ENDPOINT_URL")]:
        monkeypatch.delenv(name)
    for name, value in regions.env.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()


def test_a_region_lost_mid_run_is_taken_over_and_given_back_with_every_order_final_once(
        tmp_path, monkeypatch):
    with TwoRegions(log_dir=tmp_path) as regions:
        as_operator(regions, monkeypatch)
        primary, standby = regions.region(PRIMARY), regions.region(STANDBY)
        mix = OrderMix(seed=16, run_id="fo")
        planned = mix.orders(ORDERS)
        seed_catalogue(primary, mix.stock(ORDERS))
        assert regions.replicator is not None and regions.replicator.wait(60)  # the standby has the catalogue
        producer = Producer([p.order for p in planned], RATE).start()

        time.sleep(ORDERS / RATE / 3)  # a third placed: orders in flight at every step
        dark_at = time.time()
        regions.go_dark(PRIMARY)
        accepted_by_primary = {p.order_id for p in producer.placements.values()
                               if p.region == PRIMARY and p.accepted_at and p.accepted_at < dark_at}

        answer = json.loads(operate("region", "failover", "--to", STANDBY, "--reason", "lost", "--json"))
        assert (answer["active"], answer["previous"]) == (STANDBY, PRIMARY)
        flipped_at = time.time()

        producer.join(timeout=ORDERS / RATE + 240)
        placements = producer.placements.values()
        kinds = {p.order_id: p.kind for p in planned}
        refused = {p.order_id for p in placements if p.region is None}
        # Only the orders made invalid on purpose are refused (at the door), and nothing else is lost.
        assert {kinds[i] for i in refused} <= {"invalid"}, [p for p in placements if p.region is None]
        in_standby = {p.order_id for p in placements if p.region == STANDBY}
        assert in_standby, "no order was placed in the standby after the failover"
        # The standby finishes what it took and what it adopted: every order it knows ends final.
        finished = wait_final(standby, in_standby | set(statuses(standby)), timeout=180)
        assert in_standby <= set(finished) and all(s in FINAL for s in finished.values()), finished
        standby_knew = set(finished)  # the primary's orders among them had replicated before it went dark
        adopted = accepted_by_primary & standby_knew
        first_final = first_final_after(standby, in_standby)
        assert first_final is not None

        regions.come_back(PRIMARY)
        assert regions.replicator.wait(120)  # the primary's late writes, and the standby's, have crossed
        operate("region", "failback", "--reason", "primary back (test)", "--json")
        assert region_switch.read(primary).active == PRIMARY

        every = {p.order_id for p in placements} - refused
        final = wait_final(primary, every, timeout=180)
        # Every order accepted is final, once, and as its kind should end (orders.harness.order_mix).
        assert {i: s for i, s in final.items() if s not in EXPECTED[kinds[i]]} == {}
        assert set(final) == every
        assert regions.replicator.wait(120)

        # The stock's counters follow the holds once the recount has caught up with the orders resumed at
        # the flip (failback's recount, then beat's ops.adopt_in_flight every 15 s).
        report = audit(primary, now=datetime.now(UTC))
        deadline = time.monotonic() + 60
        while report.problems and time.monotonic() < deadline:
            time.sleep(5)
            report = audit(primary, now=datetime.now(UTC))
        assert report.problems == [], report.problems
        captures: dict[str, int] = {}
        for entry in ledger(primary):
            if entry.kind.value == "capture":
                captures[entry.order_id] = captures.get(entry.order_id, 0) + 1
        assert all(n == 1 for n in captures.values()), captures  # no order charged twice
        # The regions agree once replication has drained (the recount's writes, the last orders' ends).
        deadline = time.monotonic() + 60
        while statuses(primary) != statuses(standby) and time.monotonic() < deadline:
            regions.replicator.wait(30)
        there = statuses(standby)
        apart = {i: (s, there.get(i)) for i, s in statuses(primary).items() if there.get(i) != s}
        assert apart == {}, (apart, dict(regions.replicator.counts))
        moved = Counter(r.adopted_from for r in read_order_table(primary).records if r.adopted_from)

        rpo = sorted(accepted_by_primary - standby_knew)
        rto = first_final - dark_at
        resumed = sum(1 for a in answer["adopted"] if a["action"] == "resumed")
        print(f"\nfailover: {len(every)} orders, {len(accepted_by_primary)} accepted by the primary before "
              f"it went dark ({len(adopted)} of them replicated), {resumed} resumed by the failover, "
              f"adopted from each region in all {dict(moved)}, "
              f"RPO {len(rpo)} order(s) not yet replicated, flip {flipped_at - dark_at:.1f} s after the "
              f"loss, RTO {rto:.1f} s to the first new order final in the standby, "
              f"{sum(p.tries - 1 for p in placements)} placement retries")
