"""The one place that reads the environment: every setting of the platform, typed and frozen."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal, InvalidOperation
from functools import lru_cache


class ConfigurationError(RuntimeError):
    """The configuration cannot work; the message says what to change."""


NO_ENDPOINT_HELP = (
    "No AWS endpoint and no AWS credentials are configured.\n"
    "  - To run locally, start the embedded emulator in another terminal:\n"
    "        orders emulator\n"
    "    and export the variables it prints (AWS_ENDPOINT_URL, ...).\n"
    "  - To run on AWS, set AWS_DEFAULT_REGION and credentials the usual way\n"
    "    (AWS_PROFILE, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or an instance role)."
)


def _decimal(raw: str, name: str) -> Decimal:
    try:
        return Decimal(raw)
    except InvalidOperation:
        raise ConfigurationError(f"{name}={raw!r} is not a decimal amount") from None


def _float(raw: str, name: str) -> float:
    try:
        return float(raw)
    except ValueError:
        raise ConfigurationError(f"{name}={raw!r} is not a number") from None


def _seconds(raw: str, name: str, longest: float) -> float:
    """A wait of 0 (none) to `longest` seconds."""
    value = _float(raw, name)
    if not 0 <= value <= longest:
        raise ConfigurationError(f"{name}={raw!r} must be 0 to {longest:g} (seconds)")
    return value


def _linger(raw: str, name: str) -> float:
    """A wait on an order's path: 0 (none) to 1 second."""
    return _seconds(raw, name, 1)


def _wait(raw: str, name: str) -> float:
    """A pause between a queue's receives: 0 (none) to 20 seconds (SQS's longest poll)."""
    return _seconds(raw, name, 20)


def _int(raw: str, name: str, low: int = 0, high: int | None = None) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise ConfigurationError(f"{name}={raw!r} is not a whole number") from None
    if value < low or (high is not None and value > high):
        raise ConfigurationError(f"{name}={raw!r} is outside {low}..{'' if high is None else high}")
    return value


def _flag(raw: str, name: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ConfigurationError(f"{name}={raw!r} is not a yes/no value (use 1 or 0)")


def _environment_name(raw: str) -> str:
    # It prefixes every SQS/SNS name: those allow letters, digits, '-' and '_', and the
    # longest declared name ("orders-priority-dlq.fifo") plus the prefix must fit in 80.
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,40}", raw):
        raise ConfigurationError(
            f"ORDERS_ENV={raw!r}: use 1 to 40 letters, digits, '-' or '_' (it prefixes AWS names)")
    return raw


#: ORDERS_LOG_FORMAT's values.
LOG_FORMATS = ("auto", "json", "text")


def _choice(raw: str, name: str, choices: tuple[str, ...]) -> str:
    value = raw.strip().lower()
    if value not in choices:
        raise ConfigurationError(f"{name}={raw!r}: use one of {', '.join(choices)}")
    return value


def _optional(env: Mapping[str, str], name: str) -> str | None:
    return env.get(name) or None


#: The SDK's variable for one service's endpoint (SQS, DYNAMODB, ...; see orders.aws.clients).
SERVICE_ENDPOINT = "AWS_ENDPOINT_URL_<SERVICE>"


