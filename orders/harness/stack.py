"""A whole running platform, as production runs it: AWS (or the embedded emulator), one
worker process per queue, beat; provisioned in its own namespace.

`orders demo` and `orders bench` both run on a Stack:

    with Stack(latency_ms=15, extra_env={"ORDERS_BATCH_ACKS": "0"}) as stack:
        place orders with `orders.harness.runner.run_orders(stack, ...)`

The process that starts the stack is also its producer: its Celery app is
pointed at the stack's settings while it runs (and back on `stop()`); the
children get theirs through the environment they are started with. The
process's own environment is never changed.
"""

from __future__ import annotations

import os
import sys
import tempfile
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3

from orders.celery import app
from orders.emulator.server import CREDENTIALS, EmulatorProcess, call_counts
from orders.harness.processes import ChildProcess, StartupError, stop_all, wait_ready
from orders.infra import provisioning
from orders.settings import Settings, child_environment
from orders.topology import QUEUES

#: The tasks are I/O-bound AWS calls: threads keep one process per queue light
#: (a prefork pool would add one process per slot) while still overlapping calls.
DEFAULT_WORKER_ARGS: tuple[str, ...] = ("--pool", "threads", "--concurrency", "8",
                                        "--without-gossip", "--without-mingle")


def worker_args(concurrency: int, *extra: str) -> list[str]:
    """DEFAULT_WORKER_ARGS with `concurrency` threads per worker, then `extra`."""
    args = [*DEFAULT_WORKER_ARGS, *extra]
    args[args.index("--concurrency") + 1] = str(concurrency)
    return args


WORKER_READY = " ready."
BEAT_READY = "beat: Starting..."


