"""The envelope decoder: what Celery sends is read as Celery reads it; anything else is Poison, never a
crash; and what it accepts, kombu and Celery read without an error (checked with their own code).

Profiles: tests/fuzzing.py (`ORDERS_FUZZ=full` for 10,000 examples a property).
"""

from __future__ import annotations

import base64
import json
import zlib
from typing import Any

import pytest
from celery import Celery
from celery.worker.request import Request
from hypothesis import example, given
from hypothesis import strategies as st
from kombu import Connection
from kombu.transport import virtual
from kombu.transport.SQS import Channel as SQSChannel

from orders.runtime.envelope import (
    MAX_DEPTH,
    Poison,
    TaskMessage,
    decode,
    depth,
    envelope_text,
    shallow_json,
)
from tests.fuzzing import json_values

app = Celery("envelope-tests", set_as_current=False)


@app.task(name="fuzz.task", shared=False)  # not added to the orders app
def fuzz_task(*args: Any, **kwargs: Any) -> None:
    """A task the decoder knows."""


KNOWN = {"fuzz.task"}


def sent_by_celery(*args: Any, **options: Any) -> dict[str, Any]:
    """The envelope Celery and kombu produce for fuzz.task (through kombu's memory transport)."""
    with Connection("memory://") as conn:
        app.send_task("fuzz.task", args=args, kwargs={"k": 1}, connection=conn, queue="q", **options)
        message: dict[str, Any] = conn.default_channel._get("q")
        return message


def sqs_body(envelope: Any, outer_base64: bool = False) -> str:
    text = envelope if isinstance(envelope, str) else json.dumps(envelope)
    return base64.b64encode(text.encode()).decode() if outer_base64 else text


class _MessageChannel:
    """What kombu's virtual Message needs of its channel: the body codecs."""

    codecs = {"base64": virtual.Base64()}
    decode_body = virtual.Channel.decode_body


def kombu_and_celery_read(body: str) -> None:
    """What the SQS channel and Celery's consumer do with a message before the task runs: raises on
    anything they would fail on (the oracle the decoder is held to)."""
    text = envelope_text(body)
    payload = SQSChannel._prepare_json_payload(None, text)
    payload = SQSChannel._envelope_payload(None, payload, text, {"ReceiptHandle": "h"}, "url")
    message = virtual.Message(payload, channel=_MessageChannel())
    message.accept = {"application/json"}
    assert not message.errors, message.errors
    request = Request(message, app=app, task=app.tasks[message.headers["task"]], hostname="fuzz")
    assert request.id == message.headers["id"] and isinstance(request.args, list | tuple)


def test_what_celery_sends_is_read_as_celery_reads_it():
    envelope = sent_by_celery("ord-1", [1, 2], link=app.signature("fuzz.task"), countdown=5)
    for outer in (False, True):
        message = decode(sqs_body(envelope, outer), KNOWN)
        assert message == TaskMessage("fuzz.task", envelope["headers"]["id"], ["ord-1", [1, 2]], {"k": 1})
        kombu_and_celery_read(sqs_body(envelope, outer))


def test_a_chain_as_celery_sends_it_is_read():
    hops = [dict(app.signature("fuzz.task", args=("ord-1",), immutable=True, MessageGroupId="SKU-1"))] * 3
    envelope = sent_by_celery("ord-1", chain=hops, link=app.signature("fuzz.task"),
                              link_error=app.signature("fuzz.task"))
    message = decode(sqs_body(envelope), KNOWN)
    assert message.args == ["ord-1"]
    kombu_and_celery_read(sqs_body(envelope))


def test_what_is_handed_on_is_what_kombu_and_celery_would_read_again():
    # The transport hands these to kombu and Celery instead of their own second reading.
    envelope = sent_by_celery("ord-1", link=app.signature("fuzz.task"))
    for outer in (False, True):
        body = sqs_body(envelope, outer)
        message = decode(body, KNOWN)
        text = envelope_text(body)
        assert message.text == text and message.envelope == SQSChannel._prepare_json_payload(None, text)
        payload = SQSChannel._envelope_payload(None, message.envelope, text, {"ReceiptHandle": "h"}, "url")
        read = virtual.Message(payload, channel=_MessageChannel())
        read.accept = {"application/json"}
        assert message.body == read.decode()


def test_a_compressed_body_is_read():
    envelope = sent_by_celery("x")
    envelope["body"] = base64.b64encode(zlib.compress(base64.b64decode(envelope["body"]))).decode()
    envelope["headers"]["compression"] = "application/x-gzip"
    assert decode(sqs_body(envelope), KNOWN).args == ["x"]
    kombu_and_celery_read(sqs_body(envelope))


