"""The emulator's global tables: how long a write takes to reach the other region, and what the
replicator costs the emulators when nothing happens.

Two emulator processes, one per region, the replicated tables in both, the replicator beside
them (orders.emulator.replication). Each write is one PutItem in the first region; its lag is
from before that call until a GetItem in the second region finds it (polled every 10 ms).
Idle cost: the AWS calls each emulator counted (`/_orders/calls`) over `--idle` seconds with
no writes, per second.

    python -m benchmarks.replication [--writes 30] [--delay 1.0] [--poll 0.1] [--idle 10]
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any


def main(argv: list[str] | None = None) -> None:
    from orders.aws import clients
    from orders.emulator.replication import REPLICATED_TABLES, Replicator
    from orders.emulator.server import EmulatorProcess, call_counts
    from orders.infra.tables import table_definition
    from orders.topology import TABLES_BY_NAME

    parser = argparse.ArgumentParser(prog="python -m benchmarks.replication")
    parser.add_argument("--writes", type=int, default=30)
    parser.add_argument("--delay", type=float, default=1.0)
    parser.add_argument("--poll", type=float, default=0.1)
    parser.add_argument("--idle", type=float, default=10.0)
    args = parser.parse_args(argv)
    emulators = [EmulatorProcess(with_redis=False) for _ in range(2)]
    with ThreadPoolExecutor(2) as starting:
        list(starting.map(EmulatorProcess.start, emulators))
    try:
        env = f"bench{uuid.uuid4().hex[:6]}"
        first, second = (e.settings({"AWS_DEFAULT_REGION": r, "ORDERS_ENV": env})
                         for e, r in zip(emulators, ("us-east-1", "us-west-2"), strict=True))
        for settings in (first, second):
            for name in REPLICATED_TABLES:
                spec = TABLES_BY_NAME[name]
                clients.client("dynamodb", settings).create_table(
                    **table_definition(spec, spec.table_name(settings)))
        with Replicator([first, second], delay=args.delay, poll=args.poll) as replicator:
            replicator.wait()
            for emulator in emulators:
                call_counts(emulator.endpoint, reset=True)
            time.sleep(args.idle)
            idle = [sum(call_counts(e.endpoint).values()) / args.idle for e in emulators]
            lags = [lag(clients.client("dynamodb", first), clients.client("dynamodb", second),
                        f"{first.prefix}stock", n) for n in range(args.writes)]
        print(f"delay {args.delay:g} s, poll {args.poll:g} s: lag over {args.writes} writes "
              f"P50 {statistics.median(lags):.3f} s, max {max(lags):.3f} s; idle replicator "
              f"{idle[0]:.1f} and {idle[1]:.1f} calls/s on the two emulators "
              f"({len(REPLICATED_TABLES)} tables each); counts {dict(replicator.counts)}")
    finally:
        for emulator in emulators:
            emulator.stop()


def lag(writer: Any, reader: Any, table: str, n: int) -> float:
    """Seconds from a PutItem in one region until a GetItem in the other finds the item."""
    key = {"sku": {"S": f"LAG-{n}"}}
    started = time.monotonic()
    writer.put_item(TableName=table, Item={**key, "n": {"N": str(n)}})
    while "Item" not in reader.get_item(TableName=table, Key=key):
        time.sleep(0.01)
    return time.monotonic() - started


if __name__ == "__main__":
    main()
