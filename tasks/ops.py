"""The ops service: periodic DLQ watcher and queue sampling (Celery beat), and the worker hooks
that feed them (failure records, task metrics).

Every worker imports every task module, so the hooks connected here run in every
worker whatever queues it consumes.
"""

from __future__ import annotations

from typing import Any

from celery import signals

from orders.aws import clients, metrics
from orders.celery import app
from orders.ops.watch import on_task_failure, on_task_unknown, watch
from orders.runtime import task_metrics
from orders.runtime.queue_urls import queue_url
from orders.topology import QUEUES, SERVICE_LEVELS

signals.task_failure.connect(on_task_failure, weak=False, dispatch_uid="orders.ops.dead_letters.task_failure")
signals.task_unknown.connect(on_task_unknown, weak=False, dispatch_uid="orders.ops.dead_letters.task_unknown")
task_metrics.connect_task_signals()


@app.task(name="ops.watch_dlqs", ignore_result=True)
def watch_dlqs() -> dict[str, Any]:
    """Archive, classify and alert on every message newly dead-lettered; mark its order failed."""
    arrivals = watch(app.settings)
    return {"new": sum(a.new for a in arrivals),
            "by_queue": {a.letter.queue.name: a.category for a in arrivals}}


@app.task(name="ops.sample_queues", ignore_result=True)
def sample_queues() -> dict[str, float]:
    """Queue utilisation: messages waiting as a share (%) of the backlog each queue drains on time."""
    settings = app.settings
    sqs = clients.client("sqs", settings)
    utilisation = {}
    for spec in QUEUES:
        attrs = sqs.get_queue_attributes(QueueUrl=queue_url(settings, spec.name),
                                         AttributeNames=["ApproximateNumberOfMessages"])["Attributes"]
        limit = SERVICE_LEVELS[spec.name].backlog_limit
        utilisation[spec.name] = round(100 * int(attrs["ApproximateNumberOfMessages"]) / limit, 2)
        metrics.amount("QueueUtilisation", utilisation[spec.name], "Percent", Queue=spec.name)
    metrics.flush()
    return utilisation
