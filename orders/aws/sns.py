"""SNS: the one publishing path (domain events and operational alerts alike), and topic discovery.

An event is a structured envelope (type in the past tense, schema version,
event id, time, order id, correlation id, data) published to its topic with
message attributes that subscriptions filter on (`event_type`, `severity`, ...).
Every publish goes through the process's PublishBatch batcher (orders.aws.batching):
entries of concurrent publishes to one topic go out together (10 a call, within
SNS's size limit, after at most `settings.send_linger` s; with ORDERS_BATCH_ACKS=0
a linger of zero: at once, with whatever was submitted with them). The batcher
retries entries SNS fails for a transient reason (a few times within seconds, with
jitter); then the caller gets a RetryableError (its task retries with backoff for as
long as `ORDERS_RETRY_BUDGET` allows: an SNS outage is waited out by the task's
retries, not here), or a PermanentError for an entry SNS refuses or one too big to send.

Event ids are derived from (order id, event type, key), so a step that runs
twice publishes the same ids and subscribers can drop the duplicate.

Customer events reach the notifications queue through its SNS subscription.
They are published with MessageStructure=json: SQS subscribers get what the
publisher's `sqs_message` renders (a Celery task message, from the Celery
runtime: orders.runtime.publishing), email, SMS and every other protocol the
plain event (or a one-line summary).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from orders.aws import batching, clients
from orders.aws.batching import MAX_BATCH_BYTES, RESULT_TIMEOUT, Batcher, message_size
from orders.aws.errors import classify_aws_error, is_retryable_aws_error
from orders.domain.errors import PermanentError, RetryableError
from orders.domain.events import Event
from orders.settings import Settings
from orders.topology import CUSTOMER_EVENTS, TOPICS

#: How a customer event reaches SQS subscribers: event -> the message body they receive.
SqsMessage = Callable[[Event], str]
#: A PublishBatch entry (without its Id) and the ARN of its topic.
Entry = tuple[str, dict[str, Any]]
#: Message attributes that carry the publisher's trace context (`traceparent`), or none.
TraceAttributes = Callable[[], dict[str, dict[str, str]]]
#: SNS (and SQS, which raw delivery hands them to) take at most this many message attributes.
MAX_MESSAGE_ATTRIBUTES = 10


class EventPublisher:
    """Publishes domain events to their topics; customer events carry `sqs_message`'s rendering for SQS,
    and every event the attributes `trace_attributes` gives (the trace context of its publish)."""

    def __init__(self, settings: Settings, sqs_message: SqsMessage | None = None,
                 trace_attributes: TraceAttributes | None = None):
        self.settings = settings
        self.sqs_message = sqs_message
        self.trace_attributes = trace_attributes

    def publish(self, events: Sequence[Event]) -> None:
        """Publish events and wait for them; RetryableError or PermanentError if any was not published."""
        context = self.trace_attributes() if self.trace_attributes else {}
        entries = [(topic_arn(self.settings, ev.topic), sns_entry(ev, self.sqs_message, context))
                   for ev in events]
        raise_for(publish_entries(self.settings, entries))


def sns_entry(ev: Event, sqs_message: SqsMessage | None = None,
              context: dict[str, dict[str, str]] | None = None) -> dict[str, Any]:
    """One PublishBatch entry (without its Id) for an event; `context`'s attributes as far as they fit."""
    body = json.dumps(ev.envelope(), default=str, separators=(",", ":"))
    attributes = ev.attributes()
    room = MAX_MESSAGE_ATTRIBUTES - len(attributes)
    attributes.update(list((context or {}).items())[:max(room, 0)])
    entry: dict[str, Any] = {"Message": body, "MessageAttributes": attributes}
    if ev.type in CUSTOMER_EVENTS:
        if sqs_message is None:
            raise ValueError(f"{ev.type} goes to SQS subscribers as a task message: publish it with "
                             "an sqs_message rendering (orders.runtime.publishing)")
        entry["MessageStructure"] = "json"
        entry["Message"] = json.dumps({"default": body, "sqs": sqs_message(ev), "sms": ev.summary(),
                                       "email": ev.summary() + "\n\n" + body})
    return entry


def publish_batcher(settings: Settings) -> Batcher:
    """The process's PublishBatch batcher: its tasks' publishes share calls, or go at once (BATCH_ACKS=0)."""
    if settings.batch_acks:
        return batching.shared("sns-publish", batching.publish_batch, settings.send_linger)
    return batching.shared("sns-publish-now", batching.publish_batch, 0.0)


def publish_entries(settings: Settings, entries: Sequence[Entry]) -> list[BaseException | None]:
    """Publish (topic ARN, entry) pairs; each one's outcome once settled (None: published)."""
    return deliver(publish_batcher(settings), clients.client("sns", settings), entries)


