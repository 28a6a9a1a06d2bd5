"""What a run of orders amounts to: final states, latencies, throughput; plain code, no AWS.

`summarize` turns a run's outcomes (orders.harness.runner) into a `Summary`;
`orders.harness.summary_text.format_summary` prints it for people and `Summary.as_dict`
for machines (`--json`).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from orders.domain import times
from orders.domain.states import FINAL_STATES, OrderState

#: The final states in the order the summary lists them (the enum's).
FINAL_STATES_SHOWN: tuple[OrderState, ...] = tuple(s for s in OrderState if s in FINAL_STATES)
REFUSED = "refused at the door"
SEND_FAILED = "send failed"
NOT_PLACED = "not placed"


class Outcome(Protocol):
    """What the report needs of one order (orders.harness.runner.OrderOutcome provides it)."""

    order_id: str
    kind: str
    placed_at: float | None
    refused: list[str] | None
    record: dict[str, Any] | None
    send_error: str | None


def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile (0-100) with linear interpolation between ranks; NaN if empty.

    The one percentile of the project (the demo's summary and the benchmarks): unlike the
    nearest rank, it moves smoothly as a sample grows instead of jumping from one order to the next.
    """
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * p / 100.0
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def parse_time(value: Any) -> float:
    """Epoch seconds from a history timestamp: a number (s or ms) or an ISO 8601 string."""
    if isinstance(value, int | float) or (isinstance(value, str) and _is_number(value)):
        seconds = float(value)
        return seconds / 1000.0 if seconds > 1e11 else seconds  # epoch milliseconds
    return times.parse_time(str(value)).timestamp()


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def history(record: dict[str, Any] | None) -> list[tuple[str, float]]:
    """(status, epoch seconds) of every recorded state change, oldest first."""
    entries = (record or {}).get("history") or []
    timed = [(str(e.get("status")), parse_time(e["at"])) for e in entries if e.get("at") is not None]
    return sorted(timed, key=lambda entry: entry[1])


def status_of(outcome: Outcome) -> str:
    if outcome.placed_at is None:
        return NOT_PLACED
    if outcome.refused is not None:
        return REFUSED
    if outcome.send_error is not None:
        return SEND_FAILED
    if outcome.record is None:
        return "lost"
    return str(outcome.record.get("status"))


def stage_durations(outcome: Outcome) -> list[tuple[str, float]]:
    """('from → to', seconds) for each step of one order, the first from its placing."""
    steps, previous = [], ("placed", outcome.placed_at)
    for status, at in history(outcome.record):
        if previous[1] is not None and status != previous[0]:
            steps.append((f"{previous[0]} → {status}", max(0.0, at - previous[1])))
        previous = (status, at)
    return steps


def final_time(outcome: Outcome) -> float | None:
    """When the order reached its final state (the last history entry), if it did."""
    if status_of(outcome) not in FINAL_STATES:
        return None
    entries = history(outcome.record)
    return entries[-1][1] if entries else None


@dataclass
class Latency:
    """P50 and P95 of one stage (or end to end), in seconds, over `count` orders."""

    name: str
    count: int
    p50: float
    p95: float

    @classmethod
    def of(cls, name: str, values: Sequence[float]) -> Latency:
        return cls(name, len(values), percentile(values, 50), percentile(values, 95))


@dataclass
class Summary:
    """Everything the demo prints at the end of a run."""

    placed: int = 0
    refused: int = 0
    by_state: dict[str, int] = field(default_factory=dict)
    by_reason: dict[str, dict[str, int]] = field(default_factory=dict)
    by_kind: dict[str, dict[str, int]] = field(default_factory=dict)
    lost: list[str] = field(default_factory=list)
    unfinished: list[str] = field(default_factory=list)
    send_failed: list[str] = field(default_factory=list)
    refused_examples: dict[str, list[str]] = field(default_factory=dict)
    unexpected: dict[str, dict[str, int]] = field(default_factory=dict)
    stages: list[Latency] = field(default_factory=list)
    end_to_end: Latency | None = None
    duration: float = 0.0
    throughput: float = 0.0
    placing_rate: float = 0.0
    incidents: list[str] = field(default_factory=list)  # e.g. workers restarted during the run
    events: dict[str, dict[str, int]] | None = None
    dlq_depths: dict[str, int] | None = None
    aws_calls: dict[str, int] | None = None
    #: Among aws_calls: the run's own reads of the orders, to follow them (not the pipeline's work).
    following_calls: dict[str, int] | None = None

    @property
    def ok(self) -> bool:
        """Every order sent, none lost, every accepted one in a final state."""
        return not self.lost and not self.unfinished and not self.send_failed

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["ok"] = self.ok
        return data


