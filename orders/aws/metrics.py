"""Custom CloudWatch metrics, aggregated in each process and sent in batched PutMetricData calls.

Recording a value merges it into its series (name, unit, dimensions) in the
process's background batcher (orders.aws.background): no AWS call per task.
Series go out `metrics_flush_seconds` after the first value of an interval (and
workers flush at shutdown), packed up to 1000 metric data per request. Timings
are sent as Values/Counts (3 significant digits) so that CloudWatch can compute
percentiles; counts and amounts as exact statistic sets.

Where the values go (environment dimension, endpoint, interval, on or off) is the
Settings the process is bound to with `bind(settings)`: a worker binds its app's
settings when it starts (orders.runtime.task_metrics). A process nobody bound
uses the environment's settings, read once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from orders.aws import clients
from orders.aws.background import BackgroundBatcher
from orders.settings import ConfigurationError, Settings, get_settings

log = logging.getLogger(__name__)

NAMESPACE = "Orders"
#: PutMetricData limits: 1000 metric data and 1 MB per request, 150 values per datum.
MAX_DATA_PER_CALL = 1000
MAX_VALUES_PER_DATUM = 150
MAX_PAYLOAD_BYTES = 800_000
#: Past this many pending series (CloudWatch unreachable for long), new values are dropped.
MAX_PENDING_SERIES = 20_000

Key = tuple[str, str, tuple[tuple[str, str], ...]]


@dataclass(slots=True)
class Series:
    """What one metric (name, unit, dimensions) accumulated since the last flush."""

    values: defaultdict[float, int] = field(default_factory=lambda: defaultdict(int))  # timing -> count
    count: float = 0.0  # amounts and counts: exact statistic set
    total: float = 0.0
    low: float = float("inf")
    high: float = float("-inf")

    def add_amount(self, value: float) -> None:
        self.count += 1
        self.total += value
        self.low, self.high = min(self.low, value), max(self.high, value)

    def merge(self, other: Series) -> None:
        for value, n in other.values.items():
            self.values[value] += n
        if other.count:
            self.count += other.count
            self.total += other.total
            self.low, self.high = min(self.low, other.low), max(self.high, other.high)


class Destination:
    """Where a process's values go: its settings. The batcher's target, hashed by identity: hashing
    the whole Settings for every value would cost more than recording it."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.environment = settings.env


#: What the batcher holds: a series and what it accumulated.
Point = tuple[Key, Series]


class MetricsBuffer:
    """One per process: values are added by any thread, merged per series, and sent in batches."""

    def __init__(self) -> None:
        self.requests = 0  # PutMetricData calls made, for tests and benchmarks
        self.dropped = 0
        self._lock = threading.Lock()
        self._batcher: BackgroundBatcher[Destination, Point] = BackgroundBatcher(
            "metrics", self._send, linger=lambda dest: dest.settings.metrics_flush_seconds,
            max_pending=MAX_PENDING_SERIES, merge_key=lambda point: point[0],
            merge=lambda into, point: into[1].merge(point[1]))

    def timing(self, dest: Destination, name: str, seconds: float, dims: Mapping[str, str]) -> None:
        series = Series(defaultdict(int, {_round(seconds): 1}))
        self._add(dest, (name, "Seconds", tuple(sorted(dims.items()))), series)

    def amount(self, dest: Destination, name: str, value: float, unit: str, dims: Mapping[str, str]) -> None:
        self._add(dest, (name, unit, tuple(sorted(dims.items()))), Series(count=1, total=value, low=value,
                                                                          high=value))

    def _add(self, dest: Destination, key: Key, series: Series) -> None:
        if not self._batcher.submit(dest, (key, series)):
            with self._lock:
                self.dropped += 1

    def flush(self, timeout: float = 30.0) -> int:
        """Send everything pending now; returns the number of PutMetricData calls made meanwhile."""
        before = self.requests
        self._batcher.flush(timeout)
        return self.requests - before

    def close(self) -> None:
        """Send what is pending (worker shutdown, process exit); values added later are sent as usual."""
        self.flush()

    def _send(self, dest: Destination, points: list[Point]) -> None:
        pending = dict(points)
        chunks = list(_chunks(list(_data(pending, datetime.now(UTC)))))
        for n, chunk in enumerate(chunks):
            try:
                clients.client("cloudwatch", dest.settings).put_metric_data(
                    Namespace=NAMESPACE, MetricData=[datum for _, datum in chunk])
                self.requests += 1
            except ConfigurationError as exc:  # nowhere to send them: a process without AWS settings
                log.debug("metrics dropped: %s", exc)
                return
            except Exception as exc:  # metrics must never break the work they measure
                unsent = {key for rest in chunks[n:] for key, _ in rest}
                log.warning("PutMetricData failed (%s); %d series kept for the next flush", exc, len(unsent))
                now = time.monotonic()
                # Not awaited: a flush does not wait for CloudWatch to come back.
                self._batcher.requeue(dest, [((key, pending[key]), now) for key in unsent], awaited=False)
                return


