"""What a fault campaign amounts to: the figures it prints and the verdict; plain code, no AWS.

The redelivery time of a kill: the workers' `task-received` events
(orders.harness.chaos_events) say which messages the killed process had taken
and not finished (received, no succeeded/failed/retried/rejected/revoked from it
before the kill): those it held. Each one's redelivery is the first
`task-received` of the same message (task id and retry count) by another process
after the kill; its time is that moment minus the kill's. A held message never
received again is counted (its event may have been lost, or the kill came after
its ack but before its ended event was published).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from orders.harness.chaos_events import TaskEvent
from orders.harness.summary import percentile

ENDS = frozenset({"task-succeeded", "task-failed", "task-retried", "task-rejected", "task-revoked"})
#: Audit counts (orders.ops.audit) that fail a campaign when not zero (the audit lists each as a problem).
AUDIT_FAILURES = ("failed", "stuck", "double_charges", "oversold_units", "money_mismatches", "lost_units")


@dataclass(frozen=True)
class KillMoment:
    """What the figures need of a kill: which process, when (epoch seconds)."""

    pid: int
    at: float


@dataclass(frozen=True)
class Redelivery:
    """One message a killed worker held, and when another worker received it again."""

    task_id: str
    retries: int | None
    killed_pid: int
    seconds: float


@dataclass
class RedeliveryFigures:
    """Messages held by killed workers, how many came back, and how long that took."""

    held: int = 0
    back: int = 0
    p50: float = math.nan
    p95: float = math.nan
    max: float = math.nan

    @classmethod
    def of(cls, held: int, found: Sequence[Redelivery]) -> RedeliveryFigures:
        seconds = [r.seconds for r in found]
        return cls(held, len(found), percentile(seconds, 50), percentile(seconds, 95),
                   max(seconds) if seconds else math.nan)


def redeliveries(events: Iterable[TaskEvent], kills: Iterable[KillMoment]) -> tuple[int, list[Redelivery]]:
    """(messages held by the killed processes, the redeliveries found); see the module's docstring."""
    received: dict[tuple[str, int | None], list[tuple[float, int]]] = defaultdict(list)
    ends: dict[tuple[str, int], list[float]] = defaultdict(list)
    for event in sorted(events, key=lambda e: e.at):
        if event.type == "task-received":
            received[(event.task_id, event.retries)].append((event.at, event.pid))
        elif event.type in ENDS:
            ends[(event.task_id, event.pid)].append(event.at)
    held, found = 0, []
    for kill in kills:
        for key, takes in received.items():
            taken = [at for at, pid in takes if pid == kill.pid and at <= kill.at]
            if not taken or any(taken[-1] <= end <= kill.at for end in ends[(key[0], kill.pid)]):
                continue
            held += 1
            again = [at for at, pid in takes if pid != kill.pid and at > kill.at]
            if again:
                found.append(Redelivery(key[0], key[1], kill.pid, again[0] - kill.at))
    return held, found


def extra_deliveries(events: Iterable[TaskEvent]) -> tuple[int, int]:
    """(receptions, runs) beyond one per message: a message (task id, retries) received again, a task run
    more times than it has messages. Kills, stalls and expired visibility make them; idempotence copes."""
    received: Counter[tuple[str, int | None]] = Counter()
    started: Counter[str] = Counter()
    for event in events:
        if event.type == "task-received":
            received[(event.task_id, event.retries)] += 1
        elif event.type == "task-started":
            started[event.task_id] += 1
    messages = Counter(task_id for task_id, _ in received)
    return (sum(n - 1 for n in received.values()),
            sum(max(0, n - messages[task_id]) for task_id, n in started.items()))


def fault_totals(report: Mapping[str, Any] | None) -> dict[str, int]:
    """Injected faults by kind ('throttle', '5xx', ...) from a fault report's 'service:Action:kind'."""
    totals: Counter[str] = Counter()
    for key, count in ((report or {}).get("injected") or {}).items():
        totals[str(key).rsplit(":", 1)[-1]] += int(count)
    return dict(totals)


def outages_from(report: Mapping[str, Any] | None, started_at: float) -> list[dict[str, Any]]:
    """The report's outages with their start in seconds after `started_at` (the first order placed)."""
    return [{"target": o.get("target"), "seconds": o.get("seconds"),
             "at": round(float(o.get("started", started_at)) - started_at, 1)}
            for o in (report or {}).get("outages") or []]


