"""`orders infra template`: print the environment's CloudFormation stack (the lead attaches
`template_command` to the `infra` group)."""

from __future__ import annotations

import click

from orders.infra.template import FORMATS, template
from orders.settings import get_settings
from orders.topology import QUEUES_BY_NAME


@click.command("template")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="yaml", show_default=True,
              help="Output format.")
@click.option("--lambda", "lambda_queues", multiple=True, type=click.Choice(list(QUEUES_BY_NAME)),
              help="Consume this queue with a Lambda function instead of ECS workers (repeatable).")
@click.option("--without", multiple=True, metavar="TYPE",
              help="Leave out a resource type, e.g. AWS::CloudWatch::Alarm, and whatever refers to it; "
                   "for an endpoint that cannot create it, such as an emulator (repeatable).")
@click.option("--region", default=None, metavar="REGION",
              help="With ORDERS_REGIONS: the region whose stack to print (default the primary, which "
                   "declares the global tables).")
def template_command(fmt: str, lambda_queues: tuple[str, ...], without: tuple[str, ...],
                     region: str | None) -> None:
    """Print this environment's CloudFormation stack, generated from the topology (no AWS call)."""
    settings = get_settings()
    try:
        text = template(settings.for_region(region) if region else settings, fmt, lambda_queues, without)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    click.echo(text, nl=False)
