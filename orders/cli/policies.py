"""`orders infra policies`: one IAM policy document per role, with this environment's ARNs."""

from __future__ import annotations

import json

import click

from orders.cli.common import aws_failures, aws_settings
from orders.cli.infra import infra_group
from orders.infra.access import ROLES


@infra_group.command("policies")
@click.option("--json", "as_json", is_flag=True, help="Print {role: policy document} as JSON only.")
@click.option("--role", "names", multiple=True, type=click.Choice(list(ROLES)),
              help="Only this role (repeatable; default: every role).")
@click.option("--split", "split", is_flag=True,
              help="A document over IAM's 6,144 characters for a managed policy as parts ROLE-1, ROLE-2, ...")
def policies_cmd(as_json: bool, names: tuple[str, ...], split: bool) -> None:
    """Print each role's least-privilege IAM policy, scoped to this environment's account, region and key.

    Made from the declarations of orders/infra/access.py, as the template's roles are; the
    administrator's policy names the key by its tags, every other role's by its ARN, so those
    need `orders infra up` to have created the key. The administrator's document is longer than
    one managed policy may be: attach it with --split.
    """
    from orders.aws import clients
    from orders.infra import kms, policies
    from orders.topology import ENVIRONMENT_KEY

    settings = aws_settings(announce=True)
    try:
        with aws_failures():
            account = kms.caller_account(settings)
            key = kms.find_key(clients.client("kms", settings), ENVIRONMENT_KEY.alias_name(settings))
            documents = policies.policies(settings, account, key["Arn"] if key else None, list(names) or None)
    except LookupError as exc:
        raise click.ClickException(f"{exc}; `--role admin` needs no key") from None
    if split:
        documents = {part: doc for name, whole in documents.items()
                     for part, doc in policies.split(name, whole).items()}
    if as_json:
        click.echo(json.dumps(documents, indent=2))
        return
    for name, document in documents.items():
        role = ROLES.get(name) or ROLES[name.rsplit("-", 1)[0]]
        click.echo(f"# {name}: {role.runs} ({policies.size(document)} characters)")
        click.echo(json.dumps(document, indent=2) + "\n")
    click.echo(policies.docs_text())