def _service_endpoints(env: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """Every AWS_ENDPOINT_URL_<SERVICE> variable set, as sorted (SERVICE, url) pairs."""
    prefix = SERVICE_ENDPOINT.removesuffix("<SERVICE>")
    return tuple(sorted((name.removeprefix(prefix), url) for name, url in env.items()
                        if name.startswith(prefix) and url))


#: ORDERS_REGIONS: the regions to provision and run in, the first the primary (docs/multi-region.md).
REGIONS_VARIABLE = "ORDERS_REGIONS"
_REGION_NAME = re.compile(r"[a-z]{2}(-[a-z]+)+-\d{1,2}")


def _regions(raw: str) -> tuple[tuple[str, str | None], ...]:
    """ORDERS_REGIONS as (region, endpoint or None) pairs: `us-east-1,us-west-2`, or each `REGION=URL`."""
    entries = [entry.strip() for entry in raw.split(",") if entry.strip()]
    pairs = [(name.strip(), url.strip() or None) for name, _, url in (e.partition("=") for e in entries)]
    names = [name for name, _ in pairs]
    for name in names:
        if not _REGION_NAME.fullmatch(name):
            raise ConfigurationError(f"{REGIONS_VARIABLE}={raw!r}: {name!r} is not a region name "
                                     "(for example us-east-1)")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ConfigurationError(f"{REGIONS_VARIABLE}={raw!r}: {', '.join(repeated)} given more than once")
    without = [name for name, url in pairs if not url]
    if without and len(without) < len(pairs):
        raise ConfigurationError(f"{REGIONS_VARIABLE}={raw!r}: no endpoint for {', '.join(without)} while "
                                 "other regions have one (give every region REGION=URL, or none)")
    return tuple(pairs)


def _place(raw: str, name: str) -> tuple[str, str | None] | None:
    """A `REGION` or `REGION=URL` setting (ORDERS_SWITCH, ORDERS_GATEWAY) as (region, endpoint or None)."""
    if not raw.strip():
        return None
    region, _, url = (part.strip() for part in raw.partition("="))
    if not _REGION_NAME.fullmatch(region):
        raise ConfigurationError(f"{name}={raw!r}: {region!r} is not a region name (for example us-east-2)")
    return region, url or None


@dataclass(frozen=True)
class Settings:
    """Everything configurable, read once from the environment by `from_env`."""

    env: str = "dev"
    region: str | None = "us-east-1"
    endpoint_url: str | None = None
    #: (SERVICE, url) for each AWS_ENDPOINT_URL_<SERVICE> (SERVICE as the SDK names it: SQS, DYNAMODB...).
    service_endpoint_urls: tuple[tuple[str, str], ...] = ()
    # Static credentials, for an emulator (which takes any); None: AWS's own credential chain.
    # Never read from the environment here: the chain does that, with profiles and roles.
    access_key_id: str | None = field(default=None, repr=False)
    secret_access_key: str | None = field(default=None, repr=False)
    control_url: str | None = None
    review_threshold: Decimal = Decimal("5000.00")
    reservation_ttl_seconds: int = 900
    alert_email: str | None = None
    alert_sms: str | None = None
    customer_email: str | None = None
    lambda_arn: str | None = None
    #: The one queue a Lambda consumer serves (orders.aws_lambda), as its template sets it.
    lambda_queue: str | None = None
    wait_time_seconds: int = 20
    polling_interval: float = 0.05
    prefetch_multiplier: int = 10
    batch_acks: bool = True
    #: kombu's own SQS transport instead of ours (benchmarks compare them): no poison guard, no heartbeat.
    stock_transport: bool = False
    #: Seconds a worker receives a message for, extended by a heartbeat while it holds it (0: the queue's).
    receive_visibility: int = 30
    failure_backoff_seconds: int = 5
    # An ack on a standard queue is off the order's path (the next step is already sent):
    # waiting 1 s lets a queue's acks share one DeleteMessageBatch even at a few orders/s.
    ack_linger: float = 1.0
    send_linger: float = 0.05
    receive_batch_wait: float = 0.25
    #: The same wait on a queue off the orders' path (topology: `off_order_path`, the notifications):
    #: a customer's message a second later, for receives and notification claims made together.
    off_path_receive_wait: float = 1.0
    #: Seconds a reservation waits for the others of its moment to be one transaction
    #: (orders.aws.reservations); 0: each reservation is its own transaction.
    reserve_linger: float = 0.02
    metrics_enabled: bool = True
    metrics_flush_seconds: float = 10.0
    dlq_watch_seconds: float = 60.0
    dlq_max_redrives: int = 3
    #: Automated remediation (orders.ops.remediation, orders.ops.sweeper): each with its off switch.
    auto_redrive: bool = True
    auto_redrive_max: int = 3
    auto_redrive_backoff_seconds: float = 60.0
    sweep_stuck: bool = True
    sweep_stuck_seconds: float = 300.0
    #: Seconds an order may rest in a state before the sweeper acts (0: the bound its step allows).
    sweep_stuck_after: float = 0.0
    sweep_max_orders: int = 50
    retry_backoff_max: int = 60
    #: How long a step retries a retryable error (from its first failure); its SQS sends wait out an outage
    #: as long.
    retry_budget_seconds: int = 600
    low_stock_threshold: int = 5
    reservation_sweep_seconds: float = 60.0
    #: Log lines as JSON, as text, or "auto": JSON unless written to a terminal (orders.runtime.logs).
    log_format: str = "auto"
    #: ORDERS_REGIONS: (region, its endpoint or None), the first the primary; () when unset (one region).
    region_endpoints: tuple[tuple[str, str | None], ...] = ()
    #: ORDERS_SWITCH: where the active-region switch lives (orders.aws.region_switch), outside every
    #: region of ORDERS_REGIONS; None: no switch, the primary is always the active region.
    switch_place: tuple[str, str | None] | None = None
    #: ORDERS_GATEWAY: where the payment processor (the simulated gateway's table) answers, outside every
    #: region (rule R3: its idempotency is global because the processor is); None: this region's endpoint.
    gateway_place: tuple[str, str | None] | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build settings from environment variables (documented in the README)."""
        env = os.environ if environ is None else environ
        return cls(
            env=_environment_name(env.get("ORDERS_ENV", "dev")),
            region=env.get("AWS_DEFAULT_REGION") or env.get("AWS_REGION"),
            endpoint_url=_optional(env, "AWS_ENDPOINT_URL"),
            service_endpoint_urls=_service_endpoints(env),
            control_url=_optional(env, "ORDERS_CONTROL_URL"),
            review_threshold=_decimal(
                env.get("ORDERS_REVIEW_THRESHOLD", "5000.00"), "ORDERS_REVIEW_THRESHOLD"
            ),
            reservation_ttl_seconds=_int(env.get("ORDERS_RESERVATION_TTL", "900"),
                                         "ORDERS_RESERVATION_TTL", low=1),
            alert_email=_optional(env, "ORDERS_ALERT_EMAIL"),
            alert_sms=_optional(env, "ORDERS_ALERT_SMS"),
            customer_email=_optional(env, "ORDERS_CUSTOMER_EMAIL"),
            lambda_arn=_optional(env, "ORDERS_LAMBDA_ARN"),
            lambda_queue=_optional(env, "ORDERS_LAMBDA_QUEUE"),
            # SQS accepts long polls of 0 to 20 seconds.
            wait_time_seconds=_int(env.get("ORDERS_WAIT_TIME_SECONDS", "20"),
                                   "ORDERS_WAIT_TIME_SECONDS", high=20),
            polling_interval=_float(
                env.get("ORDERS_POLLING_INTERVAL", "0.05"), "ORDERS_POLLING_INTERVAL"
            ),
            prefetch_multiplier=_int(env.get("ORDERS_PREFETCH_MULTIPLIER", "10"),
                                     "ORDERS_PREFETCH_MULTIPLIER", low=1),
            batch_acks=_flag(env.get("ORDERS_BATCH_ACKS", "1"), "ORDERS_BATCH_ACKS"),
            stock_transport=_flag(env.get("ORDERS_STOCK_TRANSPORT", "0"), "ORDERS_STOCK_TRANSPORT"),
            # SQS takes visibility timeouts of 0 to 12 hours.
            receive_visibility=_int(env.get("ORDERS_RECEIVE_VISIBILITY", "30"),
                                    "ORDERS_RECEIVE_VISIBILITY", high=43_200),
            failure_backoff_seconds=_int(env.get("ORDERS_FAILURE_BACKOFF", "5"),
                                         "ORDERS_FAILURE_BACKOFF", low=0),
            # orders.runtime.transport: how long an ack or a send waits for nine others to share
            # its batch call, and how long a queue that answered short is left to fill up.
            ack_linger=_float(env.get("ORDERS_ACK_LINGER", "1.0"), "ORDERS_ACK_LINGER"),
            send_linger=_float(env.get("ORDERS_SEND_LINGER", "0.05"), "ORDERS_SEND_LINGER"),
            receive_batch_wait=_wait(env.get("ORDERS_RECEIVE_BATCH_WAIT", "0.25"),
                                     "ORDERS_RECEIVE_BATCH_WAIT"),
            off_path_receive_wait=_wait(env.get("ORDERS_OFF_PATH_RECEIVE_WAIT", "1.0"),
                                        "ORDERS_OFF_PATH_RECEIVE_WAIT"),
            reserve_linger=_linger(env.get("ORDERS_RESERVE_LINGER", "0.02"), "ORDERS_RESERVE_LINGER"),
            metrics_enabled=_flag(env.get("ORDERS_METRICS", "1"), "ORDERS_METRICS"),
            metrics_flush_seconds=_float(env.get("ORDERS_METRICS_FLUSH_SECONDS", "10"),
                                         "ORDERS_METRICS_FLUSH_SECONDS"),
            dlq_watch_seconds=_float(env.get("ORDERS_DLQ_WATCH_SECONDS", "60"),
                                     "ORDERS_DLQ_WATCH_SECONDS"),
            dlq_max_redrives=_int(env.get("ORDERS_DLQ_MAX_REDRIVES", "3"),
                                  "ORDERS_DLQ_MAX_REDRIVES", low=0),
            auto_redrive=_flag(env.get("ORDERS_AUTO_REDRIVE", "1"), "ORDERS_AUTO_REDRIVE"),
            auto_redrive_max=_int(env.get("ORDERS_AUTO_REDRIVE_MAX", "3"), "ORDERS_AUTO_REDRIVE_MAX", low=0),
            auto_redrive_backoff_seconds=_float(env.get("ORDERS_AUTO_REDRIVE_BACKOFF", "60"),
                                                "ORDERS_AUTO_REDRIVE_BACKOFF"),
            sweep_stuck=_flag(env.get("ORDERS_SWEEP_STUCK", "1"), "ORDERS_SWEEP_STUCK"),
            sweep_stuck_seconds=_float(env.get("ORDERS_SWEEP_STUCK_SECONDS", "300"),
                                       "ORDERS_SWEEP_STUCK_SECONDS"),
            sweep_stuck_after=_float(env.get("ORDERS_SWEEP_STUCK_AFTER", "0"), "ORDERS_SWEEP_STUCK_AFTER"),
            sweep_max_orders=_int(env.get("ORDERS_SWEEP_MAX_ORDERS", "50"), "ORDERS_SWEEP_MAX_ORDERS", low=1),
            # The pipeline (orders.runtime.step_tasks): the longest pause between two retries of a
            # task, the stock level that raises a StockLow alert, how often beat sweeps
            # expired reservations.
            retry_backoff_max=_int(env.get("ORDERS_RETRY_BACKOFF_MAX", "60"),
                                   "ORDERS_RETRY_BACKOFF_MAX", low=1),
            retry_budget_seconds=_int(env.get("ORDERS_RETRY_BUDGET", "600"),
                                      "ORDERS_RETRY_BUDGET", low=1, high=3600),
            low_stock_threshold=_int(env.get("ORDERS_LOW_STOCK_THRESHOLD", "5"),
                                     "ORDERS_LOW_STOCK_THRESHOLD", low=0),
            reservation_sweep_seconds=_float(env.get("ORDERS_RESERVATION_SWEEP_SECONDS", "60"),
                                             "ORDERS_RESERVATION_SWEEP_SECONDS"),
            log_format=_choice(env.get("ORDERS_LOG_FORMAT", "auto"), "ORDERS_LOG_FORMAT", LOG_FORMATS),
            switch_place=_place(env.get("ORDERS_SWITCH", ""), "ORDERS_SWITCH"),
            gateway_place=_place(env.get("ORDERS_GATEWAY", ""), "ORDERS_GATEWAY"),
        )._with_regions(_regions(env.get(REGIONS_VARIABLE, "")), env.get("ORDERS_REGION") or None)

    def _with_regions(self, pairs: tuple[tuple[str, str | None], ...], own: str | None) -> Settings:
        """With ORDERS_REGIONS set, the settings are those of ORDERS_REGION (this process's region: a
        worker's, a producer's home), by default the primary (the first)."""
        if not pairs:
            if own:
                raise ConfigurationError(f"ORDERS_REGION={own!r} is set without {REGIONS_VARIABLE}")
            return self
        several = replace(self, region_endpoints=pairs)
        if own and own not in several.regions:
            raise ConfigurationError(f"ORDERS_REGION={own!r} is not one of {REGIONS_VARIABLE} "
                                     f"({', '.join(several.regions)})")
        return several.for_region(own or pairs[0][0])

    @property
    def regions(self) -> tuple[str, ...]:
        """The regions of this deployment, the primary first: ORDERS_REGIONS, else this region alone."""
        if self.region_endpoints:
            return tuple(name for name, _ in self.region_endpoints)
        return (self.region,) if self.region else ()

    def for_region(self, name: str) -> Settings:
        """The same settings (environment, names, everything) in region `name`, with its endpoint if it has
        one (which then replaces AWS_ENDPOINT_URL*)."""
        if name not in self.regions:
            raise ConfigurationError(f"Region {name!r} is not one of {REGIONS_VARIABLE} "
                                     f"({', '.join(self.regions) or 'unset'})")
        return self._at((name, dict(self.region_endpoints).get(name)))

    @property
    def primary(self) -> str | None:
        """The region that is active when no switch says otherwise: the first of ORDERS_REGIONS."""
        return self.regions[0] if self.regions else None

    @property
    def multi_region(self) -> bool:
        """Whether this deployment spans several regions (ORDERS_REGIONS with two or more)."""
        return len(self.regions) > 1

    @property
    def other_regions(self) -> tuple[str, ...]:
        """The deployment's regions other than this one (none in a deployment of one region)."""
        return tuple(name for name in self.regions if name != self.region)

    @property
    def switched(self) -> bool:
        """Whether an active-region switch decides who works: several regions and ORDERS_SWITCH."""
        return self.multi_region and self.switch_place is not None

    def switch_settings(self) -> Settings | None:
        """These settings where the active-region switch lives (ORDERS_SWITCH), None without one."""
        return self._at(self.switch_place) if self.switch_place else None

    def gateway_settings(self) -> Settings:
        """These settings where the payment processor answers (ORDERS_GATEWAY), else these settings."""
        return self._at(self.gateway_place) if self.gateway_place else self

    def _at(self, place: tuple[str, str | None]) -> Settings:
        region, url = place
        if url is None:
            return replace(self, region=region)
        return replace(self, region=region, endpoint_url=url, service_endpoint_urls=())

    @property
    def prefix(self) -> str:
        """What every AWS resource name of this environment starts with."""
        return f"{self.env}-"

    @property
    def has_endpoint(self) -> bool:
        return bool(self.endpoint_url or self.service_endpoint_urls)

    def endpoint_for(self, service: str) -> str | None:
        """The endpoint of one service (its SDK name: 'SQS', 'DYNAMODB'...), else the general one."""
        return dict(self.service_endpoint_urls).get(service) or self.endpoint_url

    @property
    def sqs_endpoint_url(self) -> str | None:
        """AWS_ENDPOINT_URL_SQS alone (None when SQS follows AWS_ENDPOINT_URL)."""
        return dict(self.service_endpoint_urls).get("SQS")

    def with_credentials(self, access_key_id: str, secret_access_key: str) -> Settings:
        """These settings with static credentials (an emulator's), instead of AWS's chain."""
        return replace(self, access_key_id=access_key_id, secret_access_key=secret_access_key)

    def require_region(self) -> None:
        if not self.region:
            raise ConfigurationError(
                "No AWS region: set AWS_DEFAULT_REGION (for example us-east-1)."
            )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (read once; tests build their own with `from_env`)."""
    return Settings.from_env()


def child_environment(overrides: Mapping[str, str] | None = None,
                      defaults: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a child process: this one's, over `defaults`, under `overrides`.

    Children get their settings this way, explicitly; this process's own environment
    is never changed. An AWS_ENDPOINT_URL in `overrides` replaces the inherited one with its
    per-service companions (the emulator's AWS_ENDPOINT_URL_DYNAMODB...): left in, they would
    still send those services to the endpoint being replaced.
    """
    inherited = dict(os.environ)
    if overrides and "AWS_ENDPOINT_URL" in overrides:
        prefix = SERVICE_ENDPOINT.removesuffix("<SERVICE>")
        inherited = {name: value for name, value in inherited.items() if not name.startswith(prefix)}
    return {**(defaults or {}), **inherited, **(overrides or {})}
