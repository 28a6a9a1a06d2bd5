"""ECS: how many tasks the environment's worker services run (the divisor of BacklogPerTask)."""

from __future__ import annotations

from collections.abc import Collection

from botocore.exceptions import ClientError

from orders.aws import clients
from orders.settings import Settings

#: DescribeServices takes at most this many services per call.
DESCRIBE_LIMIT = 10


def running_tasks(settings: Settings, cluster: str, services: Collection[str]) -> dict[str, int]:
    """Running tasks by service name, for the services of `cluster` that exist and are active.

    A service that does not exist is absent (its queue runs elsewhere: on Lambda, on another
    platform); no cluster at all (docker-compose, the emulator without the stack) gives {}.
    """
    ecs, names, running = clients.client("ecs", settings), sorted(services), {}
    for start in range(0, len(names), DESCRIBE_LIMIT):
        try:
            answer = ecs.describe_services(cluster=cluster, services=names[start:start + DESCRIBE_LIMIT])
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ClusterNotFoundException":
                return {}
            raise
        running.update({s["serviceName"]: int(s.get("runningCount", 0)) for s in answer.get("services", [])
                        if s.get("status") == "ACTIVE"})
    return running
