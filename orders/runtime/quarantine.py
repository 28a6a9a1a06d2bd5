"""Poison messages moved to their queue's DLQ at once, off the worker's event loop.

A message no worker can run (orders.runtime.envelope) would otherwise come back
after every visibility timeout until SQS's own redrive policy moved it, up to
maxReceiveCount x visibility later (about an hour on payments). Here it is sent to
the DLQ whole (body, message attributes, FIFO group) with the reason as message
attributes, and only once SQS has stored that copy is it deleted from its queue:
never deleted without a copy. If the move fails, the message is left where it is:
it comes back after its visibility timeout, is refused again and moved then, or
SQS's redrive policy moves it. The DLQ watcher (orders.ops.watch) archives and
alerts on it like any dead letter, with the reason it finds in the attributes.

One thread per channel does the moves, so that a slow or unreachable SQS never
holds up the event loop that receives and acks the good messages.
"""

from __future__ import annotations

import base64
import logging
import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from orders.aws import metrics
from orders.aws.errors import is_retryable_aws_error
from orders.runtime.envelope import Poison
from orders.runtime.queue_urls import dlq_url
from orders.settings import Settings
from orders.topology import QUEUES_BY_NAME

log = logging.getLogger(__name__)

#: The message attributes a moved message carries (readers: orders.ops.dead_letters).
REASON = "orders.poison.reason"
SOURCE = "orders.poison.queue"
SOURCE_ID = "orders.poison.message-id"
#: SQS allows ten message attributes; ours come after the message's own, as many as fit.
MAX_ATTRIBUTES = 10
MAX_REASON_CHARS = 1000
#: Attempts of a move whose failure is SQS's (throttling, 5xx, network), on top of boto3's own retries.
ATTEMPTS = 3


class Quarantine:
    """Moves poison messages of one channel's queues to their DLQs (send, then delete) on a thread."""

    def __init__(self, settings: Settings, client_for: Callable[[str], Any]):
        self.settings = settings
        self._client_for = client_for  # Celery queue name -> the channel's SQS client for it
        self._executor: ThreadPoolExecutor | None = None
        self._pending: set[Future[bool]] = set()
        self._lock = threading.Lock()
        self.stats: Counter[str] = Counter()

    def move(self, queue: str, queue_url: str, message: dict[str, Any], poison: Poison) -> Future[bool]:
        """Start moving `message` (as received from `queue`) to the queue's DLQ; True once moved."""
        log.error("poison message %s on %s, moving it to its DLQ: %s",
                  message.get("MessageId"), queue, poison.reason)
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(1, thread_name_prefix="orders-quarantine")
            future = self._executor.submit(self._move, queue, queue_url, message, poison)
            self._pending.add(future)
        future.add_done_callback(self._done)
        return future

    def close(self, timeout: float = 10.0) -> None:
        """Finish the moves under way (a warm shutdown), then stop the thread."""
        with self._lock:
            pending, executor, self._executor = list(self._pending), self._executor, None
        if pending:
            wait(pending, timeout)
        if executor is not None:
            executor.shutdown(wait=False)

    def _done(self, future: Future[bool]) -> None:
        with self._lock:
            self._pending.discard(future)

    def copy(self, queue: str, message: dict[str, Any], poison: Poison) -> bool:
        """Send the message's copy to the queue's DLQ now, on this thread; True once SQS stored it.

        (A consumer whose messages are deleted for it, such as a Lambda event source
        mapping, copies and then reports the message done.)
        """
        metrics.count("PoisonMessages", Queue=queue, Reason=poison.kind)
        try:
            self._send(self._client_for(queue), queue, message, poison)
        except Exception as exc:  # left in its queue: refused again when it comes back
            self.stats["failed"] += 1
            metrics.count("PoisonMovesFailed", Queue=queue)
            log.error("poison message %s on %s not moved (it stays in its queue): %s",
                      message.get("MessageId"), queue, exc)
            return False
        return True

    def _move(self, queue: str, queue_url: str, message: dict[str, Any], poison: Poison) -> bool:
        if not self.copy(queue, message, poison):
            return False
        try:
            self._client_for(queue).delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
        except Exception as exc:  # the copy is safe; the original comes back and is moved again
            self.stats["undeleted"] += 1
            log.warning("poison message %s copied to the DLQ of %s but not deleted: %s",
                        message.get("MessageId"), queue, exc)
            return False
        self.stats["moved"] += 1
        return True

    def _send(self, sqs: Any, queue: str, message: dict[str, Any], poison: Poison) -> None:
        """SendMessage to the DLQ with the reason; without it if SQS refuses the message with it."""
        entry = dlq_entry(queue, message, poison)
        url = dlq_url(self.settings, queue)
        try:
            _send_retrying(sqs, url, entry)
        except ClientError as exc:
            if is_retryable_aws_error(exc) or entry["MessageAttributes"] == own_attributes(message):
                raise
            # Our attributes pushed it over a limit (size, count): the message whole matters more.
            log.warning("poison message %s moved without its reason attributes: %s",
                        message.get("MessageId"), exc)
            _send_retrying(sqs, url, {**entry, "MessageAttributes": own_attributes(message)})



def _send_retrying(sqs: Any, url: str, entry: dict[str, Any]) -> None:
    for attempt in range(1, ATTEMPTS + 1):
        try:
            sqs.send_message(QueueUrl=url, **entry)
            return
        except (ClientError, BotoCoreError) as exc:
            if attempt == ATTEMPTS or not is_retryable_aws_error(exc):
                raise


def dlq_entry(queue: str, message: dict[str, Any], poison: Poison) -> dict[str, Any]:
    """The SendMessage arguments (without QueueUrl) of a poison message's copy in the DLQ."""
    attributes = own_attributes(message)
    ours = {REASON: printable(poison.reason)[:MAX_REASON_CHARS], SOURCE: queue,
            SOURCE_ID: str(message.get("MessageId", "?"))}
    for name, value in ours.items():
        if len(attributes) < MAX_ATTRIBUTES:
            attributes[name] = {"DataType": "String", "StringValue": value}
    entry: dict[str, Any] = {"MessageBody": message["Body"], "MessageAttributes": attributes}
    spec = QUEUES_BY_NAME.get(queue)
    if spec is not None and spec.fifo:
        system = message.get("Attributes") or {}
        entry["MessageGroupId"] = system.get("MessageGroupId") or "poison"
        # A move retried after a lost answer is then stored once.
        entry["MessageDeduplicationId"] = str(message.get("MessageId", ""))[:128] or "poison"
    return entry


def own_attributes(message: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The message's own attributes as SendMessage takes them, less any earlier poison reason."""
    kept: dict[str, dict[str, Any]] = {}
    for name, value in (message.get("MessageAttributes") or {}).items():
        if not isinstance(value, dict) or name in (REASON, SOURCE, SOURCE_ID):
            continue
        attribute = {k: v for k, v in value.items() if k in ("DataType", "StringValue", "BinaryValue")}
        if isinstance(attribute.get("BinaryValue"), str):  # kombu's receive leaves it base64
            attribute["BinaryValue"] = base64.b64decode(attribute["BinaryValue"])
        kept[name] = attribute
    return kept


def printable(text: str) -> str:
    """`text` with what SQS refuses in an attribute (control characters, lone surrogates) escaped."""
    return "".join(c if c.isprintable() and not 0xD800 <= ord(c) <= 0xDFFF else repr(c)[1:-1] for c in text)

