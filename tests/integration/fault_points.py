"""Faults injected into the pipeline's tasks, run by a real worker in the test's process, at a chosen
point of a chosen task for a chosen order (its id, or what stands for it: a restock's sku).

    BEFORE_WRITE   every write the step makes (order store, a restock) raises: nothing is recorded
    AFTER_WRITE    the step's change is recorded (or found recorded), then it fails before its events
    AFTER_EVENTS   its events are published, then it fails before the order is handed on
    AFTER_HANDOFF  the next message is sent (the chain's next step, a branch), or the order's chain
                   ends there, then it fails before its message is acked

Each point fails with `InjectedFault`, which no task retries, on every run of that task for that
order: its message comes back until SQS moves it to its DLQ, as it would when DynamoDB, SNS or the
ack refuse that one step for good. The points wrap the ports (`StepTask.dependencies`), the task's
publishing (`StepTask.publish`), its conclusion (`StepTask.conclude`) and the worker's sends
(`send_task_message` of `app.amqp`), so the steps and the runtime run unchanged between them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from typing import Any

import pytest
from celery._state import get_current_task
from celery.exceptions import Ignore

from orders.celery import app
from orders.ops.dead_letters import find_order_id
from orders.runtime.step_tasks import StepTask
from orders.steps.ports import Deps
from orders.steps.state_machine import Outcome


class Point(StrEnum):
    BEFORE_WRITE = "before-write"
    AFTER_WRITE = "after-write"
    AFTER_EVENTS = "after-events"
    AFTER_HANDOFF = "after-handoff"


class InjectedFault(RuntimeError):
    """A failure no task retries: the message is left for SQS to redeliver, then to dead-letter."""


#: (task name, subject) -> where that task fails for that subject. Emptied to "deploy the fix".
plan: dict[tuple[str, str | None], Point] = {}


def subject(task: Any) -> str | None:
    """What a task's message works on: the order id its arguments name (a restock's: its sku)."""
    request = task.request
    return find_order_id(list(request.args or []), dict(request.kwargs or {}))


def point_of(task: Any) -> Point | None:
    return plan.get((task.name, subject(task))) if task is not None and task.request.id else None


def fail(task: Any, point: Point) -> None:
    if point_of(task) is point:
        raise InjectedFault(f"{task.name} for {subject(task)}: injected {point}")


class FailingWrites:
    """A port whose writes raise (reads go through): DynamoDB refusing this step's writes."""

    WRITES = frozenset({"create", "reject", "transition", "transact", "take_with", "claim_notification",
                        "restock"})

    def __init__(self, port: Any, what: str):
        self._port, self._what = port, what

    def __getattr__(self, name: str) -> Any:
        if name in self.WRITES:
            def refuse(*_: Any, **__: Any) -> Any:
                raise InjectedFault(f"{self._what}: injected {Point.BEFORE_WRITE} ({name})")
            return refuse
        return getattr(self._port, name)


@contextmanager
def injected(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[tuple[str, str | None], Point]]:
    """Install the points for the block (in this process: the test's in-thread workers); the plan."""
    dependencies, publish, conclude = StepTask.dependencies, StepTask.publish, StepTask.conclude
    amqp = type(app.amqp)
    sender = amqp.send_task_message  # a property: the sender of the configuration in force

    def failing_dependencies(self: StepTask) -> Deps:
        deps = dependencies(self)
        if point_of(self) is not Point.BEFORE_WRITE:
            return deps
        what = f"{self.name} for {subject(self)}"
        return dataclasses.replace(deps, orders=FailingWrites(deps.orders, what),
                                   stock=FailingWrites(deps.stock, what))

    def failing_publish(self: StepTask, events: Any) -> None:
        fail(self, Point.AFTER_WRITE)
        publish(self, events)
        fail(self, Point.AFTER_EVENTS)

    def failing_conclude(self: StepTask, outcome: Outcome) -> Any:
        try:
            result = conclude(self, outcome)
        except Ignore:  # a branch was sent (Task.replace)
            fail(self, Point.AFTER_HANDOFF)
            raise
        if not self.request.chain:  # nothing for Celery to send next (the chain ended here): the ack fails
            fail(self, Point.AFTER_HANDOFF)
        return result

    def failing_sender(self: Any) -> Any:
        send = sender.__get__(self, amqp)

        def failing_send(*args: Any, **kwargs: Any) -> Any:
            sent = send(*args, **kwargs)
            fail(get_current_task(), Point.AFTER_HANDOFF)
            return sent
        return failing_send

    monkeypatch.setattr(StepTask, "dependencies", failing_dependencies)
    monkeypatch.setattr(StepTask, "publish", failing_publish)
    monkeypatch.setattr(StepTask, "conclude", failing_conclude)
    monkeypatch.setattr(amqp, "send_task_message", property(failing_sender))
    plan.clear()
    try:
        yield plan
    finally:
        plan.clear()
