"""Helpers for integration tests: real workers, in a thread or in their own process."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from celery.contrib.testing.worker import start_worker

from orders.emulator.server import call_counts

#: The `orders` command of this environment.
ORDERS = str(Path(sys.executable).with_name("orders"))


def as_at_a_terminal() -> None:
    """Popen's preexec_fn for a command a test interrupts with SIGINT, as Ctrl-C would.

    A child inherits an ignored SIGINT (pytest-xdist's workers ignore it), and Python then
    installs no KeyboardInterrupt handler: the command would not hear the test's Ctrl-C.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def invoke(*args: str, stdin: str | None = None) -> tuple[int, str]:
    """`orders ARGS...` in this process (click's runner): its exit code and output."""
    from click.testing import CliRunner

    from orders.cli import cli

    result = CliRunner().invoke(cli, list(args), input=stdin)
    return result.exit_code, result.output


def calls(endpoint: str, reset: bool = False) -> Counter[str]:
    """The emulator's count of AWS calls by 'service:Action' (reset: zero it)."""
    return Counter(call_counts(endpoint, reset))


@contextmanager
def worker(queues: list[str], pool: str = "threads", concurrency: int = 4) -> Iterator[Any]:
    """A real Celery worker consuming `queues`, on a thread of the test process."""
    from orders.celery import app

    with start_worker(app, queues=queues, pool=pool, concurrency=concurrency,
                      perform_ping_check=False, shutdown_timeout=30, loglevel="WARNING") as w:
        yield w


@contextmanager
def worker_process(queues: list[str], log_path: Any, extra_args: list[str] | None = None,
                   env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[str]]:
    """`celery -A orders worker -Q ...` as its own process, as production runs it."""
    cmd = [sys.executable, "-m", "celery", "-A", "orders", "worker", "-Q", ",".join(queues),
           "--loglevel", "INFO", "--without-heartbeat", *(extra_args or [])]
    with logged_process(cmd, log_path, env=env) as proc:
        yield proc


def wait_for(predicate: Callable[[], Any], timeout: float = 30.0, interval: float = 0.1) -> Any:
    """Poll until `predicate()` is truthy; return its value or fail with a clear message."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout:.0f} s: {predicate}")


@contextmanager
def logged_process(cmd: list[str], log_path: Any,
                   env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[str]]:
    """A long-running command (a worker, Flower) whose output goes to `log_path`, never a full pipe."""
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, env={**os.environ, **(env or {})}, text=True,
                                stdout=log, stderr=subprocess.STDOUT)
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()


def clean_env() -> dict[str, str]:
    """The caller's environment without any AWS or ORDERS_ setting (a fresh machine)."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "ORDERS_"))}


def processes_of(namespace: str) -> list[int]:
    """PIDs of live processes whose environment names this run's namespace."""
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if f"ORDERS_ENV={namespace}".encode() in environ.read_bytes().split(b"\0"):
                found.append(int(environ.parent.name))
        except OSError:
            continue
    return found


def listening(endpoint: str) -> bool:
    """Whether something accepts connections at `endpoint` (http://host:port)."""
    host, port = endpoint.removeprefix("http://").split(":")
    try:
        with socket.create_connection((host, int(port)), timeout=1):
            return True
    except OSError:
        return False


def run_facts(output: str) -> tuple[str, str]:
    """(namespace, endpoint) of a run of `orders demo` or `orders chaos`, from what it printed."""
    namespace = re.search(r"namespace (\S+),", output)
    endpoint = re.search(r"AWS at (http://\S+),", output)
    assert namespace and endpoint, output[-3000:]
    return namespace.group(1), endpoint.group(1)


@contextmanager
def region_emulators(*regions: str) -> Iterator[dict[str, Any]]:
    """One emulator process per region, as each region's AWS (started side by side: each takes seconds
    to import moto), stopped on exit; `regions_variable` makes their ORDERS_REGIONS."""
    from concurrent.futures import ThreadPoolExecutor

    from orders.emulator.server import EmulatorProcess

    found = {region: EmulatorProcess(with_redis=False) for region in regions}
    try:
        with ThreadPoolExecutor(len(found)) as starting:
            list(starting.map(EmulatorProcess.start, found.values()))
        yield found
    finally:
        for emulator in found.values():
            emulator.stop()


def regions_variable(emulators: dict[str, Any]) -> str:
    """ORDERS_REGIONS for emulators by region: `REGION=URL,...`, the first the primary."""
    return ",".join(f"{region}={emulator.endpoint}" for region, emulator in emulators.items())


def use_regions(env: Any, emulators: dict[str, Any], namespace: str) -> Any:
    """A fresh environment `namespace` over the emulators' regions, set in `env` (a MonkeyPatch) as a user
    sets it (ORDERS_REGIONS=REGION=URL,..., no AWS_ENDPOINT_URL_*); the primary's Settings."""
    from orders.settings import get_settings

    regions = regions_variable(emulators)
    primary = next(iter(emulators.values()))
    for name, value in {**primary.env, "ORDERS_ENV": namespace, "ORDERS_REGIONS": regions}.items():
        env.setenv(name, value)
    for name in [name for name in os.environ if name.startswith("AWS_ENDPOINT_URL_")]:
        env.delenv(name, raising=False)
    get_settings.cache_clear()
    return primary.settings({"ORDERS_ENV": namespace, "ORDERS_REGIONS": regions})


@contextmanager
def paused(endpoint: str) -> Iterator[None]:
    """The emulator process listening at `endpoint` stopped (SIGSTOP): its port still accepts
    connections and nothing answers, as a region that is down behind its load balancer; continued on exit."""
    import psutil

    port = int(endpoint.rsplit(":", 1)[1])
    [process] = [child for child in psutil.Process().children(recursive=True)
                 if any(c.status == psutil.CONN_LISTEN and c.laddr.port == port
                        for c in child.net_connections(kind="tcp"))]
    process.send_signal(signal.SIGSTOP)
    try:
        yield
    finally:
        process.send_signal(signal.SIGCONT)
