"""Flower shows workers that consume SQS, and the tasks they ran, through the control plane.

One stack per module: a worker process (prefork, as production runs it) on the
`orders` queue and `celery -A orders flower`, both on the session emulator's
SQS and Redis. The API test reads Flower's HTTP API; the browser test loads
its pages in headless Chromium when /usr/bin/chromium exists.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import tempfile
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from orders.celery import app
from orders.emulator.server import free_port
from orders.infra import provisioning
from tests.helpers import logged_process, wait_for
from tests.monitoring_tasks import monitoring_add, monitoring_fail

pytestmark = pytest.mark.integration

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--window-size=1400,900", "--virtual-time-budget=5000",
]


@dataclass
class Stack:
    url: str
    worker: str
    succeeded: list[str]
    failed: str
    logs: Path


def get(url: str) -> Any:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            body = resp.read().decode()
    except OSError:
        return None
    return json.loads(body) if body.startswith(("{", "[")) else body


def task_states(stack_url: str) -> dict[str, str]:
    return {tid: t["state"] for tid, t in (get(stack_url + "/api/tasks") or {}).items()}


@pytest.fixture(scope="module")
def stack(emulator: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    logs = tmp_path_factory.mktemp("flower")
    worker = f"flower-{uuid.uuid4().hex[:6]}@{socket.gethostname()}"
    port = free_port()
    # The module's namespace: its processes get it in their environment, this one as settings.
    env = {"ORDERS_ENV": f"t{uuid.uuid4().hex[:10]}", "ORDERS_WAIT_TIME_SECONDS": "1"}
    settings, before = emulator.settings(env), app.settings
    app.reconfigure(settings)
    try:
        provisioning.up(settings)
        celery = [sys.executable, "-m", "celery", "-A", "orders"]
        with logged_process([*celery, "worker", "-Q", "orders", "-n", worker, "-c", "2", "-I",
                             "tests.monitoring_tasks", "--loglevel", "INFO"], logs / "worker.log", env=env), \
             logged_process([*celery, "flower", f"--port={port}", "--address=127.0.0.1"], logs / "flower.log",
                            env={**env, "FLOWER_UNAUTHENTICATED_API": "true"}):
            url = f"http://127.0.0.1:{port}"
            # Flower has the worker's heartbeats: its event capture listens, tasks can go.
            wait_for(lambda: (get(url + "/api/workers?status=true") or {}).get(worker), timeout=60)
            succeeded = [monitoring_add.delay(i, i).id for i in range(3)]
            failed = monitoring_fail.delay("card declined").id
            wait_for(lambda: len(task_states(url)) >= 4 and "RECEIVED" not in task_states(url).values()
                     and "STARTED" not in task_states(url).values())
            yield Stack(url, worker, succeeded, failed, logs)
    finally:
        app.reconfigure(before)


def test_flower_api_lists_the_sqs_worker_and_its_tasks(stack: Stack) -> None:
    workers = wait_for(lambda: get(stack.url + "/api/workers?refresh=1"))
    assert [q["name"] for q in workers[stack.worker]["active_queues"]] == ["orders"]
    assert workers[stack.worker]["stats"]["broker"]["transport"] in ("sqs", "orders-sqs")
    tasks = get(stack.url + "/api/tasks")
    for task_id in stack.succeeded:
        assert tasks[task_id]["state"] == "SUCCESS" and tasks[task_id]["worker"] == stack.worker
        assert tasks[task_id]["name"] == "ops.monitoring_add"
    assert tasks[stack.failed]["state"] == "FAILURE"
    assert "card declined" in tasks[stack.failed]["exception"]


def chromium(page: str, *args: str) -> str:
    """Run headless Chromium on a Flower page with a profile of its own; its stdout."""
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        done = subprocess.run([CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args, page],
                              capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.mark.skipif(not Path(CHROMIUM).exists(),
                    reason="no Chromium: `apt-get install -y chromium` to check Flower's pages in a browser")
def test_flower_pages_show_worker_and_tasks_in_a_browser(stack: Stack) -> None:
    workers_page = chromium(stack.url + "/workers", "--dump-dom")
    row = workers_page[workers_page.index(f'title="{stack.worker}"'):].split("</tr>", 1)[0]
    assert '<span class="badge bg-success">Online</span>' in row
    tasks_page = chromium(stack.url + "/tasks", "--dump-dom")
    for task_id in [*stack.succeeded, stack.failed]:
        assert task_id in tasks_page
    assert "SUCCESS" in tasks_page and "FAILURE" in tasks_page
    shot = stack.logs / "tasks.png"  # what docs/img/flower-tasks.png shows, for a person to look at
    chromium(stack.url + "/tasks", f"--screenshot={shot}")
    assert shot.stat().st_size > 10_000  # a rendered page, not an empty one
