"""Child processes in their own groups: readiness from the log, and no orphan after stopping."""

import os
import sys

import pytest

from orders.harness.processes import ChildProcess, StartupError, group_pids, stop_all, wait_ready

SPAWNER = ("import subprocess, time; subprocess.Popen(['sleep', '60']); "
           "print('up ready.', flush=True); time.sleep(60)")


def _child(tmp_path, code, name="child", ready=" ready."):
    return ChildProcess(name, [sys.executable, "-c", code], dict(os.environ), tmp_path / f"{name}.log",
                        ready_text=ready).start()


def test_stopping_kills_the_whole_group(tmp_path):
    child = _child(tmp_path, SPAWNER)
    wait_ready([child], timeout=20)
    pids = group_pids(child.pid)
    assert len(pids) == 2 and child.rss() > 0
    stop_all([child], timeout=5)
    assert not child.running and group_pids(child.pid) == []


def test_a_child_that_exits_early_is_reported_with_its_log(tmp_path):
    child = _child(tmp_path, "print('cannot start: no queue'); raise SystemExit(3)")
    with pytest.raises(StartupError, match="exited with status 3(.|\n)*cannot start: no queue"):
        wait_ready([child], timeout=20)


def test_a_child_that_never_gets_ready_times_out(tmp_path):
    child = _child(tmp_path, "import time; time.sleep(60)", name="sleepy")
    try:
        with pytest.raises(StartupError, match="not ready after 0 s: sleepy"):
            wait_ready([child], timeout=0.3)
    finally:
        stop_all([child], timeout=1)


def test_the_stack_restarts_a_worker_that_died_then_gives_up(tmp_path):
    from orders.harness.stack import Stack

    stack = Stack(log_dir=tmp_path)
    crasher = _child(tmp_path, "print('CRITICAL Unrecoverable error: boom'); raise SystemExit(1)", name="w")
    stack.children = [crasher]
    crasher.proc.wait()
    assert stack.supervise(max_restarts=1) == ["w exited with status 1: CRITICAL Unrecoverable error: boom"]
    crasher.proc.wait()
    with pytest.raises(StartupError, match="given up after 1 restarts"):
        stack.supervise(max_restarts=1)
    assert (tmp_path / "w.log").read_text().count("boom") == 2  # the restart appended to the log
