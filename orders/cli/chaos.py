"""`orders chaos`: the fault campaign (docs/reliability.md, "The fault campaign")."""

from __future__ import annotations

import json
import sys
import time
import uuid
from typing import Any

import click

from orders.cli.stack_runs import stack_run
from orders.harness.chaos_plan import OUTAGE_TARGETS, ChaosOptions, Outage
from orders.harness.progress import ProgressPrinter
from orders.harness.stack import Stack

DEFAULTS = ChaosOptions()


def _kinds(text: str) -> tuple[str, ...]:
    kinds = tuple(k.strip() for k in text.split(",") if k.strip())
    if not kinds or set(kinds) - set(DEFAULTS.fault_kinds):
        raise click.BadParameter(f"a comma-separated list among {', '.join(DEFAULTS.fault_kinds)}")
    return kinds


def _outages(_ctx: Any, _param: Any, values: tuple[str, ...]) -> tuple[Outage, ...]:
    if not values:
        return DEFAULTS.outages
    if values == ("none",):
        return ()
    try:
        return tuple(Outage.parse(v) for v in values)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@click.command("chaos")
@click.option("--orders", "n_orders", type=click.IntRange(min=1), default=None,
              help=f"Orders to place [default: {DEFAULTS.orders}, or --duration x --rate].")
@click.option("--rate", type=click.FloatRange(min=0.1), default=DEFAULTS.rate, show_default=True,
              help="Orders placed per second.")
@click.option("--duration", type=click.FloatRange(min=1), default=None, metavar="SECONDS",
              help="Place orders for this long instead of a number of them.")
@click.option("--seed", type=int, default=DEFAULTS.seed, show_default=True,
              help="Seed of the order mix and of every attack's moment and target.")
@click.option("--kills", type=click.IntRange(min=0), default=DEFAULTS.kills, show_default=True,
              help="SIGKILLs of a random worker while orders are placed (each restarted seconds later).")
@click.option("--fault-rate", type=click.FloatRange(0, 1), default=DEFAULTS.fault_rate, show_default=True,
              help="Share of AWS calls the emulator answers with throttling or a 5xx.")
@click.option("--fault-kinds", default=",".join(DEFAULTS.fault_kinds), show_default=True,
              callback=lambda _c, _p, v: _kinds(v), help="What a fault answers: throttle, 500, 503.")
@click.option("--outage", "outages", multiple=True, callback=_outages, metavar="TARGET:SECONDS[@AT]",
              help=f"Take a service away ({', '.join(OUTAGE_TARGETS)}) for SECONDS, from AT seconds into "
                   f"the run (default: a quarter in); repeatable; 'none' for no outage "
                   f"[default: {', '.join(map(str, DEFAULTS.outages))}].")
@click.option("--poison", type=click.IntRange(min=0), default=DEFAULTS.poison, show_default=True,
              help="Poison messages sent to the queues (every shape in turn).")
@click.option("--duplicates", type=click.IntRange(min=0), default=DEFAULTS.duplicates, show_default=True,
              help="Orders placed a second time, the same order again.")
@click.option("--double-delivery/--no-double-delivery", default=True, show_default=True,
              help="A second payments consumer while the first is stalled past its visibility.")
@click.option("--timeout", type=click.FloatRange(min=1), default=DEFAULTS.timeout, show_default=True,
              help="Once every order is placed and every outage over, give up when no order has reached "
                   "a final state for this many seconds.")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as one JSON object.")
def chaos(n_orders: int | None, rate: float, duration: float | None, seed: int, kills: int,
          fault_rate: float, fault_kinds: tuple[str, ...], outages: tuple[Outage, ...], poison: int,
          duplicates: int, double_delivery: bool, timeout: float, as_json: bool) -> None:
    """Attack the pipeline while it processes the demo's orders, then audit that nothing was lost.

    On the embedded emulator with one worker per queue and beat: SIGKILLs random
    workers (and restarts them), injects throttling and 5xx answers, takes services
    away, delivers messages twice, places orders twice and sends poison; then waits
    for every order to be final and audits the ledger, the orders and the stock.
    Exits 1 on any lost or stuck order, double charge, oversold unit, poison message
    not in its DLQ, audit problem, or worker exit it did not cause; 2 if the platform
    did not start.
    """
    if n_orders is not None and duration is not None:
        raise click.UsageError("--orders and --duration are alternatives: give one")
    orders = n_orders or (max(1, round(duration * rate)) if duration else DEFAULTS.orders)
    options = ChaosOptions(orders=orders, rate=rate, seed=seed, kills=kills, fault_rate=fault_rate,
                           fault_kinds=fault_kinds, outages=outages, poison=poison, duplicates=duplicates,
                           timeout=timeout, double_delivery=double_delivery)
    out = sys.stderr if as_json else sys.stdout

    def say(text: str) -> None:
        click.echo(text, file=out)

    with stack_run("chaos", say):
        figures = _run(options, say, ProgressPrinter(out))
    if as_json:
        click.echo(json.dumps(figures.as_dict(), indent=2, default=str))
    else:
        from orders.harness.chaos_text import format_figures

        click.echo("\n" + format_figures(figures), file=out)
    sys.exit(0 if figures.ok else 1)


def _run(options: ChaosOptions, say: Any, printer: ProgressPrinter) -> Any:
    from orders.harness.chaos_run import run_campaign

    say(f"Reproduce with: {options.command()}")
    stack = Stack(namespace=f"chaos-{uuid.uuid4().hex[:6]}")
    started = time.monotonic()
    try:
        say("Starting the platform on the embedded emulator ...")
        stack.start()
        say(f"Ready in {time.monotonic() - started:.1f} s: AWS at {stack.endpoint}, namespace "
            f"{stack.namespace}, {len(stack.children)} processes; logs in {stack.log_dir}")
        return run_campaign(stack, options, printer, say)
    finally:
        stack.stop()


commands = [chaos]
