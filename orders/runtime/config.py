"""Celery's settings as a function of our Settings: celeryconfig.py and the tests both use it."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlsplit

from kombu import Queue

from orders.runtime.queue_urls import queue_urls
from orders.runtime.routing import TimeLimitsFromTopology, route_task
from orders.settings import Settings
from orders.topology import QUEUES


def celery_settings(settings: Settings) -> dict[str, Any]:
    """Every Celery setting the platform uses (lowercase names, as celeryconfig takes them)."""
    return {
        "broker_url": broker_url(settings),
        "broker_connection_retry_on_startup": True,
        "broker_transport_options": transport_options(settings),
        "task_queues": [Queue(q.name, routing_key=q.name) for q in QUEUES],
        "task_default_queue": "orders",
        "task_create_missing_queues": False,
        "task_routes": (route_task,),
        "task_annotations": (TimeLimitsFromTopology(),),
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_backend": None,
        "task_ignore_result": True,
        # Never on: a redelivered step that ended its order's chain (StepTask.end, which empties the
        # running request's chain) would be taken for done, and its message's chain sent on.
        "worker_deduplicate_successful_tasks": False,
        # A message is deleted only after its task finished; a failing or lost
        # task leaves it for SQS to redeliver and, after maxReceiveCount, to its DLQ.
        "task_acks_late": True,
        "task_acks_on_failure": False,
        "task_acks_on_timeout": False,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": settings.prefetch_multiplier,
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        # SQS has no fanout: remote control, gossip and mingle would only time out.
        # The control plane (orders.runtime.control_plane) brings events and remote
        # control back over Redis (ORDERS_CONTROL_URL), never adding an SQS call.
        "worker_enable_remote_control": False,
        "orders_control_url": settings.control_url,
        "orders_control_prefix": settings.prefix,  # environments sharing one Redis stay apart
        "worker_consumer": "orders.runtime.control_plane_worker:Consumer",
        "worker_send_task_events": bool(settings.control_url),
        "task_send_sent_event": bool(settings.control_url),
        "worker_hijack_root_logger": False,
        "timezone": "UTC",
        "enable_utc": True,
        "beat_schedule": beat_schedule(settings),
    }


#: How often the active region looks for orders in flight elsewhere after a flip (orders.ops.adoption).
ADOPT_SECONDS = 15.0


def beat_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    """Periodic tasks run by `celery -A orders beat` (one beat per environment)."""
    return {
        # DLQ triage: archive, alert and count each new dead-lettered message (tasks/ops.py).
        # A run not started within an interval (30 s at least) is dropped: the next one does its work.
        "watch-dlqs": {"task": "ops.watch_dlqs", "schedule": settings.dlq_watch_seconds,
                       "options": {"expires": max(settings.dlq_watch_seconds, 30)}},
        "sample-queues": {"task": "ops.sample_queues", "schedule": settings.dlq_watch_seconds,
                          "options": {"expires": max(settings.dlq_watch_seconds, 30)}},
        # Orders resting longer than their step allows: resumed or failed (tasks/ops.py).
        "sweep-stuck": {"task": "ops.sweep_stuck", "schedule": settings.sweep_stuck_seconds,
                        "options": {"expires": max(settings.sweep_stuck_seconds, 30)}},
        # Stock held by reservations that expired is given back (tasks/inventory.py); its
        # own FIFO group keeps the sweep from waiting behind any product's messages.
        "release-expired-holds": {"task": "inventory.release_expired",
                                  "schedule": settings.reservation_sweep_seconds,
                                  "options": {"MessageGroupId": "inventory-sweep"}},
    } | (adoption_schedule() if settings.switched else {})


def adoption_schedule() -> dict[str, dict[str, Any]]:
    """With a switch (several regions): orders in flight in the region switched away from, resumed here once
    their records have replicated (orders.ops.adoption); nothing to do, and no read, far from a flip."""
    return {"adopt-in-flight": {"task": "ops.adopt_in_flight", "schedule": ADOPT_SECONDS,
                                "options": {"expires": ADOPT_SECONDS}}}


def broker_url(settings: Settings) -> str:
    """Our SQS transport (orders.runtime.transport); kombu's stock one if asked (ORDERS_STOCK_TRANSPORT=1).

    Ours whether it batches or not (ORDERS_BATCH_ACKS): the poison guard and the heartbeat
    are not optional.
    """
    if settings.stock_transport:
        return stock_broker_url(settings)
    from orders.runtime.transport import SCHEME  # importing it registers the scheme with kombu

    return f"{SCHEME}://"  # it makes its clients from `orders_settings` (transport_options)


def stock_broker_url(settings: Settings) -> str:
    """kombu's stock SQS URL: it learns an endpoint and static credentials from the URL alone.

    No host: AWS's endpoint for the region; no credentials: AWS's credential chain.
    """
    endpoint = settings.endpoint_for("SQS")
    host = urlsplit(endpoint).netloc if endpoint else ""
    if settings.access_key_id and settings.secret_access_key:
        key, secret = quote(settings.access_key_id, safe=""), quote(settings.secret_access_key, safe="")
        return f"sqs://{key}:{secret}@{host}"
    return f"sqs://@{host}" if host else "sqs://"


def receive_batch_waits(settings: Settings) -> dict[str, float]:
    """The queues whose receive wait is not `receive_batch_wait`: those off the orders' path."""
    return {q.name: settings.off_path_receive_wait for q in QUEUES if q.off_order_path}


def transport_options(settings: Settings) -> dict[str, Any]:
    """kombu SQS transport options: predefined queues, long polling, no capped polling."""
    endpoint = settings.endpoint_for("SQS")
    return {
        "region": settings.region,
        # kombu's stock transport: a host in the URL means plain HTTP unless told otherwise.
        "is_secure": urlsplit(endpoint).scheme == "https" if endpoint else None,
        # Endpoints come from the settings alone, never from a profile or the process's variables.
        "client-config": {"ignore_configured_endpoint_urls": True},
        # Predefined queues: kombu never lists or creates queues.
        "predefined_queues": queue_urls(settings),
        # Long polling: an idle worker makes one ReceiveMessage per 20 s per queue.
        "wait_time_seconds": settings.wait_time_seconds,
        # kombu's default of 1 s is slept whenever prefetch is full, which caps
        # a busy worker near its prefetch count per second.
        "polling_interval": settings.polling_interval,
        # No `visibility_timeout`: kombu uses it only for queues it creates, and these are predefined.
        "fetch_message_attributes": {
            "MessageSystemAttributeNames": ["ApproximateReceiveCount", "SentTimestamp"],
        },
        # orders.runtime.transport only (kombu's stock transport ignores them).
        # Receives hide a message for `receive_visibility` s, extended while the worker holds it.
        "receive_visibility": settings.receive_visibility,
        "batch_acks": settings.batch_acks,
        "batch_sends": settings.batch_acks,
        "ack_linger": settings.ack_linger,
        "send_linger": settings.send_linger,
        "receive_batch_wait": settings.receive_batch_wait,
        "receive_batch_waits": receive_batch_waits(settings),
        # The settings themselves, for orders.runtime.transport's clients: a connection made
        # for one environment reaches that environment, whatever else the process serves.
        "orders_settings": settings,
    }
