"""How the emulator's middlewares read a request: the AWS service it is for, or the emulator's own path."""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Iterable
from typing import Any

from cheroot import wsgi
from cheroot.errors import MaxSizeExceeded

#: The emulator's call counts (orders.emulator.server).
STATS_PATH = "/_orders/calls"
_READ = "orders.signing_service"  # where the answers are kept in the request's environ
_BODY = "orders.body"
_SCOPE = re.compile(r"Credential=([^/]+)/[^/]+/([^/]+)/([^/]+)/aws4_request")
#: The longest request body the emulator reads: AWS's longest are DynamoDB's batches (16 MB of items).
#: A longer Content-Length is refused before anything is read (by cheroot, and by `request_body` under
#: any server: Werkzeug's has no limit of its own); a chunked body is cut off at this length as it is read.
MAX_REQUEST_BYTES = 32 * 1024 * 1024
#: How much of a chunked body is read at a time (a raw reader may give back less: one chunk).
_READ_SIZE = 64 * 1024


#: What cheroot's chunked reader raises past its limit: MaxSizeExceeded, or an IOError saying so.
_TOO_LARGE = "Request Entity Too Large"


class UnreadableBody(Exception):
    """A request body the emulator does not read: `status` says why (413 too long, 400 malformed)."""

    def __init__(self, status: str, why: str):
        super().__init__(why)
        self.status = status


def signing_service(environ: dict[str, Any]) -> str | None:
    """The service of a signed request's credential scope ('dynamodb', 'sqs', 'monitoring'...), else None.

    DynamoDB Streams signs as 'dynamodb' too, which is what keeps the two in one process.
    """
    scope = credential_scope(environ)
    return scope[2] if scope else None


def credential_scope(environ: dict[str, Any]) -> tuple[str, str, str] | None:
    """(access key id, region, service) of a signed request's credential, else None; read once per
    request (every middleware asks)."""
    if _READ not in environ:
        match = _SCOPE.search(environ.get("HTTP_AUTHORIZATION", ""))
        environ[_READ] = (match.group(1), match.group(2), match.group(3)) if match else None
    return environ[_READ]  # type: ignore[no-any-return]


def request_body(environ: dict[str, Any]) -> bytes:
    """The request's body, read from the client once for every middleware (a chunked one too, which is
    then given its length), with `wsgi.input` set to a fresh reader of it for whoever reads next."""
    if _BODY not in environ:
        # Chunked first: a request with both is decoded as chunked by the servers (RFC 9112 6.3).
        chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
        length = 0 if chunked else _announced_length(environ)
        try:
            body = bytes(_read_to_the_limit(environ["wsgi.input"]) if chunked else
                         environ["wsgi.input"].read(length) if length else b"")
        except MaxSizeExceeded as exc:  # cheroot's reader of a chunked body, past its limit
            raise _too_large() from exc
        except (ConnectionError, TimeoutError):
            raise  # the client went away: not the body's fault
        except OSError as exc:  # a chunked reader: cheroot's past its limit, Werkzeug's on a bad chunk header
            if exc.args == (_TOO_LARGE,):
                raise _too_large() from exc
            raise UnreadableBody("400 Bad Request", f"a malformed chunked body ({exc})") from exc
        except ValueError as exc:  # cheroot's reader: a chunk size that is not hexadecimal, a missing CRLF
            raise UnreadableBody("400 Bad Request", f"a malformed chunked body ({exc})") from exc
        if not chunked and len(body) != length:  # the client stopped short: not the request it announced
            raise UnreadableBody("400 Bad Request", f"{len(body)} bytes of a body of {length}")
        environ[_BODY] = body
        environ["CONTENT_LENGTH"] = str(len(body))
        environ.pop("HTTP_TRANSFER_ENCODING", None)
    environ["wsgi.input"] = io.BytesIO(environ[_BODY])
    return environ[_BODY]  # type: ignore[no-any-return]


def _announced_length(environ: dict[str, Any]) -> int:
    """Content-Length, digits only (int() also takes "-1", which a reader takes for "all there is", and "+1",
    " 1", "1_0"); refused (400) otherwise, and past MAX_REQUEST_BYTES (413) before anything is read."""
    raw = environ.get("CONTENT_LENGTH") or "0"
    if not (raw.isascii() and raw.isdigit()):
        raise UnreadableBody("400 Bad Request", f"a Content-Length that is not a length ({raw[:20]!r})")
    if int(raw) > MAX_REQUEST_BYTES:
        raise _too_large()
    return int(raw)


def _too_large() -> UnreadableBody:
    return UnreadableBody("413 Request Entity Too Large", f"a request body over {MAX_REQUEST_BYTES} bytes")


def _read_to_the_limit(stream: Any) -> bytes:
    """A chunked body to its end, refused (413) as soon as it runs past MAX_REQUEST_BYTES: never held whole
    under a server that does not limit it (cheroot's reader raises at its own limit first)."""
    parts, size = [], 0
    while part := stream.read(min(_READ_SIZE, MAX_REQUEST_BYTES + 1 - size)):
        parts.append(part)
        size += len(part)
        if size > MAX_REQUEST_BYTES:
            raise _too_large()
    return b"".join(parts)


def refusing_unreadable_bodies(app: Callable[..., Any]) -> Callable[..., Iterable[bytes]]:
    """`app`, whose requests with a body past MAX_REQUEST_BYTES (announced, or chunked and read that far)
    are answered 413, and with a malformed chunked one 400, rather than 500 with a traceback."""
    def refuse(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        try:
            request_body(environ)  # every request's, signed or not, before anything (moto) reads it unlimited
            return app(environ, start_response)  # type: ignore[no-any-return]
        except UnreadableBody as exc:
            # The connection is closed after this answer: what is left of the body (all of it, unread) would
            # otherwise be parsed as the next request. Werkzeug's server closes every connection after its
            # answer; cheroot's acts on this header only with ClosingGateway.
            start_response(exc.status, [("Content-Type", "text/plain"), ("Connection", "close")])
            return [f"{exc}: not read further".encode()]
    return refuse


class ClosingGateway(wsgi.Gateway_10):
    """cheroot's WSGI gateway, closing the connection after an answer whose headers say `Connection: close`.

    cheroot writes the header but keeps the connection open (it closes after a 413 only), so the bytes of a
    body refused unread (`refusing_unreadable_bodies`: a negative length, a malformed chunk) would be read
    as the connection's next request and answered as if sent as one: a request the client never sent,
    and answers out of step with its requests for anything in front of the emulator that counts them.
    """

    def start_response(self, status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        if any(name.lower() == "connection" and value.lower() == "close" for name, value in headers):
            self.req.close_connection = True
        return super().start_response(status, headers, exc_info)
