"""The one client factory: boto3 clients made lazily, once per process and service.

Clients are never made at import time: a prefork worker forks after import and
forked children must not share a parent's HTTP connections. Endpoints and
credentials follow the SDK's own conventions (AWS_ENDPOINT_URL,
AWS_ENDPOINT_URL_<SERVICE>, the credential chain), so the same code runs on
moto, on another emulator, and on AWS.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import boto3
from botocore.config import Config

from orders.settings import NO_ENDPOINT_HELP, ConfigurationError, Settings, get_settings

#: Standard retry mode: throttling and 5xx are retried by botocore itself with
#: backoff and jitter before our own error classification ever sees them.
CLIENT_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 4},
    connect_timeout=5,
    read_timeout=30,
    max_pool_connections=20,
)

_lock = threading.Lock()
_clients: dict[tuple[str, str | None], Any] = {}


def _forget_clients() -> None:
    _clients.clear()


os.register_at_fork(after_in_child=_forget_clients)


def client(service: str, settings: Settings | None = None) -> Any:
    """A cached boto3 client for `service` ('sqs', 'sns', 'dynamodb', 'cloudwatch', ...)."""
    settings = settings or get_settings()
    key = (service, settings.region)
    found = _clients.get(key)
    if found is not None:
        return found
    with _lock:
        if key not in _clients:
            _clients[key] = new_client(service, settings)
        return _clients[key]


def new_client(service: str, settings: Settings) -> Any:
    """An uncached client; most code wants `client()`."""
    require_aws(settings)
    session: Any = boto3.session.Session()  # typed per service name; ours is a variable
    return session.client(service, region_name=settings.region, config=CLIENT_CONFIG)


def require_aws(settings: Settings) -> None:
    """Stop with one clear message when neither an emulator nor AWS is configured."""
    settings.require_region()
    if settings.has_endpoint:
        return
    if boto3.session.Session().get_credentials() is None:
        raise ConfigurationError(NO_ENDPOINT_HELP)
