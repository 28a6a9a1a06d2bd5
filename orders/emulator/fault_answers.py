"""An AWS error answer in the protocol of the request it answers: what botocore reads from AWS itself.

The protocol is read from the request, as AWS's front ends do: an `X-Amz-Target`
header is the JSON protocol (DynamoDB, SQS since botocore moved it off the query
protocol), a `/operation/` path is Smithy RPC v2 CBOR (CloudWatch), anything else
the query protocol, answered in XML (SNS). SQS and CloudWatch answer JSON and CBOR
with the `x-amzn-query-error` header of query-compatible services, from which
botocore takes the error code.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

#: The faults an error rate picks from: a throttling error, an internal error, unavailable.
KINDS = ("throttle", "500", "503")
#: (HTTP status, code) per kind, per service where AWS's codes differ from the common ones.
CODES: dict[str, dict[str, tuple[int, str]]] = {
    "dynamodb": {"throttle": (400, "ProvisionedThroughputExceededException"),
                 "500": (500, "InternalServerError")},
    "sqs": {"throttle": (400, "RequestThrottled"), "500": (500, "InternalFailure")},
    "sns": {"throttle": (400, "Throttling"), "500": (500, "InternalError")},
}
COMMON = {"throttle": (400, "Throttling"), "500": (500, "InternalFailure"),
          "503": (503, "ServiceUnavailable"), "outage": (503, "ServiceUnavailable")}
#: Services whose JSON or CBOR errors carry their old query protocol's code in a header.
QUERY_COMPATIBLE = frozenset({"sqs", "monitoring"})
REASONS = {400: "Bad Request", 500: "Internal Server Error", 503: "Service Unavailable"}
MESSAGES = {"throttle": "Rate exceeded", "500": "We encountered an internal error. Please try again.",
            "503": "Service is unavailable. Please try again.",
            "outage": "Service is unavailable (an outage injected by the emulator). Please try again."}

Answer = tuple[str, list[tuple[str, str]], bytes]


def code_of(service: str, kind: str) -> tuple[int, str]:
    """The HTTP status and AWS error code of a fault of `kind` on `service`."""
    return CODES.get(service, {}).get(kind) or COMMON[kind]


def answer(environ: dict[str, Any], service: str, kind: str) -> Answer:
    """(status line, headers without Content-Length, body) of the error, in the request's protocol."""
    status, code = code_of(service, kind)
    message, request_id = MESSAGES[kind], str(uuid.uuid4())
    headers = [("x-amzn-RequestId", request_id)]
    if service in QUERY_COMPATIBLE:
        headers.append(("x-amzn-query-error", f"{code};{'Sender' if status < 500 else 'Receiver'}"))
    namespaced = f"com.amazonaws.{service}#{code}"
    if environ.get("HTTP_X_AMZ_TARGET"):
        content_type = environ.get("CONTENT_TYPE") or "application/x-amz-json-1.0"
        body = json.dumps({"__type": namespaced, "message": message}).encode()
    elif "/operation/" in environ.get("PATH_INFO", ""):
        content_type = "application/cbor"
        headers.append(("smithy-protocol", "rpc-v2-cbor"))
        body = cbor_map({"__type": namespaced, "message": message})
    else:
        content_type = "text/xml"
        body = query_error(code, message, request_id, status)
    return f"{status} {REASONS[status]}", [("Content-Type", content_type), *headers], body


def query_error(code: str, message: str, request_id: str, status: int) -> bytes:
    """The query protocol's ErrorResponse document."""
    fault = "Sender" if status < 500 else "Receiver"
    return (f"<ErrorResponse><Error><Type>{fault}</Type><Code>{code}</Code><Message>{message}</Message>"
            f"</Error><RequestId>{request_id}</RequestId></ErrorResponse>").encode()


def cbor_map(items: dict[str, str]) -> bytes:
    """A CBOR map of text to text (RFC 8949: major types 5 and 3), all an error body needs."""
    if len(items) > 23:
        raise ValueError("a short map only")
    return bytes([0xA0 + len(items)]) + b"".join(_cbor_text(k) + _cbor_text(v) for k, v in items.items())


def _cbor_text(text: str) -> bytes:
    data = text.encode()
    if len(data) < 24:
        return bytes([0x60 + len(data)]) + data
    if len(data) < 256:
        return bytes([0x78, len(data)]) + data
    return bytes([0x79]) + len(data).to_bytes(2, "big") + data
