"""The campaign's own AWS calls, made through the faults it injects: patient, never fatal.

The emulator's faults hit every caller, the campaign too: placing an order,
reading the order store, sending poison. Throttling and 5xx are retried by
botocore already; an outage outlasts that, so these calls wait it out (bounded).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from botocore.exceptions import BotoCoreError, ClientError

from orders.aws.errors import is_retryable_aws_error
from orders.domain.errors import RetryableError
from orders.harness.runner import OrderReader, place_order_delay

logger = logging.getLogger(__name__)

T = TypeVar("T")
#: The longest a campaign's own call waits for AWS to come back (longer than any outage asked for).
PATIENCE_SECONDS = 900.0
BACKOFF_CAP_SECONDS = 10.0


def transient(exc: BaseException) -> bool:
    """Whether an error of a call is AWS's or the network's, so worth waiting out."""
    return isinstance(exc, RetryableError) or is_retryable_aws_error(exc)


def patient(call: Callable[[], T], bound: float = PATIENCE_SECONDS,
            stop: threading.Event | None = None) -> T:
    """`call()`, again after each transient error (backoff with jitter) for up to `bound` seconds,
    or until `stop` is set (the campaign is interrupted: the error is raised at once)."""
    deadline, attempt, stop = time.monotonic() + bound, 0, stop or threading.Event()
    while True:
        try:
            return call()
        except (RetryableError, ClientError, BotoCoreError) as exc:
            attempt += 1
            if not transient(exc) or time.monotonic() > deadline or stop.is_set():
                raise
            stop.wait(random.uniform(0, min(BACKOFF_CAP_SECONDS, 0.2 * 2 ** attempt)))


def patient_place(order: dict[str, Any], stop: threading.Event | None = None) -> Any:
    """`place_order.delay(order)`, waiting out an outage (InvalidOrder is raised at once)."""
    return patient(lambda: place_order_delay(order), stop=stop)


class PatientReader(OrderReader):
    """The run's reader of the order store; a read that fails transiently reads nothing this time."""

    def get_many(self, order_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        try:
            return super().get_many(order_ids)
        except (RetryableError, ClientError, BotoCoreError) as exc:
            if not transient(exc):
                raise
            logger.info("order store unavailable (%s): polled again later", type(exc).__name__)
            return {}
