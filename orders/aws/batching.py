"""Batch calls for SQS and SNS: entries collected per target, sent from one background thread.

One `Batcher` serves one batch API of the shape the three we use share
(DeleteMessageBatch, SendMessageBatch, PublishBatch): a target (queue URL or
topic ARN), up to ten entries with an `Id` each, and a response that lists the
`Successful` and the `Failed` entries. A batch goes out when it is full (10
entries or the size limit) or when its oldest entry has waited `linger`
seconds. Every entry has a Future: the caller either waits on it (a send that
must not be lost) or lets the batcher log and count the failure (an ack, whose
message SQS then redelivers).

Failed entries are retried when the fault is on the server's side
(`SenderFault` false, throttling, 5xx, network) with backoff, inside
`retry_window` seconds; anything else fails its Future, and is logged and
counted. Nothing is dropped silently.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from orders.aws.errors import is_retryable_aws_error

logger = logging.getLogger(__name__)

MAX_ENTRIES = 10
#: SQS and SNS batch requests carry at most 256 KiB of message data in all.
MAX_BATCH_BYTES = 256 * 1024


class BatchEntryError(Exception):
    """One entry of a batch call failed for good; `code` is AWS's error code."""

    def __init__(self, code: str, message: str, sender_fault: bool):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.sender_fault = sender_fault


#: How long a submitter waits for its entries at most; a batcher settles every entry far
#: sooner (its retry window), so this only guards against a stuck thread.
RESULT_TIMEOUT = 120.0


def failures(futures: list[Future[Any]]) -> list[BaseException]:
    """Wait for every submitted entry; the errors of those that failed, in order."""
    return [exc for exc in (f.exception(RESULT_TIMEOUT) for f in futures) if exc is not None]


#: How a batch is sent: call(client, target, entries) -> the response dict.
BatchCall = Callable[[Any, str, list[dict[str, Any]]], dict[str, Any]]


@dataclass
class _Entry:
    client: Any
    target: str
    payload: dict[str, Any]
    size: int
    future: Future[Any]
    deadline: float
    ready_at: float
    attempts: int = 0


@dataclass
class _Target:
    linger: float
    entries: deque[_Entry] = field(default_factory=deque)
    in_flight: int = 0


