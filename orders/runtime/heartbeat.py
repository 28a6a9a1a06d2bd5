"""Held SQS messages kept invisible by a heartbeat; visibility changed ten messages a call.

A `Heartbeat` holds the receipt handles of the messages a channel has received and
not yet given up, and every `interval` seconds (a third of `visibility`) one thread
sets each one's visibility to `visibility` seconds from then: ten messages a call,
per client and queue. A process that stops beating gives its messages back within
`visibility` seconds; a message held for hours stays hidden (up to SQS's limit of
12 hours after its receive, past which it is let go, with a warning).

An entry SQS refuses as the caller's fault (the receipt handle no longer holds the
message: it was deleted, or its visibility ran out and another consumer has it) is
dropped, logged at info. A call that fails (throttling, 5xx, network) is tried again
at the next beat: with a beat every third of the visibility, counted from start to
start, two beats may be missed.
Nothing here knows kombu (orders.runtime.visibility fits it to the channel).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from orders.aws.batching import MAX_ENTRIES
from orders.aws.errors import is_retryable_aws_error

logger = logging.getLogger(__name__)

#: Seconds a message is received for, and extended to at each beat.
DEFAULT_VISIBILITY = 30
#: SQS hides a message 12 hours at most after its receive; the margin covers the receive's own time.
MAX_HOLD_SECONDS = 12 * 3600
HOLD_MARGIN_SECONDS = 60
#: How long stopping waits for a beat under way.
STOP_TIMEOUT = 5.0

#: How a batch of visibility changes is sent: call(client, queue URL, entries) -> the response.
ChangeCall = Callable[[Any, str, list[dict[str, Any]]], dict[str, Any]]


def change_message_visibility_batch(client: Any, queue_url: str,
                                    entries: list[dict[str, Any]]) -> dict[str, Any]:
    """ChangeCall for SQS."""
    return dict(client.change_message_visibility_batch(QueueUrl=queue_url, Entries=entries))


@dataclass(frozen=True, slots=True)
class Held:
    """One received message: where to change its visibility, and since when it is held."""

    client: Any
    queue_url: str
    handle: str
    since: float = field(default_factory=time.monotonic)


@dataclass(slots=True)
class Outcome:
    """What a round of visibility changes did."""

    changed: int = 0
    calls: int = 0
    refused: list[tuple[Held, str]] = field(default_factory=list)  # the caller's fault: will not work again
    failed: list[tuple[Held, str]] = field(default_factory=list)  # may work next time


def change_visibility(call: ChangeCall, wanted: Iterable[tuple[Held, int]]) -> Outcome:
    """Set each message's visibility to its seconds from now: ten a call, per client and queue."""
    by_queue: dict[tuple[int, str], list[tuple[Held, int]]] = defaultdict(list)
    for held, seconds in wanted:
        by_queue[(id(held.client), held.queue_url)].append((held, seconds))
    outcome = Outcome()
    for group in by_queue.values():
        for start in range(0, len(group), MAX_ENTRIES):
            _change_batch(call, group[start:start + MAX_ENTRIES], outcome)
    return outcome


def _change_batch(call: ChangeCall, batch: Sequence[tuple[Held, int]], outcome: Outcome) -> None:
    entries = [{"Id": str(i), "ReceiptHandle": held.handle, "VisibilityTimeout": seconds}
               for i, (held, seconds) in enumerate(batch)]
    outcome.calls += 1
    try:
        response = call(batch[0][0].client, batch[0][0].queue_url, entries)
    except Exception as exc:  # every entry shares the call's fate; the caller says what follows
        reason = repr(exc)
        if not is_retryable_aws_error(exc):
            logger.error("ChangeMessageVisibilityBatch on %s failed: %s", batch[0][0].queue_url, reason)
        outcome.failed.extend((held, reason) for held, _ in batch)
        return
    failures = {f.get("Id"): f for f in response.get("Failed", [])}
    for i, (held, _) in enumerate(batch):
        failure = failures.get(str(i))
        if failure is None:
            outcome.changed += 1
        elif failure.get("SenderFault"):
            outcome.refused.append((held, str(failure.get("Code", "?"))))
        else:
            outcome.failed.append((held, str(failure.get("Code", "?"))))


def release(held: Sequence[Held], call: ChangeCall = change_message_visibility_batch) -> Outcome:
    """Make messages visible again at once (visibility 0), for other consumers to take now."""
    outcome = change_visibility(call, ((h, 0) for h in held))
    if outcome.failed or outcome.refused:
        logger.warning("%d of %d message(s) not released (%s): they come back after their visibility "
                       "timeout", len(outcome.failed) + len(outcome.refused), len(held),
                       ", ".join(sorted({why for _, why in outcome.failed + outcome.refused})))
    return outcome


