"""What beat's `ops.sample_queues` measures: each queue's backlog, its utilisation, and its backlog
per running worker task, the metric its ECS service's target tracking scales on."""

from __future__ import annotations

from collections.abc import Mapping

from orders.aws import clients, ecs
from orders.runtime.queue_urls import queue_url
from orders.settings import Settings
from orders.topology import QUEUES, SERVICE_LEVELS, cluster_name, worker_name


def waiting(settings: Settings) -> dict[str, int]:
    """Visible messages by queue (ApproximateNumberOfMessages)."""
    sqs = clients.client("sqs", settings)
    return {spec.name: int(sqs.get_queue_attributes(
        QueueUrl=queue_url(settings, spec.name), AttributeNames=["ApproximateNumberOfMessages"],
    )["Attributes"]["ApproximateNumberOfMessages"]) for spec in QUEUES}


def utilisation(backlog: Mapping[str, int]) -> dict[str, float]:
    """Messages waiting as a share (%) of the backlog each queue drains within its latency target."""
    return {name: round(100 * n / SERVICE_LEVELS[name].backlog_limit, 2) for name, n in backlog.items()}


def backlog_per_task(settings: Settings, backlog: Mapping[str, int]) -> dict[str, float]:
    """Visible messages per running task, for each queue whose workers are an ECS service.

    AWS's pattern for SQS workers. A service with no running task counts as one, so that a
    backlog still asks for tasks rather than dividing by zero; a queue with no service (on
    Lambda, docker-compose, the emulator without the stack) gets no value at all, since no
    scaling policy reads one and a made-up task count would only mislead a dashboard.
    """
    services = {worker_name(settings, name): name for name in backlog}
    running = ecs.running_tasks(settings, cluster_name(settings), services)
    return {services[name]: backlog[services[name]] / max(count, 1) for name, count in running.items()}
