"""Percentiles, stage latencies and the run summary: pure code over constructed outcomes."""

import math
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import pytest

from benchmarks.measure import Percentiles, RunFigures, task_runs
from benchmarks.report import format_suite
from orders.harness.summary import (
    REFUSED,
    parse_time,
    percentile,
    stage_durations,
    summarize,
)
from orders.harness.summary_text import format_summary


@dataclass
class Out:
    order_id: str
    kind: str = "regular"
    placed_at: float | None = 100.0
    refused: list[str] | None = None
    record: dict[str, Any] | None = None
    send_error: str | None = None


def record(status, *steps, reason=None):
    return {"orderId": "x", "status": status, "reason": reason,
            "history": [{"status": s, "at": at} for s, at in steps]}


def test_percentile_interpolates_between_ranks():
    values = list(range(1, 11))
    assert percentile(values, 50) == pytest.approx(5.5)
    assert percentile(values, 95) == pytest.approx(9.55)
    assert percentile(values, 0) == 1 and percentile(values, 100) == 10
    assert percentile([7.0], 95) == 7.0
    assert math.isnan(percentile([], 50))
    assert percentile([3, 1, 2], 50) == 2


def test_the_benchmarks_report_the_same_percentile():
    figures = Percentiles.of(float(v) for v in range(10, 0, -1))
    assert (figures.n, figures.max) == (10, 10.0)
    assert (figures.p50, figures.p95) == (pytest.approx(5.5), pytest.approx(9.55))
    assert Percentiles.of([]).p50 is None


def test_the_benchmark_reports_calls_by_service_and_cpu_per_order_and_process():
    run = RunFigures(label="ours", orders=10, completed=10, elapsed=5.0, throughput=2.0,
                     end_to_end=Percentiles.of([1.0]),
                     calls={"sqs:ReceiveMessage": 20, "sns:PublishBatch": 10, "dynamodb:GetItem": 50},
                     cpu_seconds={"worker orders": 0.2, "worker payments": 0.3, "emulator": 0.5})
    assert run.calls_per_order_by_service() == {"dynamodb": 5.0, "sns": 1.0, "sqs": 2.0, "all": 8.0}
    cpu = run.cpu_ms_per_order()
    assert (cpu["workers"], cpu["emulator"]) == (pytest.approx(50.0), pytest.approx(50.0))


def test_the_benchmark_reports_what_the_emulator_kept_per_order():
    run = RunFigures(label="ours", orders=100, completed=100, elapsed=5.0, throughput=20.0,
                     end_to_end=Percentiles.of([1.0]),
                     emulator_rss={"start": 200 * 2**20, "end": 230 * 2**20})
    assert run.emulator_growth_per_order() == 30 * 2**20 // 100
    text = format_suite("== pipeline ==", {"ours": run})
    assert "ours: emulator memory MiB  200 at start, 230 at end: 307 KB kept a completed order" in text
    assert "emulator_rss" in run.as_dict()  # --json carries it
    assert RunFigures(label="x", orders=1, completed=1, elapsed=1.0, throughput=1.0,
                      end_to_end=Percentiles.of([1.0])).emulator_growth_per_order() is None  # --endpoint


def test_the_benchmarks_own_calls_and_cpu_are_in_no_figure_per_order():
    run = RunFigures(label="ours", orders=10, completed=10, elapsed=5.0, throughput=2.0,
                     end_to_end=Percentiles.of([1.0]),
                     calls={"sqs:ReceiveMessage": 20, "dynamodb:BatchGetItem": 12, "dynamodb:GetItem": 50},
                     cpu_seconds={"worker orders": 0.2, "this process": 0.5},
                     observer_calls={"dynamodb:BatchGetItem": 7}, observer_cpu_seconds=0.3)
    assert run.pipeline_calls() == {"sqs:ReceiveMessage": 20, "dynamodb:BatchGetItem": 5,
                                    "dynamodb:GetItem": 50}
    assert run.calls_per_order_by_service() == {"dynamodb": 5.5, "sqs": 2.0, "all": 7.5}
    cpu = run.cpu_ms_per_order()
    assert (cpu["this process"], cpu["placing"], cpu["workers"]) == (
        pytest.approx(50.0), pytest.approx(20.0), pytest.approx(20.0))
    text = format_suite("== pipeline ==", {"ours": run})
    assert "ours: calls  sqs:ReceiveMessage 20; dynamodb 55 (GetItem 50, BatchGetItem 5)" in text
    assert "in no figure per order): dynamodb:BatchGetItem 7; CPU 0.3 s" in text


