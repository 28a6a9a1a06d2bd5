"""Custom CloudWatch metrics, aggregated in each process and sent in batched PutMetricData calls.

Recording a value is a dictionary update under a lock: no AWS call per task. A
background thread flushes the buffer every `ORDERS_METRICS_FLUSH_SECONDS` (and
workers flush at shutdown), packing up to 1000 metric data per request. Timings
are sent as Values/Counts (3 significant digits) so that CloudWatch can compute
percentiles; counts and amounts as exact statistic sets.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from orders.aws import clients
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


@dataclass
class Series:
    """What one metric (name, unit, dimensions) accumulated since the last flush."""

    values: Counter[float] = field(default_factory=Counter)  # timings: rounded value -> count
    count: float = 0.0  # amounts and counts: exact statistic set
    total: float = 0.0
    low: float = float("inf")
    high: float = float("-inf")

    def add_amount(self, value: float) -> None:
        self.count += 1
        self.total += value
        self.low, self.high = min(self.low, value), max(self.high, value)

    def merge(self, other: Series) -> None:
        self.values.update(other.values)
        self.count += other.count
        self.total += other.total
        self.low, self.high = min(self.low, other.low), max(self.high, other.high)


class MetricsBuffer:
    """One per process: values are added by any thread and flushed in batches."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._series: dict[Key, Series] = {}
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.requests = 0  # PutMetricData calls made, for tests and benchmarks
        self.dropped = 0

    def timing(self, name: str, seconds: float, dims: Mapping[str, str]) -> None:
        with self._lock:
            series = self._get(name, "Seconds", dims)
            if series is not None:
                series.values[_round(seconds)] += 1
        self._ensure_flusher()

    def amount(self, name: str, value: float, unit: str, dims: Mapping[str, str]) -> None:
        with self._lock:
            series = self._get(name, unit, dims)
            if series is not None:
                series.add_amount(value)
        self._ensure_flusher()

    def _get(self, name: str, unit: str, dims: Mapping[str, str]) -> Series | None:
        key = (name, unit, tuple(sorted(dims.items())))
        series = self._series.get(key)
        if series is None:
            if len(self._series) >= MAX_PENDING_SERIES:
                self.dropped += 1
                return None
            series = self._series[key] = Series()
        return series

    def flush(self, settings: Settings | None = None) -> int:
        """Send everything pending now; returns the number of PutMetricData calls."""
        with self._lock:
            pending, self._series = self._series, {}
        if not pending:
            return 0
        settings = settings or get_settings()
        calls = 0
        chunks = list(_chunks(list(_data(pending, datetime.now(UTC)))))
        for n, chunk in enumerate(chunks):
            try:
                clients.client("cloudwatch", settings).put_metric_data(
                    Namespace=NAMESPACE, MetricData=[datum for _, datum in chunk])
                calls += 1
            except ConfigurationError as exc:  # nowhere to send them: a process without AWS settings
                log.debug("metrics dropped: %s", exc)
                break
            except Exception as exc:  # metrics must never break the work they measure
                unsent = {key for rest in chunks[n:] for key, _ in rest}
                log.warning("PutMetricData failed (%s); %d series kept for the next flush", exc, len(unsent))
                self._restore({key: pending[key] for key in unsent})
                break
        self.requests += calls
        return calls

    def _restore(self, pending: dict[Key, Series]) -> None:
        with self._lock:
            for key, series in pending.items():
                if key in self._series:
                    self._series[key].merge(series)
                elif len(self._series) < MAX_PENDING_SERIES:
                    self._series[key] = series

    def _ensure_flusher(self) -> None:
        if self._thread is not None:
            return
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="metrics-flusher", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        stop = self._stop
        while not stop.wait(get_settings().metrics_flush_seconds):
            self.flush()

    def close(self) -> None:
        """Stop the flusher and send what is pending (worker shutdown, process exit).

        A value added later starts a new flusher: an in-process test worker stops
        while the process goes on.
        """
        with self._lock:
            self._stop.set()
            self._stop, self._thread = threading.Event(), None
        try:
            self.flush()
        except Exception as exc:
            log.warning("final metrics flush failed: %s", exc)


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


def _fresh_buffer_after_fork() -> None:
    # A forked child inherits the parent's values (already counted there) and no thread.
    global _buffer
    _buffer = MetricsBuffer()


def _at_exit() -> None:
    try:
        clients.require_aws(get_settings())
    except ConfigurationError:
        return  # nowhere to send them (a test process whose emulator is gone)
    _buffer.close()


os.register_at_fork(after_in_child=_fresh_buffer_after_fork)
atexit.register(_at_exit)


def buffer() -> MetricsBuffer:
    """This process's buffer."""
    return _buffer


def _dims(settings: Settings, extra: Mapping[str, str]) -> dict[str, str]:
    return {"Environment": settings.env, **{k: str(v) for k, v in extra.items()}}


def count(name: str, n: float = 1, **dims: str) -> None:
    """Add `n` to a count metric (dimensions: Environment plus `dims`)."""
    settings = get_settings()
    if settings.metrics_enabled:
        _buffer.amount(name, float(n), "Count", _dims(settings, dims))


def amount(name: str, value: float | Decimal, unit: str = "None", **dims: str) -> None:
    """Record an amount whose sum matters (revenue): sent as an exact statistic set."""
    settings = get_settings()
    if settings.metrics_enabled:
        _buffer.amount(name, float(value), unit, _dims(settings, dims))


def timing(name: str, seconds: float, **dims: str) -> None:
    """Record a duration; CloudWatch can then give its percentiles (p50, p95, p99)."""
    settings = get_settings()
    if settings.metrics_enabled:
        _buffer.timing(name, max(seconds, 0.0), _dims(settings, dims))


def flush() -> int:
    """Send what this process has pending now (the DLQ watcher does after each run)."""
    return _buffer.flush()


# Business metrics: the pipeline calls these when an order reaches a final state.

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