@dataclass
class PoisonOutcome:
    """One poison message sent: where it went, and whether and when it reached its queue's DLQ."""

    shape: str
    queue: str
    message_id: str
    sent_at: float
    in_dlq: bool = False
    reason: str | None = None
    seconds: float | None = None  # from its sending to its copy's arrival in the DLQ


@dataclass
class ChaosFigures:
    """Everything `orders chaos` prints (and `--json` as one object)."""

    command: str
    placed: int = 0
    refused: int = 0
    by_state: dict[str, int] = field(default_factory=dict)
    lost: list[str] = field(default_factory=list)
    stuck: list[str] = field(default_factory=list)
    send_failed: list[str] = field(default_factory=list)
    duplicates_placed: int = 0
    kills: list[dict[str, Any]] = field(default_factory=list)
    worker_exits: list[str] = field(default_factory=list)
    other_exits: list[str] = field(default_factory=list)
    attack_errors: list[str] = field(default_factory=list)
    faults: dict[str, int] = field(default_factory=dict)
    faults_by_call: dict[str, int] = field(default_factory=dict)
    outages: list[dict[str, Any]] = field(default_factory=list)
    audit: dict[str, int] = field(default_factory=dict)
    audit_problems: list[str] = field(default_factory=list)
    poison: list[PoisonOutcome] = field(default_factory=list)
    redelivery: RedeliveryFigures = field(default_factory=RedeliveryFigures)
    delivered_twice: int = 0
    run_twice: int = 0
    dlq_depths: dict[str, int] = field(default_factory=dict)
    timed_out: bool = False
    duration: float = 0.0

    @property
    def accepted(self) -> int:
        """Orders the door took: those placed, less those it refused and those never sent."""
        return self.placed - self.refused - len(self.send_failed)

    @property
    def final(self) -> int:
        return self.accepted - len(self.lost) - len(self.stuck)

    def add_deliveries(self, events: Sequence[TaskEvent], kills: Sequence[KillMoment]) -> None:
        """The kills' redelivery figures, and the messages received or run twice, from the task events."""
        self.redelivery = RedeliveryFigures.of(*redeliveries(events, kills))
        self.delivered_twice, self.run_twice = extra_deliveries(events)

    def add_faults(self, report: Mapping[str, Any] | None, started_at: float) -> None:
        """The emulator's fault report: totals by kind and by call, and the outages."""
        self.faults = fault_totals(report)
        self.faults_by_call = dict((report or {}).get("injected") or {})
        self.outages = outages_from(report, started_at)

    @property
    def double_charges(self) -> int:
        return int(self.audit.get("double_charges", 0))

    @property
    def oversold_units(self) -> int:
        return int(self.audit.get("oversold_units", 0))

    @property
    def poison_missing(self) -> list[PoisonOutcome]:
        """Poison messages not found in their DLQ with a reason."""
        return [p for p in self.poison if not (p.in_dlq and p.reason)]

    def problems(self) -> list[str]:
        """Why the campaign fails (empty: it passed)."""
        found = []
        for what, items in (("lost", self.lost), ("stuck (not final)", self.stuck),
                            ("not sent", self.send_failed)):
            if items:
                found.append(f"{len(items)} orders {what}: {', '.join(items[:5])}")
        found += [f"audit: {name} {self.audit[name]}" for name in AUDIT_FAILURES if self.audit.get(name)]
        found += [f"audit: {p}" for p in self.audit_problems[:20]]
        found += [f"poison {p.shape} ({p.message_id}) not in {p.queue}'s DLQ with a reason"
                  for p in self.poison_missing]
        found += [f"a worker exited with no kill: {e}" for e in self.worker_exits]
        return found

    @property
    def ok(self) -> bool:
        return not self.problems()

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(accepted=self.accepted, final=self.final, double_charges=self.double_charges,
                    oversold_units=self.oversold_units, problems=self.problems(), ok=self.ok,
                    poison_in_dlq=len(self.poison) - len(self.poison_missing))
        return _no_nan(data)


def _no_nan(value: Any) -> Any:
    """NaN as null: JSON has no NaN."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _no_nan(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_no_nan(v) for v in value]
    return value
