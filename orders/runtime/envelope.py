"""What a worker takes off its queue: an SQS message read as kombu and Celery will read it, or poison.

kombu does not guard its own decoding (docs: DESIGN, "kombu does not guard its own
decoding"): an envelope whose `headers` or `properties` are not objects, deeply
nested JSON or a 5,000-digit integer raise inside kombu, outside the errors
Celery's consumer handles, and the worker process exits; an undecodable body under a
valid task header is acked by Celery's `on_decode_error`, i.e. deleted. So every
message is read here first, with kombu's own functions and every error caught:
`decode` returns the task message Celery would run, or raises `Poison` with the
reason. It never raises anything else, whatever the input (tests/unit/test_envelope.py
fuzzes it). Only Celery message protocol 2, what this platform sends, is accepted.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Container, Iterable
from dataclasses import dataclass, field
from typing import Any, cast

from celery.utils.time import maybe_iso8601
from kombu.compression import decompress
from kombu.serialization import loads as kombu_loads
from kombu.transport.SQS import Channel as SQSChannel
from kombu.utils.encoding import bytes_to_str
from kombu.utils.json import loads as kombu_json

#: JSON nested deeper than this is poison: nothing we send comes close (a chain's message is
#: about 10 deep), and Python's recursion limit (about 1,000) would break code that walks it.
MAX_DEPTH = 64
#: The longest task id and task name accepted (Celery's are a UUID and a dotted name).
MAX_ID_LENGTH = 255
#: What a reason quotes of the message at most.
QUOTE_CHARS = 60
ACCEPT_JSON = frozenset({"application/json"})


class Poison(ValueError):
    """A message no worker can run; `kind` is a short label for metrics, `reason` says why."""

    def __init__(self, kind: str, reason: str):
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


@dataclass(frozen=True)
class TaskMessage:
    """A Celery (protocol 2) task message that a worker can run."""

    task: str
    task_id: str
    args: list[Any]
    kwargs: dict[str, Any]
    headers: dict[str, Any] = field(repr=False, compare=False, default_factory=dict)
    #: What kombu and Celery would read again, read once here and handed to them
    #: (orders.runtime.transport): the envelope's text and object, and the body as
    #: kombu's `loads` returns it (Celery's worker reads every message's body on the
    #: event loop only to see whether it is protocol 2).
    text: str = field(repr=False, compare=False, default="")
    envelope: dict[str, Any] = field(repr=False, compare=False, default_factory=dict)
    body: Any = field(repr=False, compare=False, default=None)


def decode(sqs_body: Any, known: Container[str], accept: Container[str] = ACCEPT_JSON) -> TaskMessage:
    """The task message in an SQS message body; Poison (and only Poison) if there is none."""
    try:
        return _decode(sqs_body, known, accept)
    except Poison:
        raise
    except Exception as exc:  # a path this module did not foresee: still poison, never a crash
        raise Poison("unreadable", f"unreadable message: {describe_error(exc)}") from exc


def _decode(sqs_body: Any, known: Container[str], accept: Container[str]) -> TaskMessage:
    if not isinstance(sqs_body, str):
        raise Poison("envelope", f"the SQS body is {type(sqs_body).__name__}, not text")
    text = envelope_text(sqs_body)
    envelope = parse_json(text, "envelope")
    if not isinstance(envelope, dict) or "properties" not in envelope:
        raise Poison("envelope", "not a kombu message (no JSON object with properties)")
    properties, headers = _object(envelope, "properties"), _object(envelope, "headers")
    if not isinstance(properties.get("delivery_info", {}), dict):
        raise Poison("envelope", "properties.delivery_info is not an object")
    task, task_id = _task_headers(headers)
    payload = _body(envelope, properties, headers, accept)
    args, kwargs = _arguments(payload)
    if task not in known:
        raise Poison("unknown-task", f"unknown task {quote(task)}")
    return TaskMessage(task, task_id, args, kwargs, headers, text, envelope, payload)


def envelope_text(sqs_body: str) -> str:
    """The envelope as kombu's SQS channel reads it: base64 unwrapped when it looks like base64."""
    # kombu's own method (it reads nothing of the channel but the class's pattern), so that
    # both read the same text.
    unwrap = cast(Any, SQSChannel)._optional_b64_decode
    return str(bytes_to_str(unwrap(SQSChannel, sqs_body.encode())))


