"""Domain events out to SNS from a Celery process: the publisher wired with the Celery rendering
of customer events for the notifications queue.

Callers use `publish(settings, events)` from here (not orders.aws.sns directly).
"""

from __future__ import annotations

from collections.abc import Sequence

from orders.aws import sns
from orders.domain.events import Event
from orders.settings import Settings


def publish(settings: Settings, events: Sequence[Event]) -> None:
    """Publish events through the one SNS publishing path."""
    sns.publish(settings, events)
