"""How a receive's answer is read (kombu's HTTP responses, botocore's parser) and how failed receives are
backed off and logged; the worker's side is tests/integration/test_receive_faults.py."""

from __future__ import annotations

import json
import logging
from io import BytesIO
from typing import Any

import boto3
import pytest
from kombu.asynchronous.aws.connection import AsyncHTTPResponse
from kombu.asynchronous.http.base import Headers, Request, Response, normalize_header  # type: ignore[attr-defined]
from kombu.exceptions import HttpError

from orders.runtime.async_sqs import AsyncSQSConnection, FailedReceive, MalformedAnswer, ReceiveErrors

THROTTLED = (400, {"__type": "com.amazonaws.sqs#RequestThrottled", "message": "Rate exceeded"},
             {"x-amzn-query-error": "RequestThrottled;Sender"})
GONE = (400, {"__type": "com.amazonaws.sqs#QueueDoesNotExist", "message": "The queue does not exist."},
        {"x-amzn-query-error": "AWS.SimpleQueueService.NonExistentQueue;Sender"})
DENIED: tuple[int, dict[str, str], dict[str, str]] = (
    400, {"__type": "com.amazonaws.sqs#AccessDenied", "message": "no"}, {})


@pytest.fixture(scope="module")
def connection() -> AsyncSQSConnection:
    """Our async connection over a real (never called) boto3 SQS client; no event loop needed to read."""
    sqs = boto3.session.Session(aws_access_key_id="k", aws_secret_access_key="s").client(
        "sqs", region_name="us-east-1", endpoint_url="http://127.0.0.1:1")
    return AsyncSQSConnection(sqs_connection=sqs, http_client=object())


def answer(status: int, body: Any = b"", headers: dict[str, str] | None = None,
           error: HttpError | None = None) -> AsyncHTTPResponse:
    """An HTTP answer as kombu's curl client hands it over (capitalized header names)."""
    raw = json.dumps(body).encode() if isinstance(body, dict) else body
    capitalized = Headers({normalize_header(k): v for k, v in (headers or {}).items()})
    return AsyncHTTPResponse(Response(Request("http://127.0.0.1:1/q"), status, capitalized,
                                      None if error else BytesIO(raw), error=error))


def receive(connection: AsyncSQSConnection, response: AsyncHTTPResponse) -> Any:
    return connection._on_list_ready(None, [], "ReceiveMessage", response)


def test_an_answer_with_messages_is_read_as_botocore_reads_it(connection: AsyncSQSConnection) -> None:
    body = {"Messages": [{"MessageId": "m", "ReceiptHandle": "h", "Body": "b", "MD5OfBody": "x"}]}
    got = receive(connection, answer(200, body, {"content-type": "application/x-amz-json-1.0"}))
    assert [m["Body"] for m in got["Messages"]] == ["b"]


@pytest.mark.parametrize(("status", "body", "headers", "code", "retryable"), [
    (*THROTTLED, "RequestThrottled", True),
    (500, {"__type": "com.amazonaws.sqs#InternalFailure", "message": "oops"}, {}, "InternalFailure", True),
    (502, b"<html>Bad Gateway</html>", {}, "502", True),  # a load balancer's page: any 5xx
    (429, b"", {}, "429", True),
    (*GONE, "AWS.SimpleQueueService.NonExistentQueue", False),
    (*DENIED, "AccessDenied", False),
])
def test_an_error_answer_is_a_failed_receive_classified_by_its_code_and_status(
        connection: AsyncSQSConnection, status: int, body: Any, headers: dict[str, str], code: str,
        retryable: bool) -> None:
    failed = receive(connection, answer(status, body, headers))
    assert isinstance(failed, FailedReceive)
    assert failed.error.response["Error"]["Code"] == code  # type: ignore[attr-defined]
    assert failed.retryable is retryable


def test_no_answer_or_one_that_does_not_parse_is_a_retryable_failed_receive(
        connection: AsyncSQSConnection) -> None:
    refused = receive(connection, answer(599, error=HttpError(599, "Connection refused")))
    garbled = receive(connection, answer(200, b"{not json"))
    assert isinstance(refused, FailedReceive) and isinstance(refused.error, ConnectionError)
    assert isinstance(garbled, FailedReceive) and isinstance(garbled.error, MalformedAnswer)
    assert refused.retryable and garbled.retryable


def test_failed_receives_back_off_exponentially_to_the_cap_and_an_answer_resets_it() -> None:
    errors, throttled = ReceiveErrors(), FailedReceive(RuntimeError("throttled"), retryable=True)
    waits = []
    for _ in range(10):
        errors.failed("q", throttled)
        waits.append(errors.wait("q"))
    ceilings = [min(5.0, 0.1 * 2 ** n) for n in range(10)]
    assert all(c / 2 <= w <= c for w, c in zip(waits, ceilings, strict=True)), waits  # type: ignore[operator]
    assert errors.wait("q") is None  # a wait is taken once: a loop with no receive does not wait again
    errors.answered("q")
    errors.failed("q", throttled)
    assert errors.wait("q") <= 0.1  # type: ignore[operator]
    assert errors.counts["failed"] == 11


def test_a_permanent_error_waits_the_cap_and_is_logged_as_an_error_even_right_after_a_warning(
        caplog: pytest.LogCaptureFixture) -> None:
    errors = ReceiveErrors()
    with caplog.at_level(logging.INFO, logger="orders.runtime.async_sqs"):
        for _ in range(50):
            errors.failed("q", FailedReceive(RuntimeError("throttled"), retryable=True))
        errors.failed("q", FailedReceive(RuntimeError("denied"), retryable=False))
        errors.failed("q", FailedReceive(RuntimeError("denied"), retryable=False))
    assert errors.wait("q") == 5.0
    assert [r.levelno for r in caplog.records] == [logging.WARNING, logging.ERROR]  # not a line a failure
    assert errors.counts == {"failed": 52, "failed_permanently": 2}