def summarize(outcomes: Sequence[Outcome], events: dict[str, dict[str, int]] | None = None,
              dlq_depths: dict[str, int] | None = None, aws_calls: dict[str, int] | None = None,
              expected: Mapping[str, Sequence[str]] | None = None) -> Summary:
    """The summary of a run from its per-order outcomes and what was observed around it.

    `expected` maps a kind of order to the states it should end in; others are counted
    as unexpected (orders.harness.order_mix.EXPECTED).
    """
    summary = Summary(events=events, dlq_depths=dlq_depths, aws_calls=aws_calls)
    summary.placed = sum(1 for o in outcomes if o.placed_at is not None)
    summary.refused = sum(1 for o in outcomes if o.refused is not None)
    summary.refused_examples = dict([(o.order_id, o.refused) for o in outcomes if o.refused][:2])
    _count_states(summary, outcomes)
    summary.unexpected = unexpected(summary.by_kind, expected or {})
    summary.stages = stage_latencies(outcomes)
    finals = [(o, t) for o in outcomes if (t := final_time(o)) is not None]
    e2e = [t - o.placed_at for o, t in finals if o.placed_at is not None]
    summary.end_to_end = Latency.of("placed → final state", e2e)
    summary.duration, summary.throughput = throughput(outcomes, [t for _, t in finals])
    summary.placing_rate = placing_rate(outcomes)
    return summary


def _count_states(summary: Summary, outcomes: Iterable[Outcome]) -> None:
    by_state: Counter[str] = Counter()
    by_reason: dict[str, Counter[str]] = defaultdict(Counter)
    by_kind: dict[str, Counter[str]] = defaultdict(Counter)
    for outcome in outcomes:
        state = status_of(outcome)
        by_state[state] += 1
        by_kind[outcome.kind][state] += 1
        reason = (outcome.record or {}).get("reason")
        if state in FINAL_STATES and state != OrderState.COMPLETED:
            by_reason[state][str(reason or "(none given)")] += 1
        if state == "lost":
            summary.lost.append(outcome.order_id)
        elif state == SEND_FAILED:
            summary.send_failed.append(outcome.order_id)
        elif state not in FINAL_STATES and state != REFUSED:
            summary.unfinished.append(outcome.order_id)
    summary.by_state = dict(by_state)
    summary.by_reason = {s: dict(c) for s, c in by_reason.items()}
    summary.by_kind = {k: dict(c) for k, c in sorted(by_kind.items())}


def unexpected(by_kind: dict[str, dict[str, int]],
               expected: Mapping[str, Sequence[str]]) -> dict[str, dict[str, int]]:
    """Per kind, the final states it should not have ended in (unfinished ones are failures anyway)."""
    found = {}
    for kind, states in by_kind.items():
        if kind not in expected:
            continue
        wrong = {s: n for s, n in states.items()
                 if s not in expected[kind] and (s in FINAL_STATES or s == REFUSED)}
        if wrong:
            found[kind] = wrong
    return found


def stage_latencies(outcomes: Iterable[Outcome]) -> list[Latency]:
    """P50/P95 per stage, stages in the order orders usually go through them."""
    durations: dict[str, list[float]] = defaultdict(list)
    offsets: dict[str, list[float]] = defaultdict(list)
    for outcome in outcomes:
        elapsed = 0.0
        for name, seconds in stage_durations(outcome):
            durations[name].append(seconds)
            offsets[name].append(elapsed)
            elapsed += seconds
    order = sorted(durations, key=lambda name: (percentile(offsets[name], 50), name))
    return [Latency.of(name, durations[name]) for name in order]


def throughput(outcomes: Iterable[Outcome], finals: Sequence[float]) -> tuple[float, float]:
    """(seconds from the first order placed to the last final state, final orders per second)."""
    placed = [o.placed_at for o in outcomes if o.placed_at is not None]
    if not placed or not finals:
        return 0.0, 0.0
    duration = max(finals) - min(placed)
    return duration, (len(finals) / duration if duration > 0 else 0.0)


def placing_rate(outcomes: Iterable[Outcome]) -> float:
    """Orders placed per second, first to last (below the requested rate if sending lagged)."""
    placed = sorted(o.placed_at for o in outcomes if o.placed_at is not None)
    if len(placed) < 2 or placed[-1] <= placed[0]:
        return 0.0
    return (len(placed) - 1) / (placed[-1] - placed[0])
