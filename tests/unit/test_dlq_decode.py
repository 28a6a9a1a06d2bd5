"""Decoding and classifying dead-lettered messages (pure code: no AWS)."""

from __future__ import annotations

import base64
import json

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, SSLError
from celery.exceptions import SoftTimeLimitExceeded, WorkerLostError
from kombu.exceptions import ContentDisallowed, DecodeError, OperationalError

from orders.aws.batching import MAX_ENTRIES
from orders.aws.errors import classify_aws_error
from orders.domain.errors import (
    ConcurrentUpdate,
    FailureCategory,
    GatewayUnavailable,
    InvalidOrder,
    OutOfStock,
    PaymentDeclined,
)
from orders.ops.dead_letters import batches, classify, decode, find_order_id, queue_spec
from orders.ops.failures import exception_kinds, failure_category
from orders.topology import QUEUES_BY_NAME

PAYMENTS = QUEUES_BY_NAME["payments"]
INVALID_INPUT, PERMANENT = FailureCategory.INVALID_INPUT, FailureCategory.PERMANENT
TRANSIENT, BUG = FailureCategory.TRANSIENT, FailureCategory.BUG


def b64(value: object) -> str:
    return base64.b64encode(json.dumps(value).encode()).decode()


def kombu_message(body: str, message_id: str = "m-1") -> dict:
    return {"MessageId": message_id, "ReceiptHandle": "r", "Body": body, "MD5OfBody": "abc",
            "Attributes": {"ApproximateReceiveCount": "6", "SentTimestamp": "1700000000000"}}


def celery_body(task: str, args: list, kwargs: dict, base64_outer: bool = True) -> str:
    envelope = {"body": b64([args, kwargs, {"callbacks": None}]), "content-type": "application/json",
                "headers": {"task": task, "id": "task-42", "retries": 0},
                "properties": {"body_encoding": "base64"}}
    return b64(envelope) if base64_outer else json.dumps(envelope)


@pytest.mark.parametrize("outer", [True, False])
def test_decodes_a_celery_protocol_2_message(outer):
    body = celery_body("payments.charge", [{"orderId": "ord-7", "items": []}], {"attempt": 2}, outer)
    letter = decode(PAYMENTS, kombu_message(body))
    assert (letter.task, letter.task_id, letter.order_id) == ("payments.charge", "task-42", "ord-7")
    assert letter.kwargs == {"attempt": 2} and letter.key == "task-42"
    assert letter.receive_count == 6 and letter.sent_at == 1_700_000_000
    assert letter.decode_error is None


def test_an_undecodable_body_is_kept_and_keyed_by_its_digest():
    letter = decode(PAYMENTS, kombu_message("<xml/>"))
    assert letter.decode_error and letter.body == "<xml/>" and letter.key == "md5-abc"
    assert classify(letter, None)[0] == INVALID_INPUT


def test_json_that_is_not_a_celery_message_is_invalid_input():
    letter = decode(PAYMENTS, kombu_message(json.dumps({"hello": "world"})))
    assert letter.decode_error and letter.task is None


@pytest.mark.parametrize("args, kwargs, expected", [
    ([], {"order_id": "ord-1"}, "ord-1"),
    ([{"orderId": "ord-2"}], {}, "ord-2"),
    ([{"order": {"orderId": "ord-3"}}], {}, "ord-3"),
    (["ord-4", 10], {}, "ord-4"),
    ([10], {}, None),
])
def test_finds_the_order_id(args, kwargs, expected):
    assert find_order_id(args, kwargs) == expected


@pytest.mark.parametrize("exc, category", [
    (InvalidOrder(["total is negative"]), INVALID_INPUT),
    (PaymentDeclined("card declined"), PERMANENT),
    (GatewayUnavailable("timeout"), TRANSIENT),
    (TimeoutError("read timed out"), TRANSIENT),
    (ZeroDivisionError("oops"), BUG),
    (KeyError("sku"), BUG),
])
def test_classifies_failures_by_exception_class(exc, category):
    assert failure_category(exc) == category


def client_error(code: str, status: int = 400) -> ClientError:
    return ClientError({"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "PutItem")


def chained(exc: BaseException, cause: BaseException) -> BaseException:
    exc.__cause__ = cause
    return exc


@pytest.mark.parametrize("exc, category", [
    (OutOfStock("SKU-1"), PERMANENT),
    (ConcurrentUpdate("lost a race"), TRANSIENT),
    (DecodeError("bad json"), INVALID_INPUT),
    (ContentDisallowed("pickle"), INVALID_INPUT),
    (SoftTimeLimitExceeded(), TRANSIENT),
    (WorkerLostError("killed"), TRANSIENT),
    (OperationalError("broker down"), TRANSIENT),
    (client_error("ThrottlingException"), TRANSIENT),
    (client_error("InternalError", 500), TRANSIENT),
    (EndpointConnectionError(endpoint_url="http://x"), TRANSIENT),
    (SSLError(endpoint_url="http://x", error="handshake"), TRANSIENT),
    (ConnectionResetError("reset"), TRANSIENT),
    (client_error("AccessDeniedException"), BUG),  # unwrapped: aws_errors() was forgotten
    (classify_aws_error(client_error("AccessDeniedException")), PERMANENT),
    (classify_aws_error(client_error("ThrottlingException")), TRANSIENT),
    (chained(RuntimeError("gave up"), GatewayUnavailable("timeout")), TRANSIENT),
    (chained(RuntimeError("gave up"), chained(KeyError("x"), InvalidOrder(["bad"]))), INVALID_INPUT),
    (chained(PaymentDeclined("no"), TimeoutError("slow")), PERMANENT),  # its own category first
    (chained(ValueError("x"), ZeroDivisionError("y")), BUG),
])
def test_the_category_comes_from_the_exception_or_what_it_was_raised_from(exc, category):
    assert failure_category(exc) == category


def test_a_cause_cycle_is_walked_once():
    a, b = ValueError("a"), KeyError("b")
    a.__cause__, b.__cause__ = b, a
    assert failure_category(a) == BUG


def test_kinds_name_every_class_most_derived_first():
    assert exception_kinds(InvalidOrder(["x"])) == [
        "orders.domain.errors.InvalidOrder", "orders.domain.errors.PermanentError",
        "orders.domain.errors.OrderError", "builtins.Exception"]


def test_a_message_that_never_failed_visibly_is_transient():
    letter = decode(PAYMENTS, kombu_message(celery_body("payments.charge", ["ord-1"], {})))
    assert classify(letter, None)[0] == TRANSIENT
    recorded = {"category": BUG, "error": "ZeroDivisionError: x"}
    assert classify(letter, recorded) == (BUG, "ZeroDivisionError: x")


def test_queue_names_and_dlq_names_both_resolve():
    assert queue_spec("inventory-dlq.fifo") is queue_spec("inventory.fifo")
    with pytest.raises(KeyError, match="no queue or DLQ"):
        queue_spec("nope")


def test_messages_go_in_batches_of_what_one_sqs_batch_call_takes():
    letters = [decode(PAYMENTS, kombu_message("x", f"m-{n}")) for n in range(2 * MAX_ENTRIES + 3)]
    runs = list(batches(letters))
    assert [len(run) for run in runs] == [MAX_ENTRIES, MAX_ENTRIES, 3]
    assert [m for run in runs for m in run] == letters
    assert list(batches([])) == []
