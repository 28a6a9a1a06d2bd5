"""Remote control and events over the control plane, for workers that consume SQS.

The session emulator provides a real redis-server as ORDERS_CONTROL_URL; the
resilience test runs a private one so it can stop it. SQS calls are counted by
the emulator itself, Redis commands by redis-server's own statistics.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from kombu.exceptions import OperationalError

from orders.aws import clients
from orders.celery import app
from orders.emulator.server import EmbeddedRedis, free_port
from orders.runtime.control_plane import MonitoringNotConfigured
from orders.runtime.queue_urls import queue_url
from orders.settings import Settings, get_settings
from tests.helpers import calls, logged_process, wait_for, worker
from tests.monitoring_tasks import monitoring_add

pytestmark = pytest.mark.integration

done: Counter[str] = Counter()
lock = threading.Lock()


@app.task(name="ops.control_plane_probe")
def probe(tag: str) -> None:
    with lock:
        done[tag] += 1


def ran(tag: str, count: int) -> bool:
    with lock:
        return done[tag] >= count


def use(monkeypatch: pytest.MonkeyPatch, **env: str | None) -> Settings:
    """Re-read the settings with these variables changed (None: unset) and point the app at them."""
    for name, value in env.items():
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    settings = get_settings()
    app.reconfigure(settings)
    return settings


def redis_commands(url: str) -> Counter[str]:
    stats = redis.Redis.from_url(url).info("commandstats")
    return Counter({name.removeprefix("cmdstat_"): int(s["calls"]) for name, s in stats.items()})


class EventCounter:
    """Counts the task events published on the control plane meanwhile, by type (Redis pub/sub)."""

    def __init__(self, url: str):
        self.pubsub = redis.Redis.from_url(url).pubsub(ignore_subscribe_messages=True)
        self.pubsub.psubscribe("*celeryev*")
        self.messages = 0
        self.events: Counter[str] = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            message = self.pubsub.get_message(timeout=0.1)
            if message is not None:
                self.messages += 1
                self.events.update(e.get("type", "?") for e in events_in(message["data"]))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.pubsub.close()


def events_in(data: bytes) -> list[dict[str, Any]]:
    """The events of one kombu message on Redis: a JSON envelope, its body (base64) one event or a list."""
    envelope = json.loads(data)
    body = envelope["body"]
    if envelope.get("properties", {}).get("body_encoding") == "base64":
        body = base64.b64decode(body)
    decoded = json.loads(body)
    return decoded if isinstance(decoded, list) else [decoded]


def celery_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "celery", "-A", "orders", *args], text=True,
                          capture_output=True, timeout=60, env=env or dict(os.environ))


def ping(hostname: str, timeout: float = 1.0) -> Any:
    return app.control.inspect(timeout=timeout, destination=[hostname]).ping()


@pytest.fixture
def infra_app(infra: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """A provisioned namespace (and the app re-pointed afterwards)."""
    yield infra
    monkeypatch.undo()
    get_settings.cache_clear()
    app.reconfigure(get_settings())


def test_inspect_ping_and_active_queues_reach_a_worker_on_sqs(infra_app: Settings) -> None:
    with worker(["orders"]) as w:
        assert wait_for(lambda: ping(w.hostname)) == {w.hostname: {"ok": "pong"}}
        queues = app.control.inspect(timeout=1, destination=[w.hostname]).active_queues()
        assert [q["name"] for q in queues[w.hostname]] == ["orders"]
        cli = celery_cli("inspect", "ping", "-d", w.hostname)
        assert cli.returncode == 0, cli.stderr
        assert f"{w.hostname}: OK" in cli.stdout and "pong" in cli.stdout


def test_celery_events_shows_the_tasks_a_worker_ran(infra_app: Settings, tmp_path: Any) -> None:
    """`celery events --dump` shows a worker's heartbeats and the life of a task it ran, both run as an
    operator runs them: processes. (With the worker on a thread of this process, two clean-clone runs
    of the whole suite saw the dump print no event at all for 30 and 90 s, which no run of this file
    alone or after the other worker tests reproduced: state this process carried from earlier tests.)"""
    events = tmp_path / "events.txt"
    hostname = f"events-{uuid.uuid4().hex[:6]}@{socket.gethostname()}"
    celery = [sys.executable, "-m", "celery", "-A", "orders"]
    with events.open("w+") as out:
        dump = subprocess.Popen([*celery, "events", "--dump"], stdout=out, stderr=subprocess.STDOUT,
                                text=True)
        try:
            with logged_process([*celery, "worker", "-Q", "orders", "-n", hostname, "-c", "2", "-I",
                                 "tests.monitoring_tasks", "--loglevel", "INFO"], tmp_path / "worker.log"):
                # The dump listens once it prints the worker's heartbeats (every 2 s).
                wait_for(lambda: f"{hostname} [" in events.read_text(), timeout=60)
                task_id = monitoring_add.delay(2, 3).id
                wait_for(lambda: f"task succeeded: ops.monitoring_add({task_id})" in events.read_text())
            text = events.read_text()
            for kind in ("task sent", "task received", "task started"):
                assert f"{kind}: ops.monitoring_add({task_id})" in text
        finally:
            dump.terminate()
            dump.wait(15)


def run_tasks_and_count(settings: Settings, queue: str, n: int) -> Counter[str]:
    """SQS calls, by action, for n tasks sent to `queue` and run by a worker started for them.

    Each run has a queue of its own: a stopped worker's last long poll may still
    take a message from its queue, which then waits out its visibility timeout.
    """
    queue_url(settings, queue)  # look the URLs up first: both runs share the cache
    endpoint = settings.endpoint_url or ""
    calls(endpoint, reset=True)
    for _ in range(n):
        probe.apply_async((queue,), queue=queue)
    with worker([queue]):
        wait_for(lambda: ran(queue, n))
    return calls(endpoint)


def test_monitoring_adds_no_sqs_call_per_task(infra_app: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    n = 20
    control_url = os.environ["ORDERS_CONTROL_URL"]
    # kombu's stock SQS transport: one SendMessage and one DeleteMessage per task, no timed batches.
    off = run_tasks_and_count(use(monkeypatch, ORDERS_CONTROL_URL=None, ORDERS_BATCH_ACKS="0"), "orders", n)
    before = redis_commands(control_url)
    counter = EventCounter(control_url)
    try:
        on = run_tasks_and_count(use(monkeypatch, ORDERS_CONTROL_URL=control_url), "shipping", n)
        wait_for(lambda: counter.events["task-succeeded"] >= n, timeout=10)
    finally:
        counter.stop()
    redis_ops = redis_commands(control_url) - before
    # ReceiveMessage is long polling: how many depends on time, not on the tasks or on monitoring;
    # other services (a metrics flush, say) come on their own timers.
    on_data, off_data = (Counter({k: v for k, v in c.items()
                                  if k.startswith("sqs:") and k != "sqs:ReceiveMessage"})
                         for c in (on, off))
    print(f"\nSQS calls for {n} tasks, monitoring off: {dict(off)}"
          f"\n                    monitoring on:  {dict(on)}"
          f"\nRedis commands with monitoring on: {dict(redis_ops)}"
          f"\nevents: {dict(counter.events)} in {counter.messages} messages")
    assert on_data == off_data
    assert off_data["sqs:SendMessage"] == n and off_data["sqs:DeleteMessage"] == n
    assert {k for k in on if k.startswith("sqs:")} == {k for k in off if k.startswith("sqs:")}
    # The events really went to the control plane, every task's, several to a message
    # (a task's events within EVENTS_LINGER of each other travel together).
    assert counter.events["task-received"] >= n and counter.events["task-succeeded"] >= n
    assert 1 <= redis_ops["publish"] < counter.events["task-received"] + counter.events["task-succeeded"]


def queue_is_empty(settings: Settings, name: str) -> bool:
    """No message waiting or in flight: every task sent to it ran and was acked."""
    attrs = clients.client("sqs", settings).get_queue_attributes(
        QueueUrl=queue_url(settings, name),
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return attrs["ApproximateNumberOfMessages"] == attrs["ApproximateNumberOfMessagesNotVisible"] == "0"


def test_tasks_keep_flowing_while_the_control_plane_is_down(
        infra_app: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    """Down at start, back, down again mid-run: tasks never stop; one warning per outage."""
    port = free_port()
    settings = use(monkeypatch, ORDERS_CONTROL_URL=f"redis://127.0.0.1:{port}/0")
    name = f"outage-{uuid.uuid4().hex[:6]}@{socket.gethostname()}"
    log = tmp_path / "worker.log"
    cmd = [sys.executable, "-m", "celery", "-A", "orders", "worker", "-Q", "orders", "-n", name,
           "-c", "2", "-I", "tests.monitoring_tasks", "--loglevel", "INFO"]

    def logged(text: str) -> int:
        return log.read_text().count(text)

    def three_tasks_run(total: int) -> None:
        for i in range(3):
            monitoring_add.delay(i, i)
        wait_for(lambda: queue_is_empty(settings, "orders") and logged("succeeded in") == total, timeout=60)

    plane = EmbeddedRedis(port=port)
    try:
        with logged_process(cmd, log):
            three_tasks_run(total=3)  # nothing listens on the control plane's port yet
            assert logged("monitoring degraded") == 1, log.read_text()
            with pytest.raises(OperationalError, match=r"control plane .* is unreachable"):
                ping(name)
            plane.start()
            wait_for(lambda: ping(name, timeout=0.5), timeout=40)
            wait_for(lambda: logged("monitoring restored") == 1)

            plane.stop()
            three_tasks_run(total=6)
            assert logged("monitoring degraded") == 2, log.read_text()
            plane = EmbeddedRedis(port=port).start()
            wait_for(lambda: ping(name, timeout=0.5), timeout=40)
            wait_for(lambda: logged("monitoring restored") == 2)
    finally:
        plane.stop()


def test_without_a_control_plane_monitoring_commands_say_what_to_set(
        infra_app: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    use(monkeypatch, ORDERS_CONTROL_URL=None)
    with pytest.raises(MonitoringNotConfigured, match="ORDERS_CONTROL_URL"):
        app.control.inspect(timeout=0.5).ping()
    cli = celery_cli("inspect", "ping")
    assert cli.returncode != 0
    assert "ORDERS_CONTROL_URL" in cli.stderr, cli.stderr
    with worker(["orders"]):  # and tasks run as on stock Celery
        probe.delay("stock")
        wait_for(lambda: ran("stock", 1))
