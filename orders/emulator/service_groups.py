"""The emulator as two processes: DynamoDB (with its streams) in one, every other service in the other.

Why: one Python process uses one core at most, and moto's DynamoDB is most of the emulator's CPU
(about two thirds at 20 orders/s). With both in one process the pipeline's calls queued behind
each other on one GIL while the machine had a core to spare; split, each service group gets a
process (docs/performance.md, "sixth round").

How clients reach it:

- `orders emulator` (the front) starts the DynamoDB process as its child and prints, beside
  AWS_ENDPOINT_URL, the SDK's own per-service variables AWS_ENDPOINT_URL_DYNAMODB and
  AWS_ENDPOINT_URL_DYNAMODB_STREAMS, so DynamoDB calls go to their process directly.
- A DynamoDB call that reaches the front anyway (a client that knows only AWS_ENDPOINT_URL:
  another region's settings, a container on the compose network, a user's script) is passed on
  to the DynamoDB process unchanged (`Front`). No client has to know there are two. If the
  DynamoDB process does not answer, the call gets DynamoDB's own 503, which the SDK retries;
  a kept connection it closed while idle is opened again once (nothing was read from it).
- The emulator's own paths answer for both, at the front: `/_orders/calls` sums the two
  processes' counts, `/_orders/faults` sets the same plan in both (refused whole by the front
  first) and sums what each injected, `/_orders/wire` records in both, `/_orders/access` lists
  both access logs (the front's calls first), `/moto-api/reset` resets both.
  `/moto-api/data.json` and moto's IAM enforcement (`/moto-api/reset-auth`) are the front's
  alone: least-privilege runs use one process (`--one-process`).
- Services that create another service's resources inside moto stay in the front, and so do
  those resources: moto's CloudFormation makes a stack's tables in the front's own DynamoDB,
  which DynamoDB calls do not reach. So the front refuses a CloudFormation call whose template
  names a table, naming `--one-process` (tests/integration/test_template_deploy.py runs one
  process). SNS delivering to SQS is unaffected: both are in the front.
- The two live and die together: the DynamoDB process stops when the front does (and when the
  front is killed, by its parent watch), and the front stops, with an error, when the DynamoDB
  process dies: half an emulator would answer every DynamoDB call with an error.

ORDERS_EMULATOR_PROCESSES=1 (or `orders emulator --one-process`) serves everything from one
process, as before.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import unquote_plus, urlsplit

from orders.emulator.access_log import ACCESS_PATH
from orders.emulator.fault_answers import answer, query_error
from orders.emulator.faults import FAULTS_PATH
from orders.emulator.routes import STATS_PATH, request_body, signing_service
from orders.emulator.wire_log import WIRE_PATH

logger = logging.getLogger(__name__)

#: The services (credential scopes) the DynamoDB process serves; DynamoDB Streams signs as dynamodb.
GROUPED = frozenset({"dynamodb"})
#: The SDK's per-service variables that point clients at the DynamoDB process.
ENDPOINT_VARIABLES = ("AWS_ENDPOINT_URL_DYNAMODB", "AWS_ENDPOINT_URL_DYNAMODB_STREAMS")
#: ORDERS_EMULATOR_PROCESSES: 2 (the default) or 1.
PROCESSES_VARIABLE = "ORDERS_EMULATOR_PROCESSES"
#: A kept connection to the DynamoDB process idle this long is opened again rather than reused: the
#: server closes idle ones after a minute (orders.emulator.server.IDLE_CONNECTION_SECONDS), and a
#: request sent on a connection it has just closed fails though the process is fine.
REUSE_SECONDS = 30.0
#: How long a passed-on call may take (DynamoDB has no long poll; a transaction takes milliseconds).
CALL_TIMEOUT = 60.0
#: The X-Amz-Target prefixes of DynamoDB and DynamoDB Streams (DynamoDB_20120810., DynamoDBStreams_20120810.).
_DYNAMODB_TARGETS = ("DynamoDB_", "DynamoDBStreams_")
#: What a CloudFormation template's tables are named by.
_TABLE_RESOURCE = "AWS::DynamoDB::"
#: How a kept connection the server closed while it was idle fails the next request sent on it.
_CLOSED_WHILE_IDLE = (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError)
#: Headers of one connection, not of the request (RFC 9110 7.6.1), and the length, which is recounted.
_HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-connection", "te", "trailer",
                         "transfer-encoding", "upgrade", "content-length"})


def processes(env: Mapping[str, str] | None = None) -> int:
    """How many processes the emulator runs as: ORDERS_EMULATOR_PROCESSES, 2 unless it says 1."""
    raw = (os.environ if env is None else env).get(PROCESSES_VARIABLE, "").strip() or "2"
    if raw not in ("1", "2"):
        raise ValueError(f"{PROCESSES_VARIABLE}={raw!r}: 1 (one process) or 2 (DynamoDB in its own)")
    return int(raw)


def client_variables(dynamodb_endpoint: str) -> dict[str, str]:
    """The variables that send a client's DynamoDB calls straight to the DynamoDB process."""
    return {name: dynamodb_endpoint for name in ENDPOINT_VARIABLES}


