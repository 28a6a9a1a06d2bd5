"""Celery's settings (`app.config_from_object('celeryconfig')`).

Derived from `orders.settings`, the only reader of the environment, by
`orders.runtime.config.celery_settings`; see that function for each value and why.
"""

import click

from orders.runtime.config import celery_settings
from orders.settings import ConfigurationError, get_settings

try:
    _settings = get_settings()
except ConfigurationError as exc:
    # Celery loads this module inside its click command line (`celery -A orders worker`),
    # where a ClickException is one "Error: ..." line and a non-zero exit, not a traceback.
    raise click.ClickException(f"orders: {exc}") from None

globals().update(celery_settings(_settings))
