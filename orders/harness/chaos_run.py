"""`orders chaos`: the demo's order mix through a platform under attack, then the ledger audit.

On a started Stack (the embedded emulator, one worker per queue, beat): seed the
catalogue, switch on the emulator's faults (throttling and 5xx at a rate), then
place the orders while a scheduler thread makes the timeline's attacks (kills
and restarts, outages, poison, duplicate placements, a second consumer beside a
stalled one), follow every order until it is final, and add it up: the orders'
ends, the kills and redeliveries from the task events, the faults the emulator
injected, where each poison message went, and the audit of the money and stock.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from orders.emulator import faults
from orders.harness.chaos_aws import PatientReader, patient, patient_place
from orders.harness.chaos_dlq import find_poison, send_poison
from orders.harness.chaos_events import TaskEvent, TaskEventLog
from orders.harness.chaos_figures import ChaosFigures, KillMoment, PoisonOutcome
from orders.harness.chaos_plan import Action, ChaosOptions, Timeline, plan
from orders.harness.chaos_poison import PoisonMessage, poison
from orders.harness.chaos_scheduler import Scheduler
from orders.harness.chaos_supervisor import Supervisor
from orders.harness.observe import dlq_depths
from orders.harness.order_mix import EXPECTED, OrderMix, PlannedOrder
from orders.harness.progress import ProgressPrinter
from orders.harness.runner import Progress, RunResult, run_orders, seed_catalogue
from orders.harness.stack import Stack
from orders.harness.summary import summarize
from orders.ops.audit import audit

#: After the orders are final, how long the workers get to publish their last task events.
EVENTS_SETTLE_SECONDS = 3.0
#: How long after the timeline's end (and a restart) the campaign waits for it to be over: a handler
#: still waiting out an outage, a restart still due. Past it, the campaign goes on and says so.
OVER_GRACE_SECONDS = 60.0


@dataclass
class Campaign:
    """One campaign on a started stack: its plan, its attacks, what they did."""

    stack: Stack
    options: ChaosOptions
    say: Callable[[str], None]
    planned: list[PlannedOrder] = field(default_factory=list)
    messages: list[PoisonMessage] = field(default_factory=list)
    sent_poison: list[PoisonOutcome] = field(default_factory=list)
    duplicates: int = 0
    timeline: Timeline = field(default_factory=Timeline)
    #: Set when the campaign is interrupted: the placing and attacking threads stop waiting for AWS.
    stopping: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.supervisor = Supervisor(self.stack, self.options.restart_delay)
        self.rng = random.Random(self.options.seed)
        self.workers = self.supervisor.queues

    def prepare(self) -> None:
        """The orders, the stock they need, the poison and the timeline."""
        settings = self.stack.settings
        mix = OrderMix(seed=self.options.seed, run_id="chaos-" + self.stack.namespace.rsplit("-", 1)[-1],
                       review_threshold=settings.review_threshold)
        self.planned = mix.orders(self.options.orders)
        stock = mix.stock(self.options.orders)
        seed_catalogue(settings, stock)
        self.messages = poison(self.options.poison, self.options.seed)
        valid = [i for i, p in enumerate(self.planned) if p.kind != "invalid"]
        self.timeline = plan(self.options, self.workers, valid, settings.receive_visibility)

    def handlers(self) -> dict[str, Callable[[Action], None]]:
        sup = self.supervisor
        return {
            "kill": lambda a: self._kill(a.target),
            "outage": lambda a: faults.start_outage(self._endpoint, a.target, a.seconds),
            "poison": lambda a: self.sent_poison.append(send_poison(
                self.stack.settings, self.workers[a.index % len(self.workers)], self.messages[a.index],
                self.stopping)),
            "duplicate": self._duplicate,
            "consumer-start": lambda a: sup.start_extra(a.target),
            "stall": lambda a: sup.stall(a.target, a.seconds),
            "consumer-stop": lambda a: sup.stop_extra(),
        }

    @property
    def _endpoint(self) -> str:
        assert self.stack.endpoint is not None
        return self.stack.endpoint

    def _kill(self, queue: str) -> None:
        others = [q for q in self.workers if q != queue]
        self.rng.shuffle(others)
        kill = self.supervisor.kill(queue, others)
        if kill is not None and kill.queue != queue:
            self.say(f"\n  (worker {queue} was down: killed worker {kill.queue} instead)")

    def _duplicate(self, action: Action) -> None:
        self._place(self.planned[action.index].order)
        self.duplicates += 1

    def _place(self, order: dict[str, Any]) -> Any:
        return patient_place(order, self.stopping)

    def run(self, progress: Callable[[Progress], None]) -> tuple[RunResult, Scheduler]:
        """Place and follow the orders while the scheduler attacks; returns once both are done."""
        options = self.options
        if options.fault_rate > 0:
            faults.set_faults(self._endpoint, error_rate=options.fault_rate, seed=options.seed,
                              kinds=options.fault_kinds)
        scheduler = Scheduler(self.timeline, self.handlers(), self.supervisor.tick)
        # Once placed: the longest outage still to come, then the usual patience.
        timeout = options.timeout + max(0.0, self.timeline.last_outage_end - options.window)
        scheduler.start(time.monotonic())
        try:
            result = run_orders(self.stack.settings, self.planned, options.rate, timeout, progress=progress,
                                send=self._place, store=PatientReader(self.stack.settings))
            self._wait_until_over(scheduler)
            time.sleep(EVENTS_SETTLE_SECONDS)
        except BaseException:
            self.stopping.set()
            raise
        finally:
            self.supervisor.close()  # first: a restart racing the stack's stop would outlive it
            scheduler.stop()
        return result, scheduler

    def _wait_until_over(self, scheduler: Scheduler) -> None:
        """Until every attack is made, every outage over and every worker back; bounded."""
        deadline = scheduler.t0 + self.timeline.end + self.options.restart_delay + OVER_GRACE_SECONDS
        while not (scheduler.finished and self.supervisor.settled):
            if time.monotonic() > deadline:
                scheduler.errors.append(f"the timeline was not over {OVER_GRACE_SECONDS:.0f} s after its "
                                        f"end ({self.timeline.end:.0f} s): figures taken as they were")
                return
            time.sleep(0.5)

    def conclude(self, result: RunResult, events: list[TaskEvent], scheduler: Scheduler) -> ChaosFigures:
        """Every figure of the campaign, faults switched off first (the audit reads undisturbed)."""
        report = self._fault_report()
        settings = self.stack.settings
        self.say(f"Looking for the {len(self.sent_poison)} poison messages in their DLQs ...")
        find_poison(settings, self.sent_poison)
        self.say("Auditing the ledger, the orders and the stock ...")
        audited = patient(lambda: audit(settings))
        summary = summarize(result.outcomes, expected=EXPECTED)
        figures = ChaosFigures(command=self.options.command(), placed=summary.placed,
                               refused=summary.refused, by_state=summary.by_state, lost=summary.lost,
                               stuck=summary.unfinished, send_failed=summary.send_failed,
                               timed_out=result.timed_out, duration=result.ended_at - result.started_at,
                               duplicates_placed=self.duplicates)
        self._add_processes(figures, result.started_at, events)
        figures.add_faults(report, result.started_at)
        figures.audit, figures.audit_problems = dict(audited.counts), [p.line() for p in audited.problems]
        figures.poison = self.sent_poison
        figures.dlq_depths = patient(lambda: dlq_depths(settings), 60)
        figures.attack_errors = list(scheduler.errors)
        return figures

    def _add_processes(self, figures: ChaosFigures, started_at: float, events: list[TaskEvent]) -> None:
        sup = self.supervisor
        sup.last_look()  # a worker that a late poison message crashed counts too
        figures.kills = [{"queue": k.queue, "at": round(k.at - started_at, 1), "pid": k.pid,
                          "restarted_after": round(k.restarted_at - k.at, 1) if k.restarted_at else None}
                         for k in sup.kills]
        figures.worker_exits = [str(e) for e in sup.worker_exits]
        figures.other_exits = [str(e) for e in sup.exits if e not in sup.worker_exits]
        moments = [KillMoment(k.pid, k.at) for k in sup.kills]
        if self.stack.log_dir is not None:
            record_events(self.stack.log_dir / "chaos-events.jsonl", events, moments)
        figures.add_deliveries(events, moments)

    def _fault_report(self) -> dict[str, Any] | None:
        if self.options.fault_rate <= 0 and not self.options.outages:
            return None
        report = faults.fault_report(self._endpoint)
        faults.clear_faults(self._endpoint)
        return dict(report)


def run_campaign(stack: Stack, options: ChaosOptions, printer: ProgressPrinter,
                 say: Callable[[str], None]) -> ChaosFigures:
    """The whole campaign on a started stack."""
    campaign = Campaign(stack, options, say)
    campaign.prepare()
    say(f"Placing {len(campaign.planned)} orders at {options.rate:g}/s under attack: "
        f"{options.kills} kills, faults at {options.fault_rate:.0%}, outages "
        f"{', '.join(map(str, options.outages)) or 'none'}, {options.poison} poison, "
        f"{options.duplicates} duplicates ...")
    events = TaskEventLog().start()
    try:
        result, scheduler = campaign.run(printer)
        printer.finish()
    finally:
        captured = events.stop()
    return campaign.conclude(result, captured, scheduler)


def record_events(path: Path, events: list[TaskEvent], kills: list[KillMoment]) -> None:
    """The task events and kills behind the redelivery figures, one JSON object a line, to check them."""
    rows = [{"kind": "kill", **asdict(k)} for k in kills] + [{"kind": "event", **asdict(e)} for e in events]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