def with_(envelope: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """The envelope with one part (a dotted path) set to `value`."""
    changed = json.loads(json.dumps(envelope))
    *parents, last = path.split(".")
    target = changed
    for part in parents:
        target = target[part]
    target[last] = value
    return changed


def body_of(value: Any) -> str:
    return base64.b64encode(value if isinstance(value, bytes) else json.dumps(value).encode()).decode()


@pytest.mark.parametrize("path,value,kind,says", [
    ("headers", "task=fuzz.task", "envelope", "headers is str, not an object"),
    ("headers", ["x"], "envelope", "headers is list"),
    ("properties", "p", "envelope", "properties is str"),
    ("properties.delivery_info", "d", "envelope", "delivery_info is not an object"),
    ("headers.id", None, "headers", "has no id"),
    ("headers.task", 7, "headers", "no task name"),
    ("headers.task", "nope.unknown", "unknown-task", "unknown task 'nope.unknown'"),
    ("headers.eta", "tomorrow", "headers", "eta is not an ISO 8601 time"),
    ("headers.timelimit", [1, 2, 3], "headers", "timelimit"),
    ("headers.retries", "3", "headers", "retries"),
    ("headers.compression", "application/x-gzip", "body", "does not decompress"),
    ("content-type", "application/x-python-serialize", "body", "is not accepted"),
    ("properties.body_encoding", "rot13", "body", "unknown body_encoding"),
    ("body", body_of(b"{not json"), "body", "body does not decode"),
    ("body", body_of(b"[[" + b"9" * 5000 + b"], {}, {}]"), "body", "Exceeds the limit"),
    ("body", body_of(b"[" * 100_000 + b"]" * 100_000), "too-deep", "nested too deeply"),
    ("body", body_of([[], {}]), "body", "not [args, kwargs, embed]"),
    ("body", body_of([[], [], {}]), "body", "kwargs (an object)"),
    ("body", body_of({"task": "fuzz.task", "id": "1", "args": []}), "body", "not [args, kwargs, embed]"),
    ("body", body_of([json.loads("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1)), {}, {}]), "too-deep",
     f"deeper than {MAX_DEPTH}"),
    ("body", "", "body", "no body"),
    # What the tracer hands on after the task has run: refused before it runs (StepTask.end, a chain's hop).
    ("body", body_of([["ord-1"], {}, {"chain": "garbage"}]), "body", "embed chain is str, not a list"),
    ("body", body_of([["ord-1"], {}, {"chain": [1]}]), "body", "embed chain holds 1, not a signature"),
    ("body", body_of([["ord-1"], {}, {"chain": [{"task": "fuzz.task", "options": []}]}]), "body",
     "embed chain holds a dict"),
    ("body", body_of([["ord-1"], {}, {"callbacks": [{"task": 5}]}]), "body", "embed callbacks holds a dict"),
    ("body", body_of([["ord-1"], {}, {"errbacks": {"task": "fuzz.task"}}]), "body", "embed errbacks is dict"),
])
def test_each_poison_shape_is_named(path, value, kind, says):
    body = sqs_body(with_(sent_by_celery("x"), path, value))
    with pytest.raises(Poison) as poison:
        decode(body, KNOWN)
    assert poison.value.kind == kind and says in poison.value.reason, poison.value.reason


@pytest.mark.parametrize("body,kind,says", [
    ("[" * 200_000 + "]" * 200_000, "too-deep", "nested too deeply"),
    ('{"properties": {}, "n": ' + "1" * 5000 + "}", "envelope", "Exceeds the limit"),
    ("<order>not json</order>", "envelope", "not JSON"),
    (json.dumps({"body": "x"}), "envelope", "not a kombu message"),
    (json.dumps([1, 2]), "envelope", "not a kombu message"),
    ("\ud800", "unreadable", "unreadable message"),
])
def test_what_is_not_an_envelope_is_named(body, kind, says):
    with pytest.raises(Poison) as poison:
        decode(body, KNOWN)
    assert poison.value.kind == kind and says in poison.value.reason


def test_a_reason_quotes_little_of_the_message():
    body = sqs_body(with_(sent_by_celery("x"), "headers.task", "t" * 100_000))
    with pytest.raises(Poison) as poison:
        decode(body, KNOWN)
    assert len(poison.value.reason) < 200


def test_depth_is_measured_without_recursion():
    deep: Any = []
    for _ in range(100_000):
        deep = [deep]
    assert depth(deep) == MAX_DEPTH + 1  # stops looking past the limit
    assert depth({"a": [1, {"b": []}]}) == 4 and depth(7) == 0


@given(st.integers(0, 2 * MAX_DEPTH).flatmap(  # every nesting up to twice the limit, as likely as any other
    lambda n: st.lists(st.sampled_from(["list", "object", "list with a sibling"]), min_size=n, max_size=n)),
       st.text(alphabet="[]{}x", max_size=20))
@example(["list"] * (MAX_DEPTH + 1), "")  # the boundary, where an off-by-one in the count would pass a text
@example(["object"] * (MAX_DEPTH + 1), "")
@example(["object", "list"] * ((MAX_DEPTH + 1) // 2) + ["object"], "")
def test_json_counted_shallow_is_never_deeper_than_the_limit(wrappers: list[str], text: str) -> None:
    """What lets a worker skip walking a message (`shallow_json`): a text with at most MAX_DEPTH brackets
    never parses deeper than MAX_DEPTH, brackets in its strings included; one nested past it is walked."""
    value: Any = text
    for wrapper in wrappers:
        value = [value] if wrapper == "list" else {"k": value} if wrapper == "object" else [{"a": [1]}, value]
    encoded = json.dumps(value)
    assert depth(value) <= MAX_DEPTH or not shallow_json(encoded)
    assert shallow_json(encoded) is shallow_json(encoded.encode())
    if depth(value) > MAX_DEPTH:
        with pytest.raises(Poison, match="too-deep|deeper"):
            decode(sqs_body(with_(sent_by_celery("x"), "body", body_of([value, {}, {}]))), KNOWN)


def test_the_bracket_count_s_boundary():
    for opening, closing in (("[", "]"), ('{"k":', "}")):
        assert shallow_json(opening * MAX_DEPTH + "1" + closing * MAX_DEPTH)
        assert not shallow_json(opening * (MAX_DEPTH + 1) + "1" + closing * (MAX_DEPTH + 1))
        assert not shallow_json((opening * (MAX_DEPTH + 1) + "1" + closing * (MAX_DEPTH + 1)).encode())


def decoded_or_poison(body: Any) -> None:
    """The property: Poison, or a task message that kombu and Celery read without an error."""
    try:
        decode(body, KNOWN)
    except Poison as poison:
        assert poison.kind and len(poison.reason) < 400
        return
    kombu_and_celery_read(body)


@given(st.text(max_size=2000) | st.binary(max_size=2000).map(lambda b: base64.b64encode(b).decode()))
def test_fuzz_arbitrary_text_and_bytes(body: str) -> None:
    decoded_or_poison(body)


@given(json_values, st.booleans())
def test_fuzz_arbitrary_json(value: Any, outer_base64: bool) -> None:
    decoded_or_poison(sqs_body(json.dumps(value), outer_base64))


PATHS = ["headers", "properties", "body", "content-type", "content-encoding", "headers.task", "headers.id",
         "headers.eta", "headers.expires", "headers.timelimit", "headers.retries", "headers.compression",
         "headers.shadow", "headers.root_id", "headers.argsrepr", "headers.ignore_result",
         "properties.body_encoding", "properties.delivery_info", "properties.delivery_tag",
         "properties.priority", "properties.reply_to", "properties.correlation_id"]
ENVELOPE = sent_by_celery("ord-1", {"a": [1, 2]})


@given(st.lists(st.tuples(st.sampled_from(PATHS), json_values), min_size=1, max_size=3), st.booleans())
def test_fuzz_a_celery_envelope_with_parts_replaced_by_any_json(changes: list[tuple[str, Any]],
                                                               outer_base64: bool) -> None:
    envelope: Any = ENVELOPE
    for path, value in changes:
        try:
            envelope = with_(envelope, path, value)
        except (TypeError, KeyError):  # an earlier change made the path's parent a scalar
            pass
    decoded_or_poison(sqs_body(envelope, outer_base64))


@given(json_values | st.binary(max_size=300), st.booleans())
def test_fuzz_a_celery_envelope_with_any_body(payload: Any, encoded: bool) -> None:
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    body = base64.b64encode(raw).decode() if encoded else raw.decode("latin-1")
    envelope = with_(ENVELOPE, "body", body)
    if not encoded:
        envelope = with_(envelope, "properties.body_encoding", None)
    decoded_or_poison(sqs_body(envelope))