class Stack:
    """The emulator (unless `endpoint` is given), provisioning, workers and beat of one run."""

    def __init__(self, endpoint: str | None = None, latency_ms: float = 0.0,
                 namespace: str | None = None, extra_env: dict[str, str] | None = None,
                 queues: Sequence[str] | None = None,
                 worker_args: Sequence[str] = DEFAULT_WORKER_ARGS, loglevel: str = "INFO",
                 beat: bool | None = None, log_dir: Path | None = None,
                 startup_timeout: float = 90.0, teardown: bool = False):
        self.endpoint_option = endpoint
        self.latency_ms = latency_ms
        self.namespace = namespace or f"demo-{uuid.uuid4().hex[:6]}"
        self.extra_env = dict(extra_env or {})
        # One region: the cross-region queue is never subscribed, so it gets no idle worker of its own.
        self.queues = list(queues or [q.name for q in QUEUES if not q.cross_region])
        self.worker_args = list(worker_args)
        self.loglevel = loglevel
        self.beat = beat
        self.log_dir = log_dir
        self.startup_timeout = startup_timeout
        self.teardown = teardown  # delete the namespace's resources on stop (given endpoints)
        self.emulator: EmulatorProcess | None = None
        self.children: list[ChildProcess] = []
        self.restarts: list[str] = []  # one line per worker that died and was restarted
        self.env: dict[str, str] = {}  # every child's environment
        self._settings: Settings | None = None
        self._app_settings: Settings | None = None  # the app's own, given back on stop()

    @property
    def embedded(self) -> bool:
        """Whether this stack runs its own emulator (rather than a given endpoint)."""
        return self.endpoint_option is None

    @property
    def endpoint(self) -> str | None:
        return self._settings.endpoint_url if self._settings else None

    @property
    def settings(self) -> Settings:
        """The run's settings (those its children read from their environment)."""
        if self._settings is None:
            raise RuntimeError("the stack is not started")
        return self._settings

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> Stack:
        """Start everything and return once every worker is consuming; stops all on failure."""
        try:
            self._start_aws()
            self._configure(self._environment())
            self.provision()
            self._start_children()
        except BaseException:
            self.stop()
            raise
        return self

    def _start_aws(self) -> None:
        if self.log_dir is None:
            self.log_dir = Path(tempfile.mkdtemp(prefix="orders-run-"))
        self.log_dir.mkdir(parents=True, exist_ok=True)
        if self.embedded:
            # The emulator's child inherits our stderr; moto's tracebacks (a 500 it answers)
            # belong in the run's logs, not across the progress line.
            with open(self._log("emulator"), "ab") as log, _stderr_to(log.fileno()):
                # One region: nothing reads the tables' streams (the replicator of a multi-region run,
                # orders.harness.regions, does), and moto would keep every record while the run lasts.
                self.emulator = EmulatorProcess(latency_ms=self.latency_ms, stream_records=False).start()

    def _environment(self) -> dict[str, str]:
        """What every process of the run gets on top of the current environment."""
        env = {"ORDERS_ENV": self.namespace, **self.extra_env}
        if self.emulator is not None:
            return {**self.emulator.env, **env}
        if self.endpoint_option and self.endpoint_option != "aws":
            env["AWS_ENDPOINT_URL"] = self.endpoint_option
            if not _has_credentials():
                env.update(CREDENTIALS)  # an emulator takes any credentials
        if not Settings.from_env(child_environment(env)).region:
            env["AWS_DEFAULT_REGION"] = "us-east-1"
        return env

    def _configure(self, overrides: dict[str, str]) -> None:
        """The children's environment, the run's settings, and this process's app pointed at them."""
        # A run's logs are read by people (and quoted when a process dies): text, unless the caller's
        # environment says otherwise.
        self.env = child_environment(overrides, defaults={"ORDERS_LOG_FORMAT": "text"})
        settings = Settings.from_env(self.env)
        if "AWS_ACCESS_KEY_ID" in overrides:  # chosen for an emulator: this process uses them too
            settings = settings.with_credentials(overrides["AWS_ACCESS_KEY_ID"],
                                                 overrides["AWS_SECRET_ACCESS_KEY"])
        self._app_settings, self._settings = app.settings, settings
        app.reconfigure(settings)

    def provision(self) -> None:
        """Create the namespace's resources."""
        provisioning.up(self.settings)

    def _start_children(self) -> None:
        self.children = [self._worker(queue) for queue in self.queues]
        if self.beat if self.beat is not None else has_periodic_tasks():
            self.children.append(self._beat())
        for child in self.children:
            child.start()
        wait_ready(self.children, self.startup_timeout)

    def _worker(self, queue: str) -> ChildProcess:
        cmd = [sys.executable, "-m", "celery", "-A", "orders", "worker", "-Q", queue,
               "-n", f"{queue}@%h", "--loglevel", self.loglevel, *self.worker_args]
        return ChildProcess(f"worker {queue}", cmd, self.env, self._log(f"worker-{queue}"),
                            ready_text=WORKER_READY if self._logs_info else None)

    def _beat(self) -> ChildProcess:
        assert self.log_dir is not None
        cmd = [sys.executable, "-m", "celery", "-A", "orders", "beat", "--loglevel", self.loglevel,
               "--schedule", str(self.log_dir / "beat-schedule")]
        return ChildProcess("beat", cmd, self.env, self._log("beat"),
                            ready_text=BEAT_READY if self._logs_info else None)

    @property
    def _logs_info(self) -> bool:
        return self.loglevel.upper() in ("INFO", "DEBUG")

    def _log(self, name: str) -> Path:
        assert self.log_dir is not None
        return self.log_dir / f"{name}.log"

    def supervise(self, max_restarts: int = 3) -> list[str]:
        """Restart any child that died, as a process supervisor would; returns what was restarted.

        A child that died more than `max_restarts` times raises StartupError.
        """
        restarted = []
        for child in self.children:
            if child.running or child.proc is None:
                continue
            note = f"{child.name} exited with status {child.exit_status}: {child.last_error()[:300]}"
            if sum(1 for r in self.restarts if r.startswith(child.name + " ")) >= max_restarts:
                raise StartupError(f"{note}; given up after {max_restarts} restarts\n" + child.log_tail())
            self.restarts.append(note)
            restarted.append(note)
            child.start()
        return restarted

    def stop(self) -> list[str]:
        """Stop every child (warm shutdown, then SIGKILL) and the emulator; returns who was killed."""
        killed = stop_all(self.children)
        if self.teardown and self._settings is not None:
            provisioning.down(self._settings)
        if self.emulator is not None:
            self.emulator.stop()
            self.emulator = None
        if self._app_settings is not None:
            app.reconfigure(self._app_settings)
            self._app_settings = None
        return killed

    def calls(self) -> dict[str, int] | None:
        """AWS calls counted by the emulator's server ('service:Action' -> n); None if not an emulator."""
        return _stats_request(self.endpoint, "GET")

    def reset_calls(self) -> None:
        _stats_request(self.endpoint, "POST")


@contextmanager
def _stderr_to(fd: int) -> Iterator[None]:
    """File descriptor 2 points at `fd` meanwhile, so a child started now inherits it."""
    sys.stderr.flush()
    saved = os.dup(2)
    os.dup2(fd, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def has_periodic_tasks() -> bool:
    """Whether the app declares a beat schedule (after loading every task module)."""
    app.loader.import_default_modules()
    return bool(app.conf.beat_schedule)


def _has_credentials() -> bool:
    return boto3.session.Session().get_credentials() is not None


def _stats_request(endpoint: str | None, method: str) -> Any:
    if not endpoint:
        return None
    try:
        return call_counts(endpoint, reset=method == "POST")
    except (urllib.error.URLError, ValueError, OSError):
        return None  # another emulator, or AWS: no server-side counts
