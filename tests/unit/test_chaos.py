"""The fault campaign's plain parts: its plan and timeline, the poison shapes, the figures and verdict."""

from __future__ import annotations

import json
import math
import random

import pytest

from orders.harness.chaos_events import TaskEvent, task_event
from orders.harness.chaos_figures import (
    ChaosFigures,
    KillMoment,
    PoisonOutcome,
    RedeliveryFigures,
    extra_deliveries,
    fault_totals,
    redeliveries,
)
from orders.harness.chaos_plan import (
    DOUBLE_DELIVERY_QUEUE,
    MIN_KILL_GAP_SECONDS,
    ChaosOptions,
    Outage,
    kill_schedule,
    outage_starts,
    plan,
)
from orders.harness.chaos_poison import SHAPES, poison
from orders.runtime.envelope import Poison, decode

QUEUES = ["orders", "orders-priority.fifo", "payments", "inventory.fifo", "shipping", "notifications"]


# -- the plan -------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("sns:180", Outage("sns", 180.0)),
    ("dynamodb:180@60", Outage("dynamodb", 180.0, 60.0)),
    ("sqs-send:2.5@0", Outage("sqs-send", 2.5, 0.0)),
])
def test_an_outage_is_parsed_and_printed_back(text, expected):
    assert Outage.parse(text) == expected and str(Outage.parse(text)) == text


@pytest.mark.parametrize("text", ["sns", "sns:", "sns:x", "sns:0", "sns:10@-1", "sns:10@x", ":10"])
def test_a_bad_outage_says_what_is_wrong(text):
    with pytest.raises(ValueError, match="TARGET|SECONDS"):
        Outage.parse(text)


def test_kills_fall_inside_the_window_and_one_worker_is_not_killed_twice_in_a_row_too_soon():
    kills = kill_schedule(25, 300.0, QUEUES, random.Random(7))
    assert len(kills) == 25 and [at for at, _ in kills] == sorted(at for at, _ in kills)
    assert all(15.0 <= at <= 285.0 for at, _ in kills)
    assert set(q for _, q in kills) <= set(QUEUES)
    for queue in QUEUES:
        times = [at for at, q in kills if q == queue]
        assert all(b - a >= MIN_KILL_GAP_SECONDS for a, b in zip(times, times[1:], strict=False))


def test_kills_still_happen_when_the_window_is_too_short_for_the_gap():
    kills = kill_schedule(10, 8.0, ["orders", "payments"], random.Random(1))
    assert len(kills) == 10 and all(0 < at < 8 for at, _ in kills)


def test_the_same_seed_plans_the_same_campaign():
    options = ChaosOptions(orders=100, rate=2, seed=3, kills=5, poison=4, duplicates=3)
    first, second = plan(options, QUEUES, range(100)), plan(options, QUEUES, range(100))
    assert first == second
    assert plan(ChaosOptions(orders=100, rate=2, seed=4, kills=5), QUEUES, range(100)) != first


def test_outages_without_a_start_follow_each_other_and_a_given_start_is_kept():
    outages = (Outage("sns", 180.0), Outage("dynamodb", 180.0), Outage("sqs-send", 30.0, 5.0))
    assert outage_starts(outages, 400.0) == [100.0, 290.0, 5.0]


def test_the_timeline_holds_every_attack_asked_for():
    options = ChaosOptions(orders=200, rate=2, kills=6, poison=5, duplicates=4,
                           outages=(Outage("sns", 60.0), Outage("dynamodb", 30.0, 10.0)))
    timeline = plan(options, QUEUES, valid_orders=range(0, 200, 2), visibility=30)
    kinds = [a.kind for a in timeline.actions]
    assert [a.at for a in timeline.actions] == sorted(a.at for a in timeline.actions)
    assert kinds.count("kill") == 6 and kinds.count("poison") == 5 and kinds.count("duplicate") == 4
    assert {(a.target, a.seconds, a.at) for a in timeline.of("outage")} == {("sns", 60.0, 25.0),
                                                                            ("dynamodb", 30.0, 10.0)}
    assert timeline.last_outage_end == 85.0
    assert all(a.index % 2 == 0 for a in timeline.of("duplicate"))  # only orders the door accepts
    start, stall, stop = (timeline.of(k)[0] for k in ("consumer-start", "stall", "consumer-stop"))
    assert start.target == stall.target == DOUBLE_DELIVERY_QUEUE
    assert start.at < stall.at and stall.seconds > 30 and stop.at > stall.at + stall.seconds


def test_no_double_delivery_when_asked_not_to():
    timeline = plan(ChaosOptions(orders=50, double_delivery=False), QUEUES, range(50))
    assert not timeline.of("stall") and not timeline.of("consumer-start")


