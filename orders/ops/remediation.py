"""Automated redrive of transient dead letters: bounded by a cap per message and a backoff, visible in
logs, metrics and on `system-health`.

Run after each DLQ watcher pass (`ops.watch_dlqs`): every archived copy still in its DLQ
whose stored classification is `transient` (throttling, timeouts, 5xx, a service
unavailable, a worker lost) is sent back through the same redrive as `orders dlq
redrive --id` (orders.ops.redrive), once its pause has passed: base × 2^(n-1) seconds
(ORDERS_AUTO_REDRIVE_BACKOFF, 60) from the copy's archiving, ±20 % jitter, for its n-th
redrive. Poison, undecodable messages, permanent failures and bugs are never redriven.
The redrives are counted in the archive's `redrive` item (`archive.begin_redrive`, the
same atomic counter as a person's, checked in the same write), so the cap
(ORDERS_AUTO_REDRIVE_MAX, 3, and never more than ORDERS_DLQ_MAX_REDRIVES) holds across
passes and processes. A copy at the cap is left for a person, announced once.
ORDERS_AUTO_REDRIVE=0 turns it off.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from orders.aws import metrics
from orders.domain.errors import FailureCategory
from orders.domain.times import parse_time
from orders.ops import archive, redrive
from orders.ops.announce import Notice, tell
from orders.ops.dead_letters import DeadLetter, release, scan
from orders.ops.dlq_states import RedriveResult
from orders.settings import Settings
from orders.topology import QUEUES, QueueSpec

log = logging.getLogger(__name__)

JITTER = 0.2
#: The longest pause before an automatic redrive, however large the cap.
MAX_PAUSE_SECONDS = 3600.0
#: The archived copy's attribute set when it reached the cap (its announcement is sent once).
CAPPED_MARK = "auto_redrive_capped_at"


class Decision(StrEnum):
    """What automated remediation does with one archived copy in its DLQ."""

    REDRIVE = "redrive"  # transient, under the cap, its pause passed
    WAIT = "wait"  # transient, under the cap, its pause not passed yet
    CAPPED = "capped"  # transient, redriven as often as allowed: a person's now
    NEVER = "never"  # poison, undecodable, permanent or a bug: a person's, always


def cap(settings: Settings) -> int:
    """Redrives of a task (by anyone) after which automation leaves it alone."""
    return min(settings.auto_redrive_max, settings.dlq_max_redrives)


def pause(settings: Settings, attempt: int, seed: str) -> float:
    """Seconds before the `attempt`-th automatic redrive: base × 2^(attempt-1) (at most MAX_PAUSE_SECONDS),
    ±JITTER, the jitter fixed by `seed` (the copy), so that every pass judges a copy alike."""
    base = min(settings.auto_redrive_backoff_seconds * 2 ** (attempt - 1), MAX_PAUSE_SECONDS)
    unit = int.from_bytes(hashlib.sha256(seed.encode()).digest()[:8], "big") / 2 ** 64
    return base * (1 - JITTER + 2 * JITTER * unit)


def decide(settings: Settings, letter: DeadLetter, copy: dict[str, Any], now: datetime) -> Decision:
    """Whether this archived copy is redriven now (module docstring)."""
    if letter.poison or letter.decode_error or copy.get("category") != FailureCategory.TRANSIENT:
        return Decision.NEVER
    if letter.redrives >= cap(settings):
        return Decision.CAPPED
    waited = (now - parse_time(str(copy["archived_at"]))).total_seconds()
    due = waited >= pause(settings, letter.redrives + 1, letter.arrival)
    return Decision.REDRIVE if due else Decision.WAIT


@dataclass(frozen=True)
class Action:
    """One thing automated remediation did to one message: redriven (or tried), or left at its cap."""

    letter: DeadLetter
    outcome: str  # a RedriveResult, or Decision.CAPPED
    detail: str

    def notice(self, settings: Settings) -> Notice:
        m, capped = self.letter, self.outcome == Decision.CAPPED
        body = {"event_type": "AutoRedriveStopped" if capped else "AutoRedrive",
                "severity": "critical" if capped else "info", "environment": settings.env,
                "queue": m.queue.name, "dlq": m.queue.dlq_name, "message_id": m.message_id, "key": m.key,
                "task": archive.clip(m.task, 200), "order_id": m.order_id, "outcome": self.outcome,
                "redrives": m.redrives, "cap": cap(settings), "detail": self.detail,
                "action": (f"left for a person: orders dlq show {m.queue.name}; see "
                           "docs/operations.md#automated-remediation") if capped else ""}
        verb = f"left at its cap ({cap(settings)} redrives)" if capped else f"auto-redrive {self.outcome}"
        return Notice(f"[{body['severity']}] {m.task or 'message'} on {m.queue.name}: {verb}", body,
                      {"severity": str(body["severity"]), "event_type": str(body["event_type"]),
                       "queue": m.queue.name})


def auto_redrive(settings: Settings, now: datetime | None = None) -> list[Action]:
    """One pass over every DLQ: redrive the transient copies that are due, announce those at their cap."""
    if not settings.auto_redrive:
        return []
    actions: list[Action] = []
    for spec in QUEUES:
        try:
            actions += redrive_queue(settings, spec, now or datetime.now(UTC))
        except Exception:  # the others are still remedied; this DLQ's messages wait for the next pass
            log.exception("auto-redrive: %s not remedied this pass", spec.dlq_name)
    for action in actions:
        metrics.count("AutoRedrives", Queue=action.letter.queue.name, Outcome=action.outcome)
    metrics.flush()
    published = tell(settings, [a.notice(settings) for a in actions])
    # A copy at its cap pages once: marked only once its notice is out, so that a notice SNS
    # refused (or a pass killed before publishing) is sent again by the next pass.
    for action, out in zip(actions, published, strict=True):
        if out and action.outcome is Decision.CAPPED:
            archive.mark_once(settings, action.letter, CAPPED_MARK)
    return actions


def redrive_queue(settings: Settings, spec: QueueSpec, now: datetime) -> list[Action]:
    """The due copies of one DLQ redriven (by message id, through orders.ops.redrive), and those at
    their cap not announced yet (`auto_redrive` marks them once announced)."""
    letters = scan(settings, spec)
    try:
        found = archive.look_up(settings, letters)
        judged = [(m, decide(settings, m, copy, now)) for m in letters
                  if (copy := found.copies.get(m.message_id)) is not None]
    finally:
        if letters:
            release(settings, letters)
    actions = [Action(m, Decision.CAPPED, f"redriven {m.redrives} time(s)") for m, d in judged
               if d is Decision.CAPPED and CAPPED_MARK not in found.copies[m.message_id]]
    due = [m.message_id for m, d in judged if d is Decision.REDRIVE]
    for outcome in redrive.redrive(settings, spec, ids=due, bound=cap(settings)) if due else []:
        actions.append(Action(outcome.letter, outcome.result, outcome.detail))
    for action in actions:
        logged = log.warning if action.outcome in (Decision.CAPPED, RedriveResult.FAILED) else log.info
        logged("auto-redrive %s: %s %s on %s (order %s): %s", action.outcome, action.letter.task,
               action.letter.key, spec.name, action.letter.order_id, action.detail)
    return actions
