"""What went over the wire: the request and answer bodies of the SQS, SNS and DynamoDB calls the
emulator serves, recorded only while switched on.

A WSGI middleware in front of the emulator's others. `POST /_orders/wire/start` clears the
record and starts recording, `POST /_orders/wire/stop` stops, `GET /_orders/wire` returns
`{"recording": bool, "dropped": n, "calls": [{"call", "request", "response"}]}` (bodies as
text, as the client sent and the emulator answered them: JSON, or the query protocol's form
encoding). tests/integration/test_plaintext_scan.py scans them for sensitive values that
should never travel in clear: a message body or an item seen on the wire, even one deleted
since, is in no queue or table any more.

DynamoDB is recorded with SQS and SNS because an item written and then deleted (a claim, a
hold) would escape a scan of the tables. KMS is not: its answers carry data keys.
"""

from __future__ import annotations

import json
import threading
import urllib.request
from collections.abc import Callable, Iterable
from typing import Any

from orders.emulator.routes import request_body, signing_service

WIRE_PATH = "/_orders/wire"
RECORDED = frozenset({"sqs", "sns", "dynamodb"})
#: Recording stops keeping bodies past this many bytes (it counts the calls it drops).
MAX_BYTES = 64 * 1024 * 1024


def wire_calls(endpoint: str, action: str = "") -> dict[str, Any]:
    """The wire log of the emulator at `endpoint`; `action` "start" or "stop" switches it first."""
    url = endpoint.rstrip("/") + WIRE_PATH + (f"/{action}" if action else "")
    request = urllib.request.Request(url, method="POST" if action else "GET", data=b"" if action else None)
    with urllib.request.urlopen(request, timeout=30) as response:
        answer: dict[str, Any] = json.loads(response.read())
        return answer


class WireLog:
    """Records the bodies of the calls `app` serves while on (see the module's docstring)."""

    def __init__(self, app: Callable[..., Any]):
        self.app = app
        self.recording = False
        self.calls: list[dict[str, str]] = []
        self.size = 0
        self.dropped = 0
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path.startswith(WIRE_PATH):
            return self._control(path, environ, start_response)
        service = signing_service(environ)
        if not self.recording or service not in RECORDED:
            return self.app(environ, start_response)
        body = request_body(environ)
        answer = list(self.app(environ, start_response))
        self._keep(service, environ, body, b"".join(answer))
        return answer

    def _keep(self, service: str, environ: dict[str, Any], request: bytes, response: bytes) -> None:
        target = environ.get("HTTP_X_AMZ_TARGET") or ""
        call = {"call": f"{service}:{target.rsplit('.', 1)[-1]}" if target else service,
                "request": request.decode("utf-8", "replace"),
                "response": response.decode("utf-8", "replace")}
        with self._lock:
            if not self.recording:
                return
            if self.size + len(request) + len(response) > MAX_BYTES:
                self.dropped += 1
                return
            self.size += len(request) + len(response)
            self.calls.append(call)

    def _control(self, path: str, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        action = path[len(WIRE_PATH):].strip("/")
        with self._lock:
            if environ.get("REQUEST_METHOD") == "POST" and action in ("start", "stop"):
                if action == "start":
                    self.calls, self.size, self.dropped = [], 0, 0
                self.recording = action == "start"
            body = json.dumps({"recording": self.recording, "dropped": self.dropped,
                               "calls": self.calls}).encode()
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]