def test_the_command_printed_runs_the_same_campaign(monkeypatch):
    from click.testing import CliRunner

    from orders.cli import chaos as module

    options = ChaosOptions(orders=40, rate=5, seed=9, kills=3, fault_rate=0.1, fault_kinds=("500", "503"),
                           poison=5, duplicates=3,
                           outages=(Outage("sns", 25.0, 3.0),), timeout=60, double_delivery=False)
    seen = {}

    def capture(options, say, printer):  # instead of a campaign: what the command line became
        seen["options"] = options
        raise SystemExit(0)

    monkeypatch.setattr(module, "_run", capture)
    CliRunner().invoke(module.chaos, options.command().split()[2:])
    assert seen["options"] == options


def test_duration_is_an_alternative_to_a_number_of_orders():
    from click.testing import CliRunner

    from orders.cli.chaos import chaos

    result = CliRunner().invoke(chaos, ["--orders", "10", "--duration", "30"])
    assert result.exit_code == 2 and "alternatives" in result.output


# -- poison -------------------------------------------------------------------------------------

def test_every_poison_shape_is_refused_by_the_worker_envelope_check():
    from orders.celery import app

    app.loader.import_default_modules()
    messages = poison(3 * len(SHAPES), seed=5)
    assert {m.shape for m in messages} == set(SHAPES)
    for message in messages:
        with pytest.raises(Poison):
            decode(message.body, set(app.tasks))


def test_poison_bodies_are_unique_and_fit_in_an_sqs_message():
    messages = poison(60, seed=2)
    assert len({m.body for m in messages}) == 60  # FIFO queues deduplicate by content
    for message in messages:
        assert len(message.body.encode()) <= 256 * 1024
        assert not any(0xD800 <= ord(c) <= 0xDFFF or (ord(c) < 0x20 and c not in "\t\n\r")
                       for c in message.body), message.shape
    assert poison(10, seed=2) == messages[:10]


# -- figures ------------------------------------------------------------------------------------

def ev(kind, task, pid, at, retries=0):
    return TaskEvent(kind, task, retries if kind == "task-received" else None, pid, f"w{pid}", at)


def test_a_killed_workers_unfinished_messages_are_timed_to_their_next_reception():
    events = [
        ev("task-received", "a", 1, 10.0), ev("task-started", "a", 1, 10.1),  # running at the kill
        ev("task-received", "b", 1, 11.0),  # prefetched at the kill
        ev("task-received", "c", 1, 12.0), ev("task-succeeded", "c", 1, 13.0),  # done before it
        ev("task-received", "d", 2, 14.0),  # another worker's
        ev("task-received", "e", 1, 14.5), ev("task-retried", "e", 1, 14.8),  # retried: a new message
        ev("task-received", "e", 3, 16.0, retries=1),
        ev("task-received", "b", 3, 50.0), ev("task-received", "a", 3, 60.0),  # back after the kill
        ev("task-received", "a", 3, 70.0),  # a later duplicate: not the redelivery
    ]
    held, found = redeliveries(events, [KillMoment(pid=1, at=20.0)])
    assert held == 2
    assert sorted((r.task_id, r.seconds) for r in found) == [("a", 40.0), ("b", 30.0)]
    figures = RedeliveryFigures.of(held, found)
    assert (figures.back, figures.p50, figures.max) == (2, 35.0, 40.0)


def test_a_held_message_never_seen_again_is_counted_held_not_back():
    held, found = redeliveries([ev("task-received", "a", 1, 1.0)], [KillMoment(1, 2.0)])
    assert (held, found) == (1, [])
    assert math.isnan(RedeliveryFigures.of(held, found).p95)


def test_extra_receptions_and_runs_are_counted_per_message_not_per_retry():
    events = [ev("task-received", "a", 1, 1), ev("task-started", "a", 1, 2),
              ev("task-received", "a", 2, 3), ev("task-started", "a", 2, 4),  # delivered and run twice
              ev("task-received", "r", 1, 1), ev("task-started", "r", 1, 2),
              ev("task-received", "r", 1, 3, retries=1), ev("task-started", "r", 1, 4)]  # a retry: fine
    assert extra_deliveries(events) == (1, 1)


def test_a_task_event_is_read_from_celerys_event_dict():
    found = task_event({"type": "task-received", "uuid": "t-1", "retries": 2, "pid": 42,
                        "hostname": "payments@h", "timestamp": 5.5, "name": "payments.charge"})
    assert found == TaskEvent("task-received", "t-1", 2, 42, "payments@h", 5.5)
    assert task_event({"type": "worker-heartbeat", "hostname": "x"}) is None


