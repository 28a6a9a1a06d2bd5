"""What every benchmark run reports: percentiles, API calls per order, peak worker memory."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from orders.harness.summary import percentile

#: The calls the benchmark counts as the pipeline's cost (AWS bills them per request).
BILLED_SERVICES = ("sqs", "sns")


@dataclass(frozen=True)
class Percentiles:
    """P50/P95/P99 and max of a sample, in seconds (None when the sample is empty)."""

    n: int
    p50: float | None
    p95: float | None
    p99: float | None
    max: float | None

    @classmethod
    def of(cls, values: Iterable[float]) -> Percentiles:
        data = sorted(values)
        if not data:
            return cls(0, None, None, None, None)
        return cls(len(data), percentile(data, 50), percentile(data, 95), percentile(data, 99), data[-1])


@dataclass
class RunFigures:
    """One benchmark run (one configuration) in figures; `as_dict` is the --json form."""

    label: str
    orders: int
    completed: int
    elapsed: float
    throughput: float  # completed orders per second, first placement to last completion
    end_to_end: Percentiles
    stages: dict[str, Percentiles] = field(default_factory=dict)
    calls: dict[str, int] = field(default_factory=dict)
    peak_rss: dict[str, int] = field(default_factory=dict)
    cpu_seconds: dict[str, float] = field(default_factory=dict)
    #: Task run times by worker ('worker payments') and task name, read from the workers' logs.
    task_runs: dict[str, dict[str, Percentiles]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    #: The benchmark's own requests, among `calls` (following the orders: reading them until final), and the
    #: CPU seconds of this process that went on observing (following, sampling the workers): left out of
    #: every figure per order, since an application placing orders does neither.
    observer_calls: dict[str, int] = field(default_factory=dict)
    observer_cpu_seconds: float = 0.0
    #: The embedded emulator's resident memory (its processes together), bytes: `start` and `end` of the run.
    emulator_rss: dict[str, int] = field(default_factory=dict)

    def pipeline_calls(self) -> dict[str, int]:
        """`calls` without the benchmark's own."""
        left = {key: n - self.observer_calls.get(key, 0) for key, n in self.calls.items()}
        return {key: n for key, n in left.items() if n > 0}

    @property
    def billed_calls(self) -> int:
        return sum(n for key, n in self.pipeline_calls().items() if key.split(":", 1)[0] in BILLED_SERVICES)

    @property
    def calls_per_order(self) -> float | None:
        return self.billed_calls / self.completed if self.completed else None

    def calls_per_order_by_service(self) -> dict[str, float]:
        """AWS calls per completed order, by service (sqs, sns, dynamodb, ...) and in all ("all")."""
        if not self.completed:
            return {}
        totals: dict[str, int] = {}
        for key, n in self.pipeline_calls().items():
            service = key.split(":", 1)[0]
            totals[service] = totals.get(service, 0) + n
        per = {service: n / self.completed for service, n in sorted(totals.items())}
        per["all"] = sum(totals.values()) / self.completed
        return per

    def cpu_ms_per_order(self) -> dict[str, float]:
        """CPU milliseconds per completed order of each process measured, and of the workers together."""
        if not self.completed or not self.cpu_seconds:
            return {}
        per = {name: 1000 * s / self.completed for name, s in self.cpu_seconds.items()}
        per["workers"] = sum(v for name, v in per.items() if name.startswith("worker"))
        if PRODUCER in self.cpu_seconds:  # placing: what the application's process spends
            placing = max(self.cpu_seconds[PRODUCER] - self.observer_cpu_seconds, 0.0)
            per["placing"] = 1000 * placing / self.completed
        return per

    def emulator_growth_per_order(self) -> int | None:
        """Bytes the emulator kept per completed order (what it holds for as long as it runs)."""
        if not self.completed or not {"start", "end"} <= set(self.emulator_rss):
            return None
        return (self.emulator_rss["end"] - self.emulator_rss["start"]) // self.completed

    def per_service(self) -> dict[str, ServiceFigures]:
        """What each worker (a service's queue) did: tasks per order, CPU per task, run time per task."""
        if not self.completed:
            return {}
        out = {}
        for worker, runs in self.task_runs.items():
            every = runs.get(ALL_TASKS)
            if every is None or not every.n:
                continue
            cpu = self.cpu_seconds.get(worker)
            out[worker] = ServiceFigures(tasks_per_order=every.n / self.completed,
                                         cpu_ms_per_task=None if cpu is None else 1000 * cpu / every.n,
                                         run=every, by_task={k: v for k, v in runs.items() if k != ALL_TASKS})
        return out

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["per_service"] = {k: asdict(v) for k, v in self.per_service().items()}
        data["billed_calls"] = self.billed_calls
        data["calls_per_order"] = self.calls_per_order
        data["calls_per_order_by_service"] = self.calls_per_order_by_service()
        data["cpu_ms_per_order"] = self.cpu_ms_per_order()
        return data


