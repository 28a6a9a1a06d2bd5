"""Task routing and per-queue time limits, both derived from the topology."""

from __future__ import annotations

from typing import Any

from orders.topology import QUEUES_BY_NAME, SERVICE_QUEUES, QueueSpec, queues_for_task


def route_task(name: str, args: Any, kwargs: Any, options: dict[str, Any],
               task: Any = None, **_: Any) -> dict[str, Any] | None:
    """Celery router: a task runs on its service's queue unless the caller chose one."""
    if options.get("queue"):
        return None
    service = name.split(".", 1)[0]
    queue = SERVICE_QUEUES.get(service)
    return {"queue": queue} if queue else None


class TimeLimitsFromTopology:
    """Celery task annotation: each task's time limits come from its queues' visibility timeouts."""

    def annotate(self, task: Any) -> dict[str, int] | None:
        try:
            specs = task_queues(task.name, getattr(task, "queue", None))
        except KeyError:
            return None
        if getattr(task, "time_limit", None):
            return None  # the task's own limit stands; the start-up check holds it to the queue
        limit = min(spec.task_time_limit for spec in specs)
        return {"time_limit": limit, "soft_time_limit": limit - 10}


def task_queues(name: str, explicit: str | None = None) -> list[QueueSpec]:
    """The queues a task may run on: the one it names, or its service's and those it is also sent to."""
    return [QUEUES_BY_NAME[explicit]] if explicit else queues_for_task(name)


def time_limit_problems(tasks: dict[str, Any]) -> list[str]:
    """Every registered task whose time limit does not fit in its queue's visibility timeout."""
    problems = []
    for name, task in tasks.items():
        if name.startswith("celery."):
            continue
        explicit = getattr(task, "queue", None)
        if explicit and explicit not in QUEUES_BY_NAME:
            problems.append(f"task {name!r} names queue {explicit!r}, which is not declared")
            continue
        try:
            specs = task_queues(name, explicit)
        except KeyError:
            # Celery would silently send it to the default queue with no time limit.
            problems.append(f"task {name!r}: its name starts with no known service, so it routes "
                            f"to no declared queue (services: {', '.join(sorted(SERVICE_QUEUES))})")
            continue
        limit = task.time_limit
        spec = min(specs, key=lambda s: s.visibility_timeout)
        if limit is None or limit >= spec.visibility_timeout:
            problems.append(
                f"task {name!r}: time limit {limit} s is not below the visibility timeout "
                f"of {spec.name!r} ({spec.visibility_timeout} s); SQS would hand the message "
                "to a second worker while the first still runs it")
    return problems


def unknown_queues(names: list[str]) -> list[str]:
    return [n for n in names if n not in QUEUES_BY_NAME]
