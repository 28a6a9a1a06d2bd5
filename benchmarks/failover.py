"""A region lost while orders flow, with automatic failover: RTO, RPO, and the ledger after failback.

    .venv/bin/python -m benchmarks.failover [--orders 90] [--rate 3] [--interval 2] [--failures 3]

Two regions on the embedded emulator (orders.harness.regions: three emulator processes, the
replicator, a worker and beat per region), orders placed throughout with place_order.delay(),
and `orders region watch --auto` running beside them as the operators' watcher would. A third of
the way in, the primary goes dark (its processes killed, every service of its emulator answering
503); the watcher detects it and fails over; the standby finishes what had replicated and takes
the new orders; then the primary comes back, `orders region failback` is run, and every order
must end final, once, with a clean ledger audit over the merged tables.

Printed: when the watcher flipped (detection), the RTO (the loss to the first order placed after
it final in the standby), the RPO (orders the primary had accepted that the standby did not have),
the placements tried again, and the audit. The tests/integration/test_failover.py test runs the
same sequence with a person's failover and asserts it; this measures it, with detection.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from click.testing import CliRunner

from orders.aws import region_switch
from orders.aws.gateway import ledger
from orders.cli import cli
from orders.harness.order_mix import EXPECTED, OrderMix
from orders.harness.processes import ChildProcess
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
from orders.ops.audit import audit
from orders.settings import Settings, get_settings

FINAL = ("completed", "cancelled", "rejected")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.failover", description=__doc__.split("\n")[0])
    parser.add_argument("--orders", type=int, default=90)
    parser.add_argument("--rate", type=float, default=3.0, help="orders placed per second")
    parser.add_argument("--interval", type=float, default=2.0, help="the watcher's seconds between probes")
    parser.add_argument("--failures", type=int, default=3, help="failed probes in a row before it fails over")
    parser.add_argument("--log-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    with TwoRegions(log_dir=args.log_dir) as regions:
        figures = run(regions, args)
    for name, value in figures.items():
        print(f"{name:<44} {value}")


def run(regions: TwoRegions, args: argparse.Namespace) -> dict[str, object]:
    primary, standby = regions.region(PRIMARY), regions.region(STANDBY)
    os.environ.update(regions.env)  # this process is also the operator (`orders region failback`)
    for name in [n for n in os.environ if n.startswith("AWS_ENDPOINT_URL")]:
        del os.environ[name]
    get_settings.cache_clear()
    mix = OrderMix(seed=16, run_id="fb")
    planned = mix.orders(args.orders)
    kinds = {p.order_id: p.kind for p in planned}
    seed_catalogue(primary, mix.stock(args.orders))
    assert regions.replicator is not None and regions.replicator.wait(60)
    watcher = ChildProcess("watch", [sys.executable, "-c", "from orders.cli import main; main()", "region",
                                     "watch", "--auto", "--interval", str(args.interval),
                                     "--failures", str(args.failures)],
                           regions.env, regions.log_dir / "watch.log").start()
    try:
        producer = Producer([p.order for p in planned], args.rate).start()
        time.sleep(args.orders / args.rate / 3)
        dark_at = time.time()
        regions.go_dark(PRIMARY)
        accepted = {p.order_id for p in producer.placements.values()
                    if p.region == PRIMARY and p.accepted_at and p.accepted_at < dark_at}
        flip = wait_for_flip(standby, timeout=120)
    finally:
        watcher.signal_group(15)
    producer.join(timeout=args.orders / args.rate + 240)
    placements = list(producer.placements.values())
    in_standby = {p.order_id for p in placements if p.region == STANDBY}
    knew = set(wait_final(standby, in_standby | set(statuses(standby)), timeout=240))
    first = first_final_after(standby, in_standby)

    regions.come_back(PRIMARY)
    regions.replicator.wait(120)
    back = CliRunner().invoke(cli, ["region", "failback", "--reason", "benchmark", "--json"])
    every = {p.order_id for p in placements if p.region}
    final = wait_final(primary, every, timeout=300)
    regions.replicator.wait(120)
    report = audit(primary, now=datetime.now(UTC))
    captures: dict[str, int] = {}
    for entry in ledger(primary):
        if entry.kind.value == "capture":
            captures[entry.order_id] = captures.get(entry.order_id, 0) + 1
    return {
        "orders accepted (refused at the door)": f"{len(every)} ({len(placements) - len(every)})",
        "accepted by the primary before the loss": len(accepted),
        "RPO: of those, not in the standby": len(accepted - knew),
        "detection: the loss to the watcher's flip": f"{flip - dark_at:.1f} s" if flip else "no flip",
        "RTO: the loss to a new order final": f"{first - dark_at:.1f} s" if first else "none",
        "placements tried again": sum(p.tries - 1 for p in placements),
        "failback exit code": back.exit_code,
        "final after failback": f"{sum(1 for s in final.values() if s in FINAL)} of {len(every)}",
        "ended otherwise than their kind should": sum(s not in EXPECTED[kinds[i]] for i, s in final.items()),
        "audit problems": len(report.problems),
        "orders captured twice": sum(1 for n in captures.values() if n > 1),
        "regions agree": statuses(primary) == statuses(standby),
    }


def wait_for_flip(settings: Settings, timeout: float) -> float | None:
    """When the switch left the primary (epoch seconds), read from its history; None at the timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        switch = region_switch.read(settings)
        if switch.active != PRIMARY and switch.at:
            return datetime.fromisoformat(switch.at.replace("Z", "+00:00")).timestamp()
        time.sleep(0.5)
    return None


if __name__ == "__main__":
    main()
