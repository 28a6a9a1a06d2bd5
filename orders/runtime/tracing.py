"""Tracing with OpenTelemetry, switched by the SDK's standard variables: one trace per order.

Off unless `OTEL_TRACES_EXPORTER` names an exporter (`console`, `otlp`, or both,
comma-separated) and `OTEL_SDK_DISABLED` is not `true`. Off means off: this module
then imports nothing of OpenTelemetry, installs no provider, patches nothing, and
its hooks (`inject`, `message_attributes`, `publishing`) return at once. On, each
process sets the SDK up once (orders.runtime.tracing_sdk): a prefork worker's
children after the fork (`worker_process_init`), a solo or threads worker at
`worker_init`, and any other process (the API, a producer calling
`place_order.delay()`) when it imports the Celery app. Every other setting
(`OTEL_SERVICE_NAME`, `OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_BSP_*`, ...) is read by
the SDK itself.

The context travels in every task message's headers (opentelemetry-instrumentation-celery:
each hop of a chain, a retry or a compensation branch is published inside the
span of the task that sends it, so it is that span's child), and, for the SNS
fan-out, in the `traceparent` message attribute of each published event and in
the headers of the task message that SNS delivers to the notifications queue.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Mapping, MutableMapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from celery import signals

from orders.domain.events import Event


@dataclass(frozen=True)
class TracingConfig:
    """What the OTEL_* variables say about tracing in this process."""

    exporters: tuple[str, ...] = ()
    sdk_disabled: bool = False
    #: OTEL_PYTHON_DISABLED_INSTRUMENTATIONS: `botocore` leaves AWS calls out (see docs/monitoring.md).
    disabled_instrumentations: frozenset[str] = frozenset()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> TracingConfig:
        # The OTEL_* variables belong to the OpenTelemetry SDK, which reads the rest of them
        # itself: only those that decide whether to load it, and what to instrument, are read here.
        env = os.environ if environ is None else environ
        return cls(exporters=tuple(n for n in _names(env, "OTEL_TRACES_EXPORTER") if n != "none"),
                   sdk_disabled=env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true",
                   disabled_instrumentations=frozenset(_names(env, "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS")))

    @property
    def enabled(self) -> bool:
        return bool(self.exporters) and not self.sdk_disabled


def _names(env: Mapping[str, str], variable: str) -> list[str]:
    return [n.strip().lower() for n in env.get(variable, "").split(",") if n.strip()]


_config = TracingConfig()
_started_in: int | None = None  # the pid of the process whose SDK is set up


def install() -> None:
    """Hook tracing into this Celery process; nothing at all unless the variables turn it on."""
    global _config
    _config = TracingConfig.from_env()
    if not _config.enabled:
        return
    signals.worker_init.connect(_start_in_worker, weak=False, dispatch_uid="orders.tracing.worker")
    signals.worker_process_init.connect(_start, weak=False, dispatch_uid="orders.tracing.child")
    signals.worker_process_shutdown.connect(_flush, weak=False, dispatch_uid="orders.tracing.flush")
    if "celery.bin.celery" not in sys.modules:
        # Not a `celery` command (whose worker sets up after forking, above): the API, a
        # producer, a test process. Set up now, so its first `delay()` is traced.
        start()


def start() -> None:
    """Set the SDK up in this process (once; again in a forked child)."""
    global _started_in
    if not _config.enabled or _started_in == os.getpid():
        return
    from orders.runtime import tracing_sdk

    tracing_sdk.setup(_config.exporters, instrument_aws="botocore" not in _config.disabled_instrumentations)
    _started_in = os.getpid()


def active() -> bool:
    """Whether spans are recorded in this process."""
    return _started_in is not None and _started_in == os.getpid()


def _start(**_: Any) -> None:
    start()


def _start_in_worker(sender: Any = None, **_: Any) -> None:
    # A prefork worker's parent only forks, receives and acks: its children trace.
    pool = getattr(sender, "pool_cls", None)  # a name, or the class (celery.concurrency.prefork.TaskPool)
    if "prefork" not in (pool if isinstance(pool, str) else getattr(pool, "__module__", "")):
        start()


def _flush(**_: Any) -> None:
    # A pool process can end without running atexit handlers: export what it holds first.
    if active():
        from orders.runtime import tracing_sdk

        tracing_sdk.flush()


def inject(headers: MutableMapping[str, Any]) -> None:
    """Put the current trace context into a task message's headers (a message this process renders
    itself rather than publishing it through Celery: the one SNS delivers to SQS)."""
    if active():
        from orders.runtime import tracing_sdk

        tracing_sdk.inject(headers)


def message_attributes() -> dict[str, dict[str, str]]:
    """SNS/SQS message attributes carrying the current trace context (`traceparent`); {} when off."""
    if not active():
        return {}
    from orders.runtime import tracing_sdk

    return tracing_sdk.message_attributes()


@contextmanager
def publishing(events: Sequence[Event]) -> Iterator[None]:
    """A producer span around publishing `events` to SNS; nothing when off."""
    if not active():
        yield
        return
    from orders.runtime import tracing_sdk

    with tracing_sdk.publish_span(events):
        yield
