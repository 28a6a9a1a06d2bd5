"""Our SQS transport: kombu's, poison-proof, with a heartbeat, batched acks and sends, full receives.

The broker URL `orders-sqs://` selects it, always; `ORDERS_BATCH_ACKS=0` turns off
the batching of acks and sends (one DeleteMessage and one SendMessage each, as kombu
does), and only `ORDERS_STOCK_TRANSPORT=1` runs kombu's stock SQS transport (for
benchmarks that compare the two). What changes, and why it keeps at-least-once
delivery:

- Acks. Celery acks on the worker's event-loop thread, and kombu's ack is a
  blocking DeleteMessage there, so with AWS round trips the loop, not the pool,
  caps a worker. Here `basic_ack` only queues the receipt handle and frees the
  prefetch slot; a background thread sends DeleteMessageBatch (10 handles, or
  after `ack_linger` seconds; at once on a FIFO queue, where a message group
  stays blocked until its message is deleted, so a linger would delay the
  group's next message; acks that arrive while a delete is in flight still
  share the next call). A failed entry is retried while the fault is
  SQS's, its message kept hidden by the heartbeat meanwhile, else logged and
  counted and the message is left for SQS to redeliver (tasks are
  idempotent). Pending acks are flushed when the channel closes (warm
  shutdown), before kombu restores the unacked messages. A SIGKILL loses at
  most `ack_linger` seconds of acks: those messages run again once their
  receive's visibility (below) runs out.
- Sends. A publish joins a SendMessageBatch with the other publishes of the
  process that go to the same queue within `send_linger` seconds (chain
  hand-offs of tasks that ran together), and the publishing thread waits until
  its own entry is confirmed: an entry that fails for good raises in the
  publisher, as a failed SendMessage would. Since a task's chain hand-off runs
  in the pool thread before the task returns, and Celery acks (acks_late) only
  after it returns, a message is never deleted before the hand-off it caused
  is stored in SQS. `batched_sends()` lets one thread publish many messages
  without waiting for each (fan-out, bulk placing).
- Receives. A ReceiveMessage that came back with fewer messages than asked for
  is followed, `receive_batch_wait` seconds later, by the next one, so a queue
  under moderate load is read ten messages at a time (a queue off the orders'
  path, the notifications, waits longer: its entry in `receive_batch_waits`,
  1 s by default); a full answer is followed at once; an empty queue is
  long-polled. A busy worker receives again only once ten messages (or half
  its prefetch) fit, not for every slot freed.
  A receive that fails (throttling, 5xx, no answer, even a permanent error) is
  an empty answer, logged sparingly and counted, and its queue's next receive
  waits a backoff (orders.runtime.async_sqs): it can never end consumption.
- Declares. Celery declares a queue on each new connection and kombu answers
  with its depth (a GetQueueAttributes): skipped, the queues are predefined.
- Poison. Every received message is read first as kombu and Celery will read it
  (orders.runtime.envelope); one that is not a task this worker knows never
  reaches them (where some shapes made the worker process exit, and Celery deleted
  others) but goes to its queue's DLQ at once, whole, with the reason
  (orders.runtime.quarantine). Should kombu or Celery still raise on a message,
  that message is quarantined the same way and the worker goes on. Receives ask for
  the messages' attributes, so that the DLQ copy keeps them. What that first reading
  parsed is handed on: kombu parsed the envelope again and Celery's event loop the body
  again (about a tenth of a no-op task's CPU in a worker, profiled with py-spy).
- Visibility. Receives hide messages for `receive_visibility` seconds (30, not the
  queue's 5 or 10 minutes), and a heartbeat extends those the worker holds
  (orders.runtime.visibility): a killed worker's messages come back within that
  time, and a long task is never redelivered while it runs. At warm shutdown the
  prefetched ones are made visible at once, in batches.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import kombu.transport
from amqp.protocol import queue_declare_ok_t
from celery import current_app
from kombu.serialization import prepare_accept_content
from kombu.transport import virtual
from kombu.transport.SQS import SQS_MAX_MESSAGES
from kombu.transport.SQS import Transport as SQSTransport

from orders.aws import clients
from orders.aws.batching import (
    RESULT_TIMEOUT,
    Batcher,
    delete_message_batch,
    existing,
    failures,
    message_size,
    send_message_batch,
    shared,
)
from orders.runtime import envelope
from orders.runtime.async_sqs import Channel as ReceivingChannel
from orders.runtime.envelope import Poison
from orders.runtime.quarantine import Quarantine
from orders.settings import Settings, get_settings

logger = logging.getLogger(__name__)

#: The broker URL scheme of this transport (`orders-sqs://`), registered with kombu below.
SCHEME = "orders-sqs"

_local = threading.local()
_ack_batchers: list[Batcher] = []
_retired_acks: Counter[str] = Counter()  # the stats of closed channels' batchers
_stats_lock = threading.Lock()


def stats() -> dict[str, Counter[str]]:
    """Entries acked and sent by this process's batchers (ok, failed, retried, calls, ...)."""
    acks: Counter[str] = Counter(_retired_acks)
    for batcher in list(_ack_batchers):
        acks.update(batcher.stats)
    sends = existing("sqs-sends")
    return {"acks": acks, "sends": Counter(sends.stats if sends else {})}


