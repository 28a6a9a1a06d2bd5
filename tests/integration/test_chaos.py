"""`orders chaos` end to end, through the real command: a short campaign, and no orphan after a SIGKILL.

The campaign runs its own emulator, workers and beat, kills and restarts workers,
injects faults, takes SNS away, stalls a consumer beside a second one, places
orders twice and sends poison; its JSON figures must show nothing lost, stuck,
charged twice or oversold, and every poison message in its DLQ. Every process a
test starts is in a new session and its group is killed in teardown.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.helpers import ORDERS, as_at_a_terminal, clean_env, listening, processes_of, run_facts, wait_for

pytestmark = pytest.mark.integration

SHORT_CAMPAIGN = ["--orders", "40", "--rate", "5", "--seed", "7", "--kills", "3", "--fault-rate", "0.05",
                  "--outage", "sns:25@2", "--poison", "5", "--duplicates", "3", "--timeout", "60"]


@contextmanager
def command(args: list[str], log: Path, json_out: bool = False) -> Iterator[subprocess.Popen[str]]:
    """`orders ...` in a session of its own, its output in `log` (but JSON on a pipe); its whole group
    is killed afterwards, whatever happened."""
    with log.open("w") as out:
        proc = subprocess.Popen([ORDERS, *args], env=clean_env(), stderr=out, text=True,
                                stdout=subprocess.PIPE if json_out else out, start_new_session=True,
                                preexec_fn=as_at_a_terminal)
        try:
            yield proc
        finally:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()


def test_a_short_campaign_loses_nothing_charges_nothing_twice_and_dead_letters_every_poison(tmp_path):
    log = tmp_path / "chaos.log"
    with command(["chaos", *SHORT_CAMPAIGN, "--json"], log, json_out=True) as proc:
        out, _ = proc.communicate(timeout=170)
    progress = log.read_text()
    assert proc.returncode == 0, out[-4000:] + progress[-4000:]
    figures = json.loads(out)
    assert figures["ok"] and figures["problems"] == []
    assert figures["placed"] == 40 and figures["accepted"] == figures["final"] > 0
    assert figures["lost"] == [] and figures["stuck"] == [] and figures["send_failed"] == []
    assert figures["double_charges"] == 0 and figures["oversold_units"] == 0
    assert figures["audit"]["orders"] == figures["accepted"] and figures["audit_problems"] == []
    assert len(figures["kills"]) == 3 and all(k["restarted_after"] is not None for k in figures["kills"])
    assert figures["worker_exits"] == []
    assert figures["duplicates_placed"] == 3
    assert [(o["target"], o["seconds"]) for o in figures["outages"]] == [("sns", 25.0)]
    faults = figures["faults"]
    assert faults.get("outage", 0) > 0 and sum(faults.values()) > faults["outage"]  # and errors at the rate
    assert len(figures["poison"]) == 5 and figures["poison_in_dlq"] == 5
    assert all(p["in_dlq"] and p["reason"] for p in figures["poison"])
    assert figures["redelivery"]["back"] <= figures["redelivery"]["held"]
    assert figures["command"].startswith("orders chaos --orders 40 --rate 5 --seed 7 --kills 3")
    namespace, endpoint = run_facts(progress)
    assert processes_of(namespace) == [] and not listening(endpoint)


@pytest.mark.parametrize("args", [["demo", "--orders", "2000", "--rate", "10"],
                                  ["chaos", "--orders", "2000", "--rate", "10", "--kills", "0"]])
def test_a_run_killed_with_sigkill_leaves_no_process_behind(tmp_path, args):
    """Workers and beat run in sessions of their own: nothing the kernel does at their parent's death
    reaches them, so the harness's reaper must stop them."""
    log = tmp_path / "run.log"
    with command(args, log) as proc:
        wait_for(lambda: "in flight" in log.read_text() or proc.poll() is not None, timeout=120)
        assert proc.poll() is None, log.read_text()[-3000:]
        namespace, endpoint = run_facts(log.read_text())
        workers = processes_of(namespace)
        assert len(workers) >= 7  # a worker per queue and beat (the emulator's environment is its own)
        os.kill(proc.pid, signal.SIGKILL)  # the run's process alone, as the OOM killer would
        proc.wait()
        wait_for(lambda: processes_of(namespace) == [] and not listening(endpoint), timeout=60)


def test_ctrl_c_ends_a_campaign_at_once_and_leaves_no_process_behind(tmp_path):
    """Interrupted while its placements wait out an SQS outage: they give up, everything is stopped, 130."""
    log = tmp_path / "run.log"
    args = ["chaos", "--orders", "2000", "--rate", "10", "--kills", "0", "--outage", "sqs-send:600@0"]
    with command(args, log) as proc:
        wait_for(lambda: "in flight" in log.read_text() or proc.poll() is not None, timeout=120)
        assert proc.poll() is None, log.read_text()[-3000:]
        namespace, endpoint = run_facts(log.read_text())
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=120) == 130, log.read_text()[-3000:]
        assert "Interrupted" in log.read_text()
        wait_for(lambda: processes_of(namespace) == [] and not listening(endpoint), timeout=60)
