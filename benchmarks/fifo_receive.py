"""What a ReceiveMessage costs the emulator on a FIFO queue whose messages wait behind an in-flight group.

A flash sale is one message group on the inventory queue: while its first message is in
flight, every other message of the group waits, and each receive of every inventory
worker scans them all and delivers none. moto read its clock three times a message in
that scan, through datetimes (orders.emulator.moto_sqs says why). This measures moto's
SQS in this process, as shipped, then with the emulator's clock, on the same queue
shape: CPU milliseconds per empty receive for each backlog size.

    python -m benchmarks.fifo_receive [--receives 200] [--backlogs 100,400]
"""

from __future__ import annotations

import argparse
import time
from typing import Any

ACCOUNT, REGION = "123456789012", "us-east-1"


def per_receive(backend: Any, name: str, backlog: int, receives: int) -> float:
    """CPU ms of one empty receive of `name`, a FIFO queue of `backlog` messages behind one in flight."""
    backend.create_queue(name, FifoQueue="true", ContentBasedDeduplication="true")
    for i in range(backlog + 1):
        backend.send_message(name, f"m{i}", group_id="hot", deduplication_id=f"d{i}")
    assert len(backend.receive_message(name, 1, 0, 300)) == 1  # the group is in flight from here
    started = time.process_time()
    for _ in range(receives):
        assert backend.receive_message(name, 10, 0, 300) == []
    return 1000 * (time.process_time() - started) / receives


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.fifo_receive")
    parser.add_argument("--receives", type=int, default=200, help="empty receives timed per backlog")
    parser.add_argument("--backlogs", default="100,400", help="messages waiting behind the group")
    args = parser.parse_args(argv)
    from moto.sqs import models

    from orders.emulator.moto_sqs import epoch_millis, epoch_seconds

    backend = models.sqs_backends[ACCOUNT][REGION]
    backlogs = [int(n) for n in args.backlogs.split(",")]
    shipped = {n: per_receive(backend, f"shipped-{n}.fifo", n, args.receives) for n in backlogs}
    models.unix_time, models.unix_time_millis = epoch_seconds, epoch_millis  # what install() sets
    ours = {n: per_receive(backend, f"ours-{n}.fifo", n, args.receives) for n in backlogs}
    print(f"Emulator CPU ms per empty ReceiveMessage, {args.receives} each "
          "(FIFO queue, one group in flight, the backlog behind it)\n")
    print(f"{'backlog':>8}{'as shipped':>12}{'ours':>8}{'ratio':>8}")
    for n in backlogs:
        print(f"{n:>8}{shipped[n]:>12.3f}{ours[n]:>8.3f}{shipped[n] / ours[n]:>7.1f}x")


if __name__ == "__main__":
    main()
