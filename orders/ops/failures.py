"""What killed a task, as the DLQ tools classify it: one category per exception, from the one hierarchy.

Our own errors declare their category (orders.domain.errors); botocore and network
errors are classified where every botocore error is (orders.aws.errors); the few
Celery and kombu errors a worker meets are in `FRAMEWORK_CATEGORIES`. An exception
none of them claims defers to the one it was raised from, and is a bug when none is.
"""

from __future__ import annotations

from collections.abc import Iterator

from celery.exceptions import (
    MaxRetriesExceededError,
    SoftTimeLimitExceeded,
    TimeLimitExceeded,
    WorkerLostError,
)
from celery.exceptions import TimeoutError as CeleryTimeout
from kombu.exceptions import ContentDisallowed, DecodeError, OperationalError

from orders.aws.errors import failure_category as aws_failure_category
from orders.domain.errors import FailureCategory, OrderError

#: Celery and kombu errors by category, first match wins: a message that cannot be
#: decoded or is not allowed is invalid input; limits, lost workers and broker trouble are transient.
FRAMEWORK_CATEGORIES: tuple[tuple[type[BaseException], FailureCategory], ...] = (
    (DecodeError, FailureCategory.INVALID_INPUT),
    (ContentDisallowed, FailureCategory.INVALID_INPUT),
    (TimeLimitExceeded, FailureCategory.TRANSIENT),
    (SoftTimeLimitExceeded, FailureCategory.TRANSIENT),
    (WorkerLostError, FailureCategory.TRANSIENT),
    (MaxRetriesExceededError, FailureCategory.TRANSIENT),
    (CeleryTimeout, FailureCategory.TRANSIENT),
    (OperationalError, FailureCategory.TRANSIENT),
)


def failure_category(exc: BaseException) -> FailureCategory:
    """The category of a task failure: the first exception of its `raise ... from` chain that has one."""
    for link in causes(exc):
        category = _own_category(link)
        if category is not None:
            return category
    return FailureCategory.BUG


def _own_category(exc: BaseException) -> FailureCategory | None:
    if isinstance(exc, OrderError):
        return exc.category
    for kind, category in FRAMEWORK_CATEGORIES:
        if isinstance(exc, kind):
            return category
    return aws_failure_category(exc)


def causes(exc: BaseException) -> Iterator[BaseException]:
    """The exception, then the one it was raised from, and so on (a cycle is walked once)."""
    seen: set[int] = set()
    link: BaseException | None = exc
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        yield link
        link = link.__cause__


def exception_kinds(exc: BaseException) -> list[str]:
    """The exception's classes, most derived first, as module.Name (kept in the archive for triage)."""
    return [f"{c.__module__}.{c.__qualname__}" for c in type(exc).__mro__ if c not in (object, BaseException)]
