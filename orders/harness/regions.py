"""Two regions on the embedded emulator, as the failover test and benchmark run them
(docs/multi-region.md): an emulator process per region, a third one outside both for the
active-region switch and the payment processor, the replicator between the regions (the
emulator's global tables), and a worker per region serving every queue.

    with TwoRegions() as regions:
        place orders with place_order.delay() (this process is the producer: it follows the switch)
        regions.go_dark(PRIMARY)      # its workers killed, its emulator frozen: a region lost
        ... orders region failover ...
        regions.come_back(PRIMARY)    # the emulator goes on with its data, the workers restart

The children get their settings from their environment (ORDERS_REGIONS, ORDERS_REGION,
ORDERS_SWITCH, ORDERS_GATEWAY), as a deployment's would; this process's app is pointed at the
primary's settings while the regions run (and back on `stop`).
"""

from __future__ import annotations

import signal
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orders.celery import app
from orders.domain.errors import RetryableError
from orders.domain.times import parse_time
from orders.emulator.faults import SERVICES, clear_faults, start_outage
from orders.emulator.replication import Replicator
from orders.emulator.server import CREDENTIALS, EmulatorProcess
from orders.harness.processes import ChildProcess, stop_all, wait_ready
from orders.harness.stack import BEAT_READY, DEFAULT_WORKER_ARGS, WORKER_READY
from orders.infra import provisioning
from orders.ops.audit import read_order_table
from orders.runtime import region_gate
from orders.settings import Settings, child_environment
from orders.topology import QUEUES

PRIMARY, STANDBY, OUTSIDE = "us-east-1", "us-west-2", "us-east-2"
#: How long a region gone dark stays so unless it is brought back.
DARK_SECONDS = 3600.0
#: What the regions' processes must not inherit from this one: they reach their region by ORDERS_REGIONS.
_NOT_INHERITED = ("AWS_ENDPOINT_URL", "AWS_DEFAULT_REGION", "AWS_REGION", "ORDERS_REGION",
                  "ORDERS_CONTROL_URL")


