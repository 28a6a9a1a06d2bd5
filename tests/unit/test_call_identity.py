"""How the emulator names each call it counts ('service:Action'), and moto's dispatch fix."""

from __future__ import annotations

import io
from typing import Any

import pytest

from orders.emulator.server import identify_call


def request(service: str, **environ: Any) -> dict[str, Any]:
    auth = f"AWS4-HMAC-SHA256 Credential=AKID/20260101/us-east-1/{service}/aws4_request, SignedHeaders=host"
    return {"HTTP_AUTHORIZATION": auth, "PATH_INFO": "/", **environ}


def test_a_query_body_s_action_is_found_wherever_it_is_and_the_rest_is_not_read():
    sns = request("sns")
    messages = "&".join(f"PublishBatchRequestEntries.member.{n}.Message=%7B%22a%22%3A+{n}%7D"
                        for n in range(10))
    first = f"Action=PublishBatch&Version=2010-03-31&{messages}"
    assert identify_call(sns, first.encode()) == "sns:PublishBatch"
    assert identify_call(sns, f"Version=2010-03-31&{messages}&Action=Publish".encode()) == "sns:Publish"
    # A parameter whose name ends in "Action", or whose value holds "Action=", is not the Action.
    assert identify_call(sns, b"XAction=Nope&Message=Action%3DNope&Action=Subscribe") == "sns:Subscribe"
    assert identify_call(sns, b"Message=hello") == "sns:?"
    in_query = request("sns", QUERY_STRING="Action=ListTopics")
    assert identify_call(in_query, b"Action=Publish") == "sns:ListTopics"


def test_json_cbor_and_unsigned_calls():
    assert identify_call(request("dynamodb", HTTP_X_AMZ_TARGET="DynamoDB_20120810.GetItem"), b"{}") == \
        "dynamodb:GetItem"
    assert identify_call(request("monitoring", PATH_INFO="/service/GraniteServiceVersion20100801/operation/"
                                               "PutMetricData"), b"") == "monitoring:PutMetricData"
    assert identify_call({"PATH_INFO": "/"}, b"Action=ListQueues") == "unknown:ListQueues"


def test_moto_lists_a_response_class_s_methods_once():
    from moto.core import responses, utils
    from moto.sqs.responses import SQSResponse

    from orders.emulator import moto_dispatch

    moto_dispatch.install()
    moto_dispatch.install()  # again (an in-process emulator started twice): still one cache over moto's own
    listed = responses.method_names_from_class(SQSResponse)
    assert listed == utils.method_names_from_class(SQSResponse) and "receive_message" in listed
    before = responses.method_names_from_class.cache_info().hits  # type: ignore[attr-defined]
    assert responses.method_names_from_class(SQSResponse) is listed
    assert responses.method_names_from_class.cache_info().hits == before + 1  # type: ignore[attr-defined]


def test_a_request_body_is_read_from_the_client_once_and_every_middleware_gets_all_of_it():
    import io

    from orders.emulator.routes import request_body

    class Once(io.BytesIO):
        reads = 0  # reads that took something from the client (a chunked body is read until one gives none)

        def read(self, size: int | None = -1) -> bytes:
            got = super().read(size)
            Once.reads += bool(got)
            return got

    environ = {"wsgi.input": Once(b"Action=Publish&Message=x"), "HTTP_TRANSFER_ENCODING": "chunked"}
    assert request_body(environ) == b"Action=Publish&Message=x"
    assert environ["wsgi.input"].read() == b"Action=Publish&Message=x"  # the next reader's copy
    assert request_body(environ) == b"Action=Publish&Message=x" and Once.reads == 1
    assert environ["CONTENT_LENGTH"] == "24" and "HTTP_TRANSFER_ENCODING" not in environ
    assert request_body({"wsgi.input": Once(b"ignored")}) == b""  # no length, not chunked: no body


def test_a_chunked_body_past_the_limit_is_cut_off_and_answered_413_a_malformed_one_400(monkeypatch):
    """A hostile client's endless chunked body: read through cheroot's own chunked reader (the one the
    server hands the app), never held past the limit, and answered 413 rather than a 500."""
    import io

    from cheroot.server import ChunkedRFile

    from orders.emulator import routes

    monkeypatch.setattr(routes, "MAX_REQUEST_BYTES", 1000)
    chunk = b"x" * 300
    wire = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(100)) + b"0\r\n\r\n"
    source = io.BytesIO(wire)
    environ = {"wsgi.input": ChunkedRFile(source, routes.MAX_REQUEST_BYTES),
               "HTTP_TRANSFER_ENCODING": "chunked"}
    answered: list[str] = []

    def app(env: dict[str, Any], start_response: Any) -> list[bytes]:
        routes.request_body(env)  # as each middleware reads it
        raise AssertionError("a body past the limit was read whole")

    guarded = routes.refusing_unreadable_bodies(app)
    body = b"".join(guarded(environ, lambda status, headers: answered.append(status)))
    assert answered == ["413 Request Entity Too Large"] and b"not read further" in body
    assert source.tell() < 2 * 1000 + 100, f"{source.tell()} bytes read of a {len(wire)}-byte body"
    within = {"wsgi.input": ChunkedRFile(io.BytesIO(b"3\r\nabc\r\n0\r\n\r\n"), 1000),
              "HTTP_TRANSFER_ENCODING": "chunked"}
    assert routes.request_body(within) == b"abc"

    malformed = {"wsgi.input": ChunkedRFile(io.BytesIO(b"zz\r\nabc\r\n0\r\n\r\n"), 1000),
                 "HTTP_TRANSFER_ENCODING": "chunked"}
    answered.clear()
    b"".join(guarded(malformed, lambda status, headers: answered.append(status)))
    assert answered == ["400 Bad Request"]


