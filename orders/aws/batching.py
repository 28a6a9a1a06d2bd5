"""Batch calls for SQS and SNS: entries collected per target and sent by the one background batcher.

One `Batcher` serves one batch API of the shape the three we use share
(DeleteMessageBatch, SendMessageBatch, PublishBatch): a target (queue URL or
topic ARN), up to ten entries with an `Id` each, at most 256 KiB in all, and a
response that lists the `Successful` and the `Failed` entries. A batch goes out
when it is full or when its oldest entry has waited `linger` seconds (a linger
of zero: as soon as the thread takes it, with whatever was submitted with it).
Every entry has a Future: the caller either waits on it (a send or a publish
that must not be lost) or lets the batcher log and count the failure (an ack,
whose message SQS then redelivers).

Failed entries are retried when the fault is on the server's side
(`SenderFault` false, throttling, 5xx, network), at most `max_attempts` times
inside `retry_window` seconds, after an exponential backoff with equal jitter;
anything else fails its Future, and is logged and counted. Nothing is dropped
silently. This is the one retry loop of batch entries. A failed entry is a
`BatchEntryError`, a ClientError like any failed call's, so it is classified and
caught where they are.

SQS sends wait out an outage. A task cannot retry a failed send by sending (a
Celery retry is a send, and so is the chain's hand-off), so the entries a thread
submits to the SQS send batcher after `wait_out_outages(seconds)` keep being
retried, as long as SQS's fault lasts, for up to that long: a worker's task thread
waits, its message still held, rather than fail and let SQS count a receive more.
Other threads (a producer answering a client) give up after `retry_window`.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from orders.aws.background import BackgroundBatcher
from orders.aws.errors import Backoff, is_retryable_aws_error

logger = logging.getLogger(__name__)

#: What one SQS or SNS batch request carries at most: ten entries, 256 KiB of message data in all.
MAX_ENTRIES = 10
MAX_BATCH_BYTES = 256 * 1024
#: Sends of one entry at most (the first and three retries), and the backoff before each retry.
MAX_ATTEMPTS = 4
BACKOFF = Backoff(base=0.1, cap=5.0, factor=4.0)
#: The longest an SQS send may wait out an outage (`wait_out_outages`).
MAX_PATIENCE = 3600.0
#: How long a submitter waits for its entries at most; a batcher settles every entry
#: sooner (its retry window, or the patience of a send), so this only guards against a stuck thread.
RESULT_TIMEOUT = MAX_PATIENCE + 120.0
#: How often a batcher whose entries wait out an outage says so.
WARN_EVERY = 30.0

_thread = threading.local()


def wait_out_outages(seconds: float) -> None:
    """Let the SQS sends this thread submits from now on be retried for up to `seconds` (0: as usual)."""
    _thread.patience = min(max(float(seconds), 0.0), MAX_PATIENCE)


def patience() -> float:
    """How long this thread's SQS sends wait out an outage (see `wait_out_outages`)."""
    return float(getattr(_thread, "patience", 0.0))


class BatchEntryError(ClientError):
    """One entry of a batch call failed for good: a ClientError with AWS's code (a 500 unless the sender's
    fault), so it is classified and caught as a failed call is."""

    def __init__(self, code: str, message: str, sender_fault: bool, operation: str = "batch"):
        response: Any = {"Error": {"Code": code, "Message": message},
                         "ResponseMetadata": {"HTTPStatusCode": 400 if sender_fault else 500}}
        super().__init__(response, operation)
        self.code = code
        self.sender_fault = sender_fault

    def __reduce__(self) -> Any:  # ClientError pickles as (response, operation): not this signature
        message = self.response["Error"]["Message"]
        return type(self), (self.code, message, self.sender_fault, self.operation_name)


def outcomes(futures: Sequence[Future[Any]]) -> list[BaseException | None]:
    """Wait for every submitted entry; each one's error, None for those that went."""
    return [f.exception(RESULT_TIMEOUT) for f in futures]


def failures(futures: Sequence[Future[Any]]) -> list[BaseException]:
    """Wait for every submitted entry; the errors of those that failed, in order."""
    return [exc for exc in outcomes(futures) if exc is not None]


#: How a batch is sent: call(client, target, entries) -> the response dict.
BatchCall = Callable[[Any, str, list[dict[str, Any]]], dict[str, Any]]


#: A batcher's target: (id of the client, queue URL or topic ARN).
_Key = tuple[int, str]


