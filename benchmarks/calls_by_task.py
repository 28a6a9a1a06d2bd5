"""Who makes an order's AWS calls: each worker's botocore calls by queue, task and operation, per order.

`orders bench` counts an order's calls at the emulator, all processes together. This runs the same
pipeline (benchmarks.pipeline.run_pipeline) with every worker and beat started with a `sitecustomize`
on their PYTHONPATH that notes each botocore call's queue (the worker's -Q), the task running on that
thread (or "-": the process's batchers, acks and sends shared by its tasks, and its timers) and the
operation, then divides by the orders that reached a final state. Receives are the transport's own
requests (kombu's async client, not botocore) and placing is this process's: neither is in the table;
the emulator's totals, printed below it, have them.

    python -m benchmarks.calls_by_task [--orders 150] [--rate 3] [--mix demo]
"""

from __future__ import annotations

import argparse
import os
import tempfile
from collections import Counter
from pathlib import Path

#: The hook each worker and beat loads at start (Python imports `sitecustomize` from PYTHONPATH).
HOOK = '''
import os, sys, threading


def _note_calls(path):
    import botocore.client

    argv = sys.argv
    queue = argv[argv.index("-Q") + 1] if "-Q" in argv else ("beat" if "beat" in argv else "-")
    out = open(path, "a", buffering=1)
    lock = threading.Lock()
    make_api_call = botocore.client.BaseClient._make_api_call

    def noted(self, operation, params):
        try:
            from celery import current_task
            task = current_task.name if current_task else "-"
        except Exception:
            task = "-"
        with lock:
            out.write(f"{queue}\\t{task}\\t{self.meta.service_model.service_name}:{operation}\\n")
        return make_api_call(self, operation, params)

    botocore.client.BaseClient._make_api_call = noted


if os.environ.get("ORDERS_BENCH_CALL_LOG"):
    _note_calls(os.environ["ORDERS_BENCH_CALL_LOG"])
'''


def calls_by_task(log: Path) -> Counter[tuple[str, str, str]]:
    """(queue, task, 'service:Operation') -> calls, from the workers' notes."""
    counted: Counter[tuple[str, str, str]] = Counter()
    for line in log.read_text().splitlines():
        queue, task, call = line.split("\t")
        counted[(queue, task, call)] += 1
    return counted


def table(counted: Counter[tuple[str, str, str]], orders: int) -> list[str]:
    """Rows of calls per completed order, by queue and task, the busiest first within each."""
    rows = [f"{'queue':<22} {'task':<26} {'call':<36} {'per order':>9}"]
    for queue in sorted({q for q, _, _ in counted}):
        mine = sorted(((n, t, c) for (q, t, c), n in counted.items() if q == queue),
                      key=lambda row: (row[1], -row[0]))
        rows += [f"{queue:<22} {task:<26} {call:<36} {n / orders:>9.2f}" for n, task, call in mine]
    return rows


def main(argv: list[str] | None = None) -> None:
    from benchmarks.pipeline import PipelinePlan, run_pipeline

    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--orders", type=int, default=150)
    parser.add_argument("--rate", type=float, default=3.0)
    parser.add_argument("--mix", default="demo")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as hooks:
        Path(hooks, "sitecustomize.py").write_text(HOOK)
        log = Path(hooks, "calls.tsv")
        log.touch()
        path = os.pathsep.join(p for p in (hooks, os.environ.get("PYTHONPATH")) if p)
        run = run_pipeline("calls-by-task", PipelinePlan(orders=args.orders, rate=args.rate, mix=args.mix),
                           batch=True, extra_env={"PYTHONPATH": path, "ORDERS_BENCH_CALL_LOG": str(log)})
        counted = calls_by_task(log)
    done = max(run.completed, 1)
    print(f"{run.completed} orders final of {args.orders} ({args.mix} mix at {args.rate}/s); "
          "each worker's botocore calls per final order (receives and placing are not botocore's):")
    print("\n".join(table(counted, done)))
    print("the emulator's count of the pipeline's calls (placing and receives too): " + ", ".join(
        f"{call} {n / done:.2f}" for call, n in sorted(run.pipeline_calls().items(), key=lambda kv: -kv[1])))


if __name__ == "__main__":
    main()
