"""`orders region status | failover | failback | watch`: the active-region switch and each region's health
(docs/multi-region.md; orders.aws.region_switch, orders.ops.region_health)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import click

from orders.aws import region_switch
from orders.aws.region_switch import Switch, SwitchMoved
from orders.cli.common import aws_failures, aws_settings
from orders.domain.errors import OrderError
from orders.ops import adoption, reconcile, region_health
from orders.ops.region_health import FAILURES, PROBE_INTERVAL_SECONDS, Health, Watch
from orders.settings import ConfigurationError, Settings


class Refused(click.ClickException):
    """The switch could not be read or flipped: exit 2 (1 is a flip made whose adoption did not finish)."""

    exit_code = 2


@contextmanager
def refusals() -> Iterator[None]:
    """AWS's failures, the switch's refusals and a setting that cannot work: one line, exit 2."""
    with aws_failures(error=Refused):
        try:
            yield
        except (OrderError, ConfigurationError) as exc:
            raise Refused(str(exc)) from None


@click.group("region")
def region_group() -> None:
    """Which region of ORDERS_REGIONS is active, each region's health, and the failover between them."""


@region_group.command("status")
@click.option("--json", "as_json", is_flag=True,
              help='Print {"active", "epoch", "at", "reason", "regions": [{"region", "ok", "sqs_ms", '
                   '"dynamodb_ms", "error"}]}.')
def status_cmd(as_json: bool) -> None:
    """Show the switch (active region, epoch, last flip) and a probe of every region; exit 2, after the
    probes, when the switch cannot be read."""
    settings = aws_settings()
    healths = region_health.probe_all(settings)
    switch, problem = None, None
    try:
        with refusals():
            switch = region_switch.read(settings)
    except Refused as exc:
        problem = exc
    if as_json:
        state = ({"active": switch.active, "epoch": switch.epoch, "at": switch.at, "reason": switch.reason}
                 if switch else dict.fromkeys(("active", "epoch", "at", "reason")))
        click.echo(json.dumps({**state, "regions": [h.to_json() for h in healths],
                               **({"error": problem.message} if problem else {})}, indent=2))
    else:
        click.echo(_describe(switch) if switch else "Active region: unknown (the switch cannot be read)")
        for health in healths:
            click.echo("  " + _health_line(health, switch))
    if problem:
        raise problem


def _describe(switch: Switch) -> str:
    if switch.epoch == 0:
        return f"Active region: {switch.active} (epoch 0: never flipped)"
    return (f"Active region: {switch.active} (epoch {switch.epoch}, flipped from {switch.previous} "
            f"at {switch.at}: {switch.reason})")


def _health_line(health: Health, switch: Switch | None, watch: Watch | None = None) -> str:
    role = "?" if switch is None else "active" if health.region == switch.active else "standby"
    if health.ok:
        return (f"{health.region:<14} {role:<8} ok      sqs {health.sqs_ms} ms, "
                f"dynamodb {health.dynamodb_ms} ms")
    streak = f" ({watch.streaks[health.region]}/{watch.failures})" if watch else ""
    return f"{health.region:<14} {role:<8} FAILED{streak} {health.error}"


@region_group.command("failover")
@click.option("--to", "to", default=None, metavar="REGION",
              help="The region to make active (default: the other region, when there are two).")
@click.option("--reason", default="manual failover", show_default=True, help="Recorded with the flip.")
@click.option("--json", "as_json", is_flag=True,
              help='Print {"active", "epoch", "previous", "at", "reason", "adopted"}.')
def failover_cmd(to: str | None, reason: str, as_json: bool) -> None:
    """Make another region active (the manual override: the target is not probed), then resume there the
    orders in flight elsewhere. Exit 0 done, 1 flipped but the orders not all resumed, 2 not flipped."""
    settings = aws_settings()
    with refusals():
        now = region_switch.read(settings)
        target = to or _the_other(settings, now.active)
        flipped = region_switch.flip(settings, target, reason, expect_epoch=now.epoch)
    _after_flip(settings, flipped, as_json)


def _the_other(settings: Settings, active: str) -> str:
    others = [r for r in settings.regions if r != active]
    if len(others) != 1:
        raise ConfigurationError(f"give --to: the standby regions are {', '.join(others) or 'none'}")
    return others[0]


@region_group.command("failback")
@click.option("--reason", default="failback", show_default=True, help="Recorded with the flip.")
@click.option("--json", "as_json", is_flag=True,
              help='Print {"active", "epoch", "previous", "at", "reason", "adopted"}.')
def failback_cmd(reason: str, as_json: bool) -> None:
    """Make the primary (the first of ORDERS_REGIONS) active again; refused while its probe fails."""
    settings = aws_settings()
    with refusals():
        now = region_switch.read(settings)
        primary = str(settings.primary)
        health = region_health.probe(settings.for_region(primary))
        if not health.ok:
            raise Refused(f"the primary {primary} is unhealthy ({health.error}): failback refused")
        flipped = region_switch.flip(settings, primary, reason, expect_epoch=now.epoch)
    _after_flip(settings, flipped, as_json)


@dataclass(frozen=True)
class TakeOver:
    """What the active region did after a flip: the orders in flight elsewhere it resumed, the products
    it recounted from their holds, and why the resumes did not finish (None when they did)."""

    adopted: list[dict[str, Any]] | None
    recounted: list[dict[str, Any]]
    problem: str | None

    def lines(self, region: str) -> list[str]:
        said = [] if self.adopted is None else [
            f"Orders in flight elsewhere resumed in {region}: "
            f"{sum(a['action'] == 'resumed' for a in self.adopted)} of {len(self.adopted)}"]
        return said + [f"Stock {r['sku']} recounted from its holds: {r['was']} -> {r['now']}"
                       for r in self.recounted]


