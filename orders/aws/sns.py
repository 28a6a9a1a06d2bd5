"""Domain events and the one SNS publishing path every service uses.

An event is a structured envelope (type in the past tense, schema version,
event id, time, order id, correlation id, data) published to its topic with
message attributes that subscriptions filter on (`event_type`, `severity`, ...).
Events produced together go out together: one PublishBatch per topic, split
at SNS's limits (10 entries, 256 KiB a request). Entries SNS fails for a
transient reason are retried a bounded number of times with full jitter;
then the caller gets a RetryableError (its task retries with backoff).

Event ids are derived from (order id, event type, key), so a step that runs
twice publishes the same ids and subscribers can drop the duplicate.

Customer events reach the notifications queue through its SNS subscription.
They are published with MessageStructure=json: SQS subscribers get a Celery
task message for `notifications.notify` (kombu's JSON envelope) carrying the
event, so a stock Celery worker consumes the fan-out with no extra hop; email,
SMS and every other protocol get the plain event (or a one-line summary).
"""

from __future__ import annotations

import base64
import json
import logging
import random
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from orders.aws import batching, clients
from orders.aws.errors import classify_aws_error
from orders.aws.tables import aws_errors
from orders.domain.errors import PermanentError, RetryableError
from orders.domain.events import Event
from orders.settings import Settings
from orders.topology import CUSTOMER_EVENTS, TOPICS

log = logging.getLogger(__name__)

#: SNS PublishBatch limits.
MAX_BATCH_ENTRIES = 10
MAX_BATCH_BYTES = 256 * 1024
PUBLISH_ATTEMPTS = 4
JITTER_BASE_SECONDS = 0.05
NOTIFY_TASK = "notifications.notify"


def sns_entry(ev: Event) -> dict[str, Any]:
    """One PublishBatch entry for an event."""
    body = json.dumps(ev.envelope(), default=str, separators=(",", ":"))
    entry: dict[str, Any] = {"Id": ev.event_id.replace("-", "")[:80], "Message": body,
                             "MessageAttributes": ev.attributes()}
    if ev.type in CUSTOMER_EVENTS:
        entry["MessageStructure"] = "json"
        entry["Message"] = json.dumps({"default": body, "sqs": celery_message(ev), "sms": ev.summary(),
                                       "email": ev.summary() + "\n\n" + body})
    return entry


def celery_message(ev: Event) -> str:
    """A Celery task message (kombu's JSON envelope) for notifications.notify(event)."""
    from kombu.serialization import dumps

    from orders.celery import app

    msg = app.amqp.as_task_v2(ev.event_id, NOTIFY_TASK, args=(ev.envelope(),), kwargs={},
                              root_id=ev.correlation_id)
    content_type, encoding, body = dumps(msg.body, serializer="json")
    body_bytes = body if isinstance(body, bytes) else body.encode(encoding)
    return json.dumps({
        "body": base64.b64encode(body_bytes).decode(), "content-encoding": encoding,
        "content-type": content_type, "headers": msg.headers,
        "properties": {**msg.properties, "body_encoding": "base64", "priority": 0,
                       "delivery_tag": ev.event_id,
                       "delivery_info": {"exchange": "", "routing_key": "notifications"}},
    }, default=str)


def entry_size(entry: dict[str, Any]) -> int:
    attrs = sum(len(k) + len(v["DataType"]) + len(v["StringValue"])
                for k, v in entry["MessageAttributes"].items())
    return len(entry["Message"].encode()) + attrs


