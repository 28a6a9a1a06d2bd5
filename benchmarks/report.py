"""The benchmark's output: one table per suite, the ratios the targets are stated in, and JSON."""

from __future__ import annotations

from typing import Any

from benchmarks.measure import BILLED_SERVICES, Percentiles, RunFigures


def ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:,.0f}"


def mib(value: int) -> str:
    return f"{value / 2**20:,.0f}"


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a and b else None


def ratios(runs: dict[str, RunFigures]) -> dict[str, float | None]:
    """The comparisons the targets are stated in (None when a run is missing or empty)."""
    ours, raw = runs.get("ours"), runs.get("raw")
    out: dict[str, float | None] = {}
    for peer in ("stock", "dramatiq"):
        if ours and (other := runs.get(peer)):
            out[f"{peer}_calls_per_order / ours"] = ratio(other.calls_per_order, ours.calls_per_order)
            out[f"ours_throughput / {peer}"] = ratio(ours.throughput, other.throughput)
    if ours and raw:
        out["ours_throughput / raw_ceiling"] = ratio(ours.throughput, raw.throughput)
    return out


def format_suite(title: str, runs: dict[str, RunFigures]) -> str:
    """One suite: a row per configuration, the ratios, then each run's stages and calls."""
    lines = [title, "", f"{'':8}{'orders/s':>10}{'done':>11}{'P50 ms':>9}{'P95 ms':>9}{'P99 ms':>9}"
             f"{'SQS+SNS/order':>15}{'peak RSS MiB':>14}"]
    for label, run in runs.items():
        e = run.end_to_end
        per = f"{run.calls_per_order:.2f}" if run.calls_per_order is not None else "-"
        rss = mib(max(run.peak_rss.values())) + " max" if run.peak_rss else "-"
        lines.append(f"{label:8}{run.throughput:>10.1f}{run.completed:>6}/{run.orders:<4}"
                     f"{ms(e.p50):>9}{ms(e.p95):>9}{ms(e.p99):>9}{per:>15}{rss:>14}")
    for name, value in ratios(runs).items():
        lines.append(f"  {name}: " + ("-" if value is None else f"{value:.2f}"))
    for label, run in runs.items():
        lines += ["", f"{label}: stages (ms)        {'n':>6}{'P50':>9}{'P95':>9}{'P99':>9}"]
        lines += [stage_line(name, p) for name, p in run.stages.items()]
        lines.append(f"{label}: calls  " + calls_line(run.pipeline_calls()))
        if run.observer_calls or run.observer_cpu_seconds:
            own = ", ".join(f"{k} {n}" for k, n in sorted(run.observer_calls.items())) or "no calls"
            lines.append(f"{label}: the benchmark's own (following the orders, sampling the workers; "
                         f"in no figure per order): {own}; CPU {run.observer_cpu_seconds:g} s")
        if by_service := run.calls_per_order_by_service():
            lines.append(f"{label}: AWS calls per order  " + ", ".join(
                f"{k} {v:.2f}" for k, v in by_service.items()))
        if run.cpu_seconds:
            lines.append(f"{label}: CPU s  " + ", ".join(f"{k} {v:g}" for k, v in run.cpu_seconds.items()))
        if cpu := run.cpu_ms_per_order():
            lines.append(f"{label}: CPU ms per order  " + ", ".join(f"{k} {v:.1f}" for k, v in cpu.items()))
        if (kept := run.emulator_growth_per_order()) is not None:
            start, end = run.emulator_rss["start"], run.emulator_rss["end"]
            lines.append(f"{label}: emulator memory MiB  {mib(start)} at start, {mib(end)} at end: "
                         f"{kept / 1024:,.0f} KB kept a completed order")
        lines += service_lines(label, run)
        lines += [f"{label}: note: {note}" for note in run.notes]
    return "\n".join(lines)


def service_lines(label: str, run: RunFigures) -> list[str]:
    """Per service (its worker): tasks per order, the worker's CPU per task, a task's run time."""
    services = run.per_service()
    if not services:
        return []
    lines = [f"{label}: per service        {'tasks/order':>12}{'CPU ms/task':>13}{'run P50 ms':>12}"
             f"{'run P95 ms':>12}  tasks"]
    for worker, f in services.items():
        cpu = "-" if f.cpu_ms_per_task is None else f"{f.cpu_ms_per_task:.1f}"
        tasks = ", ".join(f"{name} {p.n}" for name, p in f.by_task.items())
        lines.append(f"  {worker.removeprefix('worker '):24}{f.tasks_per_order:>12.2f}{cpu:>13}"
                     f"{ms(f.run.p50):>12}{ms(f.run.p95):>12}  {tasks}")
    return lines


def stage_line(name: str, p: Percentiles) -> str:
    return f"  {name:26}{p.n:>6}{ms(p.p50):>9}{ms(p.p95):>9}{ms(p.p99):>9}"


def calls_line(calls: dict[str, int]) -> str:
    """Billed calls (SQS, SNS) by action, most first; then the other services' totals."""
    billed = sorted(((k, n) for k, n in calls.items() if k.split(":", 1)[0] in BILLED_SERVICES),
                    key=lambda kv: -kv[1])
    others: dict[str, int] = {}
    for key, n in calls.items():
        service = key.split(":", 1)[0]
        if service not in BILLED_SERVICES:
            others[service] = others.get(service, 0) + n
    text = ", ".join(f"{k} {n}" for k, n in billed) or "(not counted: not an emulator)"
    return text + "".join(f"; {s} {n}{_actions(calls, s)}" for s, n in sorted(others.items()))


def _actions(calls: dict[str, int], service: str) -> str:
    """` (UpdateItem 40, GetItem 12)`: a service's actions, most first (DynamoDB's are what an order's
    steps read and write)."""
    if service != "dynamodb":
        return ""
    actions = sorted(((k.split(":", 1)[1], n) for k, n in calls.items()
                      if k.startswith(f"{service}:") and ":" in k), key=lambda kv: -kv[1])
    return " (" + ", ".join(f"{a} {n}" for a, n in actions) + ")" if actions else ""


def as_json(suites: dict[str, dict[str, RunFigures]], context: dict[str, Any]) -> dict[str, Any]:
    return {"context": context,
            "suites": {name: {"runs": {label: run.as_dict() for label, run in runs.items()},
                              "ratios": ratios(runs)} for name, runs in suites.items()}}


def machine() -> dict[str, Any]:
    """Where the figures were taken: CPUs, load before the run, Python."""
    import os
    import platform

    return {"cpus": os.cpu_count(), "load_average": [round(x, 2) for x in os.getloadavg()],
            "python": platform.python_version(), "platform": platform.platform(terse=True)}