def deliver(batcher: Batcher, sns: Any, entries: Sequence[Entry]) -> list[BaseException | None]:
    """Submit (topic ARN, entry) pairs to `batcher`, each topic's together, and wait for every outcome.

    An entry above SNS's size limit is refused here (PermanentError), without a call.
    """
    waiting: dict[int, Future[Any]] = {}
    refused: dict[int, BaseException] = {}
    by_topic: dict[str, list[tuple[int, dict[str, Any], int]]] = defaultdict(list)
    for i, (arn, entry) in enumerate(entries):
        size = message_size(entry)
        if size > MAX_BATCH_BYTES:
            refused[i] = PermanentError(f"an entry of {size} bytes is above SNS's {MAX_BATCH_BYTES}")
        else:
            by_topic[arn].append((i, entry, size))
    for arn, parts in by_topic.items():
        futures = batcher.submit_many(sns, arn, [(entry, size) for _, entry, size in parts])
        waiting.update((i, future) for (i, _, _), future in zip(parts, futures, strict=True))
    return [refused[i] if i in refused else waiting[i].exception(RESULT_TIMEOUT) for i in range(len(entries))]


def raise_for(outcomes: Sequence[BaseException | None]) -> None:
    """Raise what a publish raises when any of its entries was not published."""
    failed = [exc for exc in outcomes if exc is not None]
    if failed:
        raise publish_error(failed[0], len(failed)) from failed[0]


def publish_error(exc: BaseException, count: int) -> Exception:
    """What a failed publish raises: permanent when SNS refused an entry for good or it was too big, else
    retryable (SNS throttling or failing, the network, the batcher's own trouble)."""
    if isinstance(exc, PermanentError):
        return PermanentError(f"{count} event(s) not published: {exc}")
    if isinstance(exc, (ClientError, BotoCoreError)):  # a failed entry (BatchEntryError) or a failed call
        kind = RetryableError if is_retryable_aws_error(exc) else PermanentError
        return kind(f"{count} event(s) not published: {exc}")
    return RetryableError(f"{count} event(s) not published: {exc!r}")


#: How long a failed topic lookup is remembered. During an SNS outage every publish would
#: otherwise list the topics again (a call and botocore's retries of it, each time): one
#: process's tasks and their retries made thousands of ListTopics calls in a few minutes.
LOOKUP_RETRY_SECONDS = 1.0


@dataclass
class _TopicLookup:
    """One environment's topic ARNs in this process, and its last failed lookup."""

    arns: dict[str, str] = field(default_factory=dict)
    failure: BaseException | None = None  # the botocore error of the last lookup, if it failed
    failed_at: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def refresh(self, settings: Settings, topic: str) -> None:
        """List the topics, one thread at a time, unless another just did, or just failed to."""
        with self.lock:
            if topic in self.arns:
                return
            if self.failure is not None and time.monotonic() - self.failed_at < LOOKUP_RETRY_SECONDS:
                raise classify_aws_error(self.failure)
            try:
                self.arns = topic_arns(settings)
            except (ClientError, BotoCoreError) as exc:
                self.failure, self.failed_at = exc, time.monotonic()
                raise classify_aws_error(exc) from exc
            self.failure = None


_lookups: dict[tuple[Any, ...], _TopicLookup] = {}
os.register_at_fork(after_in_child=_lookups.clear)  # a lock held by a thread the child does not have


def topic_arns(settings: Settings) -> dict[str, str]:
    """Declared topic name -> ARN, for the topics that exist (discovered, never built by hand)."""
    sns = clients.client("sns", settings)
    by_sns_name = {arn.rsplit(":", 1)[1]: arn
                   for page in sns.get_paginator("list_topics").paginate()
                   for arn in (t["TopicArn"] for t in page.get("Topics", []))}
    return {spec.name: by_sns_name[spec.sns_name(settings)]
            for spec in TOPICS if spec.sns_name(settings) in by_sns_name}


def topic_arn(settings: Settings, topic: str) -> str:
    """A declared topic's ARN, discovered once per process and environment (never built by hand).

    While SNS cannot be reached, a lookup is tried at most once per LOOKUP_RETRY_SECONDS; the
    callers in between get the last one's error (a RetryableError for an outage) at once.
    """
    key = (settings.env, settings.region, settings.endpoint_url)
    lookup = _lookups.get(key) or _lookups.setdefault(key, _TopicLookup())
    if topic not in lookup.arns:
        lookup.refresh(settings, topic)
    try:
        return lookup.arns[topic]
    except KeyError:
        raise PermanentError(f"SNS topic {settings.prefix}{topic} does not exist: run `orders infra up`") \
            from None