def batches(entries: Sequence[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    """Entries split into PublishBatch requests within the entry-count and size limits."""
    batch: list[dict[str, Any]] = []
    size = 0
    for entry in entries:
        n = entry_size(entry)
        if n > MAX_BATCH_BYTES:
            raise PermanentError(f"event {entry['Id']} is {n} bytes, above SNS's {MAX_BATCH_BYTES}")
        if batch and (len(batch) == MAX_BATCH_ENTRIES or size + n > MAX_BATCH_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(entry)
        size += n
    if batch:
        yield batch


_topic_arns: dict[tuple[Any, ...], dict[str, str]] = {}


def topic_arns(settings: Settings) -> dict[str, str]:
    """Declared topic name -> ARN, for the topics that exist (discovered, never built by hand)."""
    sns = clients.client("sns", settings)
    by_sns_name = {arn.rsplit(":", 1)[1]: arn
                   for page in sns.get_paginator("list_topics").paginate()
                   for arn in (t["TopicArn"] for t in page.get("Topics", []))}
    return {spec.name: by_sns_name[spec.sns_name(settings)]
            for spec in TOPICS if spec.sns_name(settings) in by_sns_name}


def topic_arn(settings: Settings, topic: str) -> str:
    """A declared topic's ARN, discovered once per process and environment (never built by hand)."""
    key = (settings.env, settings.region, settings.endpoint_url)
    if topic not in _topic_arns.get(key, {}):
        with aws_errors():
            _topic_arns[key] = topic_arns(settings)
    try:
        return _topic_arns[key][topic]
    except KeyError:
        raise PermanentError(f"SNS topic {settings.prefix}{topic} does not exist: run `orders infra up`") \
            from None


def publish(settings: Settings, events: Sequence[Event]) -> None:
    """Publish events, in PublishBatch calls shared with the other tasks of this process.

    Entries of concurrent publishes to one topic go out together (10 a call, within
    SNS's size limit, after at most `settings.send_linger` s); the caller waits for
    its own. SNS's transient failures are retried by the batcher; then the caller
    gets a RetryableError (its task retries with backoff), or a PermanentError for
    an entry SNS refuses.
    """
    if not settings.batch_acks:
        return publish_unbatched(settings, events)
    batcher = batching.shared("sns-publish", batching.publish_batch, settings.send_linger)
    sns = clients.client("sns", settings)
    futures = []
    for ev in events:
        entry = sns_entry(ev)
        n = entry_size(entry)
        if n > MAX_BATCH_BYTES:
            raise PermanentError(f"event {entry['Id']} is {n} bytes, above SNS's {MAX_BATCH_BYTES}")
        futures.append(batcher.submit(sns, topic_arn(settings, ev.topic), entry, n))
    failed = batching.failures(futures)
    if failed:
        raise publish_error(failed[0], len(failed)) from failed[0]


def publish_error(exc: BaseException, count: int) -> Exception:
    """What a failed publish raises: permanent when SNS refused an entry, else retryable."""
    if isinstance(exc, batching.BatchEntryError):
        kind = PermanentError if exc.sender_fault else RetryableError
        return kind(f"{count} event(s) not published: {exc}")
    if isinstance(exc, (ClientError, BotoCoreError)):
        return classify_aws_error(exc)
    return RetryableError(f"{count} event(s) not published: {exc!r}")


def publish_unbatched(settings: Settings, events: Sequence[Event]) -> None:
    """One PublishBatch per topic and batch of these events alone (ORDERS_BATCH_ACKS=0, the stock setup)."""
    by_topic: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for ev in events:
        by_topic[ev.topic].append(sns_entry(ev))
    sns = clients.client("sns", settings)
    for topic, entries in by_topic.items():
        arn = topic_arn(settings, topic)
        for batch in batches(entries):
            publish_batch(sns, arn, batch)


def publish_batch(sns: Any, arn: str, entries: list[dict[str, Any]]) -> None:
    """One PublishBatch; entries SNS fails transiently are sent again (bounded, full jitter)."""
    pending = entries
    for attempt in range(PUBLISH_ATTEMPTS):
        if attempt:
            time.sleep(random.uniform(0, JITTER_BASE_SECONDS * 2 ** attempt))
        try:
            response = sns.publish_batch(TopicArn=arn, PublishBatchRequestEntries=pending)
        except (ClientError, BotoCoreError) as exc:
            error = classify_aws_error(exc)
            if not isinstance(error, RetryableError):
                raise error from exc
            log.warning("PublishBatch to %s failed (attempt %d): %s", arn, attempt + 1, exc)
            continue
        failed = response.get("Failed", [])
        if any(f.get("SenderFault") for f in failed):
            raise PermanentError(f"SNS refused events: {failed}")
        if not failed:
            return
        failed_ids = {f["Id"] for f in failed}
        pending = [e for e in pending if e["Id"] in failed_ids]
    raise RetryableError(f"{len(pending)} event(s) not published to {arn} after {PUBLISH_ATTEMPTS} attempts")