def test_fault_totals_add_up_by_kind():
    report = {"injected": {"sqs:ReceiveMessage:throttle": 3, "dynamodb:GetItem:5xx": 2,
                           "dynamodb:UpdateItem:throttle": 1, "sns:Publish:outage": 7}}
    assert fault_totals(report) == {"throttle": 4, "5xx": 2, "outage": 7}
    assert fault_totals(None) == {}


def test_the_verdict_fails_on_each_kind_of_damage_and_passes_on_none():
    clean = ChaosFigures(command="orders chaos", audit={"double_charges": 0, "oversold_units": 0},
                         poison=[PoisonOutcome("x", "orders", "m1", 0.0, True, "headers is str", 0.5)])
    assert clean.ok and clean.problems() == []
    damaged = [
        ChaosFigures(command="", lost=["o1"]), ChaosFigures(command="", stuck=["o2"]),
        ChaosFigures(command="", audit={"double_charges": 1}),
        ChaosFigures(command="", audit={"oversold_units": 2}),
        ChaosFigures(command="", audit_problems=["failed: order o3: awaiting a person"]),
        ChaosFigures(command="", poison=[PoisonOutcome("x", "orders", "m1", 0.0)]),
        ChaosFigures(command="", poison=[PoisonOutcome("x", "orders", "m1", 0.0, in_dlq=True)]),  # no reason
        ChaosFigures(command="", worker_exits=["worker payments (pid 7) exited with status 1: boom"]),
    ]
    for figures in damaged:
        assert not figures.ok and figures.problems(), figures


def test_the_figures_are_one_json_object_without_nan():
    figures = ChaosFigures(command="orders chaos --orders 1", placed=1, audit={"double_charges": 0})
    data = json.loads(json.dumps(figures.as_dict(), allow_nan=False))
    assert data["redelivery"]["p95"] is None and data["ok"] is True and data["double_charges"] == 0
    assert data["command"] == "orders chaos --orders 1"


def test_the_text_shows_the_verdict_and_the_command():
    from orders.harness.chaos_text import format_figures

    figures = ChaosFigures(command="orders chaos --seed 2", lost=["o9"])
    text = format_figures(figures)
    assert "Reproduce: orders chaos --seed 2" in text and "FAILED" in text and "o9" in text


# -- the supervisor, on real processes -----------------------------------------------------------

def test_the_supervisor_kills_restarts_stalls_and_notices_an_exit_nobody_caused(tmp_path):
    import os
    import signal
    import sys
    from types import SimpleNamespace

    from orders.harness.chaos_supervisor import Supervisor
    from orders.harness.groups import group_stats
    from orders.harness.processes import ChildProcess, stop_all
    from tests.helpers import wait_for

    def state(pid):
        return group_stats(pid)[pid][0]

    def child(name, code):
        return ChildProcess(name, [sys.executable, "-c", code, "-n", f"{name}@h"], dict(os.environ),
                            tmp_path / f"{name}.log").start()

    sleeper = "import time; time.sleep(120)"
    children = [child("worker a", sleeper), child("worker b", sleeper),
                child("worker c", "print('CRITICAL Unrecoverable error: boom', flush=True)")]
    sup = Supervisor(SimpleNamespace(children=children), restart_delay=0.0)
    try:
        first = children[0].pid
        kill = sup.kill("a", fallback=["b"])
        assert kill.queue == "a" and kill.pid == first and not children[0].running
        assert sup.kill("a", fallback=["b"]).queue == "b"  # a is down: b instead
        wait_for(lambda: not children[2].running, timeout=20)
        sup.tick()
        assert children[0].running and children[0].pid != first and kill.new_pid == children[0].pid
        assert [(e.name, e.status) for e in sup.worker_exits] == [("worker c", 0)]
        assert "boom" in sup.worker_exits[0].last_error
        sup.stall("a", seconds=0.0)
        # kill(2) only queues SIGSTOP: the process stops once the kernel next schedules it.
        wait_for(lambda: state(children[0].pid) == "T", timeout=20)
        assert not sup.settled
        sup.tick()
        wait_for(lambda: state(children[0].pid) != "T", timeout=20)
        sup.start_extra("a")
        assert sup.extra.cmd[sup.extra.cmd.index("-n") + 1] == "a-2@%h" and sup.extra in children
        sup.close()
        children[1].signal_group(signal.SIGKILL)
        children[1].proc.wait()
        sup.tick()  # closed: the stack is about to stop everything, nothing is started again
        assert not children[1].running and sup.kill("a", fallback=[]) is None
        sup.last_look()  # but its exit is still seen
        assert "worker b" in [e.name for e in sup.worker_exits]
    finally:
        sup.close()
        stop_all(children, timeout=5)
