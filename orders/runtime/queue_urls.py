"""Queue URLs for kombu's `predefined_queues`, discovered on first use, never hard-coded.

Account ids differ between emulators and AWS, so URLs are looked up with
GetQueueUrl (one call per queue, once per process). With predefined queues,
kombu never lists or creates queues: a worker needs only the rights to get a
queue's URL, receive, delete and change visibility.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from typing import Any

from orders.aws import clients
from orders.settings import ConfigurationError, Settings
from orders.topology import QUEUES, QUEUES_BY_NAME, queue_for_task


class QueueUrls(Mapping[str, dict[str, Any]]):
    """Celery queue name -> {'url', 'backoff_policy', ...}, resolved lazily for every queue at once."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._urls: dict[str, dict[str, Any]] | None = None
        self._dlqs: dict[str, str] = {}
        self._lock = threading.Lock()

    def resolve(self) -> None:
        """Look every queue up now rather than on first use (start-up checks call this)."""
        self._resolved()

    def _resolved(self) -> dict[str, dict[str, Any]]:
        if self._urls is None:
            with self._lock:
                if self._urls is None:
                    self._urls = resolve_queue_urls(self.settings)
        return self._urls

    def dlq(self, name: str) -> str:
        """The URL of queue `name`'s DLQ, looked up on first use: not with the queues (kombu does not
        consume DLQs, and a worker only ever needs its own queues')."""
        url = self._dlqs.get(name)
        if url is None:
            spec = QUEUES_BY_NAME.get(name)
            if spec is None:
                raise LookupError(f"queue {name} is not in the topology: no DLQ known")
            sqs = clients.client("sqs", self.settings)
            url = str(sqs.get_queue_url(QueueName=spec.dlq_sqs_name(self.settings))["QueueUrl"])
            self._dlqs[name] = url
        return url

    def __getitem__(self, name: str) -> dict[str, Any]:
        return self._resolved()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._resolved())

    def __len__(self) -> int:
        return len(QUEUES)

    def __bool__(self) -> bool:
        return True  # kombu tests truthiness to choose predefined mode; don't resolve for it

    def __repr__(self) -> str:
        return f"QueueUrls(env={self.settings.env!r}, resolved={self._urls is not None})"


class TasksOf:
    """Every task name that routes to one queue (kombu asks `task in backoff_tasks`)."""

    def __init__(self, queue: str):
        self.queue = queue

    def __contains__(self, task_name: object) -> bool:
        try:
            return isinstance(task_name, str) and queue_for_task(task_name).name == self.queue
        except KeyError:
            return False

    def __bool__(self) -> bool:
        return True

    def __repr__(self) -> str:
        return f"TasksOf({self.queue!r})"


def resolve_queue_urls(settings: Settings) -> dict[str, dict[str, Any]]:
    """Look every declared queue up; a missing one is a clear configuration error."""
    sqs = clients.client("sqs", settings)
    missing, urls = [], {}
    for spec in QUEUES:
        try:
            url = sqs.get_queue_url(QueueName=spec.sqs_name(settings))["QueueUrl"]
        except sqs.exceptions.QueueDoesNotExist:
            missing.append(spec.sqs_name(settings))
            continue
        urls[spec.name] = {
            "url": url,
            # kombu hides a rejected message for backoff_policy[receive count] seconds.
            "backoff_policy": spec.failure_backoff(settings.failure_backoff_seconds),
            "backoff_tasks": TasksOf(spec.name),
        }
    if missing:
        raise ConfigurationError(
            f"SQS queues missing: {', '.join(missing)}. "
            "Create them with `orders infra up` (same ORDERS_ENV and endpoint)."
        )
    return urls


def queue_url(settings: Settings, name: str) -> str:
    """The URL of one declared queue by its Celery name (cached per process)."""
    return queue_urls(settings)[name]["url"]


def dlq_url(settings: Settings, name: str) -> str:
    """The URL of a declared queue's DLQ, by the queue's Celery name (cached per process)."""
    return queue_urls(settings).dlq(name)


#: Keyed by the whole Settings, credentials included, as the producer pools are
#: (orders.runtime.amqp): a map resolves with the settings that made it, so a caller
#: would otherwise look its URLs up with another caller's AWS key (one whose role may
#: not be allowed GetQueueUrl, or of another account, whose queues have other URLs)
#: and take another's failure backoff policy with them.
_caches: dict[Settings, QueueUrls] = {}


def queue_urls(settings: Settings) -> QueueUrls:
    """The shared, lazily resolved map of these settings' queue URLs."""
    found = _caches.get(settings)
    # setdefault is atomic: threads racing here share one map (an unused one resolves nothing).
    return found if found is not None else _caches.setdefault(settings, QueueUrls(settings))