def send_batcher(linger: float) -> Batcher:
    """The process's SendMessageBatch batcher (shared by every channel and thread)."""
    return shared("sqs-sends", send_message_batch, linger)


@contextmanager
def batched_sends() -> Iterator[None]:
    """Publishes from this thread inside the block are held, and sent in full batches on exit.

    The exit waits for every entry and raises the first failure once all are
    settled. With the stock transport, publishes inside the block go one by one.
    """
    outer = getattr(_local, "held", None)
    held: list[tuple[Batcher, Any, str, dict[str, Any]]] = []
    _local.held = held
    try:
        yield
    finally:
        _local.held = outer
        futures = [batcher.submit(client, url, entry, message_size(entry))
                   for batcher, client, url, entry in held]
        failed = failures(futures)
        if failed:
            raise failed[0]


def ack_linger(queue_url: str, linger: float) -> float:
    """How long an ack may wait for others: not at all on a FIFO queue, whose message
    group stays blocked until the message is deleted."""
    return 0.0 if queue_url.endswith(".fifo") else linger


class _BatchedSendClient:
    """Stands in for the SQS client inside kombu's `_put`: send_message joins a batch."""

    def __init__(self, client: Any, batcher: Batcher):
        self._client = client
        self._batcher = batcher

    def send_message(self, QueueUrl: str, **entry: Any) -> Any:  # noqa: N803 (boto3's name)
        held = getattr(_local, "held", None)
        if held is not None:
            held.append((self._batcher, self._client, QueueUrl, entry))
            return None
        return self._batcher.submit(self._client, QueueUrl, entry, message_size(entry)).result(RESULT_TIMEOUT)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


class Message(virtual.Message):  # type: ignore[misc]  # kombu is untyped
    """kombu's message, whose body is the one the poison check decoded (when it is handed one)."""

    def __init__(self, payload: Any, channel: Any = None, **kwargs: Any):
        super().__init__(payload, channel=channel, **kwargs)
        handed = getattr(channel, "_handed", None)
        if handed is not None and handed[0] is payload:
            # What `decode()` would return: kombu's `loads` of this same body, with the
            # worker's accepted content types. Celery reads it on the event loop.
            self._decoded_cache = handed[1]