@dataclass(eq=False, slots=True)
class _Entry:
    client: Any
    target: str
    payload: dict[str, Any]
    size: int
    future: Future[Any]
    deadline: float
    patient: bool = False  # retried until its deadline, however many attempts that takes
    attempts: int = 0


class Batcher:
    """Entries of one AWS batch API, sent by a background batcher; see the module docstring."""

    def __init__(self, name: str, call: BatchCall, *, linger: float = 0.05,
                 linger_for: Callable[[str], float] | None = None,
                 max_entries: int = MAX_ENTRIES, max_bytes: int = MAX_BATCH_BYTES,
                 retry_window: float = 10.0, max_attempts: int = MAX_ATTEMPTS, patient: bool | None = None,
                 backoff: Backoff = BACKOFF):
        self.name = name
        self._call = call
        self.retry_window = retry_window
        self.max_attempts = max_attempts
        self.backoff = backoff
        # Whether threads' patience applies: by default to SQS sends alone (the module docstring).
        self.patient = call is send_message_batch if patient is None else patient
        self._warned_at = -WARN_EVERY
        self.stats: Counter[str] = Counter()
        self._stats_lock = threading.Lock()  # submitters count from many threads
        # A target is (client, URL or ARN): a target's own linger, where targets differ.
        target_linger: float | Callable[[_Key], float] = linger
        if linger_for is not None:
            target_linger = lambda key: linger_for(key[1])  # noqa: E731
        self._batcher: BackgroundBatcher[_Key, _Entry] = BackgroundBatcher(
            name, self._send, linger=target_linger, max_items=max_entries, max_bytes=max_bytes,
            size=lambda entry: entry.size)

    def submit(self, client: Any, target: str, payload: dict[str, Any], size: int = 0) -> Future[Any]:
        """Queue one entry (without its `Id`); the Future resolves to AWS's result entry."""
        deadline, patient = self._deadline()
        entry = _Entry(client, target, payload, size, Future(), deadline, patient)
        self._batcher.submit((id(client), target), entry)
        with self._stats_lock:
            self.stats["submitted"] += 1
        return entry.future

    def submit_many(self, client: Any, target: str,
                    payloads: Sequence[tuple[dict[str, Any], int]]) -> list[Future[Any]]:
        """Queue (payload, size) entries together: a linger of zero still sends them in one call."""
        deadline, patient = self._deadline()
        entries = [_Entry(client, target, payload, size, Future(), deadline, patient)
                   for payload, size in payloads]
        self._batcher.submit_many((id(client), target), entries)
        with self._stats_lock:
            self.stats["submitted"] += len(entries)
        return [entry.future for entry in entries]

    def _deadline(self) -> tuple[float, bool]:
        """Until when this thread's entries are retried, and whether past `max_attempts`."""
        wait = patience() if self.patient else 0.0
        if wait > self.retry_window:
            return time.monotonic() + wait, True
        return time.monotonic() + self.retry_window, False

    @property
    def closed(self) -> bool:
        return self._batcher.closed

    def pending(self) -> int:
        """Entries submitted and not yet resolved (queued or in flight)."""
        return self._batcher.pending()

    def flush(self, timeout: float = 10.0) -> bool:
        """Send everything queued now, without waiting for `linger`; True once all resolved."""
        return self._batcher.flush(timeout)

    def close(self, timeout: float = 10.0) -> bool:
        """Flush, then stop the thread; later submits raise."""
        done = self._batcher.close(timeout)
        if not done:
            logger.error("%s batcher closed with %d entries unsent", self.name, self.pending())
        logger.info("%s", self.summary())
        return done

    def summary(self) -> str:
        """One line for the log: entries per call, failures, retries."""
        s = self.stats
        per_call = s["ok"] / s["calls"] if s["calls"] else 0.0
        return (f"{self.name}: {s['ok']} entries in {s['calls']} calls ({per_call:.1f} per call), "
                f"{s['failed']} failed, {s['retried']} retried")

    def _send(self, key: _Key, batch: list[_Entry]) -> None:
        entries = [{**e.payload, "Id": str(i)} for i, e in enumerate(batch)]
        self.stats["calls"] += 1
        try:
            response = self._call(batch[0].client, batch[0].target, entries)
        except Exception as exc:  # every entry shares the call's fate
            self.stats["call_errors"] += 1
            self._settle(key, batch, {str(i): exc for i in range(len(batch))}, {})
            return
        ok = {r["Id"]: r for r in response.get("Successful", [])}
        failed: dict[str, BaseException] = {
            f["Id"]: BatchEntryError(f.get("Code", "?"), f.get("Message", ""), bool(f.get("SenderFault")),
                                     self.name)
            for f in response.get("Failed", [])
        }
        for i in range(len(batch)):  # an entry in neither list cannot be trusted as sent
            if str(i) not in ok and str(i) not in failed:
                failed[str(i)] = BatchEntryError("Missing", "not in the response", False, self.name)
        self._settle(key, batch, failed, ok)

    def _settle(self, key: _Key, batch: list[_Entry], failed: dict[str, BaseException],
                ok: dict[str, Any]) -> None:
        now = time.monotonic()
        retry: list[tuple[_Entry, float]] = []
        for i, entry in enumerate(batch):
            exc = failed.get(str(i))
            if exc is None:
                self.stats["ok"] += 1
                entry.future.set_result(ok[str(i)])
            elif retryable(exc) and (entry.patient or entry.attempts + 1 < self.max_attempts) \
                    and now < entry.deadline:
                entry.attempts += 1
                retry.append((entry, now + min(self.backoff.delay(entry.attempts), entry.deadline - now)))
            else:
                self.stats["failed"] += 1
                # An entry AWS may take later is its caller's to retry (a task's retry): a warning.
                logger.log(logging.WARNING if retryable(exc) else logging.ERROR,
                           "%s batch entry for %s failed after %d attempt(s): %r",
                           self.name, entry.target, entry.attempts + 1, exc)
                entry.future.set_exception(exc)
        if retry:
            self.stats["retried"] += len(retry)
            self._warn_waiting(retry[0][0], failed)
            self._batcher.requeue(key, retry)

    def _warn_waiting(self, entry: _Entry, failed: dict[str, BaseException]) -> None:
        """Say, at most every WARN_EVERY seconds, that entries are waiting out an outage."""
        now = time.monotonic()
        if entry.patient and now - self._warned_at >= WARN_EVERY:
            self._warned_at = now
            logger.warning("%s: %d entries waiting out an outage (%d attempts so far, %.0f s left): %s",
                           self.name, self.pending(), entry.attempts, entry.deadline - now,
                           next(iter(failed.values())))


