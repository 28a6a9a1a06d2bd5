"""How the emulator's middlewares read a request: the AWS service it is for, or the emulator's own path."""

from __future__ import annotations

import io
import re
from typing import Any

#: The emulator's call counts (orders.emulator.server).
STATS_PATH = "/_orders/calls"
_READ = "orders.signing_service"  # where the answers are kept in the request's environ
_BODY = "orders.body"
_SCOPE = re.compile(r"Credential=([^/]+)/[^/]+/([^/]+)/([^/]+)/aws4_request")


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
        length = int(environ.get("CONTENT_LENGTH") or 0)
        chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
        body = bytes(environ["wsgi.input"].read(length) if length else
                     environ["wsgi.input"].read() if chunked else b"")
        environ[_BODY] = body
        environ["CONTENT_LENGTH"] = str(len(body))
        environ.pop("HTTP_TRANSFER_ENCODING", None)
    environ["wsgi.input"] = io.BytesIO(environ[_BODY])
    return environ[_BODY]  # type: ignore[no-any-return]
