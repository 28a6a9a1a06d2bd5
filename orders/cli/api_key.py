"""`orders api-key create|list|revoke`: the HTTP API's keys (orders.aws.api_keys)."""

from __future__ import annotations

import json
from dataclasses import asdict

import click

from orders.cli.common import aws_failures, aws_settings


@click.group("api-key")
def api_key_group() -> None:
    """Manage the HTTP API's keys: one client name per key, stored only as a SHA-256 digest."""


@api_key_group.command("create")
@click.argument("client")
def create_cmd(client: str) -> None:
    """Create a key for CLIENT; the key alone is the last line of output (shown this once)."""
    from orders.aws.api_keys import ApiKeys, InvalidClientName

    settings = aws_settings()
    try:
        with aws_failures():
            key, record = ApiKeys(settings).create(client)
    except InvalidClientName as exc:
        raise click.BadParameter(str(exc), param_hint="CLIENT") from None
    click.echo(f"API key {record.hint}... for client {record.client!r} in environment {settings.env!r}, "
               f"created {record.created_at}.")
    click.echo("Only its SHA-256 digest is stored: keep the key now, it cannot be shown again. "
               "Send it as 'Authorization: Bearer KEY'.")
    click.echo(key)  # alone on the last line: scripts read it with `tail -n 1`


@api_key_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per key: client, hint, created_at, "
                                                       "revoked_at.")
def list_cmd(as_json: bool) -> None:
    """List every key (its client, hint, creation and revocation; never the key)."""
    from orders.aws.api_keys import ApiKeys

    with aws_failures():
        records = ApiKeys(aws_settings()).all()
    for record in records:
        if as_json:
            click.echo(json.dumps(asdict(record), sort_keys=True))
        else:
            state = f"revoked {record.revoked_at}" if record.revoked else "active"
            click.echo(f"{record.client:<24} {record.hint}...  created {record.created_at}  {state}")


@api_key_group.command("revoke")
@click.argument("client")
@click.option("--key", "hint", metavar="HINT", help="Revoke only the key of CLIENT whose hint (as `list` "
                                                    "shows it) is HINT; default: every key of CLIENT.")
def revoke_cmd(client: str, hint: str | None) -> None:
    """Revoke CLIENT's keys: the next request with one is answered 401 (exit 1 if none was live)."""
    from orders.aws.api_keys import HINT_LENGTH, ApiKeys

    # A hint is a key's first characters: the whole key (or "ok_abc1234...") names it as well, and
    # only its hint is ever repeated.
    hint = hint[:HINT_LENGTH] if hint else None
    with aws_failures():
        revoked = ApiKeys(aws_settings()).revoke(client, hint)
    for record in revoked:
        click.echo(f"revoked {record.hint}... of {record.client!r}")
    if not revoked:
        click.echo(f"no live key of {client!r}" + (f" starting with {hint!r}" if hint else ""), err=True)
        raise SystemExit(1)


commands = [api_key_group]