def _round(value: float) -> float:
    return float(f"{value:.3g}")


def _data(pending: dict[Key, Series], at: datetime) -> Iterator[tuple[Key, dict[str, Any]]]:
    """(series key, PutMetricData datum) pairs: a statistic set and/or values in parts of 150."""
    for key, series in pending.items():
        name, unit, dims = key
        base = {"MetricName": name, "Unit": unit, "Timestamp": at,
                "Dimensions": [{"Name": k, "Value": v} for k, v in dims]}
        if series.count:
            yield key, {**base, "StatisticValues": {"SampleCount": series.count, "Sum": series.total,
                                                    "Minimum": series.low, "Maximum": series.high}}
        values = sorted(series.values.items())
        for start in range(0, len(values), MAX_VALUES_PER_DATUM):
            part = values[start:start + MAX_VALUES_PER_DATUM]
            yield key, {**base, "Values": [v for v, _ in part], "Counts": [float(c) for _, c in part]}


def _chunks(data: list[tuple[Key, dict[str, Any]]]) -> Iterator[list[tuple[Key, dict[str, Any]]]]:
    """Requests within the count and (estimated) size limits of PutMetricData."""
    chunk: list[tuple[Key, dict[str, Any]]] = []
    size = 0
    for key, datum in data:
        estimate = 300 + 40 * len(datum.get("Values", ()))
        if chunk and (len(chunk) >= MAX_DATA_PER_CALL or size + estimate > MAX_PAYLOAD_BYTES):
            yield chunk
            chunk, size = [], 0
        chunk.append((key, datum))
        size += estimate
    if chunk:
        yield chunk


_buffer = MetricsBuffer()
_bound: Destination | None = None


def bind(settings: Settings) -> None:
    """Send this process's metrics with `settings` (environment, endpoint, interval); values
    already recorded still go where they were meant to."""
    global _bound
    if _bound is None or _bound.settings != settings:
        _bound = Destination(settings)


def destination() -> Destination:
    """Where this process's values go: its bound settings (the environment's if none were bound)."""
    if _bound is None:
        bind(get_settings())
    assert _bound is not None
    return _bound


def buffer() -> MetricsBuffer:
    """This process's buffer."""
    return _buffer


def _dims(dest: Destination, extra: Mapping[str, str]) -> dict[str, str]:
    return {"Environment": dest.environment, **{k: str(v) for k, v in extra.items()}}


def count(name: str, n: float = 1, **dims: str) -> None:
    """Add `n` to a count metric (dimensions: Environment plus `dims`)."""
    dest = destination()
    if dest.settings.metrics_enabled:
        _buffer.amount(dest, name, float(n), "Count", _dims(dest, dims))


def amount(name: str, value: float | Decimal, unit: str = "None", **dims: str) -> None:
    """Record an amount whose sum matters (revenue): sent as an exact statistic set."""
    dest = destination()
    if dest.settings.metrics_enabled:
        _buffer.amount(dest, name, float(value), unit, _dims(dest, dims))


def timing(name: str, seconds: float, **dims: str) -> None:
    """Record a duration; CloudWatch can then give its percentiles (p50, p95, p99)."""
    dest = destination()
    if dest.settings.metrics_enabled:
        _buffer.timing(dest, name, max(seconds, 0.0), _dims(dest, dims))


def flush() -> int:
    """Send what this process has pending now (the DLQ watcher does after each run)."""
    return _buffer.flush()


# Business metrics: the pipeline calls these when an order is admitted and when it reaches a final state.

def order_placed() -> None:
    """An order admitted and recorded (valid: a rejected one counts as OrdersRejected only)."""
    count("OrdersPlaced")


def order_completed(total: float | Decimal, currency: str, placed_at: datetime | float | None = None) -> None:
    """An order completed: its count, its revenue and, when known, its end-to-end latency."""
    count("OrdersCompleted")
    amount("Revenue", total, Currency=currency)
    if placed_at is not None:
        started = placed_at.timestamp() if isinstance(placed_at, datetime) else float(placed_at)
        timing("EndToEndLatency", time.time() - started)


def order_cancelled(reason: str) -> None:
    count("OrdersCancelled", Reason=reason)


def order_rejected() -> None:
    count("OrdersRejected")


def order_failed(reason: str) -> None:
    """An order ended in a DLQ (reason: the DLQ classification)."""
    count("OrdersFailed", Reason=reason)


def stage_time(stage: str, seconds: float) -> None:
    """Time an order spent in one stage (from the previous step's end to this step's end)."""
    timing("StageLatency", seconds, Stage=stage)

