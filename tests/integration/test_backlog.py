"""BacklogPerTask, the metric each queue's ECS service scales on, published by beat's
`ops.sample_queues` from the queues' depths and the services' running tasks (moto's ECS)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import tasks.ops
from orders.aws import clients
from orders.aws.metrics import NAMESPACE
from orders.infra.template import template_dict
from orders.runtime.queue_urls import queue_url
from orders.settings import Settings
from orders.topology import cluster_name, worker_name
from tests.helpers import wait_for, worker


def policy_metric(settings: Settings, queue: str) -> dict[str, Any]:
    """The metric that the template's target-tracking policy for `queue` reads."""
    (metric,) = [spec for spec in (
        r["Properties"]["TargetTrackingScalingPolicyConfiguration"]["CustomizedMetricSpecification"]
        for r in template_dict(settings)["Resources"].values()
        if r["Type"] == "AWS::ApplicationAutoScaling::ScalingPolicy")
        if {"Name": "Queue", "Value": queue} in spec["Dimensions"]]
    return dict(metric)


def read(settings: Settings, name: str, statistic: str, dimensions: list[dict[str, str]]) -> float:
    """The metric's statistic over the last minutes (nan when nothing was published)."""
    now = datetime.now(UTC)
    points = clients.client("cloudwatch", settings).get_metric_statistics(
        Namespace=NAMESPACE, MetricName=name, Dimensions=dimensions, Statistics=[statistic],
        StartTime=now - timedelta(minutes=10), EndTime=now + timedelta(minutes=5), Period=60)["Datapoints"]
    return float(max(p[statistic] for p in points)) if points else math.nan


def backlog_per_task(settings: Settings, queue: str) -> float:
    """BacklogPerTask of a queue, read as its scaling policy reads it."""
    metric = policy_metric(settings, queue)
    assert metric["Namespace"] == NAMESPACE
    return read(settings, metric["MetricName"], metric["Statistic"], metric["Dimensions"])


def utilisation(settings: Settings, queue: str) -> float:
    return read(settings, "QueueUtilisation", "Maximum",
                [{"Name": "Environment", "Value": settings.env}, {"Name": "Queue", "Value": queue}])


def run_workers(settings: Settings, queue: str, running: int) -> None:
    """An ECS service for a queue's workers, named as the template names it, with `running` tasks."""
    ecs = clients.client("ecs", settings)
    task = ecs.register_task_definition(family=f"{settings.prefix}{queue}", containerDefinitions=[
        {"name": "worker", "image": "orders:test", "memory": 512}])["taskDefinition"]["taskDefinitionArn"]
    name = worker_name(settings, queue)
    ecs.create_service(cluster=cluster_name(settings), serviceName=name, taskDefinition=task, desiredCount=1)
    if running:  # moto counts a new service's tasks as pending; an update makes them run
        ecs.update_service(cluster=cluster_name(settings), service=name, desiredCount=running)


def fill(settings: Settings, queue: str, count: int) -> None:
    clients.client("sqs", settings).send_message_batch(
        QueueUrl=queue_url(settings, queue),
        Entries=[{"Id": str(i), "MessageBody": "waiting"} for i in range(count)])


def test_backlog_per_task_is_published_for_each_ecs_service_as_its_policy_reads_it(infra):
    clients.client("ecs", infra).create_cluster(clusterName=cluster_name(infra))
    run_workers(infra, "payments", running=2)
    run_workers(infra, "shipping", running=0)
    fill(infra, "payments", 6)
    fill(infra, "shipping", 3)

    with worker(["orders"]):
        tasks.ops.sample_queues.delay()
        wait_for(lambda: backlog_per_task(infra, "payments") == 3.0, timeout=30)  # 6 waiting, 2 running
    assert backlog_per_task(infra, "shipping") == 3.0  # no task running yet: the backlog counts for one
    assert math.isnan(backlog_per_task(infra, "notifications"))  # no ECS service: nothing published


def test_without_ecs_only_utilisation_is_published(infra):
    fill(infra, "payments", 5)
    with worker(["orders"]):
        tasks.ops.sample_queues.delay()
        # 5 waiting of the 500 that payments drains within its 10 s target at 50/s: 1%.
        wait_for(lambda: utilisation(infra, "payments") == 1.0, timeout=30)
    assert all(math.isnan(backlog_per_task(infra, q)) for q in ("orders", "payments"))
