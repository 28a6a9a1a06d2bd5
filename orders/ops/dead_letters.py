"""Dead-lettered messages: read from a DLQ, decoded from their Celery envelope, classified.

A DLQ is read without consuming it: messages are received with a short
visibility timeout and made visible again (`release`), so the watcher, `orders dlq
show` and a redrive can all look at the same messages; only `orders.ops.redrive`
deletes, and only what is archived.
"""

from __future__ import annotations

import base64
import binascii
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from orders.aws import clients
from orders.aws.batching import MAX_ENTRIES
from orders.domain.errors import FailureCategory
from orders.domain.order import ID_PATTERN
from orders.runtime import quarantine, queue_urls
from orders.runtime.envelope import Poison, describe_error, parse_json
from orders.settings import Settings
from orders.topology import QUEUES, QUEUES_BY_NAME, QueueSpec

#: How long a scan keeps the messages it read hidden from other readers (seconds).
HOLD_SECONDS = 30
#: Long poll of a scan's receives: long enough that SQS answers from every server.
SCAN_WAIT_SECONDS = 1
#: How long a person's scan (`orders dlq show`) that finds every message in flight waits for them:
#: another reader (beat's DLQ watcher) holds them only while it reads them, then releases them.
#: Beat's own passes do not wait: a DLQ busy now is theirs at the next pass, and two passes that
#: both read a message both act on it (a capped message's notice would go out twice).
SETTLE_SECONDS = 5.0
NO_FAILURE_RECORDED = "no failure recorded: the worker was lost or the visibility timeout expired"
#: A task id usable as the archive's key (Celery's are UUIDs); others key by the body's digest.
USABLE_ID = re.compile(r"[A-Za-z0-9_.:-]{1,200}")


@dataclass
class DeadLetter:
    """One message of a DLQ, as received, with what its Celery envelope says."""

    queue: QueueSpec  # the processing queue it came from
    message_id: str
    receipt_handle: str
    body: str
    attributes: dict[str, str] = field(default_factory=dict)
    message_attributes: dict[str, Any] = field(default_factory=dict)
    task: str | None = None
    task_id: str | None = None
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)
    order_id: str | None = None
    decode_error: str | None = None
    #: Why a worker refused it and moved it here at once (orders.runtime.quarantine), if it did.
    poison: str | None = None
    redrives: int = 0  # redrives of its task so far (from the archive, see archive.annotate)

    @property
    def key(self) -> str:
        """Stable across redrives: the Celery task id, or the body's digest when there is none."""
        return self.task_id or "md5-" + self.attributes.get("MD5OfBody", "")

    @property
    def arrival(self) -> str:
        """This copy's archive item: the SQS message id and the redrives before it arrived
        (StartMessageMoveTask may keep a message's id, so the id alone could repeat)."""
        return f"arrival#{self.message_id}#r{self.redrives}"

    @property
    def receive_count(self) -> int:
        return int(self.attributes.get("ApproximateReceiveCount", 0))

    @property
    def sent_at(self) -> float | None:
        sent = self.attributes.get("SentTimestamp")
        return int(sent) / 1000 if sent else None

    @property
    def group_id(self) -> str | None:
        return self.attributes.get("MessageGroupId")


def decode(queue: QueueSpec, message: dict[str, Any]) -> DeadLetter:
    """A received SQS message as a DeadLetter; an undecodable body is kept and said so, never raised."""
    attributes = dict(message.get("Attributes", {}))
    attributes["MD5OfBody"] = message.get("MD5OfBody", "")
    letter = DeadLetter(queue, message["MessageId"], message["ReceiptHandle"], message["Body"],
                        attributes, dict(message.get("MessageAttributes", {})))
    reason = letter.message_attributes.get(quarantine.REASON)
    if isinstance(reason, dict) and isinstance(reason.get("StringValue"), str):
        letter.poison = reason["StringValue"]
    try:
        _read_task(letter)
    except Exception as exc:  # any shape SQS accepts: deep, huge numbers, wrong types
        letter.decode_error = f"not a Celery message: {describe_error(exc)}"
    return letter


def _read_task(letter: DeadLetter) -> None:
    """Set the task, its id, arguments and order from the message's Celery envelope (protocol 2 or 1)."""
    envelope = _json_or_base64_json(letter.body)
    if not isinstance(envelope, dict):
        raise ValueError(f"the envelope is {type(envelope).__name__}, not an object")
    headers = envelope.get("headers") or {}
    if not isinstance(headers, dict):
        raise ValueError(f"headers is {type(headers).__name__}, not an object")
    payload = _json_or_base64_json(envelope["body"]) if "body" in envelope else envelope
    if isinstance(headers.get("task"), str) and headers["task"]:  # protocol 2: [args, kwargs, embed]
        letter.task, task_id = headers["task"], headers.get("id")
        ok = isinstance(payload, list) and len(payload) >= 2
        args, kwargs = (payload[0], payload[1]) if ok else ([], {})
    elif isinstance(payload, dict) and isinstance(payload.get("task"), str) and payload["task"]:  # protocol 1
        letter.task, task_id = payload["task"], payload.get("id")
        args, kwargs = payload.get("args", []), payload.get("kwargs", {})
    else:
        raise ValueError("no task name in headers or body")
    # The task id keys the archive (a DynamoDB key): an unusable one falls back to the body's digest.
    letter.task_id = task_id if isinstance(task_id, str) and USABLE_ID.fullmatch(task_id) else None
    letter.args = list(args) if isinstance(args, list | tuple) else [args]
    letter.kwargs = dict(kwargs) if isinstance(kwargs, dict) else {}
    letter.order_id = find_order_id(letter.args, letter.kwargs)