def parse_json(text: str | bytes, what: str) -> Any:
    """JSON as kombu parses it, no deeper than MAX_DEPTH; Poison otherwise."""
    try:
        value = kombu_json(text)
    except RecursionError:
        raise Poison("too-deep", f"{what}: JSON nested too deeply") from None
    except Exception as exc:  # kombu_json raises ValueError, TypeError, UnicodeDecodeError...
        raise Poison(what, f"{what} is not JSON: {describe_error(exc)}") from None
    if not shallow_json(text) and depth(value) > MAX_DEPTH:
        raise Poison("too-deep", f"{what}: JSON nested deeper than {MAX_DEPTH} levels")
    return value


def shallow_json(text: str | bytes) -> bool:
    """Whether JSON `text` cannot nest deeper than MAX_DEPTH, read from its brackets alone: every level
    opens with one, so a text with no more brackets than MAX_DEPTH (those in strings counted too, which
    only overcounts) needs no walk of what it parsed to (`depth`). A task message has 10 to 30."""
    if isinstance(text, str):
        return text.count("[") + text.count("{") <= MAX_DEPTH
    return text.count(b"[") + text.count(b"{") <= MAX_DEPTH


def depth(value: Any) -> int:
    """How deeply lists and objects nest in `value` (0 for a scalar), without recursion."""
    if not isinstance(value, dict | list | tuple):
        return 0
    # Only containers are stacked: a message is mostly scalars (this runs for a message whose
    # text has more brackets than MAX_DEPTH, `shallow_json`: none that Celery sends here).
    deepest, stack = 1, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if level > deepest:
            deepest = level
        if level > MAX_DEPTH:  # no need to look further once past the limit
            continue
        children: Iterable[Any] = item.values() if isinstance(item, dict) else item
        stack.extend((child, level + 1) for child in children if isinstance(child, dict | list | tuple))
    return deepest


def _object(envelope: dict[str, Any], name: str) -> dict[str, Any]:
    value = envelope.get(name)
    if not isinstance(value, dict):
        raise Poison("envelope", f"{name} is {type(value).__name__}, not an object")
    return value


def _task_headers(headers: dict[str, Any]) -> tuple[str, str]:
    task, task_id = headers.get("task"), headers.get("id")
    if not isinstance(task, str) or not task or len(task) > MAX_ID_LENGTH:
        raise Poison("headers", "no task name in the headers (Celery message protocol 2)")
    if not isinstance(task_id, str) or not task_id or len(task_id) > MAX_ID_LENGTH:
        raise Poison("headers", f"task {quote(task)} has no id")
    for name in ("shadow", "root_id", "parent_id", "group", "argsrepr", "kwargsrepr"):
        if headers.get(name) is not None and not isinstance(headers[name], str):
            raise Poison("headers", f"header {name} is {type(headers[name]).__name__}, not text")
    for name in ("eta", "expires"):
        _time_header(headers, name)
    _time_limits(headers.get("timelimit"))
    retries = headers.get("retries", 0)
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise Poison("headers", "header retries is not a count")
    if headers.get("ignore_result") not in (None, True, False):
        raise Poison("headers", "header ignore_result is not a boolean")
    return task, task_id


def _time_header(headers: dict[str, Any], name: str) -> None:
    value = headers.get(name)
    if value is None:
        return
    try:
        parsed = maybe_iso8601(value) if isinstance(value, str) else None
    except Exception:  # Celery would raise InvalidTaskError: rejected, then redelivered until the DLQ
        parsed = None
    if parsed is None:
        raise Poison("headers", f"header {name} is not an ISO 8601 time: {quote(value)}")


def _time_limits(value: Any) -> None:
    if value is None:
        return
    ok = isinstance(value, list | tuple) and len(value) == 2 and all(
        v is None or (isinstance(v, int | float) and not isinstance(v, bool) and v >= 0) for v in value)
    if not ok:
        raise Poison("headers", "header timelimit is not [soft, hard] seconds")