class TwoRegions:
    """Three emulators, provisioning in both regions, the replicator, and a worker per region."""

    def __init__(self, namespace: str | None = None, delay: float = 1.0, latency_ms: float = 0.0,
                 concurrency: int = 8, log_dir: Path | None = None, startup_timeout: float = 120.0):
        self.namespace = namespace or f"mr-{uuid.uuid4().hex[:6]}"
        self.delay, self.latency_ms, self.concurrency = delay, latency_ms, concurrency
        self.log_dir = log_dir or Path(tempfile.mkdtemp(prefix="orders-regions-"))
        self.startup_timeout = startup_timeout
        self.emulators: dict[str, EmulatorProcess] = {}
        self.workers: dict[str, list[ChildProcess]] = {}  # per region: its worker and its beat
        self.replicator: Replicator | None = None
        self.env: dict[str, str] = {}
        self._settings: Settings | None = None
        self._app_settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        """The primary's settings (every region's through `region`)."""
        if self._settings is None:
            raise RuntimeError("the regions are not started")
        return self._settings

    def region(self, name: str) -> Settings:
        return self.settings.for_region(name)

    def __enter__(self) -> TwoRegions:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> TwoRegions:
        try:
            self._start_emulators()
            self._configure()
            provisioning.in_every_region(self.settings, provisioning.up)
            both = [self.region(PRIMARY), self.region(STANDBY)]
            self.replicator = Replicator(both, delay=self.delay).start()
            self.workers = {name: [self._worker(name), self._beat(name)] for name in (PRIMARY, STANDBY)}
            children = [child for each in self.workers.values() for child in each]
            for child in children:
                child.start()
            wait_ready(children, self.startup_timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _start_emulators(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.emulators = {name: EmulatorProcess(self.latency_ms, with_redis=False)
                          for name in (PRIMARY, STANDBY, OUTSIDE)}
        with ThreadPoolExecutor(3) as starting:
            list(starting.map(EmulatorProcess.start, self.emulators.values()))
        from orders.emulator import moto_sns  # beside the faults' helpers: the emulator's own client

        # Each region's topics deliver to the other's replica queue (docs/multi-region.md, R7).
        moto_sns.connect({name: self.emulators[name].endpoint for name in (PRIMARY, STANDBY)})

    def _configure(self) -> None:
        url = {name: emulator.endpoint for name, emulator in self.emulators.items()}
        overrides = {**CREDENTIALS, "ORDERS_ENV": self.namespace,
                     "ORDERS_REGIONS": f"{PRIMARY}={url[PRIMARY]},{STANDBY}={url[STANDBY]}",
                     "ORDERS_SWITCH": f"{OUTSIDE}={url[OUTSIDE]}",
                     "ORDERS_GATEWAY": f"{OUTSIDE}={url[OUTSIDE]}"}
        env = child_environment(overrides, defaults={"ORDERS_LOG_FORMAT": "text"})
        self.env = {k: v for k, v in env.items()
                    if k not in _NOT_INHERITED and not k.startswith("AWS_ENDPOINT_URL_")}
        self._settings = Settings.from_env(self.env).with_credentials(
            CREDENTIALS["AWS_ACCESS_KEY_ID"], CREDENTIALS["AWS_SECRET_ACCESS_KEY"])
        self._app_settings = app.settings
        app.reconfigure(self._settings)

    def _worker(self, region: str) -> ChildProcess:
        args = list(DEFAULT_WORKER_ARGS)
        args[args.index("--concurrency") + 1] = str(self.concurrency)
        queues = ",".join(q.name for q in QUEUES)
        cmd = [sys.executable, "-m", "celery", "-A", "orders", "worker", "-Q", queues,
               "-n", f"{region}@%h", "--loglevel", "INFO", *args]
        return ChildProcess(f"worker {region}", cmd, {**self.env, "ORDERS_REGION": region},
                            self.log_dir / f"worker-{region}.log", ready_text=WORKER_READY)

    def _beat(self, region: str) -> ChildProcess:
        cmd = [sys.executable, "-m", "celery", "-A", "orders", "beat", "--loglevel", "INFO",
               "--schedule", str(self.log_dir / f"beat-{region}")]
        return ChildProcess(f"beat {region}", cmd, {**self.env, "ORDERS_REGION": region},
                            self.log_dir / f"beat-{region}.log", ready_text=BEAT_READY)

    def go_dark(self, region: str) -> None:
        """The region is lost: its workers killed at once, every service of its emulator answering
        503 (the emulator's outage faults), its data kept for `come_back`.

        Not SIGSTOP: a frozen emulator would, once continued, apply the requests its killed or
        timed-out clients had sent, with a timestamp of then; AWS applies a write when it receives
        it, or not at all, so a region's unreplicated writes arrive late with their own time.
        """
        for child in self.workers[region]:
            child.signal_group(signal.SIGKILL)
        for service in SERVICES:
            start_outage(self.emulators[region].endpoint, service, DARK_SECONDS)

    def come_back(self, region: str) -> None:
        """The region answers again, with its data; its workers restart (idle while it is not active)."""
        clear_faults(self.emulators[region].endpoint)
        for child in self.workers[region]:
            child.start()
        wait_ready(self.workers[region], self.startup_timeout)

    def stop(self) -> None:
        stop_all([child for each in self.workers.values() for child in each])
        if self.replicator is not None:
            self.replicator.stop()
        for emulator in self.emulators.values():
            emulator.stop()
        if self._app_settings is not None:
            app.reconfigure(self._app_settings)
            self._app_settings = None


@dataclass
class Placement:
    """One order handed to place_order.delay(): where it was accepted, when, after how many tries."""

    order_id: str
    region: str | None = None  # None: never accepted (every try refused)
    accepted_at: float | None = None  # time.time()
    tries: int = 0
    errors: list[str] = field(default_factory=list)


class Producer:
    """Application code placing orders steadily through a failover: each order is given to
    place_order.delay() on a thread of its own (a call to a region gone dark waits out its
    timeouts without holding the others up) and tried again, with the same order id, until one
    region accepts it or `give_up_after` seconds have passed."""

    def __init__(self, orders: list[dict[str, Any]], rate: float, give_up_after: float = 180.0,
                 threads: int = 32):
        self.orders, self.rate, self.give_up_after = orders, rate, give_up_after
        self.placements = {str(o["orderId"]): Placement(str(o["orderId"])) for o in orders}
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="producer")
        self._thread = threading.Thread(target=self._run, daemon=True, name="producer")

    def start(self) -> Producer:
        self._thread.start()
        return self

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)
        self._pool.shutdown(wait=True)

    def _run(self) -> None:
        started = time.time()
        for n, order in enumerate(self.orders):
            time.sleep(max(0.0, started + n / self.rate - time.time()))
            self._pool.submit(self._place, order)

    def _place(self, order: dict[str, Any]) -> None:
        from orders import place_order

        placement = self.placements[str(order["orderId"])]
        deadline = time.time() + self.give_up_after
        while time.time() < deadline:
            placement.tries += 1
            try:
                region = region_gate.producing(app.settings).region
                place_order.delay(order)
            except Exception as exc:  # noqa: BLE001 - kept on the placement: the run reports every refusal
                placement.errors.append(f"{type(exc).__name__}: {str(exc)[:160]}")
                if not isinstance(exc, RetryableError):
                    return  # a permanent refusal: the caller would not try again either
                time.sleep(1.0)
                continue
            placement.region, placement.accepted_at = region, time.time()
            return


def statuses(settings: Settings) -> dict[str, str]:
    """Every order's status in `settings`' region, by id."""
    return {r.order_id: r.status.value for r in read_order_table(settings).records}


def wait_final(settings: Settings, order_ids: set[str], timeout: float) -> dict[str, str]:
    """The orders' statuses once every one is final in `settings`' region (or at the timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        found = {r.order_id: r for r in read_order_table(settings).records if r.order_id in order_ids}
        if (len(found) == len(order_ids) and all(r.status.is_final for r in found.values())) \
                or time.monotonic() > deadline:
            return {i: r.status.value for i, r in found.items()}
        time.sleep(1.0)


def first_final_after(settings: Settings, order_ids: set[str]) -> float | None:
    """When the first of `order_ids` ended (epoch seconds), in `settings`' region; None if none has."""
    ends = [r.history[-1].at for r in read_order_table(settings).records
            if r.order_id in order_ids and r.status.is_final and r.history]
    return parse_time(min(ends)).timestamp() if ends else None
