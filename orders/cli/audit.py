"""`orders audit`: reconcile the payment gateway's ledger, the orders and the stock (orders.ops.audit)."""

from __future__ import annotations

import json

import click

from orders.cli.common import aws_failures, aws_settings


class Unreadable(click.ClickException):
    """The tables cannot be read: exit 2, not 1 (1 is a discrepancy found)."""

    exit_code = 2


@click.command("audit")
@click.option("--json", "as_json", is_flag=True,
              help='Print {"orders": [...], "problems": [...], "counts": {...}}.')
@click.option("--stuck-after", type=click.FloatRange(min=0), default=None, metavar="SECONDS",
              help="An order not final for longer than this is stuck (default: what its next step allows).")
@click.option("--index", is_flag=True,
              help="Put the orders in flight that are missing from the in-flight index (written before the "
                   "release that made it) into it, so that the stuck-order sweeper watches them too.")
def audit_cmd(as_json: bool, stuck_after: float | None, index: bool) -> None:
    """Check that no order is lost, stuck or charged twice and no unit of stock is lost or oversold.

    Exit 0 when everything reconciles, 1 listing every discrepancy, 2 when the tables cannot be read.
    """
    from orders.ops.audit import audit

    settings = aws_settings()
    with aws_failures(f"cannot read the tables of {settings.env!r}: ", Unreadable):
        result = audit(settings, stuck_after=stuck_after, index=index)
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=2))
    else:
        counts = result.counts
        click.echo(f"{counts['orders']} orders ({counts['final']} final, {counts['in_flight']} in flight), "
                   f"{counts['skus']} products: "
                   + ("everything reconciles" if result.ok else f"{len(result.problems)} problems"))
        if counts["indexed"]:
            click.echo(f"{counts['indexed']} orders in flight put into the in-flight index")
        for problem in result.problems:
            click.echo(problem.line())
    raise SystemExit(0 if result.ok else 1)


commands = [audit_cmd]