class Heartbeat:
    """The messages one channel holds, their visibility extended every `interval` seconds by a thread."""

    def __init__(self, visibility: int = DEFAULT_VISIBILITY, interval: float | None = None,
                 call: ChangeCall = change_message_visibility_batch, name: str = "sqs-visibility"):
        self.visibility = visibility
        self.interval = interval or visibility / 3
        if visibility < 1 or not 0 < self.interval < visibility:
            raise ValueError(f"a beat every {self.interval} s cannot keep a visibility of {visibility} s")
        self.name = name
        self._call = call
        self._held: dict[str, Held] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.stats: Counter[str] = Counter()

    def hold(self, tag: str, held: Held) -> None:
        """Keep the message of delivery `tag` invisible from now on (the thread starts with the first)."""
        with self._lock:
            if self._stopping.is_set():
                return  # its channel is closing: the message is restored, not held
            self._held[tag] = held
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=f"{self.name}-heartbeat", daemon=True)
                self._thread.start()

    def drop(self, tag: str) -> Held | None:
        """Stop extending the message of delivery `tag`; what was held, if it was."""
        with self._lock:
            return self._held.pop(tag, None)

    def holding(self) -> int:
        """How many messages are held now."""
        with self._lock:
            return len(self._held)

    def __contains__(self, tag: object) -> bool:
        with self._lock:
            return tag in self._held

    def beat(self) -> Outcome:
        """Extend every held message's visibility to `visibility` seconds from now (the thread's work)."""
        now = time.monotonic()
        with self._lock:
            held = list(self._held.items())
        wanted, by_handle = [], {}
        for tag, message in held:
            seconds = self._extension(message, now)
            if seconds < 1:
                self._give_up(tag, message)
                continue
            wanted.append((message, seconds))
            by_handle[message.handle] = tag
        outcome = change_visibility(self._call, wanted)
        for message, code in outcome.refused:
            # Deleted by an ack that raced this beat, or handed to another consumer meanwhile.
            logger.info("%s: message no longer held (%s), not extended again", self.name, code)
            self._drop_if_same(by_handle[message.handle], message)
        if outcome.failed:
            logger.warning("%s: %d message(s) not extended (%s); the next beat tries again", self.name,
                           len(outcome.failed), ", ".join(sorted({why for _, why in outcome.failed})))
        self._count(outcome)
        return outcome

    def stop(self) -> list[Held]:
        """Stop the thread (waiting a moment for a beat under way); the messages still held."""
        self._stopping.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(STOP_TIMEOUT)
        with self._lock:
            left, self._held = list(self._held.values()), {}
        return left

    def summary(self) -> str:
        """One line for the log."""
        s = self.stats
        return (f"{self.name}: {s['extended']} extensions in {s['calls']} calls over {s['beats']} beats, "
                f"{s['refused']} no longer held, {s['failed']} not extended, {s['expired']} held 12 h")

    def _run(self) -> None:
        # Beats are `interval` apart from start to start: a beat that botocore held up (its backoff on a
        # throttled call is up to 7 s) is not followed by a whole interval more without an extension.
        next_beat = time.monotonic() + self.interval
        while not self._stopping.wait(max(0.0, next_beat - time.monotonic())):
            next_beat = time.monotonic() + self.interval
            try:
                self.beat()
            except Exception:  # the heartbeat outlives any one beat's bug; its messages need it
                logger.exception("%s: a beat failed", self.name)

    def _extension(self, held: Held, now: float) -> int:
        left = MAX_HOLD_SECONDS - HOLD_MARGIN_SECONDS - (now - held.since)
        return int(min(self.visibility, left))

    def _give_up(self, tag: str, held: Held) -> None:
        self._drop_if_same(tag, held)
        self.stats["expired"] += 1
        logger.warning("%s: a message has been held for 12 hours, SQS's limit: it becomes visible "
                       "again within %d s and may run a second time", self.name, self.visibility)

    def _drop_if_same(self, tag: str, held: Held) -> None:
        with self._lock:
            if self._held.get(tag) is held:
                del self._held[tag]

    def _count(self, outcome: Outcome) -> None:
        self.stats.update(beats=1, calls=outcome.calls, extended=outcome.changed,
                          refused=len(outcome.refused), failed=len(outcome.failed))
