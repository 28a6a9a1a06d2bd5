"""Flower shows workers that consume SQS, and the tasks they ran, through the control plane.

One stack per module: a worker process (prefork, as production runs it) on the
`orders` queue, one on the pipeline's later queues, and `celery -A orders flower`,
all on the session emulator's SQS and Redis. The API tests read Flower's HTTP API;
the browser test loads its pages in headless Chromium when /usr/bin/chromium exists.
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

from orders import place_order
from orders.aws.stock import set_stock
from orders.celery import app
from orders.emulator.server import free_port
from orders.infra import provisioning
from tests.helpers import logged_process, wait_for
from tests.integration.pipeline_support import make_order
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
    chain: list[str]  # an order's tasks, first to last (the ids its handle knows)
    declined: list[str]  # the chain of an order whose payment was declined


def get(url: str) -> Any:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            body = resp.read().decode()
    except OSError:
        return None
    return json.loads(body) if body.startswith(("{", "[")) else body


def online(stack_url: str) -> dict[str, Any]:
    """Flower's workers and whether each is online (empty until it heard from one)."""
    return get(stack_url + "/api/workers?status=true") or {}


def task_states(stack_url: str) -> dict[str, str]:
    return {tid: t["state"] for tid, t in (get(stack_url + "/api/tasks") or {}).items()}


def chain_ids(handle: Any) -> list[str]:
    """The task ids of a chain, first to last, from the handle of its last task."""
    ids = []
    while handle is not None:
        ids.append(handle.id)
        handle = handle.parent
    return ids[::-1]


@pytest.fixture(scope="module")
def stack(emulator: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    logs = tmp_path_factory.mktemp("flower")
    worker = f"flower-{uuid.uuid4().hex[:6]}@{socket.gethostname()}"
    steps = f"flower-steps-{uuid.uuid4().hex[:6]}@{socket.gethostname()}"
    port = free_port()
    # The module's namespace: its processes get it in their environment, this one as settings.
    env = {"ORDERS_ENV": f"t{uuid.uuid4().hex[:10]}", "ORDERS_WAIT_TIME_SECONDS": "1"}
    settings, before = emulator.settings(env), app.settings
    app.reconfigure(settings)
    try:
        provisioning.up(settings)
        set_stock(settings, "SKU-FLOWER", 10)
        celery = [sys.executable, "-m", "celery", "-A", "orders"]
        with logged_process([*celery, "worker", "-Q", "orders", "-n", worker, "-c", "2", "-I",
                             "tests.monitoring_tasks", "--loglevel", "INFO"], logs / "worker.log", env=env), \
             logged_process([*celery, "worker", "-Q", "inventory.fifo,payments,shipping", "-n", steps,
                             "-c", "2", "--loglevel", "INFO"], logs / "steps.log", env=env), \
             logged_process([*celery, "flower", f"--port={port}", "--address=127.0.0.1"], logs / "flower.log",
                            env={**env, "FLOWER_UNAUTHENTICATED_API": "true"}):
            url = f"http://127.0.0.1:{port}"
            # Flower has the workers' heartbeats: its event capture listens, tasks can go.
            wait_for(lambda: all(online(url).get(w) for w in (worker, steps)), timeout=60)
            succeeded = [monitoring_add.delay(i, i).id for i in range(3)]
            failed = monitoring_fail.delay("card declined").id
            order = chain_ids(place_order.delay(make_order(sku="SKU-FLOWER")))
            declined = chain_ids(place_order.delay(make_order(sku="SKU-FLOWER", token="tok_chargeDeclined")))
            wait_for(lambda: len(task_states(url)) >= 11 and "RECEIVED" not in task_states(url).values()
                     and "STARTED" not in task_states(url).values(), timeout=60)
            yield Stack(url, worker, succeeded, failed, logs, order, declined)
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


def test_flower_shows_an_order_s_chain_from_its_first_task(stack: Stack) -> None:
    """Each task of the chain lists the next as its child; all name the first as their root."""
    tasks = [get(stack.url + f"/api/task/info/{task_id}") for task_id in stack.chain]
    assert [t["name"] for t in tasks] == ["orders.place", "inventory.reserve", "payments.charge",
                                          "shipping.create_shipment"]
    assert all(t["state"] == "SUCCESS" for t in tasks)
    assert [t["children"] for t in tasks] == [[child] for child in stack.chain[1:]] + [[]]
    assert [t["parent_id"] for t in tasks] == [None, *stack.chain[:-1]]
    assert {t["root_id"] for t in tasks} == {stack.chain[0]}


def test_flower_shows_where_a_declined_order_s_chain_ended(stack: Stack) -> None:
    """The charge ended the chain: a success whose result says how the order ended, and no child sent."""
    place, reserve, charge, ship = stack.declined
    ended = get(stack.url + f"/api/task/info/{charge}")
    assert (ended["name"], ended["state"], ended["children"]) == ("payments.charge", "SUCCESS", [])
    assert "payment-declined" in ended["result"]
    assert get(stack.url + f"/api/task/info/{ship}") is None  # never sent


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
    first = chromium(stack.url + f"/task/{stack.chain[0]}", "--dump-dom")
    assert f'href="/task/{stack.chain[1]}"' in first  # its child, the next step, links on
    shot = stack.logs / "tasks.png"  # what docs/img/flower-tasks.png shows, for a person to look at
    chromium(stack.url + "/tasks", f"--screenshot={shot}")
    assert shot.stat().st_size > 10_000  # a rendered page, not an empty one
