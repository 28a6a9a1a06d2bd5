"""The run summary as people read it: the demo's last screen."""

from __future__ import annotations

import math
from collections import Counter, defaultdict

from orders.harness.summary import FINAL_STATES_SHOWN, REFUSED, SEND_FAILED, Summary


def format_summary(summary: Summary) -> str:
    """The summary as people read it (the demo's last screen)."""
    parts = [_format_states(summary), _format_kinds(summary), _format_latency(summary)]
    if summary.events is not None:
        parts.append(_format_events(summary.events))
    if summary.dlq_depths is not None:
        parts.append("Dead-letter queues (messages)\n  " + ", ".join(
            f"{name} {depth}" for name, depth in summary.dlq_depths.items()))
    if summary.aws_calls:
        parts.append(_format_calls(summary.aws_calls, summary.following_calls or {}))
    if summary.incidents:
        parts.append("Incidents\n" + "\n".join(f"  {line}" for line in summary.incidents))
    parts.append(_verdict(summary))
    return "\n\n".join(parts)


def _format_states(summary: Summary) -> str:
    lines = [f"Orders: {summary.placed} placed ({summary.placing_rate:.1f}/s), "
             f"{summary.refused} {REFUSED} (invalid)"]
    lines += [f"  e.g. {order_id}: " + "; ".join(problems)
              for order_id, problems in summary.refused_examples.items()]
    lines.append("Final states")
    for state in FINAL_STATES_SHOWN:
        reasons = summary.by_reason.get(state, {})
        detail = ", ".join(f"{r} {n}" for r, n in sorted(reasons.items(), key=lambda rn: -rn[1]))
        lines.append(f"  {state:<12}{summary.by_state.get(state, 0):>6}   {detail}".rstrip())
    lines.append(f"  {'lost':<12}{len(summary.lost):>6}")
    lines.append(f"  {'not final':<12}{len(summary.unfinished):>6}")
    if summary.send_failed:
        lines.append(f"  {SEND_FAILED:<12}{len(summary.send_failed):>6}")
    return "\n".join(lines)


def _format_kinds(summary: Summary) -> str:
    columns = [*FINAL_STATES_SHOWN, REFUSED, "other"]
    heads = [*FINAL_STATES_SHOWN, "refused", "not final"]
    lines = ["By kind of order   " + "".join(f"{h:>10}" for h in heads)]
    for kind, states in summary.by_kind.items():
        other = sum(n for s, n in states.items() if s not in columns)
        counts = [states.get(c, 0) for c in columns[:-1]] + [other]
        lines.append(f"  {kind:<16}" + "".join(f"{n:>10}" for n in counts))
    for kind, states in summary.unexpected.items():
        lines.append(f"  unexpected: {kind} ended " + ", ".join(f"{s} {n}" for s, n in states.items()))
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
                 f"({sum(summary.by_state.get(s, 0) for s in FINAL_STATES_SHOWN)} orders "
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


def _format_calls(calls: dict[str, int], following: dict[str, int]) -> str:
    by_service: dict[str, Counter[str]] = defaultdict(Counter)
    for key, n in calls.items():
        service, _, action = key.partition(":")
        by_service[service][action] += n
    lines = ["AWS calls during the run (counted at the emulator)"]
    for service, actions in sorted(by_service.items()):
        top = ", ".join(f"{a} {n}" for a, n in actions.most_common(4))
        lines.append(f"  {service:<12}{sum(actions.values()):>7}   {top}")
    if following:
        lines.append("  of which this run's own reads of the orders, to follow them: "
                     + ", ".join(f"{k} {n}" for k, n in sorted(following.items())))
    return "\n".join(lines)


def _verdict(summary: Summary) -> str:
    if summary.ok:
        return "OK: no order lost, every accepted order reached a final state."
    shown = (summary.lost + summary.unfinished + summary.send_failed)[:10]
    return (f"FAILED: {len(summary.lost)} lost, {len(summary.unfinished)} not in a final state, "
            f"{len(summary.send_failed)} not sent (e.g. {', '.join(shown)}).")
