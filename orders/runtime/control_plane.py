"""Monitoring and remote control over a control plane beside SQS (Redis: embedded, or ElastiCache).

SQS has no fanout, so stock Celery on SQS sends no events and answers no
remote-control command: Flower, `celery events` and `celery inspect` see
nothing. With `ORDERS_CONTROL_URL` set, events and control messages travel over
that URL instead, while every task message still goes through SQS:

- `app.connection()` without arguments is the control plane (Flower captures
  events and sends commands through it); `connection_for_read/for_write`, the
  broker pool and `task.delay` stay on SQS;
- `Control` and `Events` below swap any SQS connection they are handed for a
  control-plane one, so Celery's and Flower's tools work unchanged;
- in the worker (`orders.runtime.control_plane_worker`), events are published and
  control commands received on threads of their own: the event loop that
  consumes SQS never waits on Redis, and a Redis outage only degrades monitoring.

Without `ORDERS_CONTROL_URL`, everything is stock and the monitoring commands
say what to set.
"""

from __future__ import annotations

import logging
import threading
from contextlib import contextmanager
from typing import Any

from celery.app import control as celery_control
from celery.app import events as celery_events
from celery.events import receiver as celery_receiver
from celery.exceptions import ImproperlyConfigured
from kombu import Connection, pidbox
from kombu.connection import is_connection
from kombu.exceptions import OperationalError
from kombu.utils.objects import cached_property

logger = logging.getLogger("orders.runtime.control_plane")

NOT_CONFIGURED = (
    "monitoring and remote control need a control plane: SQS has no fanout, so workers cannot "
    "receive broadcast commands or send events over it. Set ORDERS_CONTROL_URL to a Redis URL "
    "(`orders emulator` prints one; on AWS, an ElastiCache endpoint such as "
    "rediss://master.orders-control.xxxxxx.use1.cache.amazonaws.com:6379/0)."
)

#: Fail fast and never hang on the control plane: one quick reconnect, short socket timeouts.
TRANSPORT_OPTIONS: dict[str, Any] = {
    "max_retries": 1,
    "interval_start": 0.2,
    "interval_step": 0,
    "interval_max": 0.2,
    "socket_connect_timeout": 2,
    "socket_timeout": 5,
    "socket_keepalive": True,
}
CONNECT_TIMEOUT = 2.0


class MonitoringNotConfigured(ImproperlyConfigured):
    """A monitoring feature was used without ORDERS_CONTROL_URL."""

    def __init__(self, message: str = NOT_CONFIGURED):
        super().__init__(message)


def control_url(app: Any) -> str | None:
    """The control plane's URL for this app (from ORDERS_CONTROL_URL), or None."""
    return app.conf.get("orders_control_url") or None


def control_connection(app: Any, connect_timeout: float | None = None) -> Connection:
    """A new, lazy connection to the control plane (no I/O until first used)."""
    url = control_url(app)
    if not url:
        raise MonitoringNotConfigured()
    # Every key and channel is prefixed with the environment: `celery control shutdown`
    # in one environment never reaches the workers of another sharing the same Redis.
    prefix = f"orders:{app.conf.get('orders_control_prefix') or ''}"
    return Connection(url, connect_timeout=connect_timeout or CONNECT_TIMEOUT,
                      transport_options={**TRANSPORT_OPTIONS, "global_keyprefix": prefix})


def fanout_capable(conn_or_channel: Any) -> bool:
    """Whether events and broadcasts can travel over this connection (SQS: no; Redis: yes)."""
    conn = conn_or_channel if is_connection(conn_or_channel) else conn_or_channel.connection.client
    return bool(conn.supports_exchange_type("fanout"))


def monitoring_connection(app: Any, conn_or_channel: Any = None) -> Any:
    """What events and control should use instead of `conn_or_channel`.

    A fanout-capable connection or channel someone chose is kept; none, or an SQS
    one, becomes a new control-plane connection (or a clear error without one).
    """
    if conn_or_channel is not None and fanout_capable(conn_or_channel):
        return conn_or_channel
    if control_url(app) is None and conn_or_channel is not None:
        return conn_or_channel  # stock behaviour on SQS: nothing to swap to
    return control_connection(app)


class ControlPlaneApp:
    """Mixin for the Celery app: control and events over the control plane, tasks over SQS."""

    # Celery takes a class or its dotted name here; its stubs know only the class.
    control_cls: Any = "orders.runtime.control_plane:Control"
    events_cls: Any = "orders.runtime.control_plane:Events"

    @property
    def control_url(self) -> str | None:
        return control_url(self)

    def control_connection(self, connect_timeout: float | None = None) -> Connection:
        return control_connection(self, connect_timeout)

    def connection(self, hostname: str | None = None, *args: Any, **kwargs: Any) -> Connection:
        """The control plane when called without a URL (Flower's use), else Celery's broker connection."""
        if hostname is None and not args and self.control_url:
            return self.control_connection(kwargs.get("connect_timeout"))
        return super().connection(hostname, *args, **kwargs)  # type: ignore[misc]

    @cached_property
    def Worker(self) -> Any:  # noqa: N802 (Celery's name)
        return self.subclass_with_self("orders.runtime.control_plane_worker:Worker")  # type: ignore[attr-defined]

    @cached_property
    def Beat(self) -> Any:  # noqa: N802 (Celery's name)
        return self.subclass_with_self("orders.runtime.control_plane_worker:Beat")  # type: ignore[attr-defined]


