"""What ending an order's chain costs a worker's CPU: Celery's idiom (raise `Ignore`) against the steps' own
(`StepTask.end`: the request's chain emptied, the task returns), and what a retry's `Retry` costs besides.

Celery's tracer builds two `ExceptionInfo`s for every `Ignore` and one for every `Retry`, each formatting
the traceback with its source lines (Python 3.11 also parses each line for its caret marks). A declined,
out-of-stock or review-declined order ended its chain this way until StepTask.end; a branch off it
(compensation) still does (`Task.replace` raises `Ignore` after its send). The tasks here run in
Celery's own tracer, as a worker runs them, from as deep a stack as a step's (the task, the step,
`conclude`, `end`); nothing is sent.

    python -m benchmarks.chain_end [--tasks 400] [--rounds 3]
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from celery.app.trace import build_tracer
from celery.exceptions import Ignore

from orders.celery import app
from orders.domain.errors import RetryableError
from orders.runtime.step_tasks import StepTask

RESULT = {"orderId": "ord-1", "status": "cancelled", "reason": "payment-declined", "next": None}
HOW = ("ignore", "end", "retry")
NEXT = [{"task": "shipping.create_shipment", "args": ["ord-1"], "kwargs": {}, "options": {}}]


def conclude(task: StepTask, how: str) -> dict[str, Any]:
    """The step's last frames, as `StepTask.conclude` ends a chain."""
    if how == "ignore":
        raise Ignore("order ord-1 is cancelled: the rest of its chain is not sent")
    if how == "retry":
        try:
            raise RetryableError("the gateway is busy")
        except RetryableError as exc:
            # Celery's Task.retry raises Retry, as the steps' autoretry does; the countdown is never waited.
            raise task.retry(exc=exc, countdown=0, throw=True) from exc
    return task.end(dict(RESULT))


def step(task: StepTask, how: str) -> dict[str, Any]:
    return conclude(task, how)


@app.task(base=StepTask, bind=True, name="payments.bench_chain_end")
def chain_end(self: StepTask, how: str) -> dict[str, Any]:
    return step(self, how)


def run(how: str, tasks: int) -> tuple[float, str]:
    """(CPU ms per task run through Celery's tracer, its request carrying the rest of a chain; the state
    Celery gave the last run)."""
    tracer = build_tracer(chain_end.name, chain_end, app=app, eager=False, propagate=False)
    began = time.process_time()
    for i in range(tasks):
        request = {"id": f"t{i}", "delivery_info": {}, "hostname": "bench@localhost", "chain": list(NEXT)}
        _, info, _, _ = tracer(f"t{i}", (how,), {}, request)
    return (time.process_time() - began) / tasks * 1000, info.state if info else "SUCCESS"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    # A retry sends its message: here it goes nowhere (the retry path's CPU up to the send is Celery's).
    chain_end.apply_async = lambda *_, **__: None  # type: ignore[method-assign]
    print(f"CPU ms a task, in Celery's tracer ({args.tasks} tasks a round):")
    for n in range(1, args.rounds + 1):
        (ignore, ignored), (end, ended), (retry, retried) = (run(how, args.tasks) for how in HOW)
        print(f"  round {n}: raise Ignore {ignore:.3f}, StepTask.end {end:.3f} ({ignore / end:.0f}x), "
              f"a retry (raise Retry) {retry:.3f}")
    print(f"Celery's states: raise Ignore {ignored}, StepTask.end {ended}, a retry {retried}")


if __name__ == "__main__":
    main()
