"""The error hierarchy: retryable or permanent. botocore errors are mapped onto it in orders.aws.errors."""

from __future__ import annotations


class OrderError(Exception):
    """Base of every error the platform raises on purpose."""


class RetryableError(OrderError):
    """A transient failure: the same call may succeed later (throttling, timeouts, 5xx)."""


class PermanentError(OrderError):
    """A failure that no retry can fix: the order ends and compensation runs."""

    reason = "permanent-failure"


class InvalidOrder(PermanentError):
    """The order is malformed; `problems` lists every one of them."""

    reason = "invalid-order"

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("invalid order: " + "; ".join(self.problems))


class PaymentDeclined(PermanentError):
    reason = "payment-declined"


class OutOfStock(PermanentError):
    reason = "out-of-stock"


class ReservationExpired(PermanentError):
    reason = "reservation-expired"


class GatewayUnavailable(RetryableError):
    """The (simulated) payment gateway failed transiently."""


class ConcurrentUpdate(RetryableError):
    """An optimistic-locking write lost a race; re-read and try again."""