def _body(envelope: dict[str, Any], properties: dict[str, Any], headers: dict[str, Any],
          accept: Container[str]) -> Any:
    """The body as kombu's virtual Message and Celery decode it: encoding, compression, serializer."""
    body, encoding = envelope.get("body"), properties.get("body_encoding")
    content_type, content_encoding = envelope.get("content-type"), envelope.get("content-encoding")
    if not isinstance(body, str) or not body:
        raise Poison("body", "the message has no body")
    if not all(v is None or isinstance(v, str) for v in (encoding, content_type, content_encoding)):
        raise Poison("body", "body_encoding, content-type and content-encoding must be text")
    if content_type not in accept:
        raise Poison("body", f"content-type {quote(content_type)} is not accepted")
    data = _unencoded(body, encoding)
    compression = headers.get("compression")
    if compression:
        if encoding != "base64":  # kombu would hand zlib text, not bytes, and Celery would delete it
            raise Poison("body", "a compressed body must be base64-encoded")
        try:
            data = decompress(data, compression)
        except Exception as exc:
            raise Poison("body", f"body does not decompress: {describe_error(exc)}") from None
    try:
        payload = kombu_loads(data, cast(str, content_type), cast(str, content_encoding), accept=accept)
    except Exception as exc:  # kombu wraps the serializer's errors in DecodeError
        cause = exc.__cause__ or exc.__context__ or exc
        if isinstance(cause, RecursionError):
            raise Poison("too-deep", "body: JSON nested too deeply") from None
        raise Poison("body", f"body does not decode: {describe_error(cause)}") from None
    # Only JSON text is bounded by its brackets: another serializer's bytes are walked.
    if not (content_type == "application/json" and shallow_json(data)) and depth(payload) > MAX_DEPTH:
        raise Poison("too-deep", f"body: JSON nested deeper than {MAX_DEPTH} levels")
    return payload


def _unencoded(body: str, encoding: str | None) -> bytes:
    if not encoding or encoding.lower() == "utf-8":
        try:
            return body.encode()
        except UnicodeEncodeError:
            raise Poison("body", "body is not valid text") from None
    if encoding == "base64":  # kombu's only body codec
        try:
            return base64.b64decode(body.encode())
        except (binascii.Error, ValueError, UnicodeEncodeError):
            raise Poison("body", "body is not base64 as body_encoding says") from None
    raise Poison("body", f"unknown body_encoding {quote(encoding)}")


def _arguments(payload: Any) -> tuple[list[Any], dict[str, Any]]:
    if not isinstance(payload, list | tuple) or len(payload) != 3:
        raise Poison("body", "body is not [args, kwargs, embed] (Celery message protocol 2)")
    args, kwargs, embed = payload
    if not (isinstance(args, list | tuple) and isinstance(kwargs, dict) and isinstance(embed, dict | None)):
        raise Poison("body", "body is not [args (a list), kwargs (an object), embed (an object)]")
    for name in SIGNATURE_LISTS:
        _signatures(name, (embed or {}).get(name))
    return list(args), kwargs


#: What a message's embed may hand on, as lists of signatures: the tracer sends the chain's next one
#: after the task returned, the callbacks on success, the errbacks on failure.
SIGNATURE_LISTS = ("chain", "callbacks", "errbacks")
_SIGNATURE_PARTS = {"args": list, "kwargs": dict, "options": dict}


def _signatures(name: str, value: Any) -> None:
    """Refuse an embed's `name` that is not null or a list of signatures (objects with a task name).

    Celery reads them only once the task has run: a step would record its change, publish its
    events, then fail on the hand-off at every delivery until the message reached its DLQ. Here it
    goes there at once, having done nothing.
    """
    if value is None:
        return
    if not isinstance(value, list | tuple):
        raise Poison("body", f"embed {name} is {type(value).__name__}, not a list of signatures")
    for signature in value:
        if not _is_signature(signature):
            raise Poison("body", f"embed {name} holds {quote(signature)}, not a signature with a task name")


def _is_signature(value: Any) -> bool:
    return isinstance(value, dict) and isinstance(value.get("task"), str) and all(
        isinstance(value.get(part), kind | None) for part, kind in _SIGNATURE_PARTS.items())


def quote(value: Any) -> str:
    """A value for a reason: text clipped to QUOTE_CHARS with its length, other things by type."""
    if isinstance(value, str):
        shown = value[:QUOTE_CHARS].encode("ascii", "backslashreplace").decode()
        return repr(shown) + (f"... ({len(value)} characters)" if len(value) > QUOTE_CHARS else "")
    if value is None or isinstance(value, bool | float):
        return repr(value)
    if isinstance(value, int):
        return repr(value) if abs(value) < 10**QUOTE_CHARS else "a very large integer"
    return f"a {type(value).__name__}"


def describe_error(exc: BaseException) -> str:
    """`Type: message`, the message clipped (it may quote the input)."""
    text = str(exc)
    text = text if len(text) <= 200 else text[:200] + "..."
    return f"{type(exc).__name__}: {text}".encode("ascii", "backslashreplace").decode()
