"""What the platform costs with no order in sight: each process's CPU and the AWS calls it makes.

An idle stack is not free: every worker polls its queue, keeps its control-plane
listener, heartbeats, timers. At low rates that fixed cost is most of an order's
CPU (spread over few orders), and on AWS its receives are billed requests.

    python -m benchmarks.idle [--seconds 30] [--settle 5]

Starts the embedded emulator, every worker (one per queue, threads pool) and beat,
as `orders bench` does; waits `--settle` seconds after they are ready, then measures
for `--seconds`: CPU ms per second of each worker and of the emulator, and the calls
the emulator answered, per minute.
"""

from __future__ import annotations

import argparse
import time

from benchmarks.measure import cpu_seconds, emulator_pid
from orders.harness.stack import Stack, worker_args


def measure(seconds: float, settle: float) -> None:
    with Stack(worker_args=worker_args(10)) as stack:
        time.sleep(settle)
        groups = {c.name: c.pid for c in stack.children if c.pid}
        emulator = emulator_pid(stack)
        if emulator:
            groups["emulator"] = emulator
        stack.reset_calls()
        before = {name: cpu_seconds(pid) for name, pid in groups.items()}
        time.sleep(seconds)
        after = {name: cpu_seconds(pid) for name, pid in groups.items()}
        calls = stack.calls() or {}
    print(f"idle for {seconds:.0f} s after {settle:.0f} s to settle")
    print(f"{'process':32} CPU ms/s")
    for name in sorted(groups):
        print(f"{name:32} {1000 * (after[name] - before[name]) / seconds:8.2f}")
    workers = sum(after[n] - before[n] for n in groups if n.startswith("worker"))
    print(f"{'workers, all':32} {1000 * workers / seconds:8.2f}")
    print("calls per minute at the emulator:")
    for action, n in sorted(calls.items(), key=lambda kv: -kv[1]):
        print(f"  {action:40} {60 * n / seconds:8.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--settle", type=float, default=5.0)
    args = parser.parse_args()
    measure(args.seconds, args.settle)


if __name__ == "__main__":
    main()
