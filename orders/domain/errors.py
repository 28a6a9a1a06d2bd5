"""The error hierarchy: retryable or permanent. botocore errors are mapped onto it in orders.aws.errors.

Each class also says what kind of failure it is once its message is dead-lettered
(`category`): the DLQ tools show and count that, and never guess it again.
"""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar


class FailureCategory(StrEnum):
    """What a failure says about its message: the classification of a dead-lettered message."""

    INVALID_INPUT = "invalid-input"  # the message itself is wrong: a redrive fails the same way
    PERMANENT = "permanent-business-failure"  # the order cannot go on (declined, out of stock)
    TRANSIENT = "transient"  # the world was in the way: a redrive may well succeed
    BUG = "bug"  # nothing says the input or the world was wrong: fix the code, then redrive


class OrderError(Exception):
    """Base of every error the platform raises on purpose."""

    category: ClassVar[FailureCategory] = FailureCategory.BUG


class RetryableError(OrderError):
    """A transient failure: the same call may succeed later (throttling, timeouts, 5xx)."""

    category = FailureCategory.TRANSIENT


class PermanentError(OrderError):
    """A failure that no retry can fix: the order ends and compensation runs."""

    category = FailureCategory.PERMANENT
    reason = "permanent-failure"


class InvalidOrder(PermanentError):
    """The order is malformed; `problems` lists every one of them."""

    category = FailureCategory.INVALID_INPUT
    reason = "invalid-order"

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("invalid order: " + "; ".join(self.problems))


class PaymentDeclined(PermanentError):
    reason = "payment-declined"


class OutOfStock(PermanentError):
    reason = "out-of-stock"


class GatewayUnavailable(RetryableError):
    """The (simulated) payment gateway failed transiently."""


class ConcurrentUpdate(RetryableError):
    """An optimistic-locking write lost a race; re-read and try again."""


class RegionInactive(RetryableError):
    """This process's region is not the active one, or cannot tell (docs/multi-region.md, rule R1): it
    runs no step and writes no order until the switch says it is active again."""
