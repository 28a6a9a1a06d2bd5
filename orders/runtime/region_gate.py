"""A worker consumes only while its region is the active one (docs/multi-region.md, rule R1).

In a multi-region deployment with a switch (ORDERS_SWITCH), every region runs the same workers;
those of the passive region must run no step, or two regions would write one order. Two
guards, for the two moments a message can meet a worker:

- the consumer stops receiving (`RegionGate`, a consumer bootstep): a thread reads the switch
  every CHECK_SECONDS (orders.aws.region_switch caches it, short timeouts), and the consumer's
  own timer, on its loop, cancels the worker's queues when the region is not active, or the
  switch cannot be read (fail closed), and consumes from them again once it is;
- a message received before that (prefetched at the flip) is handed back unrun (`turn_away`,
  from the step task's before_start): Reject with requeue leaves it in its queue, where it waits
  for the region to be active again (a failback), and its step, idempotent, then runs or
  finds the order moved on.

One region, or no switch: nothing here runs.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from celery import bootsteps
from celery.exceptions import Reject

from orders.aws import region_switch
from orders.domain.errors import RegionInactive
from orders.settings import Settings

log = logging.getLogger(__name__)

#: How often the worker looks at the switch (it then acts within this plus the switch's cache).
CHECK_SECONDS = 2.0


def turn_away(settings: Settings, task: str) -> None:
    """Reject (back to its queue) a message received while this region is not active."""
    if settings.switched and not region_switch.is_active(settings):
        log.warning("%s: region %s is not the active one: message left in its queue", task, settings.region)
        raise Reject(f"region {settings.region} is not active", requeue=True)


class _Watcher(threading.Thread):
    """Reads the switch off the consumer's loop (a read may wait for its timeout)."""

    def __init__(self, settings: Settings):
        super().__init__(name="orders-region-gate", daemon=True)
        self.settings = settings
        self.active = region_switch.is_active(settings)
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(CHECK_SECONDS):
            self.active = region_switch.is_active(self.settings)


class RegionGate(bootsteps.StartStopStep):
    """Cancels the worker's queues while its region is not active; consumes from them again after."""

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def __init__(self, parent: Any, **kwargs: Any):
        super().__init__(parent, **kwargs)
        self.watcher: _Watcher | None = None
        self.timer: Any = None
        self.paused: tuple[str, ...] = ()

    def start(self, c: Any) -> None:
        settings = c.app.settings
        if not settings.switched:
            return
        self.watcher = _Watcher(settings)
        self.watcher.start()
        self.apply(c)
        self.timer = c.timer.call_repeatedly(CHECK_SECONDS, self.apply, (c,))

    def apply(self, c: Any) -> None:
        """Pause or resume consuming as the switch last said (on the consumer's loop)."""
        active = self.watcher is not None and self.watcher.active
        if not active and not self.paused:
            self.paused = tuple(q.name for q in c.task_consumer.queues)
            for name in self.paused:
                c.cancel_task_queue(name)
            log.warning("region %s is not active: stopped consuming from %s", c.app.settings.region,
                        ", ".join(self.paused))
        elif active and self.paused:
            for name in self.paused:
                c.add_task_queue(name)
            log.warning("region %s is active: consuming from %s again", c.app.settings.region,
                        ", ".join(self.paused))
            self.paused = ()

    def stop(self, c: Any) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.watcher is not None:
            self.watcher.stopped.set()
            self.watcher = None


def producing(settings: Settings) -> Settings:
    """The settings to send a new order with: the active region's (producers follow the switch, rule R1);
    `settings` themselves in one region. RegionInactive (retryable) when the switch cannot be read."""
    if not settings.switched:
        return settings
    switch = region_switch.current(settings)
    if switch is None:
        raise RegionInactive("the active-region switch cannot be read: no order is sent until it can")
    return settings if switch.active == settings.region else settings.for_region(switch.active)
