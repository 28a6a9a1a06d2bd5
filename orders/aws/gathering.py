"""Requests of a process's threads that arrive together, made together by the first of them.

A worker's pool runs the messages of one receive on its threads at once. Where their
DynamoDB writes can go in one call (notification claims, reservations of one product),
each thread puts its request in a `Gathering` and waits for its answer: the thread whose
request came first waits `linger` seconds for the others, then makes every request
waiting by then (the owner's `make`, which answers each of them) and so answers its own
too. Nothing runs in the background: a request is made by a thread of the pool, and one
alone costs only the linger.

Whatever interrupts the leader's wait (a time limit) the requests waiting are still made;
whatever `make` raises is the answer of every request it left unanswered; a request whose
leader never made it (its thread died in between) is a RetryableError after `timeout`.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, Generic, Protocol, TypeVar

from orders.domain.errors import RetryableError


class Waiting(Protocol):
    """A request of a gathering: its answer is set once it is made."""

    @property
    def answer(self) -> Future[Any]: ...


W = TypeVar("W", bound=Waiting)
G = TypeVar("G")


class Gathering(Generic[W]):
    """Requests waiting to be made together; the thread whose request came first makes them all."""

    def __init__(self, make: Callable[[list[W]], None], linger: float, timeout: float, what: str):
        self.make, self.linger, self.timeout, self.what = make, linger, timeout, what
        self._lock = threading.Lock()
        self._waiting: list[W] = []

    def wait(self, request: W) -> Any:
        """The answer of `request` once it is made (with those that arrived with it)."""
        with self._lock:
            self._waiting.append(request)
            first = len(self._waiting) == 1
        if first:
            try:
                time.sleep(self.linger)
            finally:
                with self._lock:
                    batch, self._waiting = self._waiting, []
                self._make(batch)
        try:
            return request.answer.result(timeout=self.timeout)
        except FutureTimeout:  # the first request's thread never made the batch (it died in between)
            raise RetryableError(f"{self.what} not made in time") from None

    def _make(self, batch: list[W]) -> None:
        try:
            self.make(batch)
        except BaseException as exc:  # the leader's own request gets it too, through its answer
            for request in batch:
                if not request.answer.done():
                    request.answer.set_exception(exc)
            return
        for request in batch:
            if not request.answer.done():
                request.answer.set_exception(RuntimeError(f"{self.what}: left unanswered by its batch"))


class PerProcess(Generic[G]):
    """One gathering (or anything made by `factory`) per key, shared by a process's threads; a
    forked child starts with none (its parent's waiting requests are the parent's to make)."""

    def __init__(self, factory: Callable[..., G]):
        self.factory = factory
        self._made: dict[Hashable, G] = {}
        self._lock = threading.Lock()
        os.register_at_fork(after_in_child=self._forget)

    def get(self, key: Hashable, *args: Any) -> G:
        with self._lock:
            found = self._made.get(key)
            if found is None:
                found = self._made[key] = self.factory(*args)
            return found

    def _forget(self) -> None:
        self._made = {}
        self._lock = threading.Lock()
