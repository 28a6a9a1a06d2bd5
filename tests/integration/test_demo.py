"""`orders demo` end to end, as `make demo` runs it: its own emulator, worker processes, a summary."""

import re
import signal
import subprocess

import pytest

from tests.helpers import ORDERS, as_at_a_terminal, clean_env, listening, processes_of, run_facts, wait_for


def test_demo_places_a_mix_and_accounts_for_every_order():
    proc = subprocess.run([ORDERS, "demo", "--orders", "30", "--rate", "15", "--timeout", "90"],
                          env=clean_env(), capture_output=True, text=True, timeout=170)
    out = proc.stdout
    assert proc.returncode == 0, out[-3000:] + proc.stderr[-3000:]
    header = re.search(r"Orders: (\d+) placed \([\d.]+/s\), (\d+) refused at the door", out)
    placed, refused = map(int, header.groups())
    states = {s: int(n) for s, n in re.findall(
        r"^  (completed|cancelled|rejected|failed|lost|not final)\s+(\d+)", out, re.M)}
    assert placed == 30 and refused >= 1
    assert states["lost"] == 0 and states["not final"] == 0
    assert sum(states[s] for s in ("completed", "cancelled", "rejected", "failed")) + refused == 30
    assert states["completed"] > 0 and states["cancelled"] > 0
    assert re.search(r"^  placed → final state\s+\d+", out, re.M)
    assert re.search(r"^  order-status\s+\d+", out, re.M)
    assert "Dead-letter queues" in out and "OK: no order lost" in out
    namespace, endpoint = run_facts(out)
    assert processes_of(namespace) == [] and not listening(endpoint)


def test_ctrl_c_stops_every_process_of_the_run():
    proc = subprocess.Popen([ORDERS, "demo", "--orders", "2000", "--rate", "10"], env=clean_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=as_at_a_terminal)
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if "placed" in line and "in flight" in line:
            break
    else:
        pytest.fail("the demo ended before placing orders:\n" + "".join(lines))
    namespace, endpoint = run_facts("".join(lines))
    assert processes_of(namespace)  # the workers run ...
    proc.send_signal(signal.SIGINT)
    rest, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, "".join(lines) + rest
    # The emulator's own children exit just after it.
    wait_for(lambda: processes_of(namespace) == [] and not listening(endpoint), timeout=30)


def test_demo_on_a_given_endpoint_prints_json_and_removes_its_namespace(emulator):
    import json

    from orders.aws import clients
    from orders.settings import Settings

    env = {**clean_env(), **emulator.env}
    proc = subprocess.run([ORDERS, "demo", "--orders", "8", "--rate", "8", "--endpoint", emulator.endpoint,
                           "--json"], env=env, capture_output=True, text=True, timeout=170)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads(proc.stdout)
    assert summary["ok"] and summary["placed"] == 8
    assert sum(summary["by_state"].values()) == 8 and summary["lost"] == summary["unfinished"] == []
    namespace, endpoint = run_facts(proc.stderr)
    assert endpoint == emulator.endpoint
    sqs = clients.client("sqs", Settings.from_env())  # the session's environment names the emulator
    assert sqs.list_queues(QueueNamePrefix=namespace).get("QueueUrls", []) == []
