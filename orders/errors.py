"""The error hierarchy: retryable or permanent, and the one place botocore errors are classified."""

from __future__ import annotations

from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)


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


RETRYABLE_AWS_CODES = frozenset({
    "Throttling", "ThrottlingException", "ThrottledException", "RequestThrottled",
    "RequestThrottledException", "TooManyRequestsException", "ProvisionedThroughputExceededException",
    "RequestLimitExceeded", "TransactionInProgressException", "InternalError",
    "InternalFailure", "ServiceUnavailable", "ServiceUnavailableException",
    "KMSThrottlingException", "RequestTimeout", "RequestTimeoutException",
    "PriorRequestNotComplete", "SlowDown", "EC2ThrottledException",
})

_NETWORK_ERRORS = (EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError,
                   ConnectionClosedError, ConnectionError, TimeoutError)


def is_retryable_aws_error(exc: BaseException) -> bool:
    """Whether an exception raised by a boto3 call is worth retrying."""
    if isinstance(exc, _NETWORK_ERRORS):
        return True
    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code", "")
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return code in RETRYABLE_AWS_CODES or status >= 500
    return False


def classify_aws_error(exc: BaseException) -> OrderError:
    """Map a botocore error onto our hierarchy (keeping the original as the cause)."""
    kind = RetryableError if is_retryable_aws_error(exc) else PermanentError
    err = kind(f"AWS call failed: {exc}")
    err.__cause__ = exc
    return err
