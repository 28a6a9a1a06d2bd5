"""What a run of orders amounts to: final states, latencies, throughput; plain code, no AWS.

`summarize` turns a `RunResult` (orders.runner) into a `Summary`; `format_summary`
prints it for people and `Summary.as_dict` for machines (`--json`).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Protocol

FINAL_STATES = ("completed", "cancelled", "rejected", "failed")
REFUSED = "refused at the door"
SEND_FAILED = "send failed"
NOT_PLACED = "not placed"


class Outcome(Protocol):
    """What the report needs of one order (orders.runner.OrderOutcome provides it)."""

    order_id: str
    kind: str
    placed_at: float | None
    refused: list[str] | None
    record: dict[str, Any] | None
    send_error: str | None


def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile (0-100) with linear interpolation between ranks; NaN if empty."""
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
    return datetime.fromisoformat(str(value)).timestamp()


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
    stages: list[Latency] = field(default_factory=list)
    end_to_end: Latency | None = None
    duration: float = 0.0
    throughput: float = 0.0
    events: dict[str, dict[str, int]] | None = None
    dlq_depths: dict[str, int] | None = None
    aws_calls: dict[str, int] | None = None

    @property
    def ok(self) -> bool:
        """Every order sent, none lost, every accepted one in a final state."""
        return not self.lost and not self.unfinished and not self.send_failed

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["ok"] = self.ok
        return data


def summarize(outcomes: Sequence[Outcome], events: dict[str, dict[str, int]] | None = None,
              dlq_depths: dict[str, int] | None = None,
              aws_calls: dict[str, int] | None = None) -> Summary:
    """The summary of a run from its per-order outcomes and what was observed around it."""
    summary = Summary(events=events, dlq_depths=dlq_depths, aws_calls=aws_calls)
    summary.placed = sum(1 for o in outcomes if o.placed_at is not None)
    summary.refused = sum(1 for o in outcomes if o.refused is not None)
    summary.refused_examples = dict([(o.order_id, o.refused) for o in outcomes if o.refused][:2])
    _count_states(summary, outcomes)
    summary.stages = stage_latencies(outcomes)
    finals = [(o, t) for o in outcomes if (t := final_time(o)) is not None]
    e2e = [t - o.placed_at for o, t in finals if o.placed_at is not None]
    summary.end_to_end = Latency.of("placed → final state", e2e)
    summary.duration, summary.throughput = throughput(outcomes, [t for _, t in finals])
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
        if state in FINAL_STATES and state != "completed":
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


def format_summary(summary: Summary) -> str:
    """The summary as people read it (the demo's last screen)."""
    parts = [_format_states(summary), _format_kinds(summary), _format_latency(summary)]
    if summary.events is not None:
        parts.append(_format_events(summary.events))
    if summary.dlq_depths is not None:
        parts.append("Dead-letter queues (messages)\n  " + ", ".join(
            f"{name} {depth}" for name, depth in summary.dlq_depths.items()))
    if summary.aws_calls:
        parts.append(_format_calls(summary.aws_calls))
    parts.append(_verdict(summary))
    return "\n\n".join(parts)


def _format_states(summary: Summary) -> str:
    lines = [f"Orders: {summary.placed} placed, {summary.refused} {REFUSED} (invalid)"]
    lines += [f"  e.g. {order_id}: " + "; ".join(problems)
              for order_id, problems in summary.refused_examples.items()]
    lines.append("Final states")
    for state in FINAL_STATES:
        reasons = summary.by_reason.get(state, {})
        detail = ", ".join(f"{r} {n}" for r, n in sorted(reasons.items(), key=lambda rn: -rn[1]))
        lines.append(f"  {state:<12}{summary.by_state.get(state, 0):>6}   {detail}".rstrip())
    lines.append(f"  {'lost':<12}{len(summary.lost):>6}")
    lines.append(f"  {'not final':<12}{len(summary.unfinished):>6}")
    if summary.send_failed:
        lines.append(f"  {SEND_FAILED:<12}{len(summary.send_failed):>6}")
    return "\n".join(lines)


def _format_kinds(summary: Summary) -> str:
    columns = [*FINAL_STATES, REFUSED, "other"]
    heads = [*FINAL_STATES, "refused", "not final"]
    lines = ["By kind of order   " + "".join(f"{h:>10}" for h in heads)]
    for kind, states in summary.by_kind.items():
        other = sum(n for s, n in states.items() if s not in columns)
        counts = [states.get(c, 0) for c in columns[:-1]] + [other]
        lines.append(f"  {kind:<16}" + "".join(f"{n:>10}" for n in counts))
    return "\n".join(lines)


def _ms(seconds: float) -> str:
    return "-" if math.isnan(seconds) else f"{seconds * 1000:,.0f} ms"


def _format_latency(summary: Summary) -> str:
    rows = list(summary.stages) + ([summary.end_to_end] if summary.end_to_end else [])
    width = max([len(r.name) for r in rows] + [20]) + 2
    lines = [f"Latency{'':<{width - 5}}{'orders':>7}{'P50':>11}{'P95':>11}"]
    for row in rows:
        if row is summary.end_to_end:
            lines.append("  " + "-" * (width + 27))
        lines.append(f"  {row.name:<{width}}{row.count:>7}{_ms(row.p50):>11}{_ms(row.p95):>11}")
    lines.append(f"Throughput: {summary.throughput:.1f} orders/s reached a final state "
                 f"({sum(summary.by_state.get(s, 0) for s in FINAL_STATES)} orders "
                 f"in {summary.duration:.1f} s from the first placed)")
    return "\n".join(lines)


def _format_events(events: dict[str, dict[str, int]]) -> str:
    lines = ["Events published, per topic (as delivered to a queue subscribed to every topic)"]
    for topic, types in events.items():
        detail = ", ".join(f"{t} {n}" for t, n in sorted(types.items(), key=lambda tn: -tn[1]))
        lines.append(f"  {topic:<22}{sum(types.values()):>6}   {detail}")
    if not events:
        lines.append("  (none)")
    return "\n".join(lines)


def _format_calls(calls: dict[str, int]) -> str:
    by_service: dict[str, Counter[str]] = defaultdict(Counter)
    for key, n in calls.items():
        service, _, action = key.partition(":")
        by_service[service][action] += n
    lines = ["AWS calls during the run (counted at the emulator)"]
    for service, actions in sorted(by_service.items()):
        top = ", ".join(f"{a} {n}" for a, n in actions.most_common(4))
        lines.append(f"  {service:<12}{sum(actions.values()):>7}   {top}")
    return "\n".join(lines)


def _verdict(summary: Summary) -> str:
    if summary.ok:
        return "OK: no order lost, every accepted order reached a final state."
    shown = (summary.lost + summary.unfinished + summary.send_failed)[:10]
    return (f"FAILED: {len(summary.lost)} lost, {len(summary.unfinished)} not in a final state, "
            f"{len(summary.send_failed)} not sent (e.g. {', '.join(shown)}).")