def test_the_benchmark_reads_each_workers_task_runs_from_its_log_and_sizes_per_task(tmp_path):
    log = tmp_path / "worker-payments.log"
    log.write_text(
        "[2026-01-01 00:00:00,000: INFO/MainProcess] Task payments.charge[1f-2] succeeded in 0.04s: {}\n"
        "[2026-01-01 00:00:00,100: INFO/MainProcess] Task payments.charge[3a] succeeded in 0.06s: {}\n"
        "[2026-01-01 00:00:00,200: INFO/MainProcess] Task payments.refund[4b] retry: Retry in 1s\n"
        "[2026-01-01 00:00:00,300: INFO/MainProcess] Task payments.refund[4b] succeeded in 0.1s: None\n")
    child = SimpleNamespace(name="worker payments", log_path=log)
    runs = task_runs([child, SimpleNamespace(name="beat", log_path=tmp_path / "none")])
    assert list(runs) == ["worker payments"]
    assert {k: v.n for k, v in runs["worker payments"].items()} == {
        "all tasks": 3, "payments.charge": 2, "payments.refund": 1}
    run = RunFigures(label="ours", orders=2, completed=2, elapsed=1.0, throughput=2.0,
                     end_to_end=Percentiles.of([1.0]), cpu_seconds={"worker payments": 0.09}, task_runs=runs)
    payments = run.per_service()["worker payments"]
    assert payments.tasks_per_order == pytest.approx(1.5) and payments.cpu_ms_per_task == pytest.approx(30.0)
    assert payments.run.p50 == pytest.approx(0.06) and payments.by_task["payments.charge"].n == 2


@pytest.mark.parametrize("value, expected", [
    ("2024-01-01T00:00:01Z", 1704067201.0),
    ("2024-01-01T01:00:01+01:00", 1704067201.0),
    (1704067201.5, 1704067201.5),
    (1704067201500, 1704067201.5),
    ("1704067201.25", 1704067201.25),
])
def test_parse_time_takes_iso_and_epoch(value, expected):
    assert parse_time(value) == pytest.approx(expected)


def test_stages_run_from_placing_through_each_state_change():
    out = Out("a", placed_at=100.0, record=record(
        "completed", ("received", 100.2), ("reserved", 100.5), ("received", 100.2),
        ("completed", 101.0)))
    assert [(n, round(s, 3)) for n, s in stage_durations(out)] == [
        ("placed → received", 0.2), ("received → reserved", 0.3), ("reserved → completed", 0.5)]


def _outcomes():
    return [
        Out("a", record=record("completed", ("received", 100.1), ("completed", 101.0))),
        Out("b", record=record("completed", ("received", 100.3), ("completed", 102.0))),
        Out("c", kind="declined", record=record("cancelled", ("received", 100.1),
                                                ("cancelled", 100.5), reason="payment-declined")),
        Out("d", kind="invalid", refused=["currency 'XXX' is unknown", "quantity must be > 0"]),
        Out("e", record=None),
        Out("f", record=record("charging", ("received", 100.2))),
        Out("g", placed_at=None),
    ]


def test_summary_counts_every_order_once():
    summary = summarize(_outcomes(), dlq_depths={"orders-dlq": 0})
    assert summary.placed == 6 and summary.refused == 1
    assert summary.placing_rate == 0.0  # all at the same instant
    assert summary.by_state == {"completed": 2, "cancelled": 1, REFUSED: 1, "lost": 1, "charging": 1,
                                "not placed": 1}
    assert summary.by_reason == {"cancelled": {"payment-declined": 1}}
    assert summary.lost == ["e"] and summary.unfinished == ["f", "g"]
    assert summary.by_kind["declined"] == {"cancelled": 1}
    assert summary.refused_examples == {"d": ["currency 'XXX' is unknown", "quantity must be > 0"]}
    assert not summary.ok


def test_summary_latencies_and_throughput():
    summary = summarize(_outcomes())
    stages = {s.name: s for s in summary.stages}
    assert list(stages)[0] == "placed → received"
    assert stages["placed → received"].count == 4
    assert stages["received → completed"].p50 == pytest.approx(1.3)
    assert summary.end_to_end.count == 3
    assert summary.end_to_end.p50 == pytest.approx(1.0)
    assert summary.duration == pytest.approx(2.0)
    spread = [Out(str(i), placed_at=100.0 + i / 4, record=None) for i in range(9)]
    assert summarize(spread).placing_rate == pytest.approx(4.0)
    assert summary.throughput == pytest.approx(1.5)


def test_a_clean_run_is_ok_and_reads_well():
    outs = [o for o in _outcomes() if o.order_id in "abcd"]
    summary = summarize(outs, events={"order-status": {"OrderPlaced": 3}}, dlq_depths={"orders-dlq": 0},
                        aws_calls={"sqs:SendMessage": 9, "sns:Publish": 3})
    assert summary.ok
    text = format_summary(summary)
    assert "completed        2" in text and "payment-declined 1" in text
    assert "e.g. d: currency 'XXX' is unknown; quantity must be > 0" in text
    assert "order-status" in text and "OrderPlaced 3" in text and "orders-dlq 0" in text
    assert "placed → final state" in text and text.endswith("reached a final state.")
    assert summary.as_dict()["ok"] is True
    summary.incidents = ["worker payments exited with status 1: boom"]
    assert "Incidents\n  worker payments exited with status 1: boom" in format_summary(summary)


def test_outcomes_a_kind_should_not_have_are_called_out():
    outs = [Out("a", kind="declined", record=record("completed", ("completed", 101.0))),
            Out("b", kind="declined", record=record("cancelled", ("cancelled", 101.0))),
            Out("c", kind="invalid", refused=["bad"]),
            Out("d", kind="regular", record=record("charging", ("charging", 101.0)))]
    expected = {"declined": ("cancelled",), "invalid": (REFUSED, "rejected"), "regular": ("completed",)}
    summary = summarize(outs, expected=expected)
    assert summary.unexpected == {"declined": {"completed": 1}}
    assert "unexpected: declined ended completed 1" in format_summary(summary)