#: The CPU of the process that runs the benchmark: it places the orders, follows them and samples the workers.
PRODUCER = "this process"

#: The key of a worker's task runs that holds every task it ran.
ALL_TASKS = "all tasks"

#: Celery's line for a task that ran to its end (text log format): its name and run time.
TASK_SUCCEEDED = re.compile(r"Task (?P<name>[\w.]+)\[[^\]]*\] succeeded in (?P<seconds>[0-9.e+-]+)s")


@dataclass(frozen=True)
class ServiceFigures:
    """One service's worker in a run: the per-task figures a sizing starts from."""

    tasks_per_order: float
    cpu_ms_per_task: float | None  # the worker process's CPU (consuming, acking, the tasks) per task run
    run: Percentiles  # a task's run time in the worker: its AWS calls and its own CPU, not its queueing
    by_task: dict[str, Percentiles]


def task_runs(children: Sequence[Any]) -> dict[str, dict[str, Percentiles]]:
    """Run times of the tasks each worker finished, by task name and in all, from its log
    (the text format's `Task payments.charge[...] succeeded in 0.04s`)."""
    out = {}
    for child in children:
        if not child.name.startswith("worker"):
            continue
        times: dict[str, list[float]] = {}
        for match in TASK_SUCCEEDED.finditer(child.log_path.read_text(errors="replace")):
            times.setdefault(match["name"], []).append(float(match["seconds"]))
        every = [t for values in times.values() for t in values]
        by_task = {name: Percentiles.of(values) for name, values in sorted(times.items())}
        out[child.name] = {ALL_TASKS: Percentiles.of(every), **by_task}
    return out


def throughput(completed: int, first_start: float, last_end: float) -> float:
    """Orders per second over the span from the first placement to the last completion."""
    span = last_end - first_start
    return completed / span if completed and span > 0 else 0.0


class PeakMemory:
    """Samples each worker's resident memory (its process group) until stopped, keeping the peak;
    also the CPU seconds each worker and the emulator used meanwhile (where the time went), and the
    emulator's resident memory at start and end (what a run leaves in it)."""

    def __init__(self, children: Sequence[Any], interval: float = 0.5, emulator_pid: int | None = None):
        self.groups = {c.name: c.pid for c in children if c.name.startswith("worker") and c.pid}
        if emulator_pid:
            self.groups["emulator"] = emulator_pid
        self.children = [c for c in children if c.name.startswith("worker")]
        self.interval = interval
        self.peak: dict[str, int] = {}
        self.cpu: dict[str, float] = {}
        self.sampling_cpu = 0.0  # this process's CPU seconds spent sampling (the benchmark's own)
        self.emulator_rss: dict[str, int] = {}
        self._start: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="peak-rss", daemon=True)

    def __enter__(self) -> PeakMemory:
        self._start = {name: cpu_seconds(pid) for name, pid in self.groups.items()}
        self._start[PRODUCER] = time.process_time()
        self._read_emulator_rss("start")
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.cpu = {name: round(cpu_seconds(pid) - self._start[name], 2) for name, pid in self.groups.items()}
        self.cpu[PRODUCER] = round(time.process_time() - self._start[PRODUCER], 2)
        self._read_emulator_rss("end")

    def _read_emulator_rss(self, when: str) -> None:
        from orders.harness.processes import group_pids, rss_bytes

        if "emulator" in self.groups:
            self.emulator_rss[when] = rss_bytes(group_pids(self.groups["emulator"]))

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.thread_time()
            for child in self.children:
                self.peak[child.name] = max(self.peak.get(child.name, 0), child.rss())
            self.sampling_cpu += time.thread_time() - started
            self._stop.wait(self.interval)


def cpu_seconds(pgid: int) -> float:
    """User + system CPU seconds of a live process group (Linux /proc; 0 elsewhere).

    Each process's CPU clock is read to the nanosecond (the scheduler's run time, its exited
    threads included); /proc's utime and stime count 10 ms ticks, and an idle worker spends
    about 1 ms a second: a few seconds of it read as 0 ticks as often as not."""
    import os

    from orders.harness.processes import group_stats

    total = 0.0
    for pid, fields in group_stats(pgid).items():
        try:
            total += time.clock_gettime(_process_cpu_clock(pid))
        except OSError:  # gone since it was listed, or no such clock on this kernel
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def _process_cpu_clock(pid: int) -> int:
    """The clock id of another process's CPU time: what glibc's clock_getcpuclockid(pid) returns
    (Linux's encoding: the pid inverted, shifted past the clock kind, CPUCLOCK_SCHED = 2), which
    Python's time module does not expose."""
    return ((~pid) << 3) | 2


def emulator_pid(stack: Any) -> int | None:
    """The embedded emulator's process (the leader of its own group), if the stack runs one."""
    return getattr(getattr(stack.emulator, "_proc", None), "pid", None)
