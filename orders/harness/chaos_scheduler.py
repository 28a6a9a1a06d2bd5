"""Runs a campaign's timeline on a thread of its own, beside the placing and following of orders.

Each action is handed to its handler at its moment; between actions, and after
the last, `tick` runs twice a second (the supervisor's restarts). A handler that
fails is recorded and the timeline goes on: an attack that could not be made is
reported, it does not stop the others.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping

from orders.harness.chaos_plan import Action, Timeline

logger = logging.getLogger(__name__)

TICK_SECONDS = 0.5


class Scheduler:
    """The timeline's actions at `t0 + action.at` (monotonic), `tick()` in between."""

    def __init__(self, timeline: Timeline, handlers: Mapping[str, Callable[[Action], None]],
                 tick: Callable[[], None]):
        self.timeline = timeline
        self.handlers = handlers
        self.tick = tick
        self.t0 = 0.0
        self.done: list[Action] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="chaos")

    def start(self, t0: float) -> Scheduler:
        self.t0 = t0
        self._thread.start()
        return self

    @property
    def finished(self) -> bool:
        """Every action made, and every outage over."""
        over = time.monotonic() >= self.t0 + self.timeline.last_outage_end
        return len(self.done) == len(self.timeline.actions) and over

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        for action in self.timeline.actions:
            while not self._stop.is_set() and time.monotonic() < self.t0 + action.at:
                self._tick()
                self._stop.wait(min(TICK_SECONDS, max(0.0, self.t0 + action.at - time.monotonic())))
            if self._stop.is_set():
                return
            self._make(action)
        while not self._stop.wait(TICK_SECONDS):
            self._tick()

    def _make(self, action: Action) -> None:
        try:
            self.handlers[action.kind](action)
        except Exception as exc:  # noqa: BLE001 - reported in the figures; the other attacks go on
            logger.warning("chaos: %s at %.1f s failed: %s", action.kind, action.at, exc)
            self.errors.append(f"{action.kind} {action.target} at {action.at:.1f} s: "
                               f"{type(exc).__name__}: {exc}")
        self.done.append(action)

    def _tick(self) -> None:
        try:
            self.tick()
        except Exception as exc:  # noqa: BLE001 - a restart that failed is tried at the next tick
            logger.warning("chaos: supervision failed: %s", exc)
