"""`orders demo`: the project's main job (`make demo`)."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import click

from orders.cli.stack_runs import stack_run
from orders.harness.demo_run import DEFAULT_RATE, DemoOptions, run_demo
from orders.harness.progress import ProgressPrinter
from orders.harness.stack import Stack
from orders.harness.summary_text import format_summary


@click.command("demo")
@click.option("--orders", "n_orders", default=300, show_default=True, type=click.IntRange(min=1),
              help="How many orders to place.")
@click.option("--rate", default=DEFAULT_RATE, show_default=True, type=click.FloatRange(min=0.1),
              help="Orders placed per second (the default is what the embedded emulator sustains "
                   "on two cores; above it a backlog builds and latencies measure the queue).")
@click.option("--endpoint", default=None, metavar="URL",
              help="Use this AWS endpoint (a running emulator) instead of starting the embedded "
                   "one; 'aws' uses the environment's AWS configuration as is.")
@click.option("--timeout", default=120.0, show_default=True, type=click.FloatRange(min=1),
              help="Once every order is placed, give up when no order has reached a final "
                   "state for this many seconds.")
@click.option("--seed", default=1, show_default=True, help="Seed of the order mix.")
@click.option("--latency-ms", default=0.0, show_default=True, type=click.FloatRange(min=0),
              help="Delay the embedded emulator adds to every AWS call (AWS is 10-20 ms).")
@click.option("--keep", is_flag=True,
              help="With --endpoint: keep the run's queues, topics and tables afterwards.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def demo(n_orders: int, rate: float, endpoint: str | None, timeout: float, seed: int,
         latency_ms: float, keep: bool, as_json: bool) -> None:
    """Run the whole platform on a realistic mix of orders and summarise what became of them.

    Starts the embedded AWS emulator (unless --endpoint), provisions a fresh namespace,
    starts one worker process per queue (and beat), seeds a catalogue, places the orders
    and follows each to its final state. Exits 1 if any order is lost or unfinished.
    """
    out = sys.stderr if as_json else sys.stdout

    def say(text: str) -> None:
        click.echo(text, file=out)

    stack = Stack(endpoint=endpoint, latency_ms=latency_ms, teardown=endpoint is not None and not keep)
    options = DemoOptions(orders=n_orders, rate=rate, timeout=timeout, seed=seed)
    with stack_run("demo", say):
        summary, result = _run(stack, options, say, ProgressPrinter(out))
    if as_json:
        click.echo(json.dumps({**summary.as_dict(), "timed_out": result.timed_out,
                               "send_errors": result.errors}, indent=2, default=str))
    else:
        say("\n" + format_summary(summary))
        for error in result.errors[:3]:
            say(f"  not sent: {error}")
    sys.exit(0 if summary.ok else 1)


def _run(stack: Stack, options: DemoOptions, say: Any, printer: ProgressPrinter) -> Any:
    started = time.monotonic()
    where = f"endpoint {stack.endpoint_option}" if stack.endpoint_option else "the embedded emulator"
    say(f"Starting the platform on {where} ...")
    try:
        stack.start()
        say(f"Ready in {time.monotonic() - started:.1f} s: AWS at {stack.endpoint or 'AWS'}, "
            f"namespace {stack.namespace}, {len(stack.children)} processes "
            f"({', '.join(c.name for c in stack.children)}); logs in {stack.log_dir}")
        return run_demo(stack, options, printer, say)
    finally:
        killed = stack.stop()
        if killed:
            say(f"Killed after the shutdown grace period: {', '.join(killed)}")


commands = [demo]