def take_over(settings: Settings, active: str) -> TakeOver:
    """After a flip (or `orders region adopt`): in `active`, resume the orders in flight elsewhere
    (orders.ops.adoption) and recount the stock from its holds (orders.ops.reconcile), from one read
    of the products and the orders table."""
    from tasks.ops import resumer  # the Celery app: loaded only when orders are really resumed

    regional = settings.for_region(active)
    first = reconcile.read(regional)
    try:
        adopted = [a.to_json() for a in adoption.resume_in_flight(regional, resumer(regional),
                                                                   records=first[1].records)]
        problem = None
    except (OrderError, RuntimeError) as exc:
        adopted, problem = None, (f"the orders in flight elsewhere were not all resumed in {active} ({exc}): "
                                  "the periodic pass (ops.adopt_in_flight) tries again")
    recounted = [r.to_json() for r in reconcile.recount_stock(regional, first)]
    return TakeOver(adopted, recounted, problem)


def _after_flip(settings: Settings, flipped: Switch, as_json: bool) -> None:
    done = take_over(settings, flipped.active)
    if as_json:
        click.echo(json.dumps({"active": flipped.active, "epoch": flipped.epoch, "previous": flipped.previous,
                               "at": flipped.at, "reason": flipped.reason, "adopted": done.adopted,
                               "recounted": done.recounted}, indent=2))
    else:
        click.echo(_describe(flipped))
        for line in done.lines(flipped.active):
            click.echo(line)
    if done.problem:
        click.echo(done.problem, err=True)
        raise SystemExit(1)


@region_group.command("adopt")
@click.option("--json", "as_json", is_flag=True, help='Print {"active", "adopted", "recounted"}.')
def adopt_cmd(as_json: bool) -> None:
    """In the active region, resume the orders still in flight elsewhere and recount the stock from its
    holds, as a flip does (for records that arrive after the periodic pass's hour). Exit 1 when the
    resumes did not finish, 2 when the switch cannot be read."""
    settings = aws_settings()
    with refusals():
        active = region_switch.read(settings).active
    done = take_over(settings, active)
    if as_json:
        click.echo(json.dumps({"active": active, "adopted": done.adopted, "recounted": done.recounted},
                              indent=2))
    else:
        for line in done.lines(active):
            click.echo(line)
    if done.problem:
        click.echo(done.problem, err=True)
        raise SystemExit(1)


@region_group.command("watch")
@click.option("--auto", is_flag=True,
              help="Fail over to a healthy standby when the active region is unhealthy.")
@click.option("--interval", type=click.FloatRange(min=0), default=PROBE_INTERVAL_SECONDS, show_default=True,
              metavar="SECONDS", help="Time between two rounds of probes.")
@click.option("--failures", type=click.IntRange(min=1), default=FAILURES, show_default=True,
              help="Failed probes in a row that make a region unhealthy.")
@click.option("--rounds", type=click.IntRange(min=1), default=None, hidden=True,
              help="Stop after this many rounds (tests).")
def watch_cmd(auto: bool, interval: float, failures: int, rounds: int | None) -> None:
    """Probe every region until Ctrl-C, printing each round and each decision."""
    settings = aws_settings()
    watch = Watch(settings.regions, failures)
    done = 0
    while rounds is None or done < rounds:
        healths = region_health.probe_all(settings)
        watch.observe(healths)
        _watch_round(settings, watch, healths, auto)
        done += 1
        if rounds is None or done < rounds:
            time.sleep(interval)


def _watch_round(settings: Settings, watch: Watch, healths: list[Health], auto: bool) -> None:
    stamp = time.strftime("%H:%M:%SZ", time.gmtime())
    try:
        switch = region_switch.read(settings)
    except OrderError as exc:
        click.echo(f"{stamp} the switch cannot be read ({exc}): no decision this round")
        return
    click.echo(f"{stamp} {_describe(switch)}")
    for health in healths:
        click.echo("  " + _health_line(health, switch, watch))
    if not watch.unhealthy(switch.active):
        return
    target = watch.failover_to(switch.active)
    if target is None:
        click.echo(f"{stamp} decision: {switch.active} is unhealthy and no standby is healthy: no failover")
    elif not auto:
        click.echo(f"{stamp} decision: {switch.active} is unhealthy: fail over to {target} "
                   f"(`orders region failover --to {target}`, or watch --auto)")
    else:
        _auto_failover(settings, switch, target, watch.failures, stamp)


def _auto_failover(settings: Settings, switch: Switch, target: str, failures: int, stamp: str) -> None:
    reason = f"automatic: {switch.active} failed {failures} probes in a row"
    try:
        flipped = region_switch.flip(settings, target, reason, expect_epoch=switch.epoch)
    except SwitchMoved as exc:
        click.echo(f"{stamp} decision: fail over to {target}: not made, {exc}")
        return
    except OrderError as exc:
        click.echo(f"{stamp} decision: fail over to {target}: failed ({exc}); tried again next round")
        return
    click.echo(f"{stamp} decision: failed over to {target} (epoch {flipped.epoch}): {reason}")
    done = take_over(settings, target)
    for line in [*done.lines(target), *([done.problem] if done.problem else [])]:
        click.echo(f"{stamp} {line}")


commands = [region_group]
