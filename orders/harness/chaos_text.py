"""A fault campaign's figures as people read them: `orders chaos`'s last screen."""

from __future__ import annotations

import math

from orders.harness.chaos_figures import AUDIT_FAILURES, ChaosFigures, PoisonOutcome
from orders.harness.summary import FINAL_STATES_SHOWN, percentile


def format_figures(f: ChaosFigures) -> str:
    parts = [_orders(f), _processes(f), _faults(f), _audit(f), _poison(f)]
    if f.dlq_depths:
        parts.append("Dead-letter queues at the end (messages, poison included)\n  " + ", ".join(
            f"{name} {depth}" for name, depth in f.dlq_depths.items()))
    parts.append(f"Reproduce: {f.command}")
    parts.append(_verdict(f))
    return "\n\n".join(parts)


def _orders(f: ChaosFigures) -> str:
    finals = ", ".join(f"{s} {f.by_state.get(s, 0)}" for s in FINAL_STATES_SHOWN)
    return "\n".join([
        f"Orders: {f.placed} placed, {f.refused} refused at the door, {f.accepted} accepted; "
        f"{f.duplicates_placed} placed a second time (the same order)",
        f"  final {f.final} ({finals})",
        f"  lost {len(f.lost)}, stuck {len(f.stuck)}" + (", not sent " + str(len(f.send_failed))
                                                        if f.send_failed else "")
        + (f" (gave up waiting after {f.duration:.0f} s)" if f.timed_out else ""),
    ])


def _seconds(value: float | None) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.1f} s"


def _processes(f: ChaosFigures) -> str:
    r = f.redelivery
    lines = [f"Kills: {len(f.kills)} SIGKILLs of a worker's process group, each restarted by the campaign"]
    lines += [f"  {k['at']:>7.1f} s  {k['queue']:<22} pid {k['pid']:<8} restarted after "
              f"{_seconds(k['restarted_after'])}" for k in f.kills]
    lines.append(f"Worker exits with no kill from the campaign (a message, a fault): {len(f.worker_exits)}")
    lines += [f"  {line}" for line in f.worker_exits + f.other_exits]
    lines.append(f"Redelivery of the messages killed workers held: {r.held} held, {r.back} received again "
                 f"by another worker; after the kill P50 {_seconds(r.p50)}, P95 {_seconds(r.p95)}, "
                 f"max {_seconds(r.max)}")
    lines.append(f"Delivered twice: {f.delivered_twice} receptions of a message already received; "
                 f"{f.run_twice} task runs beyond one per message")
    lines += [f"  attack not made: {e}" for e in f.attack_errors]
    return "\n".join(lines)


def _faults(f: ChaosFigures) -> str:
    total = sum(f.faults.values())
    kinds = ", ".join(f"{k} {n}" for k, n in sorted(f.faults.items(), key=lambda kn: -kn[1]))
    lines = [f"Faults injected by the emulator: {total}" + (f" ({kinds})" if kinds else "")]
    top = sorted(f.faults_by_call.items(), key=lambda kv: -kv[1])[:6]
    if top:
        lines.append("  most hit: " + ", ".join(f"{k} {n}" for k, n in top))
    lines += [f"  outage of {o['target']}: {o['seconds']:g} s from {o['at']:.1f} s" for o in f.outages]
    return "\n".join(lines)


def _audit(f: ChaosFigures) -> str:
    counts = ", ".join(f"{name.replace('_', ' ')} {f.audit.get(name, 0)}" for name in AUDIT_FAILURES)
    lines = [f"Audit of {f.audit.get('orders', 0)} orders ({f.audit.get('final', 0)} final): {counts}; "
             f"{len(f.audit_problems)} problems"]
    lines += [f"  {p}" for p in f.audit_problems[:20]]
    return "\n".join(lines)


def _poison(f: ChaosFigures) -> str:
    seconds = [p.seconds for p in f.poison if p.seconds is not None]
    lines = [f"Poison: {len(f.poison)} sent, {len(f.poison) - len(f.poison_missing)} in their queue's DLQ "
             f"with a reason; sent to DLQ after P50 {_seconds(percentile(seconds, 50))}, "
             f"max {_seconds(max(seconds) if seconds else math.nan)}"]
    lines += [_poison_line(p) for p in f.poison]
    return "\n".join(lines)


def _poison_line(p: PoisonOutcome) -> str:
    where = (f"in its DLQ after {_seconds(p.seconds)}: {(p.reason or '')[:70]}" if p.reason
             else "in its DLQ without a reason (moved by SQS's receive count)" if p.in_dlq
             else "NOT FOUND in its DLQ")
    return f"  {p.shape:<28}{p.queue:<22}{where}"


def _verdict(f: ChaosFigures) -> str:
    problems = f.problems()
    if not problems:
        return ("OK: no order lost or stuck, no double charge, no oversold unit, every poison message in "
                "its DLQ, and the audit found nothing.")
    return "FAILED:\n" + "\n".join(f"  {p}" for p in problems)
