"""The ops service: periodic DLQ watcher with automated redrive, stuck-order sweeper and queue sampling
(Celery beat), and the worker hooks that feed them (failure records, task metrics).

Every worker imports every task module, so the hooks connected here run in every
worker whatever queues it consumes.
"""

from __future__ import annotations

from typing import Any, cast

from celery import chain, signals

from orders.aws import metrics
from orders.celery import app
from orders.domain.records import OrderRecord
from orders.domain.states import Step
from orders.ops import sampling
from orders.ops.adoption import adopt_after_flip
from orders.ops.remediation import auto_redrive
from orders.ops.sweeper import Resume, sweep
from orders.ops.watch import on_task_failure, on_task_unknown, watch
from orders.runtime import pipeline, task_metrics
from orders.settings import Settings

signals.task_failure.connect(on_task_failure, weak=False, dispatch_uid="orders.ops.dead_letters.task_failure")
signals.task_unknown.connect(on_task_unknown, weak=False, dispatch_uid="orders.ops.dead_letters.task_unknown")
task_metrics.connect_task_signals()


@app.task(name="ops.watch_dlqs", ignore_result=True)
def watch_dlqs() -> dict[str, Any]:
    """Archive, classify and alert on every message newly dead-lettered; mark its order failed; then
    redrive the transient ones that are due (ORDERS_AUTO_REDRIVE)."""
    arrivals = watch(app.settings)
    actions = auto_redrive(app.settings)
    return {"new": sum(a.new for a in arrivals),
            "by_queue": {a.letter.queue.name: a.category for a in arrivals},
            "auto_redrives": {a.letter.message_id: a.outcome for a in actions}}


@app.task(name="ops.sweep_stuck", ignore_result=True)
def sweep_stuck() -> dict[str, str]:
    """Resume (or fail) the orders resting longer than their step allows (ORDERS_SWEEP_STUCK)."""
    return {s.record.order_id: s.action for s in sweep(app.settings, resume)}


def resume(record: OrderRecord, step: Step) -> None:
    """Send `step`'s task for the order again, with the rest of its pipeline after it."""
    pipeline.resume(app, record, step).apply_async()


@app.task(name="ops.adopt_in_flight", ignore_result=True)
def adopt_in_flight() -> dict[str, str]:
    """Multi-region: resume here the orders in flight in the region switched away from
    (orders.ops.adoption)."""
    return {a.record.order_id: a.action for a in adopt_after_flip(app.settings, resume)}


@app.task(name="ops.sample_queues", ignore_result=True)
def sample_queues() -> dict[str, dict[str, float]]:
    """Per queue, QueueUtilisation and (for a queue whose workers are an ECS service) BacklogPerTask."""
    settings = app.settings
    try:
        backlog = sampling.waiting(settings)
        used = sampling.utilisation(backlog)
        for name, percent in used.items():
            metrics.amount("QueueUtilisation", percent, "Percent", Queue=name)
        per_task = sampling.backlog_per_task(settings, backlog)
        for name, messages in per_task.items():
            metrics.amount("BacklogPerTask", messages, "Count", Queue=name)
    finally:
        metrics.flush()
    return {"utilisation": used, "backlog_per_task": per_task}


def resumer(settings: Settings) -> Resume:
    """`resume` into `settings`' region, whatever this app is configured for (a failover adopts orders
    into the region it switched to: orders.ops.adoption)."""
    def resume_there(record: OrderRecord, step: Step) -> None:
        canvas = pipeline.resume(app, record, step)
        with app.producer_pool_for(settings).acquire(block=True) as producer:
            # A chain's apply_async would drop the producer (pipeline.send keeps it); Celery's
            # chain() returns its private _chain class, so the signature's own type says which.
            if canvas.subtask_type == "chain":
                pipeline.send(cast(chain, canvas), producer)
            else:
                canvas.apply_async(producer=producer)
    return resume_there
