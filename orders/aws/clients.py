"""The one client factory: boto3 clients made lazily from the Settings passed, cached per process.

Clients are never made at import time: a prefork worker forks after import and
forked children must not share a parent's HTTP connections. Everything a client
depends on comes from the Settings it is asked for (region, the endpoint of its
service, static credentials if any), and the cache is keyed by exactly that: to
reach another environment, pass other settings. Endpoints follow the SDK's own
conventions (AWS_ENDPOINT_URL, AWS_ENDPOINT_URL_<SERVICE>, read by orders.settings);
without static credentials, AWS's own credential chain applies. The same code
runs on moto, on another emulator, and on AWS.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import boto3
from botocore.awsrequest import AWSRequest, AWSRequestPreparer
from botocore.config import Config
from botocore.utils import CLIENT_NAME_TO_HYPHENIZED_SERVICE_ID_OVERRIDES, SERVICE_NAME_ALIASES

from orders.settings import NO_ENDPOINT_HELP, ConfigurationError, Settings

#: Standard retry mode: throttling and 5xx are retried by botocore itself with
#: backoff and jitter before our own error classification ever sees them.
#: Endpoints configured outside the Settings (a profile's, the process's variables) are
#: ignored: the Settings passed are the whole truth about where a client goes.
CLIENT_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 4},
    connect_timeout=5,
    read_timeout=30,
    max_pool_connections=20,
    ignore_configured_endpoint_urls=True,  # type: ignore[call-arg]  # botocore 1.31+; the stubs lag
)

#: Another region's service on an order's path (orders.aws.field_crypto wraps and unwraps data keys
#: with each region's KMS): one attempt, bounded at 2 s, so that a region that is down costs the
#: caller two seconds and an error, not the default's minutes of connect timeouts and retries.
OTHER_REGION_CONFIG = CLIENT_CONFIG.merge(Config(retries={"mode": "standard", "total_max_attempts": 1},
                                                 connect_timeout=2, read_timeout=2))

_lock = threading.Lock()
_clients: dict[tuple[str | None, ...], Any] = {}


def _forget_clients() -> None:
    _clients.clear()


os.register_at_fork(after_in_child=_forget_clients)


def client(service: str, settings: Settings, config: Config = CLIENT_CONFIG) -> Any:
    """A cached boto3 client for `service` ('sqs', 'sns', 'dynamodb', 'cloudwatch', ...); `config` is
    a module-level constant (the cache tells configs apart by identity)."""
    key = (service, settings.region, endpoint(service, settings),
           settings.access_key_id, settings.secret_access_key, str(id(config)))
    found = _clients.get(key)
    if found is not None:
        return found
    with _lock:
        if key not in _clients:
            _clients[key] = new_client(service, settings, config)
        return _clients[key]


def new_client(service: str, settings: Settings, config: Config = CLIENT_CONFIG) -> Any:
    """An uncached client; most code wants `client()`."""
    require_aws(settings)
    session: Any = boto3.session.Session(  # typed per service name; ours is a variable
        aws_access_key_id=settings.access_key_id, aws_secret_access_key=settings.secret_access_key)
    made = session.client(service, region_name=settings.region, endpoint_url=endpoint(service, settings),
                          config=config)
    made.meta.events.register_last("before-sign", encode_form_once)  # the last change before signing
    return made


def encode_form_once(request: AWSRequest, signature_version: Any = None, **_: Any) -> None:
    """Encode a query-protocol body (SNS's, IAM's, STS's) once, as botocore would send it.

    botocore keeps such a body as a dict and url-encodes it again at every read of
    `request.body`: once to sign it, once more to send it. Python's url-encoding runs a
    function per byte, so for a PublishBatch of six events that was 0.75 of the 1.9 ms of
    CPU the call cost before it left the process (benchmarks/client_cpu.py). The bytes and
    the signature are the same (tests/unit/test_clients.py).

    A presigned URL (`generate_presigned_url`: a `-query` signature) is left alone: its
    signer moves the body's parameters into the URL, and reads them from the dict.
    """
    if isinstance(signature_version, str) and signature_version.endswith("-query"):
        return
    if isinstance(request.data, dict):
        request.data = AWSRequestPreparer()._prepare_body(request)  # type: ignore[attr-defined]  # its own encoding


def endpoint(service: str, settings: Settings) -> str | None:
    """Where `service`'s calls go: its AWS_ENDPOINT_URL_<SERVICE>, else AWS_ENDPOINT_URL, else AWS."""
    return settings.endpoint_for(endpoint_name(service))


def endpoint_name(service: str) -> str:
    """The <SERVICE> of AWS_ENDPOINT_URL_<SERVICE> for a client name, as botocore derives it."""
    name = SERVICE_NAME_ALIASES.get(service, service)
    return CLIENT_NAME_TO_HYPHENIZED_SERVICE_ID_OVERRIDES.get(name, name).replace("-", "_").upper()


def require_aws(settings: Settings) -> None:
    """Stop with one clear message when neither an emulator nor AWS is configured."""
    settings.require_region()
    if settings.has_endpoint or settings.access_key_id:
        return
    if boto3.session.Session().get_credentials() is None:
        raise ConfigurationError(NO_ENDPOINT_HELP)
