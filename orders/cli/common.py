"""What the commands that call AWS share: the settings, checked before any call, and AWS's failures
as one line an operator can act on rather than a traceback."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import click
from botocore.exceptions import BotoCoreError, ClientError

from orders.aws import clients
from orders.domain.errors import OrderError
from orders.settings import Settings, get_settings


def aws_settings(announce: bool = False) -> Settings:
    """The settings, with AWS reachable in principle (else ConfigurationError: what to set).

    `announce`: say on stderr which environment, on which endpoint, the command acts on.
    """
    settings = get_settings()
    clients.require_aws(settings)
    if announce:
        click.echo(f"Environment {settings.env!r} on {where(settings)}", err=True)
    return settings


def where(settings: Settings) -> str:
    """The endpoint and region `settings` reach, in words."""
    endpoint = clients.endpoint("sqs", settings)
    return f"{endpoint} (region {settings.region})" if endpoint else f"AWS region {settings.region}"


@contextmanager
def aws_failures(context: str = "",
                 error: type[click.ClickException] = click.ClickException) -> Iterator[None]:
    """Around a command's AWS calls: a failure ends it with `context` and what AWS answered, as `error`
    (click's exit 1, or a subclass with the exit code the command documents)."""
    try:
        yield
    except (BotoCoreError, ClientError) as exc:
        raise error(f"{context}AWS call failed: {exc}") from None
    except OrderError as exc:
        # Adapters that classify botocore's errors (orders.aws.tables.aws_errors) say "AWS call failed: ..."
        # already; any other OrderError is not AWS's and goes on as it is.
        if not isinstance(exc.__cause__, (BotoCoreError, ClientError)):
            raise
        raise error(f"{context}{exc}") from None
