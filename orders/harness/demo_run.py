"""The demo: a realistic mix of orders through the whole platform, and what became of them."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from orders.harness.observe import EventTap, dlq_depths
from orders.harness.order_mix import EXPECTED, OrderMix
from orders.harness.progress import ProgressPrinter
from orders.harness.runner import Progress, RunResult, run_orders, seed_catalogue
from orders.harness.stack import Stack
from orders.harness.summary import Summary, summarize

#: How long the pipeline may stay quiet before the event count is taken as complete.
EVENTS_SETTLE_SECONDS = 1.5


#: Orders per second the demo places by default: what one embedded emulator process
#: sustains on the project's 2-core machine with a P95 of a few seconds (it saturates
#: near 4 orders/s; docs/performance.md). Faster rates build a backlog.
DEFAULT_RATE = 3.0


@dataclass(frozen=True)
class DemoOptions:
    """The demo's knobs (the command's flags)."""

    orders: int = 300
    rate: float = DEFAULT_RATE
    timeout: float = 120.0
    seed: int = 1


def run_demo(stack: Stack, options: DemoOptions, printer: ProgressPrinter,
             say: Callable[[str], None]) -> tuple[Summary, RunResult]:
    """Seed the catalogue, place the mix at the given rate, follow it, and summarise."""
    settings = stack.settings
    mix = OrderMix(seed=options.seed, run_id="ord-" + stack.namespace.rsplit("-", 1)[-1],
                   review_threshold=settings.review_threshold)
    planned = mix.orders(options.orders)
    stock = mix.stock(options.orders)
    seed_catalogue(settings, stock)
    say(f"Catalogue seeded: {len(stock)} products (scarce one: {min(stock.values())} in stock). "
        f"Placing {len(planned)} orders at {options.rate:g}/s ...")
    tap = EventTap(settings).start()
    try:
        stack.reset_calls()
        result = run_orders(settings, planned, options.rate, options.timeout,
                            progress=supervised(stack, printer, say))
        printer.finish()
        events = settle_events(tap)
    finally:
        tap.stop()
    summary = summarize(result.outcomes, events=events, dlq_depths=dlq_depths(settings),
                        aws_calls=stack.calls(), expected=EXPECTED)
    summary.following_calls = dict(result.following.calls)
    summary.incidents = list(stack.restarts)
    return summary, result


def supervised(stack: Stack, printer: ProgressPrinter,
               say: Callable[[str], None]) -> Callable[[Progress], None]:
    """The progress callback, which also restarts a worker that died (and says so)."""
    def progress(p: Progress) -> None:
        for note in stack.supervise():
            say(f"\nRestarted {note}")
        printer(p)
    return progress


def settle_events(tap: EventTap) -> dict[str, dict[str, int]]:
    """Drain the tap until no event arrived for EVENTS_SETTLE_SECONDS (the last ones trail)."""
    counts, quiet_since = tap.drain(), time.monotonic()
    while time.monotonic() - quiet_since < EVENTS_SETTLE_SECONDS:
        time.sleep(0.25)
        now = tap.drain()
        if now != counts:
            counts, quiet_since = now, time.monotonic()
    return counts