def _json_or_base64_json(text: Any) -> Any:
    if isinstance(text, dict | list):
        return text
    if not isinstance(text, str):
        raise ValueError(f"a {type(text).__name__}, not JSON text")
    for attempt in (lambda: text, lambda: base64.b64decode(text, validate=True)):
        try:
            return parse_json(attempt(), "message")
        except Poison as exc:
            if exc.kind == "too-deep":
                raise ValueError(exc.reason) from None
        except (binascii.Error, ValueError):
            pass
    raise ValueError("neither JSON nor base64-encoded JSON")


def find_order_id(args: list[Any], kwargs: dict[str, Any]) -> str | None:
    """The order a task works on: an `order_id` argument, an order dict, or a leading id string."""
    for name in ("order_id", "orderId"):
        if _is_order_id(kwargs.get(name)):
            return str(kwargs[name])
    for value in [*args, *kwargs.values()]:
        if isinstance(value, dict):
            inner = value.get("order")
            nested: dict[str, Any] = inner if isinstance(inner, dict) else value
            for name in ("orderId", "order_id"):
                if _is_order_id(nested.get(name)):
                    return str(nested[name])
    if args and _is_order_id(args[0]):
        return str(args[0])
    return None


def _is_order_id(value: Any) -> bool:
    """Only what could be an order's id: a hand-made message may carry anything there."""
    return isinstance(value, str) and ID_PATTERN.match(value) is not None


def classify(letter: DeadLetter, failure: dict[str, Any] | None) -> tuple[str, str]:
    """(category, why) of a dead-lettered message: the reason a worker refused it, its body's if
    undecodable, else its worker's record."""
    if letter.poison:
        return FailureCategory.INVALID_INPUT, letter.poison
    if letter.decode_error:
        return FailureCategory.INVALID_INPUT, letter.decode_error
    if failure is None:
        # Received maxReceiveCount times and never failed visibly: lost workers or
        # visibility timeouts shorter than the work, which a redrive may well get past.
        return FailureCategory.TRANSIENT, NO_FAILURE_RECORDED
    return str(failure.get("category") or FailureCategory.BUG), str(failure.get("error", ""))


def queue_spec(name: str) -> QueueSpec:
    """A processing queue by its name or its DLQ's name (`orders`, `orders-dlq`, ...)."""
    if name in QUEUES_BY_NAME:
        return QUEUES_BY_NAME[name]
    for spec in QUEUES:
        if name == spec.dlq_name:
            return spec
    known = ", ".join(q.name for q in QUEUES)
    raise KeyError(f"no queue or DLQ named {name!r} (queues: {known})")


def dlq_url(settings: Settings, spec: QueueSpec) -> str:
    """The DLQ's URL, looked up once per process (orders.runtime.queue_urls, as the workers' quarantine)."""
    return queue_urls.dlq_url(settings, spec.name)


def depth(settings: Settings, spec: QueueSpec) -> tuple[int, int]:
    """(visible, in flight) messages of the DLQ."""
    attrs = clients.client("sqs", settings).get_queue_attributes(
        QueueUrl=dlq_url(settings, spec),
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]), int(attrs["ApproximateNumberOfMessagesNotVisible"])


def scan(settings: Settings, spec: QueueSpec, limit: int = 100, hold: int = HOLD_SECONDS,
         settle: float = 0.0) -> list[DeadLetter]:
    """Up to `limit` messages of the DLQ, hidden from others for `hold` s (release them after); if
    every message is in flight, waiting up to `settle` s for another reader to release them."""
    visible, in_flight = depth(settings, spec)
    deadline = time.monotonic() + settle
    while not visible and in_flight and time.monotonic() < deadline:  # not an empty DLQ: a busy one
        time.sleep(0.2)
        visible, in_flight = depth(settings, spec)
    if not visible:
        return []
    sqs, url = clients.client("sqs", settings), dlq_url(settings, spec)
    found: dict[str, DeadLetter] = {}
    while len(found) < min(limit, visible):
        messages = sqs.receive_message(  # at most MAX_ENTRIES, as SQS's batch calls
            QueueUrl=url, MaxNumberOfMessages=min(MAX_ENTRIES, limit - len(found)), VisibilityTimeout=hold,
            WaitTimeSeconds=SCAN_WAIT_SECONDS, AttributeNames=["All"], MessageAttributeNames=["All"],
        ).get("Messages", [])
        if not messages:
            break
        for message in messages:
            found[message["MessageId"]] = decode(spec, message)
    return list(found.values())


def batches(letters: list[DeadLetter]) -> Iterator[list[DeadLetter]]:
    """The messages in runs of at most MAX_ENTRIES, what one SQS batch call takes."""
    for start in range(0, len(letters), MAX_ENTRIES):
        yield letters[start:start + MAX_ENTRIES]


def release(settings: Settings, letters: list[DeadLetter]) -> None:
    """Make scanned messages visible again at once (a failure only delays them by `hold`)."""
    sqs = clients.client("sqs", settings)
    for part in batches(letters):
        sqs.change_message_visibility_batch(
            QueueUrl=dlq_url(settings, part[0].queue),
            Entries=[{"Id": str(i), "ReceiptHandle": m.receipt_handle, "VisibilityTimeout": 0}
                     for i, m in enumerate(part)])