class Channel(ReceivingChannel):
    """kombu's SQS channel (with the heartbeat and receive backoff) plus the poison guard, batched acks and
    sends, and receives that wait to fill up."""

    Message = Message
    _acks: Batcher | None = None
    _quarantine: Quarantine | None = None
    _handed: tuple[dict[str, Any], Any] | None = None  # (payload, its body decoded) being handed to Celery

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._requested: dict[str, int] = {}
        self._deleting_clients: dict[str | None, Any] = {}
        self.receives: Counter[str] = Counter()
        self._expected: tuple[Any, frozenset[str]] | None = None

    @property
    def acks(self) -> Batcher:
        """This channel's DeleteMessageBatch batcher, made on the first ack."""
        if self._acks is None:
            linger = self.transport_options.get("ack_linger", 0.05)
            self._acks = Batcher("sqs-acks", delete_message_batch, linger=linger,
                                 linger_for=lambda url: ack_linger(url, linger))
            with _stats_lock:
                _ack_batchers.append(self._acks)
        return self._acks

    def new_sqs_client(self, region: Any, access_key_id: Any, secret_access_key: Any,
                       session_token: Any = None) -> Any:
        """The process's shared client (orders.aws.clients) unless the broker URL carries credentials."""
        if access_key_id or secret_access_key:
            return super().new_sqs_client(region, access_key_id, secret_access_key, session_token)
        return clients.client("sqs", self.settings)

    @property
    def settings(self) -> Settings:
        """The app's Settings, from the transport option `orders_settings` (the environment's without it)."""
        given = self.transport_options.get("orders_settings")
        return given if isinstance(given, Settings) else get_settings()

    def basic_ack(self, delivery_tag: str, multiple: bool = False) -> None:
        try:
            info = self.qos.get(delivery_tag).delivery_info
            handle = info["sqs_message"]["ReceiptHandle"]
            queue_url = info["sqs_queue"]
        except KeyError:
            return virtual.Channel.basic_ack(self, delivery_tag)
        late = self._acks is not None and self._acks.closed
        if late or not self.transport_options.get("batch_acks", True):
            return super().basic_ack(delivery_tag)  # a DeleteMessage of its own, as kombu does
        delete = self.acks.submit(self._deleting_client(info.get("routing_key")), queue_url,
                                  {"ReceiptHandle": handle})
        # The heartbeat keeps the message hidden until the delete settles (orders.runtime.visibility).
        self.hold_until_settled(delivery_tag, delete)
        # Frees the prefetch slot now: the delete is the batcher's business from here.
        virtual.Channel.basic_ack(self, delivery_tag)

    def _deleting_client(self, routing_key: str | None) -> Any:
        """The SQS client of a queue's deletes, found once per queue: kombu's lookup (the name's canonical
        form, then the queue's client) was a third of an ack's CPU (py-spy, 20 orders/s). Its clients are
        kept per queue for the channel's life as well, except those of an STS role, which it renews."""
        client = self._deleting_clients.get(routing_key)
        if client is None:
            queue = self.canonical_queue_name(routing_key) if routing_key is not None else None
            client = super().sqs(queue=queue)  # kombu's: never a batching producer's stand-in
            if not self.transport_options.get("sts_role_arn"):
                self._deleting_clients[routing_key] = client
        return client

    @property
    def quarantine(self) -> Quarantine:
        """Where this channel's poison messages go (their DLQs), made on the first one."""
        if self._quarantine is None:
            self._quarantine = Quarantine(self.settings, lambda queue: self.sqs(queue=queue))
        return self._quarantine

    @property
    def get_message_attributes(self) -> dict[str, Any]:
        """kombu's choice, plus every message attribute and the FIFO group: a poison message's
        DLQ copy carries them (an attribute-less message costs nothing more)."""
        wanted = dict(super().get_message_attributes)
        system = wanted.get("MessageSystemAttributeNames") or []
        if not any(name.lower() == "all" for name in system):
            wanted["MessageSystemAttributeNames"] = sorted({*system, "MessageGroupId"})
        wanted["MessageAttributeNames"] = ["All"]
        return wanted

    def flush_acks(self, timeout: float = 10.0) -> bool:
        """Send every pending ack now; True once all are settled."""
        return self._acks.flush(timeout) if self._acks is not None else True

    def close(self) -> None:
        # Before kombu's close, which restores (makes visible again) what is unacked.
        if self.receives["calls"]:
            logger.info("sqs-receives: %d messages in %d calls, %d failed", self.receives["messages"],
                        self.receives["calls"], self.receive_errors.counts["failed"])
        if self._quarantine is not None:
            self._quarantine.close(self.transport_options.get("ack_close_timeout", 10.0))
        if self._acks is not None and not self._acks.closed:
            self._acks.close(self.transport_options.get("ack_close_timeout", 10.0))
            with _stats_lock:
                _ack_batchers.remove(self._acks)
                _retired_acks.update(self._acks.stats)
        super().close()

    @property
    def sends(self) -> Batcher:
        return send_batcher(self.transport_options.get("send_linger", 0.02))

    def _put(self, queue: str, message: dict[str, Any], **kwargs: Any) -> None:
        if message.get("redelivered") or not self.transport_options.get("batch_sends", True):
            return super()._put(queue, message, **kwargs)  # a restore: visibility change, not a send
        _local.batching = True
        try:
            super()._put(queue, message, **kwargs)
        finally:
            _local.batching = False

    def sqs(self, queue: str | None = None) -> Any:
        client = super().sqs(queue=queue)
        if getattr(_local, "batching", False):
            return _BatchedSendClient(client, self.sends)
        return client

    def queue_declare(self, queue: str | None = None, passive: bool = False, **kwargs: Any) -> Any:
        if passive or not queue:
            return super().queue_declare(queue, passive=passive, **kwargs)
        # Celery declares a queue on every new connection that publishes to it or
        # consumes it, and kombu answers with the queue's depth: a GetQueueAttributes
        # nobody reads. The queue exists (predefined); only a passive declare asks.
        self._new_queue(queue, **kwargs)
        return queue_declare_ok_t(queue, 0, 0)

    def _schedule_queue(self, queue: str) -> None:
        if queue in self._active_queues and not self._room_for_a_full_receive():
            # A busy worker frees its prefetch slots one by one: receiving for each
            # would be a call per message. It still holds plenty to work on meanwhile.
            return self._loop1(queue)
        return super()._schedule_queue(queue)  # type: ignore[misc]

    def _room_for_a_full_receive(self) -> bool:
        free = self.qos.can_consume_max_estimate()
        if free is None:  # no prefetch limit
            return True
        return bool(free >= min(SQS_MAX_MESSAGES, max(1, self.qos.prefetch_count // 2)))

    def _get_bulk_async(self, queue: str, callback: Any = None) -> Any:
        self._requested[queue] = self._get_message_estimate()  # type: ignore[attr-defined]
        return super()._get_bulk_async(queue, callback=callback)  # type: ignore[misc]

    def _on_messages_ready(self, queue: Any, qname: str, messages: Any) -> Any:
        if not self.receive_answered(qname, messages):
            return 0  # a failed receive: its queue's next one waits a backoff
        # kombu's own async client answered a failed receive with [], on which kombu's handler
        # called .get: the worker died ("Unrecoverable error"). Never a crash on an odd answer.
        answer = messages if isinstance(messages, dict) else {}
        received = answer.get("Messages")
        callback = (self.connection._callbacks or {}).get(qname)
        if not received or not isinstance(received, list) or callback is None:
            return super()._on_messages_ready(queue, qname, answer)  # type: ignore[misc]  # untyped
        for message in received:
            self._deliver_or_quarantine(message, qname, queue, callback)
        return len(received)

    def _deliver_or_quarantine(self, message: dict[str, Any], qname: str, queue_url: str,
                               callback: Any) -> None:
        """Hand a received message to Celery if it is a task this worker runs, else to its DLQ."""
        known, accept = self._expectations()
        try:
            task = envelope.decode(message.get("Body"), known, accept)
        except Poison as poison:
            self._quarantine_message(qname, queue_url, message, poison)
            return
        try:
            payload = self._payload(task, message, qname, queue_url)
            # The queue it came from, not what the message says: kombu's ack and reject
            # pick their SQS client and queue by this name.
            payload["properties"]["delivery_info"]["routing_key"] = qname
            self._handed = (payload, task.body)
            try:
                callback(payload)
            finally:
                self._handed = None
        except Exception as exc:  # a shape the envelope check let through: still never a crash
            logger.exception("kombu or Celery failed on message %s of %s", message.get("MessageId"), qname)
            self._forget(message)
            reason = f"the worker could not take it: {envelope.describe_error(exc)}"
            self._quarantine_message(qname, queue_url, message, Poison("rejected", reason))

    def _payload(self, task: envelope.TaskMessage, message: dict[str, Any], qname: str,
                 queue_url: str) -> dict[str, Any]:
        """kombu's payload of a received message, made from the envelope the poison check read.

        kombu's `_message_to_python` would unwrap and parse the same text again; this is
        its own last step on the object already parsed (the same `loads`, the same text).
        """
        if qname in self._noack_queues:  # kombu deletes those at once: its way
            return self._message_to_python(message, qname, queue_url)  # type: ignore[attr-defined, no-any-return]
        return self._envelope_payload(task.envelope, task.text, message, queue_url)  # type: ignore[attr-defined, no-any-return]

    def _quarantine_message(self, qname: str, queue_url: str, message: dict[str, Any],
                            poison: Poison) -> None:
        try:
            self.quarantine.move(qname, queue_url, message, poison)
        except Exception:  # closing: the message comes back after its visibility timeout
            logger.exception("poison message %s of %s left in its queue", message.get("MessageId"), qname)

    def _forget(self, message: dict[str, Any]) -> None:
        """Free the prefetch slot of a message Celery took and failed on (it is moved, not acked)."""
        tag = str(message.get("ReceiptHandle"))
        try:
            self.qos.get(tag)
        except KeyError:
            return
        virtual.Channel.basic_ack(self, tag)

    def _expectations(self) -> tuple[Any, frozenset[str]]:
        """(the task names this worker runs, the content types it accepts): its Celery app's."""
        if self._expected is None:
            # The transport is made by the worker's app, which is the current one in the
            # worker; kombu hands the channel no reference to it. `app.tasks` is the live registry.
            app: Any = current_app
            self._expected = (app.tasks, frozenset(prepare_accept_content(app.conf.accept_content) or ()))
        return self._expected

    def receive_batch_wait(self, queue: str) -> float:
        """How long `queue`, having answered short, is left to fill up: its own wait if the topology puts it
        off the orders' path, else the worker's."""
        waits = self.transport_options.get("receive_batch_waits") or {}
        return float(waits.get(queue, self.transport_options.get("receive_batch_wait", 0.25)))

    def _loop1(self, queue: str, messages_fetched: int | None = None) -> None:
        wait = self.receive_batch_wait(queue)
        wanted = self._requested.get(queue, SQS_MAX_MESSAGES)
        if isinstance(messages_fetched, int):  # else no receive was made (prefetch full)
            self.receives["calls"] += 1
            self.receives["messages"] += messages_fetched
        if messages_fetched and messages_fetched < wanted and wait:
            # Fewer than asked for: the queue is drained, so let it fill up for a moment.
            self.hub.call_later(wait, self._schedule_queue, queue)  # type: ignore[attr-defined]
            return
        super()._loop1(queue, messages_fetched)  # type: ignore[misc]


class Transport(SQSTransport):
    """kombu's SQS transport with our Channel; still `driver_type` 'sqs'."""

    Channel = Channel


kombu.transport.TRANSPORT_ALIASES.setdefault(SCHEME, "orders.runtime.transport:Transport")
