"""`orders infra up|check|down` and `orders emulator`."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

import click

from orders.cli.common import aws_failures, aws_settings, where
from orders.cli.template import template_command
from orders.emulator.moto_dynamodb import NO_STREAM_RECORDS_HELP
from orders.infra import provisioning
from orders.infra.converger import Report
from orders.settings import Settings, child_environment


@click.group("infra")
def infra_group() -> None:
    """Create, check or remove this environment's queues, DLQs, topics and subscriptions."""


@infra_group.command("up")
def up_cmd() -> None:
    """Create or converge every declared resource, in every region of ORDERS_REGIONS (safe to run again)."""
    settings = aws_settings(announce=True)
    with aws_failures():
        results = provisioning.in_every_region(settings, provisioning.up)
    for region, report in results:
        where_ = _in_region(settings, region)
        _print_lines(report.changes, f"Changes{where_}:")
        if report.clean:
            click.echo(f"Nothing to change{where_}: every resource matches its declaration.")
        _print_notes(report)


@infra_group.command("check")
def check_cmd() -> None:
    """Compare the live resources with their declarations in every region; exit 1 on any difference."""
    settings = aws_settings(announce=True)
    with aws_failures():
        results = provisioning.in_every_region(settings, provisioning.check)
    for region, report in results:
        where_ = _in_region(settings, region)
        _print_notes(report)
        if report.clean:
            click.echo(f"No drift{where_}: every resource matches its declaration.")
        else:
            _print_lines(report.changes,
                         f"Drift ({len(report.changes)}){where_}, fixed by `orders infra up`:")
    if not all(report.clean for _, report in results):
        raise SystemExit(1)


@infra_group.command("down")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def down_cmd(yes: bool) -> None:
    """Delete every resource of this environment, messages included, in every region (asks first)."""
    settings = aws_settings(announce=True)
    places = "; ".join(where(settings.for_region(name)) for name in settings.regions) or where(settings)
    if not yes:
        click.confirm(f"Delete every queue (with its messages), DLQ, topic and subscription "
                      f"of environment {settings.env!r} on {places}, and schedule the deletion "
                      f"of its KMS key (30 days)?", abort=True)
    with aws_failures():
        results = provisioning.in_every_region(settings, provisioning.down)
    for region, deleted in results:
        where_ = _in_region(settings, region)
        _print_lines(deleted, f"Deleted{where_}:")
        if not deleted:
            click.echo(f"Nothing to delete{where_}.")


def _in_region(settings: Settings, region: str | None) -> str:
    """' in region R' when ORDERS_REGIONS names several regions; nothing for one (the output as it was)."""
    return f" in region {region}" if len(settings.regions) > 1 else ""


@click.command("emulator")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to serve on (0.0.0.0 for other containers or machines to reach it).")
@click.option("--port", type=int, default=5000, show_default=True, help="AWS emulator (moto) port.")
@click.option("--redis-port", type=int, default=6390, show_default=True,
              help="Control-plane redis-server port.")
@click.option("--latency-ms", type=float, default=0.0, show_default=True,
              help="Delay added to every AWS call, to behave like a real network.")
@click.option("--no-redis", is_flag=True, help="Run without the control plane (no Flower).")
@click.option("--one-process", is_flag=True,
              help="Serve DynamoDB in the same process as the other services (default: a process of its "
                   "own, unless ORDERS_EMULATOR_PROCESSES=1).")
@click.option("--dynamodb-port", type=int, default=None, show_default="--port + 100",
              help="The DynamoDB process's port (AWS_ENDPOINT_URL_DYNAMODB); the main port serves it too.")
@click.option("--no-stream-records", is_flag=True, help=NO_STREAM_RECORDS_HELP)
@click.option("--fault-rate", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="Share of AWS calls answered with throttling, 500 or 503, as AWS answers them.")
@click.option("--fault-services", default="", metavar="LIST",
              help="Comma-separated services the fault rate applies to (sqs,sns,dynamodb,...; default all).")
@click.option("--fault-seed", type=int, default=None, help="Seed of the faults' random choices.")
@click.option("--outage", "outages", multiple=True, metavar="TARGET:SECONDS[@DELAY]",
              help="Answer every call to TARGET (sns, dynamodb, sqs, sqs-send) with 503 for SECONDS, "
                   "from DELAY seconds after start. Repeatable.")
def emulator_cmd(host: str, port: int, redis_port: int, latency_ms: float, no_redis: bool,
                 one_process: bool, dynamodb_port: int | None, no_stream_records: bool,
                 fault_rate: float, fault_services: str,
                 fault_seed: int | None, outages: tuple[str, ...]) -> None:
    """Run the embedded AWS emulator (and control plane) until Ctrl-C, for other processes.

    Faults can also be set, changed and reported while it runs: POST/GET /_orders/faults
    (orders.emulator.faults, docs/operations.md).
    """
    from orders.emulator.faults import parse_outage, service_list
    from orders.emulator.server import MOTO_DEFAULTS, http_server, require_moto
    from orders.emulator.service_groups import processes

    require_moto()  # said by this command, not by the process that takes its place
    try:
        http_server()
        processes()
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    _check(service_list, fault_services, "--fault-services")
    for text in outages:
        _check(parse_outage, text, "--outage")

    args = ["--host", host, "--port", str(port), "--redis-port", str(redis_port),
            "--latency-ms", str(latency_ms), "--fault-rate", str(fault_rate),
            *(["--dynamodb-port", str(dynamodb_port)] if dynamodb_port is not None else []),
            *(["--one-process"] if one_process else []),
            *(["--no-stream-records"] if no_stream_records else []),
            "--fault-services", fault_services, *[arg for text in outages for arg in ("--outage", text)],
            *(["--fault-seed", str(fault_seed)] if fault_seed is not None else [])]
    # The server takes this process's place, with moto's options in its environment (moto
    # reads them from there at each request): this process's own environment stays as it is.
    os.execve(sys.executable, [sys.executable, "-m", "orders.emulator.server", *args,
                               *(["--no-redis"] if no_redis else [])],
              child_environment(defaults=MOTO_DEFAULTS))


def _check(parse: Callable[[str], object], text: str, option: str) -> None:
    """Refuse a bad value here, with this command's usage, rather than in the server's process."""
    try:
        parse(text)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=option) from None


def _print_lines(lines: list[str], title: str) -> None:
    if lines:
        click.echo(title)
        click.echo("".join(f"  - {line}\n" for line in lines), nl=False)


def _print_notes(report: Report) -> None:
    _print_lines(report.unverifiable, "Not verifiable on this endpoint (neither drift nor a change):")


infra_group.add_command(template_command)
commands = [infra_group, emulator_cmd]
