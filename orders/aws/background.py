"""The one background batcher: items collected per target, handed to a send function by one thread.

Every batcher of the platform is one of these: SQS acks and sends, SNS publishes
(orders.aws.batching), CloudWatch metrics (orders.aws.metrics) and the control
plane's events (orders.runtime.control_plane_worker). Each brings only its own
specifics: how to send a batch, and optionally how to merge an item into one
already waiting (metrics aggregate per series).

A target's batch goes out when it is full (`max_items`, or `max_bytes` of item
`size`s), once its oldest item has waited the target's `linger`, or at once on
`flush()` and `close()`. The send function may put items back (`requeue`): ahead
of the target's others and ready at a later time (a retry's backoff); `flush` and
`close` wait for them too, unless they are put back as not awaited (metrics kept
for the next interval). Past `max_pending` queued items, new ones are refused
(`submit` returns False: the caller drops and counts them); the caller never waits
for the thread. A forked child starts with nothing queued and starts its own thread
on its first item (what the parent queued is the parent's to send); what is still
queued at interpreter exit is flushed.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

logger = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")

#: How long interpreter exit waits for each batcher's queued items at most.
EXIT_TIMEOUT = 5.0


@dataclass(eq=False, slots=True)
class _Slot(Generic[T]):
    item: T
    size: int
    ready_at: float
    awaited: bool = True
    key: Hashable = None


@dataclass(eq=False, slots=True)
class _Group(Generic[T]):
    linger: float
    slots: deque[_Slot[T]] = field(default_factory=deque)
    by_key: dict[Hashable, _Slot[T]] = field(default_factory=dict)  # queued slots items merge into
    awaited: int = 0  # queued slots that flush waits for


class BackgroundBatcher(Generic[K, T]):
    """Items per target, sent in batches by a daemon thread; see the module docstring."""

    def __init__(self, name: str, send: Callable[[K, list[T]], None], *,
                 linger: float | Callable[[K], float] = 0.05,
                 max_items: int | None = None, max_bytes: int | None = None,
                 size: Callable[[T], int] | None = None, max_pending: int | None = None,
                 merge_key: Callable[[T], Hashable] | None = None,
                 merge: Callable[[T, T], None] | None = None):
        self.name = name
        self._send = send
        self._linger = linger
        self.max_items = max_items
        self.max_bytes = max_bytes
        self._size = size
        self.max_pending = max_pending
        if (merge_key is None) != (merge is None):
            raise ValueError("merge_key and merge go together")
        self._merge_key = merge_key
        self._merge = merge
        self._closed = False
        self._reset()
        _live.add(self)

    def _reset(self) -> None:
        self._cond = threading.Condition()
        self._groups: dict[K, _Group[T]] = {}
        self._queued = 0
        self._in_flight = 0
        self._awaited = 0  # awaited slots queued or in flight
        self._flushing = 0
        self._thread: threading.Thread | None = None

    @property
    def closed(self) -> bool:
        return self._closed

    def submit(self, target: K, item: T) -> bool:
        """Queue one item for `target`; False if refused (`max_pending` items already queued)."""
        now = time.monotonic()
        with self._cond:
            group = self._open_group(target)
            was_empty = not group.slots
            accepted = self._add(group, item, now, awaited=True, front=False)
            self._wake(group, was_empty)
        return accepted

    def submit_many(self, target: K, items: Sequence[T]) -> int:
        """Queue items together (no batch takes only part of them); how many were accepted."""
        now = time.monotonic()
        with self._cond:
            group = self._open_group(target)
            was_empty = not group.slots
            accepted = sum([self._add(group, item, now, awaited=True, front=False) for item in items])
            self._wake(group, was_empty)
        return accepted

    def requeue(self, target: K, items: Sequence[tuple[T, float]], awaited: bool = True) -> int:
        """Put (item, ready_at) pairs back ahead of the target's queue (from `send`); how many were kept."""
        with self._cond:
            group = self._group(target)
            kept = sum(self._add(group, item, ready_at, awaited, front=True)
                       for item, ready_at in reversed(items))
            self._cond.notify()
        return kept

    def pending(self) -> int:
        """Items queued or being sent."""
        with self._cond:
            return self._queued + self._in_flight

    def flush(self, timeout: float = 10.0) -> bool:
        """Send everything queued now, without waiting for lingers; True once all awaited items settled."""
        deadline = time.monotonic() + timeout
        with self._cond:
            self._flushing += 1
            self._cond.notify_all()
            try:
                while self._awaited:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return False
                    self._cond.wait(left)
                return True
            finally:
                self._flushing -= 1

    def close(self, timeout: float = 10.0) -> bool:
        """Flush, then refuse new items; the thread ends once nothing awaited is left."""
        done = self.flush(timeout)
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        return done

    def _open_group(self, target: K) -> _Group[T]:
        if self._closed:
            raise RuntimeError(f"{self.name} batcher is closed")
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"{self.name}-batcher", daemon=True)
            self._thread.start()
        return self._group(target)

    def _wake(self, group: _Group[T], was_empty: bool) -> None:
        # The thread sleeps until the earliest due batch: only a new head or a full batch moves that.
        if was_empty or self._flushing or (self.max_items and len(group.slots) >= self.max_items):
            self._cond.notify()

    def _group(self, target: K) -> _Group[T]:
        group = self._groups.get(target)
        if group is None:
            linger = self._linger(target) if callable(self._linger) else self._linger
            group = self._groups[target] = _Group(linger)
        return group

    def _add(self, group: _Group[T], item: T, ready_at: float, awaited: bool, front: bool) -> bool:
        key = self._merge_key(item) if self._merge_key else None
        slot = group.by_key.get(key) if key is not None else None
        if slot is not None and self._merge is not None:
            self._merge(slot.item, item)
            if awaited and not slot.awaited:
                slot.awaited = True
                self._count_awaited(group, 1)
            return True
        if self.max_pending is not None and self._queued >= self.max_pending:
            return False
        slot = _Slot(item, self._size(item) if self._size else 0, ready_at, awaited, key)
        if front:
            group.slots.appendleft(slot)
        else:
            group.slots.append(slot)
        if key is not None:
            group.by_key[key] = slot
        self._queued += 1
        if awaited:
            self._count_awaited(group, 1)
        return True

    def _count_awaited(self, group: _Group[T], n: int) -> None:
        group.awaited += n
        self._awaited += n

    def _run(self) -> None:
        while True:
            with self._cond:
                batches = self._due_batches()
                while not batches:
                    if self._closed and not self._awaited:
                        self._thread = None
                        return
                    self._cond.wait(self._wait_time())
                    batches = self._due_batches()
            for target, slots in batches:
                self._deliver(target, slots)

    def _deliver(self, target: K, slots: list[_Slot[T]]) -> None:
        try:
            self._send(target, [slot.item for slot in slots])
        except Exception:  # a send function's bug must not end the thread: its items are lost, loudly
            logger.exception("%s batcher: a batch of %d for %s was not sent", self.name, len(slots), target)
        finally:
            with self._cond:
                self._in_flight -= len(slots)
                self._awaited -= sum(slot.awaited for slot in slots)
                self._cond.notify_all()

    def _due_at(self, group: _Group[T]) -> float:
        head = group.slots[0]
        forced = (self._flushing or self._closed) and group.awaited
        if forced or (self.max_items and len(group.slots) >= self.max_items):
            return head.ready_at
        return head.ready_at + group.linger

    def _wait_time(self) -> float | None:
        dues = [self._due_at(g) for g in self._groups.values() if g.slots]
        return max(min(dues) - time.monotonic(), 0.0) if dues else None

    def _due_batches(self) -> list[tuple[K, list[_Slot[T]]]]:
        now = time.monotonic()
        batches = []
        for target, group in self._groups.items():
            while group.slots and self._due_at(group) <= now:
                batch = self._take(group, now)
                if not batch:
                    break
                batches.append((target, batch))
        return batches

    def _take(self, group: _Group[T], now: float) -> list[_Slot[T]]:
        batch: list[_Slot[T]] = []
        size = 0
        while group.slots and (not self.max_items or len(batch) < self.max_items):
            slot = group.slots[0]
            too_big = self.max_bytes is not None and batch and size + slot.size > self.max_bytes
            if slot.ready_at > now or too_big:
                break
            batch.append(group.slots.popleft())
            size += slot.size
            if slot.key is not None:
                del group.by_key[slot.key]
        awaited = sum(slot.awaited for slot in batch)
        group.awaited -= awaited
        self._queued -= len(batch)
        self._in_flight += len(batch)
        return batch


_live: weakref.WeakSet[BackgroundBatcher[Any, Any]] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    # The child has no thread, and a lock another thread held at fork time stays held: start afresh.
    for batcher in list(_live):
        batcher._reset()


def _flush_at_exit() -> None:
    for batcher in list(_live):
        if batcher._awaited and not batcher.flush(EXIT_TIMEOUT):
            logger.error("%s batcher: %d item(s) unsent at exit", batcher.name, batcher.pending())


os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(_flush_at_exit)