class Batcher:
    """Sends entries in batches from a daemon thread; see the module docstring."""

    def __init__(self, name: str, call: BatchCall, *, linger: float = 0.05,
                 linger_for: Callable[[str], float] | None = None,
                 max_entries: int = MAX_ENTRIES, max_bytes: int = MAX_BATCH_BYTES,
                 retry_window: float = 10.0, max_attempts: int = 4):
        self.name = name
        self._call = call
        self.linger = linger
        self._linger_for = linger_for  # a target's own linger, where targets differ
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.retry_window = retry_window
        self.max_attempts = max_attempts
        self.stats: Counter[str] = Counter()
        self._targets: dict[tuple[int, str], _Target] = {}
        self._cond = threading.Condition()
        self._flushing = 0
        self._closed = False
        self._thread: threading.Thread | None = None

    def submit(self, client: Any, target: str, payload: dict[str, Any], size: int = 0) -> Future[Any]:
        """Queue one entry (without its `Id`); the Future resolves to AWS's result entry."""
        now = time.monotonic()
        entry = _Entry(client, target, payload, size, Future(), now + self.retry_window, now)
        with self._cond:
            if self._closed:
                raise RuntimeError(f"{self.name} batcher is closed")
            key = (id(client), target)
            if key not in self._targets:
                self._targets[key] = _Target(self._linger_for(target) if self._linger_for else self.linger)
            self._targets[key].entries.append(entry)
            self.stats["submitted"] += 1
            self._ensure_thread()
            self._cond.notify()
        return entry.future

    @property
    def closed(self) -> bool:
        return self._closed

    def pending(self) -> int:
        """Entries submitted and not yet resolved (queued or in flight)."""
        with self._cond:
            return sum(len(t.entries) + t.in_flight for t in self._targets.values())

    def flush(self, timeout: float = 10.0) -> bool:
        """Send everything queued now, without waiting for `linger`; True once all resolved."""
        deadline = time.monotonic() + timeout
        with self._cond:
            self._flushing += 1
            self._cond.notify_all()
            try:
                while self._unresolved():
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return False
                    self._cond.wait(left)
                return True
            finally:
                self._flushing -= 1

    def close(self, timeout: float = 10.0) -> bool:
        """Flush, then stop the thread; later submits raise."""
        done = self.flush(timeout)
        with self._cond:
            self._closed = True
            self._cond.notify_all()
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

    def _unresolved(self) -> bool:
        return any(t.entries or t.in_flight for t in self._targets.values())

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name=f"{self.name}-batcher", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while True:
            with self._cond:
                batches = self._due_batches()
                while not batches:
                    if self._closed and not self._unresolved():
                        return
                    self._cond.wait(self._wait_time())
                    batches = self._due_batches()
            for batch in batches:
                self._send(batch)

    def _due_at(self, target: _Target) -> float:
        head = target.entries[0]
        if self._flushing or self._closed or len(target.entries) >= self.max_entries:
            return head.ready_at
        return head.ready_at + target.linger

    def _wait_time(self) -> float | None:
        dues = [self._due_at(t) for t in self._targets.values() if t.entries]
        return max(min(dues) - time.monotonic(), 0.0) if dues else None

    def _due_batches(self) -> list[list[_Entry]]:
        now = time.monotonic()
        batches = []
        for target in self._targets.values():
            while target.entries and self._due_at(target) <= now:
                batch = self._take(target, now)
                if not batch:
                    break
                target.in_flight += len(batch)
                batches.append(batch)
        return batches

    def _take(self, target: _Target, now: float) -> list[_Entry]:
        batch: list[_Entry] = []
        size = 0
        while target.entries and len(batch) < self.max_entries:
            entry = target.entries[0]
            if entry.ready_at > now or (batch and size + entry.size > self.max_bytes):
                break
            batch.append(target.entries.popleft())
            size += entry.size
        return batch

    def _send(self, batch: list[_Entry]) -> None:
        entries = [{**e.payload, "Id": str(i)} for i, e in enumerate(batch)]
        self.stats["calls"] += 1
        try:
            response = self._call(batch[0].client, batch[0].target, entries)
        except Exception as exc:  # every entry shares the call's fate
            self.stats["call_errors"] += 1
            self._settle(batch, {str(i): exc for i in range(len(batch))}, {})
            return
        ok = {r["Id"]: r for r in response.get("Successful", [])}
        failed: dict[str, BaseException] = {
            f["Id"]: BatchEntryError(f.get("Code", "?"), f.get("Message", ""), bool(f.get("SenderFault")))
            for f in response.get("Failed", [])
        }
        for i in range(len(batch)):  # an entry in neither list cannot be trusted as sent
            if str(i) not in ok and str(i) not in failed:
                failed[str(i)] = BatchEntryError("Missing", "not in the response", False)
        self._settle(batch, failed, ok)

    def _settle(self, batch: list[_Entry], failed: dict[str, BaseException], ok: dict[str, Any]) -> None:
        now = time.monotonic()
        retry: list[_Entry] = []
        for i, entry in enumerate(batch):
            exc = failed.get(str(i))
            if exc is None:
                self.stats["ok"] += 1
                entry.future.set_result(ok[str(i)])
            elif self._retryable(exc) and entry.attempts + 1 < self.max_attempts and now < entry.deadline:
                entry.attempts += 1
                entry.ready_at = now + min(0.1 * 4 ** (entry.attempts - 1), 5.0)
                retry.append(entry)
            else:
                self.stats["failed"] += 1
                logger.error("%s batch entry for %s failed after %d attempt(s): %r",
                             self.name, entry.target, entry.attempts + 1, exc)
                entry.future.set_exception(exc)
        self.stats["retried"] += len(retry)
        with self._cond:
            target = self._targets[(id(batch[0].client), batch[0].target)]
            target.in_flight -= len(batch)
            target.entries.extendleft(reversed(retry))
            self._cond.notify_all()

    @staticmethod
    def _retryable(exc: BaseException) -> bool:
        if isinstance(exc, BatchEntryError):
            return not exc.sender_fault
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