class Mailbox(pidbox.Mailbox):
    """kombu's mailbox, always publishing with a producer on the channel it is given."""

    def __init__(self, *args: Any, producer_pool: Any = None, **kwargs: Any):
        # Stock control hands over the broker's (SQS) producer pool, which has no fanout;
        # without one, kombu publishes on the control-plane channel of the broadcast.
        super().__init__(*args, **kwargs)


class Control(celery_control.Control):
    """Celery's remote control, broadcasting over the control plane instead of SQS."""

    Mailbox = Mailbox

    def broadcast(self, command: str, arguments: Any = None, destination: Any = None,
                  connection: Any = None, reply: bool = False, timeout: float = 1.0,
                  limit: int | None = None, callback: Any = None, channel: Any = None,
                  pattern: str | None = None, matcher: Any = None, **extra: Any) -> Any:
        """Send a command to the workers (and collect replies) over the control plane."""
        options = dict(arguments=arguments, destination=destination, reply=reply, timeout=timeout,
                       limit=limit, callback=callback, pattern=pattern, matcher=matcher, **extra)
        if connection is not None and fanout_capable(connection):
            return super().broadcast(command, connection=connection, channel=channel, **options)
        if channel is not None and fanout_capable(channel):
            return super().broadcast(command, connection=channel.connection.client, channel=channel,
                                     **options)
        with control_connection(self.app) as conn:
            unreachable: Any = (OperationalError, *conn.connection_errors)
            try:
                return super().broadcast(command, connection=conn, **options)
            except unreachable as exc:
                raise OperationalError(
                    f"the control plane {conn.as_uri()} (ORDERS_CONTROL_URL) is unreachable: "
                    f"{str(exc).rstrip('.')}. "
                    "Workers keep processing tasks from SQS; only monitoring and remote control wait "
                    "for it.") from exc


class Events(celery_events.Events):
    """Celery's events, sent and received over the control plane."""

    dispatcher_cls = "orders.runtime.control_plane_worker:EventDispatcher"
    receiver_cls = "orders.runtime.control_plane:EventReceiver"

    @contextmanager
    def default_dispatcher(self, hostname: str | None = None, enabled: bool = True,
                           buffer_while_offline: bool = False) -> Any:
        """A dispatcher for one-off events (`task.send_event`); on the control plane when there is one."""
        if not control_url(self.app):
            with super().default_dispatcher(hostname, enabled, buffer_while_offline) as dispatcher:
                yield dispatcher
            return
        with self.Dispatcher(control_connection(self.app), hostname, enabled, None,
                             buffer_while_offline) as dispatcher:
            yield dispatcher


class EventReceiver(celery_receiver.EventReceiver):
    """Celery's event receiver (`celery events`), listening on the control plane."""

    def __init__(self, channel: Any, *args: Any, **kwargs: Any):
        app = kwargs.get("app") or self.app
        if control_url(app) is None:
            raise MonitoringNotConfigured()
        super().__init__(monitoring_connection(app, channel), *args, **kwargs)


class Health:
    """Whether this process reaches the control plane; says so once per outage, not per event."""

    def __init__(self, where: str):
        self.where = where
        self.down = False
        self.dropped = 0
        self._lock = threading.Lock()

    def failed(self, exc: BaseException) -> None:
        with self._lock:
            first, self.down = not self.down, True
        if first:
            logger.warning(
                "orders: monitoring degraded: the control plane %s is unreachable (%s: %s). Tasks keep "
                "flowing on SQS; events and remote control (Flower, celery inspect/events) pause "
                "until it is back.", self.where, type(exc).__name__, exc)

    def drop(self, count: int = 1) -> None:
        with self._lock:
            self.dropped += count

    def ok(self) -> None:
        with self._lock:
            was_down, dropped = self.down, self.dropped
            self.down, self.dropped = False, 0
        if was_down:
            logger.warning("orders: monitoring restored: the control plane %s is reachable again "
                           "(%d events were dropped meanwhile).", self.where, dropped)


_healths: dict[str, Health] = {}
_healths_lock = threading.Lock()


def health(conn: Connection) -> Health:
    """The one Health of this process for a control-plane URL."""
    where = conn.as_uri()
    with _healths_lock:
        return _healths.setdefault(where, Health(where))
