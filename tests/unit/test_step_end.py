"""A step ends its order's chain by emptying the running request's chain and returning (StepTask.end), in
Celery's own tracer: nothing more is sent, and Celery reports a success. Should a Celery upgrade make the
request a task sees another object than the one its tracer reads the chain from, this fails."""

from __future__ import annotations

from typing import Any

import pytest
from celery.app.trace import build_tracer

from orders.celery import app
from orders.runtime.step_tasks import StepTask

sent: list[str] = []


@app.task(base=StepTask, bind=True, name="payments.step_end_probe")
def probe(self: StepTask, end: bool) -> dict[str, Any]:
    result = {"orderId": "ord-1", "status": "cancelled", "reason": "payment-declined", "next": None}
    return self.end(result) if end else result


@app.task(name="shipping.step_end_next")
def following(result: Any) -> None:
    """The chain's next step: never run here, its sends are recorded."""


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    sent.clear()
    monkeypatch.setattr(following, "apply_async", lambda *args, **kwargs: sent.append("next"))
    return sent


@pytest.mark.parametrize(("end", "state", "next_sent"), [(True, "SUCCESS", []), (False, "SUCCESS", ["next"])])
def test_a_step_that_ends_sends_nothing_more_and_is_a_success(recorded, end, state, next_sent):
    tracer = build_tracer(probe.name, probe, app=app, eager=False, propagate=True)
    chain = [dict(following.s())]
    retval, info, _, _ = tracer("t-1", (end,), {}, {"id": "t-1", "delivery_info": {}, "chain": chain,
                                                    "callbacks": [dict(following.s())] if end else None})
    assert (info.state if info else "SUCCESS") == state
    assert recorded == next_sent  # the ended step sent neither the chain's next step nor its callbacks
    assert retval.get("ended") is (True if end else None)


def test_no_setting_would_take_a_redelivered_ended_step_for_done():
    """With a result backend and deduplicate_successful_tasks, Celery would skip a redelivered task whose id
    succeeded and send its message's chain on: an ended order would go on."""
    assert app.conf.worker_deduplicate_successful_tasks is False
    assert app.conf.result_backend is None and app.conf.task_ignore_result is True
