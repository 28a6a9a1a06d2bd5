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
from pathlib import Path

from click.testing import CliRunner

from orders.aws import region_switch
from orders.cli import cli
from orders.domain.times import parse_time
from orders.harness import failover_run
from orders.harness.processes import ChildProcess
from orders.harness.regions import PRIMARY, STANDBY, TwoRegions
from orders.settings import Settings, get_settings


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.failover", description=__doc__.split("\n")[0])
    parser.add_argument("--orders", type=int, default=90)
    parser.add_argument("--rate", type=float, default=3.0, help="orders placed per second")
    parser.add_argument("--interval", type=float, default=2.0, help="the watcher's seconds between probes")
    parser.add_argument("--failures", type=int, default=3, help="failed probes in a row before it fails over")
    parser.add_argument("--log-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    with TwoRegions(log_dir=args.log_dir) as regions:
        figures = measure(regions, args)
    for name, value in figures.items():
        print(f"{name:<44} {value}")


def measure(regions: TwoRegions, args: argparse.Namespace) -> dict[str, object]:
    os.environ.update(regions.env)  # this process is also the operator (`orders region failback`)
    for name in [n for n in os.environ if n.startswith("AWS_ENDPOINT_URL")]:
        del os.environ[name]
    get_settings.cache_clear()
    watcher = ChildProcess("watch", [sys.executable, "-c", "from orders.cli import main; main()", "region",
                                     "watch", "--auto", "--interval", str(args.interval),
                                     "--failures", str(args.failures)],
                           regions.env, regions.log_dir / "watch.log").start()
    failed_back: list[int] = []

    def fail_over() -> float | None:
        try:
            return wait_for_flip(regions.region(STANDBY), timeout=120)
        finally:
            watcher.signal_group(15)

    def fail_back() -> None:
        failed_back.append(CliRunner().invoke(cli, ["region", "failback", "--reason", "benchmark"]).exit_code)

    run = failover_run.run(regions, args.orders, args.rate, fail_over, fail_back)
    for problem in run.problems:  # what the counts below count, for whoever reads the run
        print(f"audit: {problem.kind.value} {problem.order_id or problem.sku}: {problem.detail}")
    for order_id, (here, there) in sorted(run.apart.items()):
        print(f"apart: {order_id} is {here} in {PRIMARY}, {there} in {STANDBY}")
    return {**run.figures(), "failback exit code": failed_back[0] if failed_back else None}


def wait_for_flip(settings: Settings, timeout: float) -> float | None:
    """When the switch left the primary (epoch seconds), as the flip recorded it; None at the timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        switch = region_switch.read(settings)
        if switch.active != PRIMARY and switch.at:
            return parse_time(switch.at).timestamp()
        time.sleep(0.5)
    return None


if __name__ == "__main__":
    main()
