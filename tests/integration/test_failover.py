"""A region lost mid-run and taken over by the other, then given back (docs/multi-region.md, issue 16).

Three emulator processes (us-east-1, us-west-2, and us-east-2 outside both for the switch and the
payment processor), the replicator between the two regions, a worker and a beat per region, and
this process placing orders with place_order.delay() throughout. The primary goes dark (its worker
and beat SIGKILLed, every service of its emulator answering 503, its data kept) while orders are in
flight; `orders region failover` moves the writer and adopts the replicated orders in flight; the
standby finishes them and takes new ones; the primary comes back with its data and late writes,
`orders region failback` gives it the writer again and it finishes what only it knew. Then every
order placed is final exactly once, with no double charge and no oversold unit: the ledger audit
over the merged tables, and both regions' tables agree. The sequence is
orders.harness.failover_run's, which benchmarks/failover.py measures with the watcher failing over.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import pytest
from click.testing import CliRunner

from orders.aws import region_switch
from orders.cli import cli
from orders.harness import failover_run
from orders.harness.failover_run import FINAL
from orders.harness.regions import PRIMARY, STANDBY, TwoRegions
from orders.settings import get_settings

pytestmark = pytest.mark.timeout(600)

ORDERS, RATE = 60, 3.0


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
        primary = regions.region(PRIMARY)
        answers: list[dict[str, Any]] = []

        def fail_over() -> float:
            answers.append(json.loads(operate("region", "failover", "--to", STANDBY, "--reason", "lost",
                                              "--json")))
            return time.time()

        def fail_back() -> None:
            operate("region", "failback", "--reason", "primary back (test)", "--json")
            assert region_switch.read(primary).active == PRIMARY

        run = failover_run.run(regions, ORDERS, RATE, fail_over, fail_back)
        [answer] = answers
        assert (answer["active"], answer["previous"]) == (STANDBY, PRIMARY)
        # Only the orders made invalid on purpose are refused (at the door), and nothing else is lost.
        assert {run.kinds[i] for i in run.refused} <= {"invalid"}, [p for p in run.placements if not p.region]
        assert run.in_standby, "no order was placed in the standby after the failover"
        # The standby finishes what it took and what it adopted: every order it knows ends final.
        finished = run.standby_finished
        assert run.in_standby <= set(finished) and all(s in FINAL for s in finished.values()), finished
        assert run.first_final is not None
        assert run.replicated_before_failback  # the primary's late writes, and the standby's, have crossed
        # Every order accepted is final, once, and as its kind should end (orders.harness.order_mix).
        assert run.unexpected == {}, run.stories
        assert set(run.final) == run.every
        # The stock's counters follow the holds once the recount has caught up with the orders resumed at
        # the flip (failback's recount, then beat's ops.adopt_in_flight every 15 s).
        assert run.problems == [], run.problems
        assert all(n == 1 for n in run.captures.values()), run.captures  # no order charged twice
        # The regions agree once replication has drained (the recount's writes, the last orders' ends).
        assert run.apart == {}, (run.apart, dict(regions.replicator.counts) if regions.replicator else {})

        resumed = sum(1 for a in answer["adopted"] if a["action"] == "resumed")
        print("\nfailover:", "; ".join(f"{k}: {v}" for k, v in run.figures().items()),
              f"; resumed by the failover command: {resumed}")


def test_a_failed_run_tells_the_history_of_its_unexpected_orders_alone(infra):
    """What the failover test prints on a failure: each unexpected order's history, read for those orders."""
    from orders.aws.store import OrderStore
    from orders.domain.order import validate
    from orders.domain.records import Change
    from orders.domain.states import OrderState, Step
    from orders.domain.times import now_iso
    from tests.integration.pipeline_support import make_order

    store = OrderStore(infra)
    odd, _ = store.create(validate(make_order()), now_iso(), "corr-odd", review=False)
    store.transition(odd, Change(OrderState.CANCELLED, Step.RESERVE, "out-of-stock"))
    store.create(validate(make_order()), now_iso(), "corr-fine", review=False)
    stories = failover_run._stories(infra, {odd.order_id, "ord-never-placed"})
    assert list(stories) == [odd.order_id]
    assert [line.split(" ", 1)[1] for line in stories[odd.order_id]] == [
        "placed by place", "validated by place", "cancelled by reserve: out-of-stock"]
