"""Celery's messaging helpers (`app.amqp`), made to follow the app's configuration.

Stock Celery builds its broker and producer pools and the dispatcher of task-sent
events once, from the configuration of the moment, and keeps them: an app pointed
at another environment (`OrdersCelery.reconfigure`) would go on sending into the
old one unless someone reset Celery's private attributes. Here each is kept
together with the configuration it was built from and rebuilt when that changes
(or after a fork), so pointing the app elsewhere is only changing its configuration.

Every task message it builds describes its arguments with orders.runtime.redaction
(`argsrepr`, `kwargsrepr`): never the order, whoever sends it (a producer, the chain's
hand-off, a retry, which Celery re-sends with a repr of the arguments otherwise).

The pools are our own, not kombu's process-wide pool groups (`kombu.pools`): those key a
connection by its URL and the repr of its transport options, where our transport's
credentials do not show (Settings hides them), so connections that differ only in
credentials would share one pool and send with whichever caller came first.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from functools import partial
from typing import Any, Generic, TypeVar

from celery.app import amqp as celery_amqp
from kombu.pools import ProducerPool

from orders.runtime.config import broker_url, transport_options
from orders.runtime.redaction import describe
from orders.settings import Settings

T = TypeVar("T")


def _same(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
    # Configuration objects by identity: comparing the transport options by value would
    # look every queue URL up (QueueUrls is a lazily resolved mapping).
    return len(a) == len(b) and all(x is y or (isinstance(x, (str, int)) and type(x) is type(y) and x == y)
                                    for x, y in zip(a, b, strict=True))


class Rebuilt(Generic[T]):
    """One object built from some configuration; built again when that changes or after a fork."""

    def __init__(self, build: Callable[[], T], close: Callable[[T], Any] | None = None):
        self._build = build
        self._close = close
        self._lock = threading.Lock()
        self._key: tuple[Any, ...] = ()
        self._value: T | None = None

    def get(self, *configuration: Any) -> T:
        """The object for this configuration (the previous one is closed, in this process only)."""
        key = (os.getpid(), *configuration)
        with self._lock:
            old_key, old = self._key, self._value
            if old is not None and _same(old_key, key):
                return old
            self._key, self._value = key, self._build()
            value = self._value
        if old is not None and self._close is not None and old_key[0] == key[0]:
            self._close(old)
        return value


class AMQP(celery_amqp.AMQP):
    """Celery's AMQP helpers whose pools and task-sent dispatcher follow the configuration."""

    def __init__(self, app: Any):
        super().__init__(app)
        self._connections: Rebuilt[Any] = Rebuilt(self._new_connection_pool)
        self._producers: Rebuilt[ProducerPool] = Rebuilt(lambda: _producers(self.connection_pool))
        self._sent_events: Rebuilt[Any] = Rebuilt(
            lambda: self.app.events.Dispatcher(enabled=False), close=lambda d: d.close())
        self._pools_for: dict[Settings, ProducerPool] = {}
        self._pools_for_pid = os.getpid()
        self._pools_for_lock = threading.Lock()

    def _broker(self) -> tuple[Any, ...]:
        # Both change together in orders.runtime.config (and these look-ups are cheap:
        # this runs on every send).
        conf = self.app.conf
        return conf.get("broker_url"), conf.get("broker_transport_options")

    @property
    def connection_pool(self) -> Any:
        """The broker connection pool (`app.pool`) of the configuration in force."""
        return self._connections.get(*self._broker())

    @property  # type: ignore[override]
    def producer_pool(self) -> Any:
        """The producer pool of the configuration in force (Celery's is built once and kept)."""
        return self._producers.get(*self._broker())

    @property  # type: ignore[override]
    def send_task_message(self) -> Callable[..., Any]:
        """Celery's task sender, its task-sent events going to the control plane in force."""
        conf = self.app.conf
        dispatcher = self._sent_events.get(conf.get("orders_control_url"), conf.get("orders_control_prefix"))
        # A caller's own event_dispatcher (an apply_async option) still wins over this one.
        return partial(super().send_task_message, event_dispatcher=dispatcher)

    def as_task_v2(self, task_id: str, name: str, args: Any = None, kwargs: Any = None,
                   *more: Any, **options: Any) -> Any:
        """Celery's task message, with our argsrepr/kwargsrepr for the tasks that carry an order or events."""
        described = describe(name, args or (), kwargs or {})
        if described is not None:
            options["argsrepr"], options["kwargsrepr"] = described
        return super().as_task_v2(task_id, name, args, kwargs, *more, **options)

    def producer_pool_for(self, settings: Settings) -> ProducerPool:
        """A producer pool into `settings`' environment, whatever the app is configured for.

        One per distinct settings, credentials included (two APIs in one process, bound to
        settings with different AWS keys, each send with their own), for the life of the process.
        """
        with self._pools_for_lock:
            if self._pools_for_pid != os.getpid():  # a forked child: the parent's connections are not its own
                self._pools_for, self._pools_for_pid = {}, os.getpid()
            pool = self._pools_for.get(settings)
            if pool is None:
                connection = self.app.connection_for_write(broker_url(settings),
                                                           transport_options=transport_options(settings))
                pool = self._pools_for[settings] = _producers(self._new_connection_pool(connection))
            return pool

    def _new_connection_pool(self, connection: Any = None) -> Any:
        """A connection pool over `connection` (default: the app's configuration's)."""
        if connection is None:
            connection = self.app.connection_for_write()
        return connection.Pool(limit=self.app.conf.broker_pool_limit)


def _producers(connections: Any) -> ProducerPool:
    """A producer pool over a connection pool, as large as it (as Celery sizes its own)."""
    return ProducerPool(connections, limit=connections.limit)
