"""Receives that cannot end consumption: a failed ReceiveMessage is an empty answer, counted, logged
(a line per queue every `LOG_EVERY_SECONDS` at most) and backed off, and its queue is always polled again.

kombu's asynchronous SQS client answers a ReceiveMessage that timed out or got a 5xx
with an empty list, and raises on any other failure, in the worker's event loop: a
throttling answer (400 RequestThrottled) killed the worker ("Unrecoverable error")
or, raised in a timer ("Error in timer"), lost that queue's poll for good, while
the heartbeat kept the messages it held hidden. And a 5xx, taken as an empty
answer, was followed at once by the next receive: an SQS outage saw a worker
retry about 100 times a second. Here, on the channel's own async connection:

- any failure (an error answer of any status, no answer, an answer that does not
  parse) is a `FailedReceive`; the channel counts it and waits before that
  queue's next receive: 0.1 s doubling to 5 s (equal jitter) while the error is
  retryable (orders.aws.errors), back to none at the first answer;
- an error that is not retryable (AccessDenied, a queue that does not exist) is
  logged as an error and the queue is polled again every 5 s, so that a fixed
  policy or a re-created queue is picked up without a restart;
- an error raised before the request leaves (signing, credentials) is the same.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, cast

from botocore.awsrequest import HeadersDict
from botocore.exceptions import ClientError
from botocore.response import get_response
from kombu.asynchronous.aws.sqs.connection import AsyncSQSConnection as KombuAsyncSQSConnection
from kombu.transport.SQS import UndefinedQueueException

from orders.aws.errors import Backoff, is_retryable_aws_error
from orders.runtime.visibility import Channel as HeldChannel

logger = logging.getLogger(__name__)

#: The wait before a queue's next receive after its n-th failure in a row; the cap for a permanent error.
RECEIVE_BACKOFF = Backoff(base=0.1, cap=5.0)
#: A queue's failed receives are logged once, then at most once per this many seconds.
LOG_EVERY_SECONDS = 30.0
#: A run of failures this long (an outage, not a blip of throttling) is logged when it ends.
NOTED_RUN_SECONDS = 5.0
RECEIVE = "ReceiveMessage"


class MalformedAnswer(Exception):
    """An answer to a receive that could not be read (retryable: a proxy's page, a truncated body)."""


@dataclass(frozen=True)
class FailedReceive:
    """Stands in for the answer of a ReceiveMessage that got no usable one."""

    error: BaseException
    retryable: bool

    @classmethod
    def of(cls, error: BaseException) -> FailedReceive:
        return cls(error, isinstance(error, MalformedAnswer) or is_retryable_aws_error(error))


def failed_answer(model: Any, response: Any) -> FailedReceive:
    """The FailedReceive of a non-200 answer (kombu's AsyncHTTPResponse), or of none (curl's 599)."""
    http = response.response
    if response.status == 599 and http.error is not None:  # curl's code for no answer at all
        return FailedReceive.of(ConnectionError(f"{model.name}: no answer ({http.error})"))
    parsed = parse(model, response)
    if not isinstance(parsed.get("Error"), dict):
        raise MalformedAnswer(f"HTTP {response.status} without an error: {http.body!r:.200}")
    return FailedReceive.of(ClientError(cast(Any, parsed), model.name))


def parse(model: Any, response: Any) -> dict[str, Any]:
    """botocore's reading of an answer to operation `model`, as its own clients read it."""
    http = response.response
    # botocore looks headers up in lower case (x-amzn-query-error); kombu's are capitalized.
    readable = SimpleNamespace(headers=HeadersDict(http.headers), status_code=response.status,
                               content=http.body or b"", raw=None)
    _, parsed = get_response(model, cast(Any, readable))
    if not isinstance(parsed, dict) or (response.status == 200 and not _readable_json(model, http.body)):
        raise MalformedAnswer(f"HTTP {response.status}: {http.body!r:.200}")
    return parsed


def _readable_json(model: Any, body: bytes | None) -> bool:
    """Whether a JSON protocol's answer is a JSON object (botocore reads anything else as empty)."""
    if model.service_model.resolved_protocol != "json" or not body:
        return True
    try:
        return isinstance(json.loads(body), dict)
    except ValueError:
        return False


class AsyncSQSConnection(KombuAsyncSQSConnection):  # type: ignore[misc]  # kombu is untyped
    """kombu's async SQS connection whose ReceiveMessage answers a FailedReceive instead of raising."""

    def _on_list_ready(self, parent: Any, markers: Any, operation: str, response: Any) -> Any:
        if operation != RECEIVE:
            return super()._on_list_ready(parent, markers, operation, response)  # type: ignore[misc]
        try:
            model = self.sqs_connection.meta.service_model.operation_model(operation)
            if response.status == self.STATUS_CODE_OK:
                return parse(model, response)
            return failed_answer(model, response)
        except Exception as exc:  # whatever the answer was, it must not raise in the event loop
            return FailedReceive(exc if isinstance(exc, MalformedAnswer) else MalformedAnswer(repr(exc)),
                                 retryable=True)


@dataclass
class _Queue:
    """One queue's failures: the run under way, and what is not yet logged."""

    in_a_row: int = 0
    run_started: float = 0.0
    unlogged: int = 0
    logged_at: float | None = None
    logged_permanent: bool = False
    wait: float | None = None  # before the next receive, once


@dataclass
class ReceiveErrors:
    """The failed receives of one channel's queues: counted, logged sparingly, and backed off."""

    backoff: Backoff = RECEIVE_BACKOFF
    log_every: float = LOG_EVERY_SECONDS
    counts: Counter[str] = field(default_factory=Counter)
    _queues: dict[str, _Queue] = field(default_factory=dict)

    def failed(self, queue: str, failure: FailedReceive) -> None:
        """Count and maybe log a failed receive of `queue`, and set the wait before its next one."""
        state = self._queues.setdefault(queue, _Queue())
        now = time.monotonic()
        if not state.in_a_row:
            state.run_started = now
        state.in_a_row += 1
        state.unlogged += 1
        self.counts["failed"] += 1
        if not failure.retryable:
            self.counts["failed_permanently"] += 1
        state.wait = self.backoff.delay(state.in_a_row) if failure.retryable else self.backoff.cap
        if self._log_due(state, failure, now):
            self._log(queue, state, failure, now)

    def answered(self, queue: str) -> None:
        """`queue` answered: its next receive follows as usual; a long run of failures is noted."""
        state = self._queues.get(queue)
        if state is None or not state.in_a_row:
            return
        lasted = time.monotonic() - state.run_started
        if lasted >= NOTED_RUN_SECONDS:
            logger.info("ReceiveMessage of %s answered again, after %d failure(s) in a row over %.1f s",
                        queue, state.in_a_row, lasted)
        state.in_a_row, state.wait = 0, None

    def wait(self, queue: str) -> float | None:
        """Seconds to wait before `queue`'s next receive, after a failure (once); None after an answer."""
        state = self._queues.get(queue)
        if state is None:
            return None
        wait, state.wait = state.wait, None
        return wait

    def _log_due(self, state: _Queue, failure: FailedReceive, now: float) -> bool:
        if state.logged_at is None or now - state.logged_at >= self.log_every:
            return True
        return not failure.retryable and not state.logged_permanent  # an error never waits behind a warning

    def _log(self, queue: str, state: _Queue, failure: FailedReceive, now: float) -> None:
        since = f"in the last {now - state.logged_at:.0f} s" if state.logged_at is not None else "so far"
        level = logging.WARNING if failure.retryable else logging.ERROR
        logger.log(level, "ReceiveMessage of %s failed (%d failure(s) %s, %d in a row; next receive in "
                   "%.1f s): %s", queue, state.unlogged, since, state.in_a_row, state.wait or 0.0,
                   describe(failure.error))
        state.logged_at, state.unlogged, state.logged_permanent = now, 0, not failure.retryable


def describe(error: BaseException) -> str:
    """The error as a log line shows it: its AWS code and message, else its repr."""
    if isinstance(error, ClientError):
        err = error.response.get("Error", {})
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", "?")
        return f"HTTP {status} {err.get('Code', '?')}: {err.get('Message', '')}"
    return repr(error)


class Channel(HeldChannel):
    """The held-message channel whose receives go through our AsyncSQSConnection, backed off on failure."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.receive_errors = ReceiveErrors()

    def asynsqs(self, queue: str | None = None) -> Any:
        """kombu's choice of async connection (one per predefined queue), made as ours."""
        if queue is None or not self.predefined_queues:
            if self._asynsqs is None:
                self._asynsqs = self._new_async_connection(queue, self.region)
            return self._asynsqs
        made = self._predefined_queue_async_clients
        if queue in made and not hasattr(self, "sts_expiration"):  # kombu's: STS credentials expire
            return made[queue]
        spec = self.predefined_queues.get(queue)
        if not spec:
            raise UndefinedQueueException(f"Queue with name '{queue}' must be defined in "
                                          "'predefined_queues'.")
        made[queue] = self._new_async_connection(queue, spec.get("region", self.region))
        return made[queue]

    def _new_async_connection(self, queue: str | None, region: str) -> AsyncSQSConnection:
        wanted = self.get_message_attributes
        return AsyncSQSConnection(sqs_connection=self.sqs(queue=queue), region=region,
                                  message_system_attribute_names=wanted.get("MessageSystemAttributeNames"),
                                  message_attribute_names=wanted.get("MessageAttributeNames"))

    def receive_answered(self, queue: str, answer: Any) -> bool:
        """Whether a receive of `queue` was answered; a FailedReceive is counted, logged and backed off."""
        if isinstance(answer, FailedReceive):
            self.receive_errors.failed(queue, answer)
            return False
        self.receive_errors.answered(queue)
        return True

    def _schedule_queue(self, queue: str) -> None:
        try:
            super()._schedule_queue(queue)  # type: ignore[misc]  # kombu is untyped
        except Exception as exc:  # raised before the request left (signing, credentials): no callback comes
            self.receive_errors.failed(queue, FailedReceive.of(exc))
            self._loop1(queue)

    def _loop1(self, queue: str, messages_fetched: int | None = None) -> None:
        wait = self.receive_errors.wait(queue)
        if wait is None:
            return super()._loop1(queue, messages_fetched)  # type: ignore[misc]
        self.hub.call_later(wait, self._schedule_queue, queue)  # type: ignore[attr-defined]
