"""Child processes in their own groups: readiness from the log, and no orphan after stopping."""

import os
import sys

import pytest

from orders.harness.groups import group_pids, group_stats
from orders.harness.processes import ChildProcess, StartupError, stop_all, wait_ready

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


ORPHANING_PARENT = """
import sys, threading, time
from pathlib import Path
from orders.harness.processes import ChildProcess, wait_ready
tmp = Path(sys.argv[1])
SPAWNER = sys.argv[2]
children = []

def start():  # from a thread that ends at once: the child must outlive the thread, not the process
    children.append(ChildProcess("child", [sys.executable, "-c", SPAWNER], {}, tmp / "child.log",
                                 ready_text=" ready.").start())

thread = threading.Thread(target=start)
thread.start()
thread.join()
wait_ready(children, 20)
print(children[0].pid, flush=True)
time.sleep(120)
"""


def test_children_stop_when_their_parent_is_killed(tmp_path):
    """A SIGKILLed run (`orders demo`) must not leave its workers, which run in sessions of their own."""
    import signal
    import subprocess

    from tests.helpers import wait_for

    parent = subprocess.Popen([sys.executable, "-c", ORPHANING_PARENT, str(tmp_path), SPAWNER],
                              stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        child_pgid = int(parent.stdout.readline())
        assert len(group_pids(child_pgid)) == 2  # the child and its own child, alive after the thread ended
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        wait_for(lambda: group_pids(child_pgid) == [], timeout=30)
    finally:
        if parent.poll() is None:
            os.killpg(parent.pid, signal.SIGKILL)
        parent.wait()


def test_the_reaper_follows_what_it_is_told():
    from orders.harness.groups import watched_groups

    assert watched_groups(["+12\n", "+15\n", "-12\n", "junk\n", "+\n", "-99\n"]) == {15}
    assert watched_groups(["+12\n", "-12\n", "+12\n"]) == {12} and watched_groups([]) == set()


def test_the_last_error_is_the_fatal_one_of_the_latest_run(tmp_path):
    """A worker logs its tasks' errors while it shuts down after a fatal one; a restart appends to its log."""
    first = _child(tmp_path, "print('ERROR an old run failed'); raise SystemExit(1)", name="w")
    first.proc.wait()
    code = ("print('CRITICAL Unrecoverable error: throttled', flush=True); "
            "print('INFO task retry: RetryableError(boom)', flush=True); raise SystemExit(1)")
    first.cmd = [sys.executable, "-c", code]
    first.start().proc.wait()
    assert first.last_error() == "CRITICAL Unrecoverable error: throttled"
    first.cmd = [sys.executable, "-c", "print('all fine')"]
    first.start().proc.wait()
    assert first.last_error() == "all fine"  # nothing from the runs before


def test_stopping_reaches_a_stopped_process(tmp_path):
    """A stalled (SIGSTOPped) worker acts on SIGTERM only once continued: stopping a run continues it."""
    import signal

    from tests.helpers import wait_for

    child = _child(tmp_path, "print('up ready.', flush=True); import time; time.sleep(60)")
    wait_ready([child], timeout=20)
    child.signal_group(signal.SIGSTOP)
    wait_for(lambda: group_stats(child.pid)[child.pid][0] == "T", timeout=20)
    assert stop_all([child]) == []  # its SIGTERM worked: not one left for SIGKILL
    assert group_pids(child.pid) == []
