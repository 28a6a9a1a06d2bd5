"""Kill-to-redelivery seconds: a worker holding messages (running and prefetched) is SIGKILLed; how long
until another worker starts each of them again.

Run from the checkout:  .venv/bin/python benchmarks/kill_redelivery.py [--rounds 3] [--visibility 30]
Each round: a fresh namespace on the embedded emulator, `--messages` tasks that sleep an hour, a prefork
worker (-c 4, so 40 held with the default prefetch multiplier of 10) that takes them all, an idle
rescuer worker, then, at a random moment between two beats, SIGKILL of the first worker's process group.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, os.getcwd())

from orders.celery import app  # noqa: E402
from orders.emulator.server import EmulatorProcess  # noqa: E402
from orders.harness.processes import ChildProcess, stop_all, wait_ready  # noqa: E402
from orders.infra import provisioning  # noqa: E402
from tests.helpers import wait_for  # noqa: E402
from tests.integration.test_transport import depth  # noqa: E402
from tests.integration.test_visibility import events, hold  # noqa: E402


def worker(name: str, tmp: Path, env: dict[str, str], pool: str, concurrency: int) -> ChildProcess:
    cmd = [sys.executable, "-m", "celery", "-A", "orders", "worker", "-Q", "orders", "-n", f"{name}@%h",
           "--loglevel", "INFO", "--without-heartbeat", "-I", "tests.integration.test_visibility",
           "--pool", pool, "-c", str(concurrency)]
    return ChildProcess(name, cmd, env, tmp / f"{name}.log", ready_text=" ready.")


def one_round(emulator: EmulatorProcess, tmp: Path, messages: int, visibility: int) -> list[float]:
    namespace = {"ORDERS_ENV": f"m{uuid.uuid4().hex[:8]}", "ORDERS_RECEIVE_VISIBILITY": str(visibility)}
    settings = emulator.settings(namespace)
    provisioning.up(settings)
    app.reconfigure(settings)
    env = {**os.environ, **emulator.env, **namespace}
    log = tmp / f"{namespace['ORDERS_ENV']}.log"
    for i in range(messages):
        hold.delay(i, str(log), 3600)
    victim = worker("victim", tmp, env, "prefork", 4)
    rescuer = worker("rescuer", tmp, env, "threads", messages)
    try:
        victim.start()
        wait_ready([victim], 60)
        wait_for(lambda: depth(settings, "orders") == (0, messages), timeout=60)
        rescuer.start()
        wait_ready([rescuer], 60)
        time.sleep(random.uniform(0, visibility / 3))  # anywhere between two beats
        killed_at = time.time()
        victim.signal_group(signal.SIGKILL)
        wait_for(lambda: len([1 for _, at in events(log, "start") if at > killed_at]) >= messages,
                 timeout=visibility * 4 + 60, interval=0.2)
        return sorted(at - killed_at for _, at in events(log, "start") if at > killed_at)
    finally:
        stop_all([victim, rescuer], timeout=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--messages", type=int, default=40)
    parser.add_argument("--visibility", type=int, default=30, help="ORDERS_RECEIVE_VISIBILITY")
    args = parser.parse_args()
    emulator = EmulatorProcess().start()
    samples: list[float] = []
    tmp = Path(tempfile.mkdtemp(prefix="kill-redelivery-"))
    print("worker logs in", tmp)
    try:
        for n in range(args.rounds):
            got = one_round(emulator, tmp, args.messages, args.visibility)
            samples += got
            print(f"round {n + 1}: {len(got)} messages back, {got[0]:.1f} to {got[-1]:.1f} s after the kill")
    finally:
        emulator.stop()
    p95 = statistics.quantiles(samples, n=20)[-1]
    print(f"{len(samples)} held messages, {args.rounds} kills, receive visibility {args.visibility} s: "
          f"median {statistics.median(samples):.1f} s, P95 {p95:.1f} s, max {max(samples):.1f} s")


if __name__ == "__main__":
    main()
