"""Automated redrive's rules, as plain functions: which copies, when (backoff and jitter), how many times."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from orders.domain.errors import FailureCategory
from orders.ops.dead_letters import DeadLetter
from orders.ops.remediation import JITTER, MAX_PAUSE_SECONDS, Decision, cap, decide, pause
from orders.settings import Settings
from orders.topology import QUEUES_BY_NAME

SETTINGS = Settings()  # defaults: backoff 60 s, cap 3, ORDERS_DLQ_MAX_REDRIVES 3
NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def letter(redrives: int = 0, **fields: object) -> DeadLetter:
    found = DeadLetter(QUEUES_BY_NAME["payments"], "m-1", "rh", "{}", task="payments.charge",
                       task_id="task-1", order_id="ord-1", **fields)  # type: ignore[arg-type]
    found.redrives = redrives
    return found


def copy(category: str = FailureCategory.TRANSIENT, age: float = 3600.0) -> dict[str, object]:
    return {"category": category, "archived_at": (NOW - timedelta(seconds=age)).isoformat()}


def test_the_pause_doubles_from_the_base_with_twenty_percent_of_jitter_at_most():
    for attempt, base in ((1, 60), (2, 120), (3, 240), (4, 480)):
        pauses = [pause(SETTINGS, attempt, f"arrival#{n}") for n in range(200)]
        assert all(base * (1 - JITTER) <= p <= base * (1 + JITTER) for p in pauses)
        assert max(pauses) - min(pauses) > base * JITTER  # spread, not a constant
    assert pause(SETTINGS, 30, "x") <= MAX_PAUSE_SECONDS * (1 + JITTER)


def test_the_jitter_is_fixed_by_the_copy_so_every_pass_judges_it_alike():
    assert pause(SETTINGS, 2, "arrival#m-1#r1") == pause(SETTINGS, 2, "arrival#m-1#r1")
    assert pause(SETTINGS, 2, "arrival#m-1#r1") != pause(SETTINGS, 2, "arrival#m-2#r1")


@pytest.mark.parametrize("category", [FailureCategory.INVALID_INPUT, FailureCategory.PERMANENT,
                                      FailureCategory.BUG, "", None])
def test_only_a_transient_failure_is_ever_redriven(category):
    assert decide(SETTINGS, letter(), copy(category), NOW) is Decision.NEVER


def test_poison_and_undecodable_copies_are_never_redriven_whatever_their_category():
    assert decide(SETTINGS, letter(poison="headers-not-an-object"), copy(), NOW) is Decision.NEVER
    assert decide(SETTINGS, letter(decode_error="not a Celery message"), copy(), NOW) is Decision.NEVER


def test_a_transient_copy_waits_its_pause_from_its_archiving_then_is_redriven():
    first = pause(SETTINGS, 1, letter().arrival)
    assert decide(SETTINGS, letter(), copy(age=first - 1), NOW) is Decision.WAIT
    assert decide(SETTINGS, letter(), copy(age=first + 1), NOW) is Decision.REDRIVE
    third = pause(SETTINGS, 3, letter(2).arrival)  # the copy that came back after two redrives
    assert decide(SETTINGS, letter(2), copy(age=third - 1), NOW) is Decision.WAIT
    assert decide(SETTINGS, letter(2), copy(age=third + 1), NOW) is Decision.REDRIVE


def test_at_the_cap_a_copy_is_left_for_a_person():
    assert decide(SETTINGS, letter(3), copy(), NOW) is Decision.CAPPED
    assert decide(replace(SETTINGS, auto_redrive_max=1), letter(1), copy(), NOW) is Decision.CAPPED
    assert decide(replace(SETTINGS, auto_redrive_max=0), letter(0), copy(), NOW) is Decision.CAPPED


def test_the_cap_never_passes_the_bound_a_person_has():
    assert cap(replace(SETTINGS, auto_redrive_max=10, dlq_max_redrives=2)) == 2
    assert cap(replace(SETTINGS, auto_redrive_max=1, dlq_max_redrives=5)) == 1


def test_the_switches_and_bounds_are_read_from_the_environment():
    settings = Settings.from_env({"ORDERS_AUTO_REDRIVE": "0", "ORDERS_AUTO_REDRIVE_MAX": "5",
                                  "ORDERS_AUTO_REDRIVE_BACKOFF": "2", "ORDERS_SWEEP_STUCK": "0",
                                  "ORDERS_SWEEP_STUCK_SECONDS": "30", "ORDERS_SWEEP_STUCK_AFTER": "90",
                                  "ORDERS_SWEEP_MAX_ORDERS": "7"})
    assert (settings.auto_redrive, settings.auto_redrive_max, settings.auto_redrive_backoff_seconds) == \
        (False, 5, 2.0)
    assert (settings.sweep_stuck, settings.sweep_stuck_seconds, settings.sweep_stuck_after,
            settings.sweep_max_orders) == (False, 30.0, 90.0, 7)
    defaults = Settings.from_env({})
    assert (defaults.auto_redrive, defaults.auto_redrive_max, defaults.sweep_stuck) == (True, 3, True)
