"""What tracing costs: the same pipeline run three times in one `orders bench --suite tracing`.

Untraced is the default (no OTEL_* variable): nothing of OpenTelemetry is loaded.
Traced means every worker process exports over OTLP/HTTP (protobuf, the SDK's batch
processor) to a receiver in this process, as it would to a collector: the spans are
made, serialized and sent for real. no-aws is traced without the botocore
instrumentation (OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=botocore): the tasks' and
the publishes' spans only. The figures that say what it costs are the
workers' CPU per order and the end-to-end latency; the spans per order say how much
a backend receives.
"""

from __future__ import annotations

from collections.abc import Callable

from benchmarks.measure import RunFigures
from benchmarks.pipeline import PipelinePlan, run_pipeline
from orders.harness.otlp_receiver import OtlpReceiver


def run_tracing_cost(plan: PipelinePlan, latency_ms: float, endpoint: str | None, concurrency: int,
                     say: Callable[[str], None]) -> dict[str, RunFigures]:
    """The pipeline untraced, traced to a local OTLP receiver, and traced without AWS spans: one plan."""
    say(f"tracing/untraced: {plan.orders} orders at {plan.rate:g}/s ...")
    runs = {"untraced": run_pipeline("untraced", plan, True, latency_ms, endpoint, concurrency)}
    for label, extra in (("traced", {}), ("no-aws", {"OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "botocore"})):
        say(f"tracing/{label}: the same, exporting spans over OTLP to a local receiver ...")
        runs[label] = traced_run(label, plan, latency_ms, endpoint, concurrency, extra)
    return runs


def traced_run(label: str, plan: PipelinePlan, latency_ms: float, endpoint: str | None, concurrency: int,
               extra_env: dict[str, str]) -> RunFigures:
    """One traced run, with the spans per order it exported in its notes."""
    with OtlpReceiver() as receiver:
        env = {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
               "OTEL_SERVICE_NAME": "orders-bench", **extra_env}
        run = run_pipeline(label, plan, True, latency_ms, endpoint, concurrency, extra_env=env)
        spans = len(receiver.received())  # the workers flush at their shutdown, which the run waits for
    if run.completed:
        run.notes.append(f"{spans / run.completed:.1f} spans per order exported ({spans} in all)")
    return run


def format_cost(runs: dict[str, RunFigures]) -> str:
    """The two runs side by side: workers' CPU per order, latency percentiles, throughput."""
    lines = [f"{'':10}{'workers CPU ms/order':>22}{'P50 ms':>9}{'P95 ms':>9}{'orders/s':>10}"]
    for label, run in runs.items():
        cpu = run.cpu_ms_per_order().get("workers")
        p50, p95 = run.end_to_end.p50, run.end_to_end.p95
        lines.append(f"{label:10}{_num(cpu):>22}{_num(p50, 1000):>9}{_num(p95, 1000):>9}"
                     f"{run.throughput:>10.1f}")
    base = runs["untraced"].cpu_ms_per_order().get("workers") if "untraced" in runs else None
    for label, run in runs.items():
        cpu = run.cpu_ms_per_order().get("workers")
        if label != "untraced" and base and cpu:
            lines.append(f"{label}: {cpu - base:+.1f} ms worker CPU per order "
                         f"({100 * (cpu - base) / base:+.0f}%)")
    return "\n".join(lines)


def _num(value: float | None, scale: float = 1.0) -> str:
    return "-" if value is None else f"{value * scale:.0f}"
