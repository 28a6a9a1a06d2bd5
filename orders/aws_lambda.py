"""`orders.aws_lambda.handler`: a service queue consumed by AWS Lambda instead of ECS workers.

An SQS event source mapping hands the function a batch of one queue's messages. Each runs as a
Celery worker runs it, with Celery's own machinery rather than a copy of it: kombu's SQS channel
decodes the message (its JSON envelope, base64 or not), Celery's worker `Request` is built from the
message's headers and properties as the worker's strategy builds it, and the solo pool runs it
through Celery's tracer (not eager), so a chain's next step is sent, a retry goes out as a new
message, and the task signals (metrics, failure records) fire as on a worker. What the worker would
ack is left to the event source mapping to delete; a failed or rejected task is returned in
`batchItemFailures`, so that SQS redelivers it and, after the queue's maxReceiveCount, moves it to
its DLQ. A message that is no task of ours (orders.runtime.envelope) is copied to its queue's DLQ
at once with the reason, as a worker moves it, and reported done: the mapping deletes the original
only once the copy is stored. docs/deploy.md says what differs from a worker.
"""

from __future__ import annotations

import logging
import math
import socket
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from celery import signals
from celery.concurrency.solo import TaskPool
from celery.exceptions import TaskRevokedError
from celery.utils.imports import symbol_by_name
from celery.worker.strategy import hybrid_to_proto2, proto1_to_proto2  # type: ignore[attr-defined]  # not in the stubs
from kombu.serialization import prepare_accept_content

from orders.aws import clients, metrics
from orders.celery import app
from orders.runtime import envelope
from orders.runtime.envelope import Poison
from orders.runtime.quarantine import Quarantine
from orders.runtime.queue_urls import queue_url
from orders.settings import ConfigurationError, Settings
from orders.topology import QUEUES_BY_NAME, QueueSpec

log = logging.getLogger(__name__)

Record = dict[str, Any]
#: A message whose ETA (a retry's countdown) falls within this share of the invocation's remaining
#: time is waited for, as a worker holds it until then; a later one is handed back to SQS,
#: hidden until its ETA.
ETA_WAIT_SHARE = 0.5


def handler(event: dict[str, Any], context: Any = None) -> dict[str, list[dict[str, str]]]:
    """Run one batch of an SQS event source mapping; what must come back (ReportBatchItemFailures)."""
    consumer = _consumer(app.settings)
    try:
        failed = consumer.run_batch(event.get("Records") or [], Deadline.of(context))
    finally:
        metrics.flush()  # between invocations Lambda freezes the process, background flushes included
    return {"batchItemFailures": [{"itemIdentifier": message_id} for message_id in failed]}


@dataclass
class Deadline:
    """When the invocation ends (Lambda's context), in time.monotonic() seconds."""

    at: float

    @classmethod
    def of(cls, context: Any) -> Deadline:
        remaining = getattr(context, "get_remaining_time_in_millis", None)
        return cls(time.monotonic() + (remaining() / 1000 if remaining else math.inf))

    def left(self) -> float:
        return self.at - time.monotonic()


@dataclass
class Delivery:
    """What Celery's worker did with one message: acked (done), rejected (back to SQS), or neither."""

    acked: bool | None = None

    def ack(self, *_: Any) -> None:
        self.acked = True

    def reject(self, *_: Any) -> None:
        self.acked = False


