"""Domain events out to SNS from a Celery process: the SNS publisher wired with the Celery rendering
of customer events for the notifications queue, and the publishing task's messages.

Callers use `publish(settings, events)` or `publisher(settings)` from here (not orders.aws.sns
directly): SQS subscribers of customer events get a Celery task message for `notifications.notify`
(kombu's JSON envelope) carrying the event, so a stock Celery worker consumes the fan-out with no
extra hop.

The pipeline's steps publish in the step (a PublishBatch shared by the tasks running
together; docs/architecture.md says why). Producers outside it that must not wait on SNS
(the API, an admin tool) hand their events to the `notifications.publish` task with
`publish_later(events)`: the same publishing path, run by a notifications worker.

`send_errors()` is what a producer's send of a task message raises when SQS fails it:
RetryableError when SQS is throttling, failing or unreachable (an outage: the caller
answers 503, or tries again later), PermanentError when SQS refuses the message.
"""

from __future__ import annotations

import base64
import dataclasses
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from celery import current_app
from celery.result import AsyncResult
from kombu.exceptions import OperationalError
from kombu.serialization import dumps

from orders.aws.sns import EventPublisher
from orders.aws.tables import aws_errors
from orders.domain.errors import RetryableError
from orders.domain.events import EVENT_TOPICS, Event
from orders.runtime import tracing
from orders.runtime.redaction import NOTIFY_TASK, PUBLISH_TASK, describe
from orders.settings import Settings


def publisher(settings: Settings) -> EventPublisher:
    """The SNS publisher of a Celery process: customer events carry a task message for SQS, and every
    event its publish's trace context (when tracing is on: orders.runtime.tracing)."""
    return EventPublisher(settings, sqs_message=celery_message, trace_attributes=tracing.message_attributes)


def publish(settings: Settings, events: Sequence[Event]) -> None:
    """Publish events through the one SNS publishing path (in a span of its own when tracing is on)."""
    with tracing.publishing(events):
        publisher(settings).publish(events)


def publish_later(events: Sequence[Event]) -> AsyncResult:
    """Hand events to the publishing task (one message); it publishes them as `publish` would.

    RetryableError if SQS cannot take the message now (`send_errors`).
    """
    with send_errors():
        return current_app.send_task(PUBLISH_TASK, args=([dataclasses.asdict(ev) for ev in events],))


@contextmanager
def send_errors() -> Iterator[None]:
    """Around a producer's send: SQS's failures as RetryableError (kombu's connection errors included),
    its refusals as PermanentError."""
    try:
        with aws_errors():
            yield
    except OperationalError as exc:  # kombu's wrapping of connection errors it gave up retrying
        raise RetryableError(f"SQS unavailable: {exc}") from exc


def events_from(message: Any) -> list[Event]:
    """The events of a publishing task's message; ValueError if it holds anything else (a poison message)."""
    try:
        events = [Event(**fields) for fields in message]
    except TypeError as exc:  # not a list of mappings, or fields an Event does not have
        raise ValueError(f"{PUBLISH_TASK} takes a list of events: {exc}") from None
    unknown = sorted({repr(ev.type) for ev in events
                      if not (isinstance(ev.type, str) and ev.type in EVENT_TOPICS)})
    if unknown:
        raise ValueError(f"{PUBLISH_TASK}: no topic carries {', '.join(unknown)}")
    return events


def celery_message(ev: Event) -> str:
    """A Celery task message (kombu's JSON envelope) for notifications.notify(event)."""
    # The process's Celery app (the one `celery -A orders` runs, or the client's): a layer
    # below orders.celery, this module does not import it.
    args = (ev.envelope(),)
    argsrepr, kwargsrepr = describe(NOTIFY_TASK, args, {}) or (None, None)
    msg = current_app.amqp.as_task_v2(ev.event_id, NOTIFY_TASK, args=args, kwargs={},
                                      root_id=ev.correlation_id, argsrepr=argsrepr, kwargsrepr=kwargsrepr)
    # Not sent through Celery, so no instrumentation sees it: the notify task's parent is the
    # publish this message is rendered in.
    tracing.inject(msg.headers)
    content_type, encoding, body = dumps(msg.body, serializer="json")
    body_bytes = body if isinstance(body, bytes) else body.encode(encoding)
    return json.dumps({
        "body": base64.b64encode(body_bytes).decode(), "content-encoding": encoding,
        "content-type": content_type, "headers": msg.headers,
        "properties": {**msg.properties, "body_encoding": "base64", "priority": 0,
                       "delivery_tag": ev.event_id,
                       "delivery_info": {"exchange": "", "routing_key": "notifications"}},
    }, default=str)
