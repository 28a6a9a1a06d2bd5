"""The one place botocore errors are classified onto the domain's hierarchy (retryable or permanent), and
the one backoff every retry of a retryable error waits by (a task's, a batch entry's).

An outage of an AWS service reaches a client as one of: an error code that says
throttling, a 5xx status (with any code, or none: a load balancer's answer), a 429,
or no answer at all (refused or reset connections, timeouts). Each is retryable.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    HTTPClientError,
    ReadTimeoutError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from orders.domain.errors import FailureCategory, OrderError, PermanentError, RetryableError

RETRYABLE_AWS_CODES = frozenset({
    "Throttling", "ThrottlingException", "ThrottledException", "Throttled", "RequestThrottled",
    "RequestThrottledException", "TooManyRequestsException", "ProvisionedThroughputExceededException",
    "RequestLimitExceeded", "BandwidthLimitExceeded", "TransactionInProgressException", "InternalError",
    "InternalFailure", "InternalServerError", "ServiceUnavailable", "ServiceUnavailableException",
    "KMSThrottlingException", "KMSThrottling", "KmsThrottled", "RequestTimeout", "RequestTimeoutException",
    "PriorRequestNotComplete", "SlowDown", "EC2ThrottledException",
})
#: 429 is throttling whatever its code says (SNS's `Throttled` is one botocore does not retry).
TOO_MANY_REQUESTS = 429

# HTTPClientError: urllib3 gave up mid-request (a reset connection botocore did not name).
_NETWORK_ERRORS = (EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError,
                   ConnectionClosedError, HTTPClientError, ConnectionError, TimeoutError)


def is_retryable_aws_error(exc: BaseException) -> bool:
    """Whether an exception raised by a boto3 call is worth retrying."""
    if isinstance(exc, _NETWORK_ERRORS):
        return True
    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code", "")
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return code in RETRYABLE_AWS_CODES or status >= 500 or status == TOO_MANY_REQUESTS
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


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with equal jitter: retry n waits half to all of min(cap, base * factor^(n-1)).

    Equal rather than full jitter: retries still spread out, and a run of them spans at
    least half its ceilings, so how long an outage they outlast is known in advance.
    """

    base: float
    cap: float
    factor: float = 2.0

    def ceiling(self, attempt: int) -> float:
        """The longest wait before retry number `attempt` (1, 2, ...)."""
        return float(min(self.cap, self.base * self.factor ** min(attempt - 1, 64)))

    def delay(self, attempt: int) -> float:
        """Seconds to wait before retry number `attempt` (1, 2, ...)."""
        ceiling = self.ceiling(attempt)
        return ceiling / 2 + random.uniform(0, ceiling / 2)