class Consumer:
    """Runs event source mapping records of this environment's queues as a worker runs their messages."""

    def __init__(self, settings: Settings):
        self.settings = settings
        app.loader.import_default_modules()  # the task modules, as a worker imports them at start
        metrics.bind(settings)  # as orders.runtime.task_metrics does when a worker starts
        # A broker channel decodes messages the way the worker's does (ours or kombu's stock
        # transport, as configured); nothing is received through it.
        self.connection = app.connection_for_read()
        self.channel: Any = self.connection.default_channel  # the SQS channel; StdChannel in the stubs
        self.pool = TaskPool()
        self.hostname = f"lambda@{socket.gethostname()}"
        self.quarantine = Quarantine(settings, lambda _queue: clients.client("sqs", settings))
        self.accept = frozenset(prepare_accept_content(app.conf.accept_content) or ())

    def close(self) -> None:
        self.connection.release()

    def queue_of(self, record: Record) -> QueueSpec:
        """The declared queue a record comes from, by its event source ARN."""
        sqs_name = str(record.get("eventSourceARN", "")).rsplit(":", 1)[-1]
        name = sqs_name.removeprefix(self.settings.prefix)
        if not sqs_name.startswith(self.settings.prefix) or name not in QUEUES_BY_NAME:
            raise ConfigurationError(
                f"queue {sqs_name!r} is not a queue of environment {self.settings.env!r} "
                f"(ORDERS_ENV; its queues: {self.settings.prefix}<{'|'.join(QUEUES_BY_NAME)}>)")
        if self.settings.lambda_queue and name != self.settings.lambda_queue:
            # The function was deployed for one queue; a mapping to another is a wiring mistake.
            raise ConfigurationError(f"record from queue {name!r}, but this function serves "
                                     f"{self.settings.lambda_queue!r} (ORDERS_LAMBDA_QUEUE)")
        return QUEUES_BY_NAME[name]

    def run_batch(self, records: list[Record], deadline: Deadline) -> list[str]:
        """Run each record; the message ids to report as failures."""
        failed: list[str] = []
        for record in records:
            spec = self.queue_of(record)
            # On a FIFO queue the rest of the batch comes back untouched after a failure, so that
            # no message runs before one of its group that is still to be retried.
            if (failed and spec.fifo) or not self.run(record, spec, deadline):
                failed.append(record["messageId"])
        return failed

    def run(self, record: Record, spec: QueueSpec, deadline: Deadline) -> bool:
        """Run one record: True when the worker would have acked its message."""
        delivery = Delivery()
        try:
            envelope.decode(record.get("body"), app.tasks, self.accept)
        except Poison as poison:
            return self.quarantine.copy(spec.name, sqs_message(record), poison)
        try:
            request = self.request(record, spec, delivery)
            if request is not None and not self.due(request, record, spec, deadline):
                return False  # hidden until its ETA: not a failure, no backoff
            if request is not None:
                request.execute_using_pool(self.pool)
        except TaskRevokedError:
            pass  # expired: the request acked it, as a worker drops an expired task
        except Exception:
            log.exception("message %s of %s could not be run", record.get("messageId"), spec.name)
        if delivery.acked:
            return True
        self.back_off(record, spec)
        return False

    def request(self, record: Record, spec: QueueSpec, delivery: Delivery) -> Any:
        """Celery's worker Request for the record's message (None for a message no task can take)."""
        # kombu's SQS channel turns a received message into its envelope (base64 or not), then a Message.
        envelope = self.channel._message_to_python(sqs_message(record), spec.name,
                                                   queue_url(self.settings, spec.name))
        message = self.channel.message_to_python(envelope)
        name = self.task_name(message)
        if name is None:
            log.error("message %s is not a task message: %.200r", record.get("messageId"), record.get("body"))
            return None
        if name not in app.tasks:
            log.error("message %s names no registered task: %r", record.get("messageId"), name)
            signals.task_unknown.send(sender=self, message=message, exc=KeyError(name), name=name,
                                      id=message.headers.get("id"))
            return None
        task = app.tasks[name]
        body, headers, decoded, utc = self.parts(message)
        request = symbol_by_name(task.Request)(
            message, on_ack=delivery.ack, on_reject=delivery.reject, app=app, hostname=self.hostname,
            eventer=None, task=task, connection_errors=self.connection.connection_errors,
            body=body, headers=headers, decoded=decoded, utc=utc)
        signals.task_received.send(sender=self, request=request)
        return request

    @staticmethod
    def task_name(message: Any) -> str | None:
        """The task a message names: in its headers (protocol 2), else in its body (protocol 1)."""
        if "task" in message.headers:
            return str(message.headers["task"])
        payload = message.decode()
        return str(payload["task"]) if isinstance(payload, dict) and "task" in payload else None

    @staticmethod
    def parts(message: Any) -> tuple[Any, dict[str, Any], bool, bool]:
        """(body, headers, decoded, utc) of a task message, as Celery's worker strategy reads them."""
        if "task" not in message.headers:
            return proto1_to_proto2(message, message.decode())
        if "args" in message.payload:
            return hybrid_to_proto2(message, message.payload)
        return message.body, message.headers, False, app.uses_utc_timezone()

    def due(self, request: Any, record: Record, spec: QueueSpec, deadline: Deadline) -> bool:
        """Wait for a message's ETA if it comes soon enough; False when it must come back later."""
        if request.eta is None:
            return True
        delay = (request.eta - datetime.now(UTC)).total_seconds()
        if delay <= 0:
            return True
        if delay <= ETA_WAIT_SHARE * deadline.left():
            time.sleep(delay)
            return True
        self.hide(record, spec, math.ceil(delay))
        return False

    def back_off(self, record: Record, spec: QueueSpec) -> None:
        """Hide a failed message for the queue's failure backoff, as the worker's transport does."""
        count = int((record.get("attributes") or {}).get("ApproximateReceiveCount", 1))
        delay = spec.failure_backoff(self.settings.failure_backoff_seconds).get(count)
        if delay is not None:
            self.hide(record, spec, delay)

    def hide(self, record: Record, spec: QueueSpec, seconds: int) -> None:
        """Make the message visible again in `seconds` (ChangeMessageVisibility on its receipt handle)."""
        try:
            clients.client("sqs", self.settings).change_message_visibility(
                QueueUrl=queue_url(self.settings, spec.name), ReceiptHandle=record["receiptHandle"],
                VisibilityTimeout=min(seconds, 43_200))  # SQS's longest
        except Exception as exc:  # the message still comes back, after the visibility timeout
            log.warning("could not hide message %s for %d s: %s", record.get("messageId"), seconds, exc)


def sqs_message(record: Record) -> dict[str, Any]:
    """An event source mapping's record as ReceiveMessage returns the message (what kombu decodes)."""
    return {"MessageId": record["messageId"], "ReceiptHandle": record["receiptHandle"],
            "Body": record["body"], "MD5OfBody": record.get("md5OfBody"),
            "Attributes": dict(record.get("attributes") or {}),
            "MessageAttributes": {name: _attribute(value)
                                  for name, value in (record.get("messageAttributes") or {}).items()}}


def _attribute(value: Any) -> dict[str, Any]:
    """A record's message attribute (Lambda's camelCase keys) as ReceiveMessage gives it."""
    names = {"dataType": "DataType", "stringValue": "StringValue", "binaryValue": "BinaryValue"}
    given = value if isinstance(value, dict) else {}
    return {names[key]: item for key, item in given.items() if key in names and item is not None}


_current: Consumer | None = None


def _consumer(settings: Settings) -> Consumer:
    """The process's consumer, made on the first invocation (and again if the settings change)."""
    global _current
    if _current is None or _current.settings != settings:
        if _current is not None:
            _current.close()
        _current = Consumer(settings)
    return _current
