"""kombu's SQS channel, receiving for a short visibility that a heartbeat keeps up while it holds a message.

SQS hides a received message for the visibility timeout of its receive; kombu
receives with each queue's own (5 minutes on orders, 10 on payments), so a worker
killed with SIGKILL left every message it held, running, waiting for its ETA or
prefetched (ten per pool slot), out of reach for that long. This channel receives
for `receive_visibility` seconds (30 by default) and its heartbeat
(orders.runtime.heartbeat) extends every message it holds back to that, every
`visibility_heartbeat` seconds (a third of it): a killed worker's messages come
back within `receive_visibility` seconds, and a task that runs for an hour is never
handed to a second worker meanwhile. The queues' own timeouts stay as they are for
every other reader (the DLQ tools, a Lambda consumer, `receive_visibility` 0).

- A message is held from its delivery to Celery until its ack's delete has
  settled (deleted, or failed for good: SQS then redelivers it), rejected
  (before kombu's failure backoff sets its visibility, which then stands) or
  restored. A delete that waits out throttling or an outage (botocore's own
  backoff on a throttled call is up to 7 s, the ack batcher retries it) would
  otherwise outlive the receive's visibility, and SQS would hand the message,
  whose task has run, to a consumer again. A message the poison guard
  moves is never delivered, so never held: it must reach its DLQ within its
  receive's visibility, else it is received again and moved again.
- At close (a warm shutdown, once the running tasks are done) the messages still
  held (prefetched, never started) are made visible at once with
  ChangeMessageVisibilityBatch, for the other workers to take, instead of kombu's
  one ChangeMessageVisibility each that hides them for another long poll.
"""

from __future__ import annotations

import logging
from concurrent.futures import Future
from typing import Any

from kombu.transport.SQS import Channel as SQSChannel
from kombu.transport.SQS import QoS as SQSQoS

from orders.runtime.heartbeat import Heartbeat, Held, release

logger = logging.getLogger(__name__)


class QoS(SQSQoS):
    """kombu's SQS QoS, telling the channel which messages it holds."""

    def append(self, message: Any, delivery_tag: str) -> None:
        super().append(message, delivery_tag)
        self.channel.hold(message)  # type: ignore[attr-defined]  # kombu types it as its own Channel

    def ack(self, delivery_tag: str) -> None:
        # Every way out of the channel's hands ends here (acks, rejects, forgotten poison), except an ack
        # whose delete is under way: the channel stops holding it once the delete settles.
        if not self.channel.settling(delivery_tag):  # type: ignore[attr-defined]
            self.channel.stop_holding(delivery_tag)  # type: ignore[attr-defined]
        super().ack(delivery_tag)


class Channel(SQSChannel):
    """kombu's SQS channel whose held messages are hidden for a short visibility, kept up by a heartbeat."""

    QoS = QoS
    _heartbeat: Heartbeat | None = None
    _releasing: list[Held] | None = None  # while closing: the unacked messages, made visible together
    _settling: set[str] | None = None  # acked messages still held until their delete settles

    @property
    def receive_visibility(self) -> int:
        """Seconds a receive hides its messages for, kept up by the heartbeat (0: the queue's own)."""
        return int(self.transport_options.get("receive_visibility") or 0)

    @property
    def heartbeat(self) -> Heartbeat:
        """This channel's heartbeat, made on the first message held."""
        if self._heartbeat is None:
            interval = self.transport_options.get("visibility_heartbeat")
            self._heartbeat = Heartbeat(self.receive_visibility, interval)
        return self._heartbeat

    def hold(self, message: Any) -> None:
        """Keep a message delivered to Celery hidden while this channel holds it."""
        held = self._held(message)
        if held is not None and self.receive_visibility:
            self.heartbeat.hold(message.delivery_tag, held)

    def stop_holding(self, delivery_tag: str) -> None:
        """Extend the message no more (acked, rejected or restored)."""
        if self._heartbeat is not None:
            self._heartbeat.drop(delivery_tag)

    def hold_until_settled(self, delivery_tag: str, delete: Future[Any]) -> None:
        """Keep extending an acked message until its `delete` settles, then stop (the module docstring)."""
        if self._heartbeat is None or delivery_tag not in self._heartbeat:
            return
        if self._settling is None:
            self._settling = set()
        self._settling.add(delivery_tag)
        delete.add_done_callback(lambda _: self._settled(delivery_tag))  # at once if already settled

    def settling(self, delivery_tag: str) -> bool:
        """Whether an acked message is held until its delete settles."""
        return self._settling is not None and delivery_tag in self._settling

    def _settled(self, delivery_tag: str) -> None:
        if self._settling is not None:
            self._settling.discard(delivery_tag)
        self.stop_holding(delivery_tag)

    def basic_reject(self, delivery_tag: str, requeue: bool = False) -> None:
        # Before kombu deletes it or hides it for its failure backoff: no beat may undo that.
        self.stop_holding(delivery_tag)
        super().basic_reject(delivery_tag, requeue=requeue)

    def _held(self, message: Any) -> Held | None:
        info = message.delivery_info
        try:
            handle, queue_url = info["sqs_message"]["ReceiptHandle"], info["sqs_queue"]
        except (KeyError, TypeError):
            return None
        queue = self.canonical_queue_name(info["routing_key"]) if "routing_key" in info else None
        return Held(self.sqs(queue=queue), queue_url, handle)

    def _get_from_sqs(self, queue_name: str, queue_url: str, connection: Any, count: int = 1,
                      callback: Any = None) -> Any:
        if not self.receive_visibility:
            return super()._get_from_sqs(queue_name, queue_url, connection, count, callback)  # type: ignore[misc]
        # kombu's receive, for the short visibility the heartbeat keeps up instead of the queue's own.
        return connection.receive_message(queue_name, queue_url, number_messages=count,
                                          visibility_timeout=self.receive_visibility,
                                          wait_time_seconds=self.wait_time_seconds, callback=callback)

    def _restore(self, message: Any, *args: Any, **kwargs: Any) -> Any:
        self.stop_holding(message.delivery_tag)
        held = self._held(message) if self._releasing is not None else None
        if held is None or self._releasing is None:
            # kombu's: hidden again for a long poll's time (a requeue, then any failure backoff).
            return super()._restore(message, *args, **kwargs)
        self._releasing.append(held)
        return None

    def close(self) -> None:
        if self.closed:
            return super().close()
        if self._heartbeat is not None:
            # Stopped first: a beat under way must not hide again a message released below.
            self._heartbeat.stop()
            logger.info("%s", self._heartbeat.summary())
        self._releasing = []
        try:
            super().close()  # restores the unacked messages, which _restore gathers
        finally:
            releasing, self._releasing = self._releasing, None
            if releasing:
                outcome = release(releasing)
                logger.info("released %d unacked message(s) at once (visibility 0) in %d call(s)",
                            outcome.changed, outcome.calls)