def test_under_any_server_a_body_past_the_limit_is_refused_before_the_app_reads_it(monkeypatch):
    """Werkzeug's server (ORDERS_EMULATOR_HTTP=werkzeug) limits no body: an announced length past the limit
    is refused unread, and an endless chunked body, read as its dechunker gives it (a chunk a read), is cut
    off at the limit; signed or not, before moto (the app) reads anything."""
    import io

    from orders.emulator import routes

    monkeypatch.setattr(routes, "MAX_REQUEST_BYTES", 1000)

    class Endless(io.RawIOBase):
        given = 0

        def readable(self) -> bool:
            return True

        def readinto(self, buffer: Any) -> int:  # one 300-byte chunk a read, for ever
            n = min(len(buffer), 300)
            buffer[:n] = b"x" * n
            self.given += n
            return n

    class Untouchable(io.RawIOBase):
        def read(self, size: int | None = -1) -> bytes:
            raise AssertionError("an announced body past the limit was read")

    def moto(env: dict[str, Any], start_response: Any) -> list[bytes]:
        env["wsgi.input"].read()  # moto reads what it is given, to the end
        raise AssertionError("the app was reached")

    guarded = routes.refusing_unreadable_bodies(moto)
    endless = Endless()
    for environ in ({"wsgi.input": Untouchable(), "CONTENT_LENGTH": "1001"},
                    {"wsgi.input": endless, "HTTP_TRANSFER_ENCODING": "chunked"}):
        answered: list[str] = []
        body = b"".join(guarded(environ, lambda status, headers, said=answered: said.append(status)))
        assert answered == ["413 Request Entity Too Large"] and b"not read further" in body
    assert endless.given <= 1000 + 300


@pytest.mark.parametrize(("headers", "sent", "status"), [
    ({"CONTENT_LENGTH": "-1"}, b"x" * 5000, "400 Bad Request"),  # int() takes it; a reader reads all
    ({"CONTENT_LENGTH": "-5"}, b"x" * 5000, "400 Bad Request"),
    ({"CONTENT_LENGTH": "+5"}, b"x" * 5, "400 Bad Request"),
    ({"CONTENT_LENGTH": "abc"}, b"", "400 Bad Request"),
    ({"CONTENT_LENGTH": "100"}, b"ab", "400 Bad Request"),  # the client stopped short
])
def test_a_content_length_that_is_not_the_bodys_is_refused_unread_by_the_app(headers, sent, status):
    """What cheroot passes on (it refuses only a non-numeric length or one past its limit) and Werkzeug
    passes on (anything): refused before moto reads the body, never read to its end."""
    import io

    from orders.emulator import routes

    def moto(env: dict[str, Any], start_response: Any) -> list[bytes]:
        raise AssertionError("the app was reached")

    answered: list[str] = []
    stream = io.BytesIO(sent)
    body = b"".join(routes.refusing_unreadable_bodies(moto)(
        {"wsgi.input": stream, **headers}, lambda status, headers: answered.append(status)))
    assert answered == [status] and b"not read further" in body, body
    assert stream.tell() <= 100


def test_a_body_both_chunked_and_given_a_length_is_read_as_chunked():
    """As the servers decode it (RFC 9112 6.3): taking the length would leave the rest of the chunked body
    on the connection, read as the next request."""
    from orders.emulator.routes import request_body

    class Dechunked(io.RawIOBase):  # what a server's chunked reader hands the app: the decoded body
        def __init__(self) -> None:
            self.data = io.BytesIO(b"abcdef")

        def readable(self) -> bool:
            return True

        def readinto(self, buffer: Any) -> int:
            got = self.data.read(len(buffer))
            buffer[:len(got)] = got
            return len(got)

    environ = {"wsgi.input": Dechunked(), "CONTENT_LENGTH": "3", "HTTP_TRANSFER_ENCODING": "chunked"}
    assert request_body(environ) == b"abcdef" and environ["CONTENT_LENGTH"] == "6"
