"""`orders bench` runs, as docs/performance.md tells: every accepted order final, figures printed.

Correctness of the run only; its speed is what the benchmark prints, never asserted here.
"""

import json
import subprocess
import sys

from tests.helpers import ORDERS, clean_env


def test_the_pipeline_benchmark_runs_ours_and_stock_side_by_side():
    run = subprocess.run([ORDERS, "bench", "--suite", "pipeline", "--orders", "20", "--rate", "10", "--json"],
                         env=clean_env(), capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    suite = json.loads(run.stdout)["suites"]["pipeline"]
    assert set(suite["runs"]) == {"ours", "stock"}
    for label, figures in suite["runs"].items():
        # The mix refuses its invalid orders at the door; every accepted one reaches a final state.
        assert figures["orders"] >= 18 and figures["completed"] == figures["orders"], label
        assert figures["notes"] == [], label
        sends = "sqs:SendMessageBatch" if label == "ours" else "sqs:SendMessage"  # stock: one per message
        assert figures["calls"].get(sends, 0) > 0, label
        assert figures["calls_per_order"] > 0 and figures["end_to_end"]["n"] == figures["completed"]
    assert set(suite["ratios"]) == {"stock_calls_per_order / ours", "ours_throughput / stock"}


def test_the_emulator_call_benchmark_compares_moto_as_shipped_with_ours():
    run = subprocess.run([sys.executable, "-m", "benchmarks.emulator_calls", "--orders", "20"],
                         env=clean_env(), capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    rows = [line.split() for line in run.stdout.splitlines() if line.startswith(("PutItem", "GetItem"))]
    # call, as shipped, ours, the ratio, ours with --no-stream-records
    assert len(rows) == 2 and all(float(row[-4]) > 0 and float(row[-3]) > 0 and float(row[-1]) > 0
                                  for row in rows), run.stdout


def test_the_idle_benchmark_prints_every_process_and_the_calls_of_an_idle_platform():
    run = subprocess.run([sys.executable, "-m", "benchmarks.idle", "--seconds", "3", "--settle", "1"],
                         env=clean_env(), capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    rates = {line.rsplit(None, 1)[0]: float(line.rsplit(None, 1)[1]) for line in run.stdout.splitlines()
             if line.startswith(("worker", "emulator", "beat"))}
    assert {"worker orders", "worker payments", "worker notifications", "emulator", "beat"} <= set(rates)
    # A running worker spends something every second (its control-plane thread wakes once a second): read
    # to the nanosecond, each worker's 3 s show it; read in 10 ms ticks they were as often 0.
    assert all(rate > 0 for name, rate in rates.items() if name.startswith("worker")), run.stdout
    assert "calls per minute at the emulator:" in run.stdout


def test_the_chain_end_benchmark_runs_each_way_through_celerys_tracer():
    run = subprocess.run([sys.executable, "-m", "benchmarks.chain_end", "--tasks", "20", "--rounds", "1"],
                         env=clean_env(), capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    line = next(line for line in run.stdout.splitlines() if line.strip().startswith("round 1:"))
    assert "raise Ignore" in line and "StepTask.end" in line and "a retry (raise Retry)" in line, run.stdout
    # Each way ended as it says: the step's end is a success, where Celery's idiom is an ignored task.
    states = "Celery's states: raise Ignore IGNORED, StepTask.end SUCCESS, a retry RETRY"
    assert states in run.stdout, run.stdout


def test_the_calls_by_task_benchmark_puts_each_step_s_write_under_its_task():
    run = subprocess.run([sys.executable, "-m", "benchmarks.calls_by_task", "--orders", "12", "--rate", "6",
                          "--mix", "hot"], env=clean_env(), capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    per_order = {tuple(line.split()[:3]): float(line.split()[3]) for line in run.stdout.splitlines()
                 if line.split()[:1] in (["orders"], ["inventory.fifo"], ["payments"], ["shipping"],
                                         ["notifications"])}
    # Every order of the hot mix is placed, reserved, charged and shipped: each step's write, about once an
    # order, under the task that makes it; the hand-offs and events under the process's own batchers.
    assert per_order[("orders", "orders.place", "dynamodb:PutItem")] > 0.5, run.stdout
    assert per_order[("inventory.fifo", "inventory.reserve", "dynamodb:TransactWriteItems")] > 0, run.stdout
    assert per_order[("payments", "payments.charge", "dynamodb:TransactWriteItems")] > 0.5, run.stdout
    assert per_order[("shipping", "shipping.create_shipment", "dynamodb:UpdateItem")] > 0.5, run.stdout
    assert per_order[("payments", "-", "sqs:SendMessageBatch")] > 0, run.stdout
    assert "sqs:ReceiveMessage" in run.stdout.splitlines()[-1], run.stdout
