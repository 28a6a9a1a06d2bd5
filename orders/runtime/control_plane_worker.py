"""The worker's side of the control plane: events and remote control off the event loop.

Celery runs the SQS consumer, acks, events and remote control on one event
loop. Here nothing on that loop waits on the control plane:

- `EventDispatcher` only queues an event; a background batcher's thread
  (orders.aws.background) publishes it, and drops events (counted, logged once)
  while Redis is unreachable;
- `RemoteControl` replaces Celery's Control step (which SQS cannot run: no
  fanout). A thread consumes the worker's pidbox on the control plane and hands
  each command to the loop (`hub.call_soon`), where Celery's handlers run as
  they do on RabbitMQ; replies go back through a background batcher's thread
  with a connection of its own, so the listening thread waits for commands a
  whole LISTEN_SECONDS at a time instead of waking to look for replies (at 20
  wake-ups a second, six idle workers spent 18 ms of CPU a second on it).

Zero SQS calls are added per task: events and commands never touch SQS.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Mapping
from itertools import groupby
from typing import Any

from celery import bootsteps
from celery.apps import beat as celery_beat
from celery.apps import worker as celery_worker
from celery.events import dispatcher as celery_dispatcher
from celery.utils.collections import AttributeDict
from celery.utils.functional import pass1
from celery.worker import control as worker_control
from celery.worker.consumer import Consumer as CeleryConsumer
from kombu import Connection, Producer
from kombu.exceptions import EncodeError
from kombu.pidbox import Node

from orders.aws.background import BackgroundBatcher
from orders.runtime.control_plane import control_connection, control_url, fanout_capable, health

logger = logging.getLogger("orders.runtime.control_plane")

#: Events waiting for the publishing thread; beyond this they are dropped, never blocking the loop.
MAX_PENDING_EVENTS = 10_000
#: At most this many queued events travel in one message.
MAX_EVENTS_PER_MESSAGE = 100
#: How long an event waits for others before it goes. A task's received, started and succeeded
#: events come within this at low rates and travel as one message: a third of the Redis PUBLISH,
#: which cost a worker a tenth of its CPU at 3 orders/s; monitoring sees them this much later.
EVENTS_LINGER = 0.25
#: After a failure, events are dropped for this long before the next try.
RETRY_SECONDS = 2.0
MAX_BACKOFF_SECONDS = 10.0
#: How long the pidbox thread waits for a command at a time (only how soon it sees a stop).
LISTEN_SECONDS = 1.0
#: Replies waiting for their thread; a worker answers a few per command.
MAX_PENDING_REPLIES = 1000
#: The one target of an event sender's batcher: the dispatcher's exchange.
EVENTS = "events"


class EventDispatcher(celery_dispatcher.EventDispatcher):
    """Celery's event dispatcher; on the control plane, `Sender` publishes off the caller's thread."""

    def __init__(self, connection: Any = None, hostname: str | None = None, enabled: bool = True,
                 channel: Any = None, *args: Any, **kwargs: Any):
        app = kwargs.get("app") or self.app
        sqs_or_none = (connection or channel) is None or not fanout_capable(connection or channel)
        if control_url(app) and sqs_or_none:
            connection, channel = control_connection(app), None
        self._sender: Sender | None = None
        super().__init__(connection, hostname, enabled, channel, *args, **kwargs)
        if self.connection is not None and fanout_capable(self.connection):
            self._sender = Sender(self.connection, self)
            # Only the sender's thread connects. Celery's event loop looks at
            # `dispatcher.connection` (for AMQP heartbeats) and would connect it there.
            self.connection = None

    def _publish(self, event: Any, producer: Any, routing_key: str, **kwargs: Any) -> None:
        if self._sender is None:
            return super()._publish(event, producer, routing_key, **kwargs)  # type: ignore[misc]
        self._sender.put(event, routing_key)
        return None

    def close(self) -> None:
        super().close()
        if self._sender is not None:
            self._sender.close()


class Sender:
    """Publishes a dispatcher's events on the control plane from a background batcher's thread.

    Its specifics: events are coalesced into `<group>.multi` messages, a queue full
    of events (Redis unreachable for long) drops new ones, and after a failed publish
    events are dropped for RETRY_SECONDS before the next try.
    """

    def __init__(self, connection: Connection, dispatcher: EventDispatcher):
        self.connection = connection.clone()  # used only by the batcher's thread
        self.dispatcher = dispatcher
        self.health = health(connection)
        self._pid = os.getpid()
        self._producer: Producer | None = None
        self._retry_at = 0.0
        self._batcher: BackgroundBatcher[str, tuple[Any, str]] = BackgroundBatcher(
            "orders-control-plane-events", self._send, linger=EVENTS_LINGER, max_items=MAX_EVENTS_PER_MESSAGE,
            max_pending=MAX_PENDING_EVENTS)

    def put(self, event: Any, routing_key: str) -> None:
        """Queue an event (never waits: the caller is Celery's event loop)."""
        try:
            kept = self._batcher.submit(EVENTS, (event, routing_key))
        except RuntimeError:  # closed: a stopping worker's late event
            return
        if not kept:
            self.health.drop()

    def close(self, timeout: float = 1.0) -> None:
        """Send what is queued (briefly: a shutting-down worker's last events), then stop."""
        if self._batcher.close(timeout) and self._pid == os.getpid():
            _quietly(self.connection.release)

    def _send(self, _target: str, items: list[tuple[Any, str]]) -> None:
        if self._pid != os.getpid():
            # A forked child (a prefork pool process sending a chain's next task) has its own connection.
            self._pid, self._producer, self._retry_at = os.getpid(), None, 0.0
            self.connection = self.connection.clone()
        for routing_key, body in coalesce(items):
            self._publish(body, routing_key)

    def _publish(self, body: Any, routing_key: str) -> None:
        """Publish one message; after a failure, drop events until RETRY_SECONDS have passed."""
        count = len(body) if isinstance(body, list) else 1
        if time.monotonic() < self._retry_at:
            self.health.drop(count)
            return
        d: Any = self.dispatcher  # the stubs lack its attributes
        try:
            self._producer = self._producer or Producer(self.connection, auto_declare=False)
            self._producer.publish(body, routing_key=routing_key, exchange=d.exchange.name,
                                   declare=[d.exchange], serializer=d.serializer, headers=d.headers,
                                   delivery_mode=d.delivery_mode)
        except Exception as exc:  # any failure only costs monitoring, never a task
            self.health.failed(exc)
            self.health.drop(count)
            self.connection = renewed(self.connection)
            self._retry_at = time.monotonic() + RETRY_SECONDS
            self._producer = None
            return
        self.health.ok()



def coalesce(items: list[tuple[Any, str]]) -> list[tuple[str, Any]]:
    """(routing key, body) messages for queued events: runs of one group become one `<group>.multi` list.

    Celery's own dispatcher sends task events this way; receivers (Flower) take a list body as
    several events. Under load this turns a few Redis PUBLISH per task into a fraction of one.
    """
    messages: list[tuple[str, Any]] = []
    for group, grouped in groupby(items, key=lambda item: item[1].split(".", 1)[0]):
        run = list(grouped)
        if len(run) == 1:
            event, routing_key = run[0]
            messages.append((routing_key, event))
        else:
            events = [e for event, _ in run for e in (event if isinstance(event, list) else [event])]
            messages.append((f"{group}.multi", events))
    return messages


class LoopNode(Node):
    """A pidbox node whose replies are sent by `Replies`' thread, never by the loop that handles commands."""

    def __init__(self, *args: Any, replies: Replies, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.replies = replies

    def reply(self, data: Any, exchange: Any, routing_key: Any, ticket: Any, **kwargs: Any) -> None:
        self.replies.put(self.mailbox, (data, exchange, routing_key, ticket))


class Replies:
    """Sends remote-control replies on the control plane from a background batcher's thread."""

    def __init__(self, connection: Connection):
        self.connection = connection  # used only by the batcher's thread
        self.health = health(connection)
        self._batcher: BackgroundBatcher[Any, tuple[Any, str, str, str]] = BackgroundBatcher(
            "orders-control-plane-replies", self._send, linger=0.0, max_pending=MAX_PENDING_REPLIES)

    def put(self, mailbox: Any, reply: tuple[Any, str, str, str]) -> None:
        """Queue a reply (never waits: the caller is Celery's event loop); dropped once closed."""
        try:
            self._batcher.submit(mailbox, reply)
        except RuntimeError:  # closed: a stopping worker's late reply
            return

    def close(self, timeout: float = 1.0) -> None:
        if self._batcher.close(timeout):
            _quietly(self.connection.release)

    def _send(self, mailbox: Any, replies: list[tuple[Any, str, str, str]]) -> None:
        for reply in replies:
            try:
                self._publish(mailbox, *reply)
            except Exception:  # a connection gone stale while the control plane restarted: once more
                self.connection = renewed(self.connection)
                try:
                    self._publish(mailbox, *reply)
                except Exception as exc:  # a lost reply only costs the caller its answer (it times out)
                    self.health.failed(exc)
                    self.connection = renewed(self.connection)
                    return
        self.health.ok()


    def _publish(self, mailbox: Any, data: Any, exchange: str, routing_key: str, ticket: str) -> None:
        channel = self.connection.default_channel
        try:
            mailbox._publish_reply(data, exchange, routing_key, ticket, channel=channel,
                                   serializer=mailbox.serializer)
        except EncodeError:
            # `stats` carries the broker's transport options, where kombu's
            # predefined_queues is our lazy Mapping: send it as plain JSON.
            mailbox._publish_reply(jsonable(data), exchange, routing_key, ticket, channel=channel,
                                   serializer=mailbox.serializer)


class RemoteControl(bootsteps.StartStopStep):
    """Remote control over the control plane, in place of Celery's Control step (SQS has no fanout)."""

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def __init__(self, c: Any, **kwargs: Any):
        self.node: LoopNode | None = None
        self.listener: Listener | None = None
        super().__init__(c, **kwargs)

    def _node(self, c: Any) -> LoopNode:
        return LoopNode(
            c.hostname, handlers=worker_control.Panel.data, mailbox=c.app.control.mailbox,
            state=AttributeDict(app=c.app, hostname=c.hostname, consumer=c,
                                tset=pass1 if c.controller.use_eventloop else set),
            replies=Replies(control_connection(c.app)),
        )

    def include_if(self, c: Any) -> bool:
        return bool(control_url(c.app))

    def start(self, c: Any) -> None:
        run_on_loop = c.hub.call_soon if c.hub is not None else _call_now
        self.node = self._node(c)
        self.listener = Listener(control_connection(c.app), self.node, run_on_loop, c.app.clock.forward)
        self.listener.start()

    def stop(self, c: Any) -> None:
        if self.listener is not None:
            self.listener.stop()
            self.listener = None
        if self.node is not None:
            self.node.replies.close()
            self.node = None

    shutdown = stop


class Listener(threading.Thread):
    """Consumes the worker's pidbox on the control plane; reconnects with backoff, never on the loop."""

    def __init__(self, connection: Connection, node: LoopNode, run_on_loop: Any, forward_clock: Any):
        super().__init__(daemon=True, name="orders-control-plane-pidbox")
        self.connection = connection
        self.node = node
        self.run_on_loop = run_on_loop
        self.forward_clock = forward_clock
        self.health = health(connection)
        self._stopping = threading.Event()

    def stop(self) -> None:
        self._stopping.set()
        self.join(LISTEN_SECONDS * 2)

    def run(self) -> None:
        backoff = RETRY_SECONDS
        while not self._stopping.is_set():
            conn = self.connection.clone()
            try:
                self._serve(conn)
                backoff = RETRY_SECONDS
            except Exception as exc:  # any failure only costs monitoring, never a task
                self.health.failed(exc)
                self._stopping.wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
            finally:
                _quietly(conn.collect)

    def _serve(self, conn: Connection) -> None:
        conn.connect()
        channel = conn.channel()
        self.node.listen(channel=channel, callback=self._received)
        self.health.ok()
        while not self._stopping.is_set():
            try:
                conn.drain_events(timeout=LISTEN_SECONDS)
            except TimeoutError:  # socket.timeout: nothing arrived
                pass

    def _received(self, body: Any, message: Any) -> None:
        self.run_on_loop(self._handle, body, message)

    def _handle(self, body: Any, message: Any) -> None:
        """Runs on the worker's event loop, like Celery's own pidbox handler."""
        self.forward_clock()
        try:
            self.node.handle_message(body, message)
        except KeyError as exc:
            logger.error("No such control command: %s", exc)
        except Exception as exc:
            logger.error("Control command error: %r", exc, exc_info=True)


class Consumer(CeleryConsumer):
    """Celery's consumer: SQS for tasks, the control plane for events and remote control."""

    class Blueprint(CeleryConsumer.Blueprint):  # type: ignore[valid-type,misc]
        default_steps = [*CeleryConsumer.Blueprint.default_steps,
                         "orders.runtime.control_plane_worker:RemoteControl",
                         # Consumes only while its region is active (multi-region; nothing otherwise).
                         "orders.runtime.region_gate:RegionGate"]

    def connection_for_write(self, url: str | None = None, heartbeat: float | None = None) -> Any:
        # Only the Events step asks for this: events go to the control plane, lazily (no connect here).
        if url is None and control_url(self.app):
            return control_connection(self.app)
        return super().connection_for_write(url, heartbeat)


class Worker(celery_worker.Worker):
    """`celery worker` whose banner shows SQS as the transport and the control plane beside it."""

    def startup_info(self, artlines: bool = True) -> str:
        return _broker_first(self.app, super().startup_info(artlines), "transport:   ",
                             f"\n{' ' * 16}.> monitoring:  ")


class Beat(celery_beat.Beat):
    """`celery beat` whose banner shows SQS as the broker (its banner reads `app.connection()`)."""

    def startup_info(self, service: Any) -> str:
        return _broker_first(self.app, super().startup_info(service), ". broker -> ",
                             "\n    . monitoring -> ")


def _broker_first(app: Any, banner: str, label: str, monitoring_label: str) -> str:
    """The banner with the SQS broker where Celery printed `app.connection()` (the control plane)."""
    if not control_url(app):
        return banner
    plane = control_connection(app).as_uri()
    broker = app.connection_for_write().as_uri()
    return banner.replace(f"{label}{plane}", f"{label}{broker}{monitoring_label}{plane}", 1)


def jsonable(data: Any) -> Any:
    """`data` with mappings as dicts and anything else JSON cannot carry as its repr."""

    def default(obj: Any) -> Any:
        return dict(obj) if isinstance(obj, Mapping) else repr(obj)

    return json.loads(json.dumps(data, default=default))


def renewed(connection: Connection) -> Connection:
    """A fresh connection like `connection`, which is let go (a dead one's sockets included)."""
    _quietly(connection.collect)
    return connection.clone()


def _call_now(fun: Any, *args: Any) -> None:
    fun(*args)


def _quietly(fun: Any) -> None:
    try:
        fun()
    except Exception:  # closing a dead connection: nothing left to do
        pass
