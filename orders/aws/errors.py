"""The one place botocore errors are classified onto the domain's hierarchy: retryable or permanent."""

from __future__ import annotations

from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from orders.domain.errors import FailureCategory, OrderError, PermanentError, RetryableError

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


def failure_category(exc: BaseException) -> FailureCategory | None:
    """The category of a dead-lettered task that died of this AWS or network error; None if it is not one.

    Every connection failure counts as transient, SSL and proxy ones included: they
    are not retried on the spot, but a redrive once the network is back may succeed.
    """
    if is_retryable_aws_error(exc) or isinstance(exc, BotoConnectionError):
        return FailureCategory.TRANSIENT
    return None
