"""Announcements on `system-health`: the DLQ watcher's alerts and automated remediation's actions, one path.

The topic is looked up once per process (orders.aws.sns); while it cannot be (SNS
down), nothing is published and the caller decides what a later pass sends again.
Email and SMS subscriptions of `system-health` have no filter policy: everything
published here reaches them, whatever its `severity`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from orders.aws.sns import publish_entries, topic_arn
from orders.domain.errors import PermanentError, RetryableError
from orders.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Notice:
    """One message for `system-health`: subject, JSON body, the attributes subscriptions filter on."""

    subject: str
    body: dict[str, Any]
    attributes: dict[str, str] = field(default_factory=dict)

    def entry(self) -> dict[str, Any]:
        """The SNS PublishBatch entry (without its id)."""
        # SNS takes a subject of printable ASCII, no line breaks: a task name came from the message.
        subject = "".join(c if " " <= c <= "~" else "?" for c in self.subject)
        return {"Subject": subject[:99], "Message": json.dumps(self.body, default=str),
                "MessageAttributes": {name: {"DataType": "String", "StringValue": value}
                                      for name, value in self.attributes.items()}}


def announce(settings: Settings, notices: Sequence[Notice]) -> list[BaseException | None] | None:
    """Publish the notices on system-health: each one's outcome (None: published), or None for all when
    the topic cannot be looked up now (logged, never raised: a failing pass would dead-letter its task)."""
    if not notices:
        return []
    try:
        topic = topic_arn(settings, "system-health")  # discovered once per process, not every pass
    except PermanentError:
        log.error("no system-health topic: %d notice(s) not sent", len(notices))
        return None
    except RetryableError as exc:
        log.warning("system-health topic not looked up (%s): %d notice(s) not sent", exc, len(notices))
        return None
    return publish_entries(settings, [(topic, n.entry()) for n in notices])


def tell(settings: Settings, notices: Sequence[Notice]) -> list[bool]:
    """Publish the notices, logging each that could not be; whether each was published (a caller
    that must page once marks only those, and tries the others again on its next pass)."""
    outcomes = announce(settings, notices)
    if outcomes is None:  # no topic to publish to now (announce logged it): none was published
        return [False] * len(notices)
    for notice, error in zip(notices, outcomes, strict=True):
        if error is not None:
            log.error("notice not published (%s): %s", notice.subject, error)
    return [error is None for error in outcomes]