Reply = tuple[str, list[tuple[str, str]], bytes]


class Front:
    """The front's WSGI middleware: DynamoDB calls passed on, the emulator's paths answered for both."""

    def __init__(self, app: Callable[..., Any], dynamodb_endpoint: str):
        self.app = app
        self.dynamodb_endpoint = dynamodb_endpoint
        parts = urlsplit(dynamodb_endpoint)
        self._address = (parts.hostname or "127.0.0.1", parts.port or 80)
        self._local = threading.local()  # one kept connection per server thread

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path.startswith(STATS_PATH):
            return self._both(environ, start_response, merge_counts)
        if path.startswith(FAULTS_PATH):
            return self._both(environ, start_response, merge_fault_reports, front_first=True)
        if path.startswith(WIRE_PATH):
            return self._both(environ, start_response, merge_wire_logs)
        if path.startswith(ACCESS_PATH):
            return self._both(environ, start_response, lambda front, back: [*front, *back])
        if path == "/moto-api/reset":
            return self._both(environ, start_response, lambda front, _: front)
        if _for_dynamodb(environ):
            return _reply(start_response, self._pass_on(environ, request_body(environ)))
        if signing_service(environ) == "cloudformation":
            return self._stack(environ, start_response)
        return self.app(environ, start_response)

    def _stack(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        """A CloudFormation call, refused if it would make tables: moto's CloudFormation makes them in this
        process's own DynamoDB, where no DynamoDB call reaches them (create_stack would succeed, and every
        call to the stack's tables would then fail as if they did not exist)."""
        body = request_body(environ)
        if _TABLE_RESOURCE in unquote_plus(body.decode("utf-8", "replace")):
            status, code = 400, "ValidationError"
            message = ("this emulator serves DynamoDB from a process of its own, out of CloudFormation's "
                       "reach: a stack with tables needs one process (orders emulator --one-process, "
                       "or ORDERS_EMULATOR_PROCESSES=1)")
            error = query_error(code, message, str(uuid.uuid4()), status)
            return _reply(start_response, (f"{status} Bad Request", [("Content-Type", "text/xml")], error))
        return self.app(environ, start_response)

    def _both(self, environ: dict[str, Any], start_response: Callable[..., Any],
              merge: Callable[[Any, Any], Any], front_first: bool = False) -> list[bytes]:
        """One of the emulator's paths, asked of both processes, answered with `merge` of the two.

        `front_first`: the front answers first and the DynamoDB process is asked only if it
        accepted (a plan the front refuses changes neither).
        """
        body = request_body(environ)
        if front_first:
            front = self._inner(environ)
            if not front[0].startswith("200"):
                return _reply(start_response, front)
            back = self._pass_on(environ, body)
            if not back[0].startswith("200"):  # taken by the front only: said, not hidden
                error = {"error": f"the DynamoDB process answered {back[0]}: the front's answer holds "
                                  "for the front only", "front": json.loads(front[2]),
                         "dynamodb_process": back[2].decode("utf-8", "replace")}
                return _reply(start_response, ("502 Bad Gateway", [("Content-Type", "application/json")],
                                               json.dumps(error).encode()))
        else:
            back = self._pass_on(environ, body)
            front = self._inner(environ)
        if not back[0].startswith("200"):
            return _reply(start_response, back)
        if not front[0].startswith("200"):
            return _reply(start_response, front)
        merged = json.dumps(merge(json.loads(front[2]), json.loads(back[2])), sort_keys=True).encode()
        return _reply(start_response, ("200 OK", [("Content-Type", "application/json")], merged))

    def _inner(self, environ: dict[str, Any]) -> Reply:
        """What the front's own app answers (its status, headers and body)."""
        got: list[Any] = []
        request_body(environ)  # read already: a fresh reader of it for the app
        chunks = self.app(environ, lambda status, headers, *_: got.extend((status, headers)))
        data = b"".join(chunks)
        return got[0], list(got[1]), data

    def _pass_on(self, environ: dict[str, Any], body: bytes) -> Reply:
        """The DynamoDB process's answer, the request sent as it came (Host too: the signature covers it)."""
        query = environ.get("QUERY_STRING")
        target = environ.get("PATH_INFO", "/") + (f"?{query}" if query else "")
        headers = {key[5:].replace("_", "-").title(): value for key, value in environ.items()
                   if key.startswith("HTTP_") and key[5:].lower().replace("_", "-") not in _HOP_BY_HOP}
        if environ.get("CONTENT_TYPE"):
            headers["Content-Type"] = environ["CONTENT_TYPE"]
        headers["Content-Length"] = str(len(body))
        method = environ.get("REQUEST_METHOD", "POST")
        try:
            connection = self._connection()
            try:
                response = connection.request_reply(method, target, body, headers)
            except _CLOSED_WHILE_IDLE:
                if not connection.served:
                    raise
                # A kept connection the DynamoDB process closed while it was idle (its keep-alive
                # limits): nothing was read from it, so the request goes once more, on a new one.
                response = self._connection().request_reply(method, target, body, headers)
        except (OSError, http.client.HTTPException) as exc:  # refused, reset, timed out: gone or stuck
            logger.warning("the DynamoDB process at %s did not answer %s %s: %s: %s", self.dynamodb_endpoint,
                           environ.get("REQUEST_METHOD"), environ.get("PATH_INFO"), type(exc).__name__, exc)
            if not signing_service(environ):  # the emulator's own path: answered plainly
                error = {"error": f"the DynamoDB process did not answer ({type(exc).__name__})"}
                return "502 Bad Gateway", [("Content-Type", "application/json")], json.dumps(error).encode()
            return answer(environ, "dynamodb", "503")
        return response

    def _connection(self) -> _Connection:
        kept: _Connection | None = getattr(self._local, "connection", None)
        if kept is None or kept.closed or kept.idle_for() > REUSE_SECONDS:
            if kept is not None:
                kept.close()
            kept = self._local.connection = _Connection(*self._address)
        return kept


class _Connection:
    """One kept HTTP connection to the DynamoDB process, and when it was last used."""

    def __init__(self, host: str, port: int):
        self.http = http.client.HTTPConnection(host, port, timeout=CALL_TIMEOUT)
        self.used = time.monotonic()
        self.served = 0  # answers read from it: a connection that served one was kept idle since
        self.closed = False

    def idle_for(self) -> float:
        return time.monotonic() - self.used

    def request_reply(self, method: str, target: str, body: bytes, headers: dict[str, str]) -> Reply:
        try:
            self.http.request(method, target, body=body, headers=headers)
            response = self.http.getresponse()
            data = response.read()
        except BaseException:
            self.close()  # whatever state it is in, it serves no other request
            raise
        self.used = time.monotonic()
        self.served += 1
        kept = [(name, value) for name, value in response.getheaders() if name.lower() not in _HOP_BY_HOP]
        return f"{response.status} {response.reason}", kept, data

    def close(self) -> None:
        self.closed = True
        self.http.close()


def _for_dynamodb(environ: dict[str, Any]) -> bool:
    """A DynamoDB or DynamoDB Streams call: by its signature's scope, else (unsigned) by its target."""
    service = signing_service(environ)
    if service is not None:
        return service in GROUPED
    return str(environ.get("HTTP_X_AMZ_TARGET", "")).startswith(_DYNAMODB_TARGETS)


def _reply(start_response: Callable[..., Any], reply: Reply) -> list[bytes]:
    status, headers, body = reply
    start_response(status, [*headers, ("Content-Length", str(len(body)))])
    return [body]


def merge_counts(front: Mapping[str, int], back: Mapping[str, int]) -> dict[str, int]:
    """Both processes' call counts ('service:Action' -> n), summed."""
    return dict(Counter(front) + Counter(back))


def merge_fault_reports(front: dict[str, Any], back: dict[str, Any]) -> dict[str, Any]:
    """The front's fault report (the plan is the same in both) with what both injected."""
    return {**front, "injected": dict(Counter(front.get("injected", {})) + Counter(back.get("injected", {})))}


def merge_wire_logs(front: dict[str, Any], back: dict[str, Any]) -> dict[str, Any]:
    """Both processes' wire records, the front's first."""
    return {"recording": front["recording"], "dropped": front["dropped"] + back["dropped"],
            "calls": [*front["calls"], *back["calls"]]}
