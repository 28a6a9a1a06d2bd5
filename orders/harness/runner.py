"""Place orders at a steady rate and follow each one to its final state.

The demo and the benchmark share this: `run_orders(settings, planned, rate)`
places every planned order with `place_order.delay()` (as application code
would), polls the order store until every accepted order is final or the
timeout passes, and returns a `RunResult` with per-order timings.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from orders.aws import clients
from orders.aws.stock import set_stock
from orders.aws.store import OrderStore
from orders.domain.errors import InvalidOrder
from orders.domain.records import public_view
from orders.domain.states import FINAL_STATES
from orders.harness.order_mix import PlannedOrder
from orders.harness.summary import status_of
from orders.settings import Settings

#: Orders read from the store per poll at most, so polling never crowds out the pipeline.
POLL_BATCH = 100


@dataclass
class OrderOutcome:
    """One planned order: when it was placed, whether the door refused it, its last record."""

    order_id: str
    kind: str
    placed_at: float | None = None  # epoch seconds, taken just before delay()
    refused: list[str] | None = None  # the problems, when place_order refused it
    record: dict[str, Any] | None = None
    send_error: str | None = None
    checked_at: float = 0.0  # when the store was last read for it (monotonic)

    @property
    def status(self) -> str:
        return status_of(self)

    @property
    def settled(self) -> bool:
        """Refused, failed to send, or in a final state: nothing more will happen to it."""
        return self.refused is not None or self.send_error is not None or self.status in FINAL_STATES


@dataclass
class Progress:
    """A snapshot for the live progress line."""

    elapsed: float
    total: int
    placed: int
    refused: int
    in_flight: int
    by_state: dict[str, int]


@dataclass
class RunResult:
    """Every order's outcome and the run's timeline (epoch seconds)."""

    outcomes: list[OrderOutcome]
    started_at: float
    placing_ended_at: float = 0.0
    ended_at: float = 0.0
    timed_out: bool = False
    rate: float = 0.0
    errors: list[str] = field(default_factory=list)
    #: What following the orders cost: the run's observation, not the pipeline's work.
    following: Following = field(default_factory=lambda: Following())


class Following:
    """The AWS requests (as the emulator counts them: botocore's retries are requests too) and the CPU
    seconds of what this thread does inside `counting()`: reading orders to follow them, which an
    application placing orders does not do. A benchmark leaves them out of its figures per order.
    """

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.cpu_seconds = 0.0
        self._inside = threading.local()

    @contextmanager
    def watching(self, client: Any) -> Iterator[Following]:
        """Count the block's requests made with `client` (a boto3 client; None: count none)."""
        if client is None:
            yield self
            return
        unique = f"orders-following-{id(self)}"
        client.meta.events.register("before-send", self._sent, unique_id=unique)
        try:
            yield self
        finally:
            client.meta.events.unregister("before-send", unique_id=unique)

    @contextmanager
    def counting(self) -> Iterator[None]:
        """This thread's requests and CPU in the block are the follower's."""
        self._inside.on = True
        started = time.thread_time()
        try:
            yield
        finally:
            self.cpu_seconds += time.thread_time() - started
            self._inside.on = False

    def _sent(self, event_name: str, **_kwargs: Any) -> None:
        if getattr(self._inside, "on", False):  # another thread's request (a placer's) is the pipeline's
            _event, service, operation = event_name.split(".", 2)
            self.calls[f"{service}:{operation}"] += 1


class Placer:
    """Sends planned orders at `rate` per second from a few threads, recording each one."""

    def __init__(self, planned: Sequence[PlannedOrder], rate: float,
                 send: Callable[[dict[str, Any]], Any] | None = None, senders: int = 4):
        self.planned = planned
        self.send = send or place_order_delay
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self.outcomes = [OrderOutcome(p.order_id, p.kind) for p in planned]
        self.pool = ThreadPoolExecutor(max_workers=senders, thread_name_prefix="placer")
        self.futures: list[Any] = []

    def start(self, t0: float) -> None:
        """Schedule every order; each sender waits for its slot (t0 + i / rate)."""
        self.futures = [self.pool.submit(self._send, i, t0 + i * self.interval)
                        for i in range(len(self.planned))]

    @property
    def done(self) -> bool:
        return all(f.done() for f in self.futures)

    def _send(self, i: int, when: float) -> None:
        time.sleep(max(0.0, when - time.monotonic()))
        outcome = self.outcomes[i]
        outcome.placed_at = time.time()
        try:
            self.send(self.planned[i].order)
        except InvalidOrder as exc:
            outcome.refused = exc.problems
        except Exception as exc:  # noqa: BLE001 - reported in the summary, never silent
            outcome.send_error = f"{type(exc).__name__}: {exc}"

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


def run_orders(settings: Settings, planned: Sequence[PlannedOrder], rate: float,
               timeout: float = 120.0, poll_interval: float = 0.5,
               progress: Callable[[Progress], None] | None = None,
               send: Callable[[dict[str, Any]], Any] | None = None, store: Any = None) -> RunResult:
    """Place `planned` at `rate`/s and follow every order until it is final.

    Once all are placed, gives up when no order has reached a final state for
    `timeout` seconds: a slow pipeline working through a backlog is waited for,
    a stuck order is not. `send` defaults to `place_order.delay` and `store` to
    a reader of the order store of `settings`.
    """
    placer = Placer(planned, rate, send)
    result = RunResult(placer.outcomes, started_at=time.time(), rate=rate)
    # The reader made here reads with the settings' client, whose requests are counted; another
    # store's (a test's, the chaos run's) are its own business: only its CPU is the follower's.
    reads = clients.client("dynamodb", settings) if store is None else None
    store = store or order_store(settings)
    t0 = time.monotonic()
    placer.start(t0)
    idle = IdleClock(timeout)
    with result.following.watching(reads):
        _follow(placer, result, store, t0, idle, poll_interval, progress)
    result.ended_at = time.time()
    result.errors = [f"{o.order_id}: {o.send_error}" for o in placer.outcomes if o.send_error]
    return result


def _follow(placer: Placer, result: RunResult, store: Any, t0: float, idle: IdleClock,
            poll_interval: float, progress: Callable[[Progress], None] | None) -> None:
    """Read the orders in flight every `poll_interval` s until all are settled or the pipeline idles."""
    try:
        while True:
            with result.following.counting():
                poll(store, [o for o in placer.outcomes if o.placed_at and not o.settled])
                if progress:
                    progress(snapshot(placer.outcomes, time.monotonic() - t0))
                idle.count(sum(1 for o in placer.outcomes if o.settled))
            if placer.done and not result.placing_ended_at:
                result.placing_ended_at = time.time()
                idle.reset()
            if placer.done and all(o.settled or not o.placed_at for o in placer.outcomes):
                break
            if placer.done and idle.expired:
                result.timed_out = True
                break
            time.sleep(poll_interval)
    finally:
        placer.close()


class IdleClock:
    """How long since the count of settled orders last moved."""

    def __init__(self, timeout: float):
        self.timeout = timeout
        self.settled = -1
        self.since = time.monotonic()

    def count(self, settled: int) -> None:
        if settled != self.settled:
            self.settled = settled
            self.reset()

    def reset(self) -> None:
        self.since = time.monotonic()

    @property
    def expired(self) -> bool:
        return time.monotonic() - self.since > self.timeout


def place_order_delay(order: dict[str, Any]) -> Any:
    """What application code does: `place_order.delay(order)`."""
    from orders import place_order  # the Celery app loads only when orders are really placed (not a cycle)

    return place_order.delay(order)


def order_store(settings: Settings) -> Any:
    return OrderReader(settings)


class OrderReader:
    """Reads many orders' public views at once: one BatchGetItem per 100, not a GetItem each.

    Following a few hundred orders in flight with one GetItem each, twice a second,
    would load the emulator more than the pipeline does.
    """

    def __init__(self, settings: Settings):
        self.store = OrderStore(settings)

    def get(self, order_id: str) -> dict[str, Any] | None:
        return self.get_many([order_id]).get(order_id)

    def get_many(self, order_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        return {order_id: public_view(record) for order_id, record in self.store.load_many(order_ids).items()}


_fetcher = ThreadPoolExecutor(max_workers=8, thread_name_prefix="poll")


def poll(store: Any, pending: Sequence[OrderOutcome]) -> None:
    """Re-read the pending orders least recently read (at most POLL_BATCH of them)."""
    batch = sorted(pending, key=lambda o: o.checked_at)[:POLL_BATCH]
    if not batch:
        return
    records = fetch(store, [o.order_id for o in batch])
    now = time.monotonic()
    for outcome, record in zip(batch, records, strict=True):
        outcome.checked_at = now
        if record is not None:
            outcome.record = record


def fetch(store: Any, order_ids: Sequence[str]) -> Iterable[dict[str, Any] | None]:
    """Records of `order_ids` in the same order (a batch read when the store has one)."""
    get_many = getattr(store, "get_many", None)
    if get_many is not None:
        found = get_many(list(order_ids))
        return [found.get(i) for i in order_ids]
    return list(_fetcher.map(store.get, order_ids))


def snapshot(outcomes: Sequence[OrderOutcome], elapsed: float) -> Progress:
    placed = [o for o in outcomes if o.placed_at is not None]
    refused = sum(1 for o in placed if o.refused is not None)
    states = Counter(o.status for o in placed if o.refused is None and o.record is not None)
    finals = sum(n for s, n in states.items() if s in FINAL_STATES)
    return Progress(elapsed, len(outcomes), len(placed), refused,
                    len(placed) - refused - finals, dict(states))


def seed_catalogue(settings: Settings, stock: dict[str, int]) -> None:
    """Set the available stock of every product before the run."""
    for sku, quantity in stock.items():
        set_stock(settings, sku, quantity)