def retryable(exc: BaseException) -> bool:
    """Whether a failed entry may go again: the fault was on AWS's side or the network's (a throttled
    entry too, even one SQS or SNS calls the sender's fault)."""
    return is_retryable_aws_error(exc)


_shared: dict[tuple[int, str], Batcher] = {}
_shared_lock = threading.Lock()


def shared(name: str, call: BatchCall, linger: float) -> Batcher:
    """The process's batcher called `name`, made on first use (a forked child makes its own)."""
    key = (os.getpid(), name)
    with _shared_lock:
        if key not in _shared:
            _shared[key] = Batcher(name, call, linger=linger)
            atexit.register(_log_summary, key)
        return _shared[key]


def existing(name: str) -> Batcher | None:
    """The process's batcher called `name`, if one was made."""
    return _shared.get((os.getpid(), name))


def _log_summary(key: tuple[int, str]) -> None:
    if key[0] == os.getpid():
        logger.info("%s", _shared[key].summary())


def delete_message_batch(client: Any, queue_url: str, entries: list[dict[str, Any]]) -> dict[str, Any]:
    """BatchCall for SQS acks."""
    return dict(client.delete_message_batch(QueueUrl=queue_url, Entries=entries))


def send_message_batch(client: Any, queue_url: str, entries: list[dict[str, Any]]) -> dict[str, Any]:
    """BatchCall for SQS sends."""
    return dict(client.send_message_batch(QueueUrl=queue_url, Entries=entries))


def publish_batch(client: Any, topic_arn: str, entries: list[dict[str, Any]]) -> dict[str, Any]:
    """BatchCall for SNS publishes."""
    return dict(client.publish_batch(TopicArn=topic_arn, PublishBatchRequestEntries=entries))


def message_size(payload: dict[str, Any]) -> int:
    """What SQS/SNS count against the batch size limit: the body and the attributes."""
    body = payload.get("MessageBody", payload.get("Message", ""))
    size = len(body.encode()) if isinstance(body, str) else len(body)
    for name, attr in (payload.get("MessageAttributes") or {}).items():
        value = attr.get("StringValue") or attr.get("BinaryValue") or b""
        size += len(name) + len(attr.get("DataType", "")) + len(value)
    return size
