"""What a fault campaign will do and when: its options and its timeline; plain code, no AWS.

The timeline is drawn from the seed, so `orders chaos --seed K` with the same
flags kills the same workers at the same moments (of the placing window),
sends the same poison and duplicates the same orders. Times are seconds after
the first order is placed.
"""

from __future__ import annotations

import random
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field

from orders.emulator.fault_answers import KINDS
from orders.emulator.faults import parse_outage

#: What an outage can take away (orders.emulator.faults): all of SNS or DynamoDB, SQS sends, all of SQS
#: (or any other service, by its signing name).
OUTAGE_TARGETS = ("sns", "dynamodb", "sqs-send", "sqs")
#: Two kills of one worker at least this far apart, so each kills a worker that is up and consuming.
MIN_KILL_GAP_SECONDS = 20.0
#: The queue that gets a second consumer (and its first one stalled): a double charge would show here.
DOUBLE_DELIVERY_QUEUE = "payments"


@dataclass(frozen=True)
class Outage:
    """One service taken away for `seconds`, from `at` seconds into the run (None: planned)."""

    target: str
    seconds: float
    at: float | None = None

    @classmethod
    def parse(cls, text: str) -> Outage:
        """'sns:180' or 'dynamodb:180@60'; ValueError says what is wrong (checked as the emulator will)."""
        spec = parse_outage(text.strip())
        return cls(str(spec["target"]), float(spec["seconds"]), float(spec["delay"]) if "@" in text else None)

    def __str__(self) -> str:
        return f"{self.target}:{self.seconds:g}" + ("" if self.at is None else f"@{self.at:g}")


@dataclass(frozen=True)
class ChaosOptions:
    """The campaign's knobs (the command's flags); the defaults make a run of about three minutes."""

    orders: int = 300
    rate: float = 2.0
    seed: int = 1
    kills: int = 8
    fault_rate: float = 0.05
    fault_kinds: tuple[str, ...] = KINDS  # what a fault answers: throttling, 500, 503
    outages: tuple[Outage, ...] = (Outage("sns", 45.0),)
    poison: int = 12
    duplicates: int = 6
    #: Once every order is placed and every outage over, give up when no order got final for this long.
    timeout: float = 180.0
    restart_delay: float = 3.0
    #: A second consumer on DOUBLE_DELIVERY_QUEUE while its first one is stalled past its visibility.
    double_delivery: bool = True

    @property
    def window(self) -> float:
        """Seconds over which the orders are placed."""
        return self.orders / self.rate

    def command(self) -> str:
        """The command that runs this campaign again."""
        args = ["orders", "chaos", "--orders", str(self.orders), "--rate", f"{self.rate:g}",
                "--seed", str(self.seed), "--kills", str(self.kills), "--fault-rate", f"{self.fault_rate:g}"]
        if self.fault_kinds != KINDS:
            args += ["--fault-kinds", ",".join(self.fault_kinds)]
        for outage in self.outages:
            args += ["--outage", str(outage)]
        if not self.outages:
            args += ["--outage", "none"]
        args += ["--poison", str(self.poison), "--duplicates", str(self.duplicates)]
        if self.timeout != ChaosOptions.timeout:
            args += ["--timeout", f"{self.timeout:g}"]
        if not self.double_delivery:
            args.append("--no-double-delivery")
        return shlex.join(args)


@dataclass(frozen=True)
class Action:
    """One thing the campaign does at `at` seconds: kill, outage, poison, duplicate, consumer, stall."""

    at: float
    kind: str
    target: str = ""  # a queue, or an outage's target
    seconds: float = 0.0  # an outage's or a stall's length
    index: int = 0  # a poison message's or a duplicated order's number


@dataclass
class Timeline:
    """Every action of a campaign, in time order."""

    actions: list[Action] = field(default_factory=list)

    def of(self, kind: str) -> list[Action]:
        return [a for a in self.actions if a.kind == kind]

    @property
    def last_outage_end(self) -> float:
        return max((a.at + a.seconds for a in self.of("outage")), default=0.0)

    @property
    def end(self) -> float:
        """When the last action is over (an outage or a stall lasts its seconds)."""
        return max((a.at + a.seconds for a in self.actions), default=0.0)


def plan(options: ChaosOptions, queues: Sequence[str], valid_orders: Sequence[int],
         visibility: float = 30.0) -> Timeline:
    """The campaign's timeline for these queues; `valid_orders` are the indexes duplicates come from."""
    rng = random.Random(options.seed)
    window = options.window
    actions = [Action(at, "kill", queue) for at, queue in kill_schedule(options.kills, window, queues, rng)]
    actions += [Action(o.at if o.at is not None else at, "outage", o.target, o.seconds)
                for o, at in zip(options.outages, outage_starts(options.outages, window), strict=True)]
    actions += [Action(at, "poison", index=i) for i, at in enumerate(spread(options.poison, window, rng))]
    actions += duplicate_actions(options.duplicates, window, valid_orders, options.rate, rng)
    if options.double_delivery and DOUBLE_DELIVERY_QUEUE in queues:
        actions += double_delivery(0.2 * window, visibility)
    return Timeline(sorted(actions, key=lambda a: (a.at, a.kind)))


def spread(n: int, window: float, rng: random.Random, start: float = 0.05, end: float = 0.95) -> list[float]:
    """n moments drawn uniformly in [start, end] of the window, in order."""
    return sorted(rng.uniform(start * window, end * window) for _ in range(n))


def kill_schedule(n: int, window: float, queues: Sequence[str],
                  rng: random.Random) -> list[tuple[float, str]]:
    """(when, which worker's queue) of n kills over the window, one worker's kills MIN_KILL_GAP apart
    when the window allows it."""
    last: dict[str, float] = {}
    kills = []
    for at in spread(n, window, rng):
        rested = [q for q in queues if at - last.get(q, -MIN_KILL_GAP_SECONDS) >= MIN_KILL_GAP_SECONDS]
        queue = rng.choice(rested or list(queues))
        last[queue] = at
        kills.append((at, queue))
    return kills


def outage_starts(outages: Sequence[Outage], window: float) -> list[float]:
    """When each outage starts: its own @AT, else a quarter into the window, or 10 s after the
    previous planned one ends (outages do not overlap unless asked to)."""
    starts, free_from = [], 0.25 * window
    for outage in outages:
        at = outage.at if outage.at is not None else free_from
        starts.append(at)
        if outage.at is None:
            free_from = at + outage.seconds + 10.0
    return starts


def duplicate_actions(n: int, window: float, valid_orders: Sequence[int], rate: float,
                      rng: random.Random) -> list[Action]:
    """Place n valid orders a second time, 2 to 20 s after their first placing (the same order, again)."""
    chosen = rng.sample(list(valid_orders), min(n, len(valid_orders)))
    return [Action(min(i / rate + rng.uniform(2.0, 20.0), window + 5.0), "duplicate", index=i)
            for i in sorted(chosen)]


def double_delivery(start: float, visibility: float) -> list[Action]:
    """A second consumer on DOUBLE_DELIVERY_QUEUE; 10 s later its first consumer is stalled (SIGSTOP)
    for its visibility and 20 s more, so what it holds goes to the second one, and runs again when it
    resumes; the second consumer stops 10 s after."""
    stall = visibility + 20.0
    queue = DOUBLE_DELIVERY_QUEUE
    return [Action(start, "consumer-start", queue), Action(start + 10.0, "stall", queue, stall),
            Action(start + 20.0 + stall, "consumer-stop", queue)]
