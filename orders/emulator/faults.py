"""Faults the emulator injects: AWS errors at a rate, and outages of a service for a while.

A plan, set over HTTP on the emulator (or at its start, `orders emulator --fault-rate
... --outage ...`), makes some AWS calls fail as AWS fails them, each in its own
service's protocol, so botocore reads and retries it as it would AWS's answer:

- `error_rate`: that share of the calls to `services` (every AWS service when empty)
  answers a throttling error (DynamoDB's ProvisionedThroughputExceededException,
  SQS's RequestThrottled, SNS's Throttling), a 500 or a 503, chosen at random
  among `kinds` (from `seed`, when given, so a run can be repeated);
- `outages`: each takes a target away for `seconds`, from its POST (or `delay`
  seconds after it): `sns`, `dynamodb`, `sqs` (every SQS call), `sqs-send`
  (SendMessage and SendMessageBatch only), or `monitoring` (CloudWatch, by its
  signing name; `cloudwatch` is taken too). Every matching call is answered 503
  ServiceUnavailable, as AWS answers while a service is down. (A refused
  connection would be as real for a network partition; it would also stop the
  counting, and botocore classifies both as retryable.)

`POST /_orders/faults` sets the plan: each key given replaces that part of it,
`outages` are added to those under way. `GET /_orders/faults` reports the plan, the
faults injected by 'service:Action:kind' (kind: throttle, 500, 503, outage) and the
outages (times in epoch seconds). `POST /_orders/faults/reset` clears it all. The
emulator's own paths (`/_orders/*`, `/moto-api`) are never faulted. `set_faults`,
`start_outage`, `fault_report` and `clear_faults` are the same over HTTP, for tests
and the fault campaign.
"""

from __future__ import annotations

import json
import random
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from orders.emulator.fault_answers import KINDS, answer

FAULTS_PATH = "/_orders/faults"
#: What an outage can take away besides a whole service (by its signing name).
SQS_SEND = "sqs-send"
SQS_SEND_ACTIONS = frozenset({"SendMessage", "SendMessageBatch"})
#: The services the platform calls, by the name their requests are signed with (CloudWatch's is `monitoring`).
SERVICES = ("dynamodb", "sns", "sqs", "monitoring", "kms")
ALIASES = {"cloudwatch": "monitoring"}


@dataclass(frozen=True)
class Outage:
    """One target taken away from `starts` for `seconds` (epoch seconds)."""

    target: str
    seconds: float
    starts: float

    @property
    def ends(self) -> float:
        return self.starts + self.seconds

    def active(self, now: float) -> bool:
        return self.starts <= now < self.ends

    def matches(self, service: str, action: str) -> bool:
        if self.target == SQS_SEND:
            return service == "sqs" and action in SQS_SEND_ACTIONS
        return service == self.target

    def report(self, now: float) -> dict[str, Any]:
        return {"target": self.target, "seconds": self.seconds, "started": self.starts, "ends": self.ends,
                "active": self.active(now)}


def _service(name: Any) -> str:
    service = name.strip().lower() if isinstance(name, str) else name
    service = ALIASES.get(service, service)
    if service not in SERVICES:
        raise ValueError(f"a service is one of {', '.join(SERVICES)}, got {name!r}")
    return str(service)


def outage(spec: Any, now: float) -> Outage:
    """An outage from {"target", "seconds", "delay"?}, starting `delay` seconds after `now`."""
    if not isinstance(spec, Mapping):
        raise ValueError(f"an outage is {{'target': ..., 'seconds': ...}}, got {spec!r}")
    seconds, delay = _number(spec.get("seconds"), "seconds"), _number(spec.get("delay", 0), "delay")
    if seconds <= 0 or delay < 0:
        raise ValueError(f"an outage lasts more than 0 s and starts now or later, got {dict(spec)!r}")
    target = spec.get("target")
    return Outage(SQS_SEND if target == SQS_SEND else _service(target), seconds, now + delay)


def _number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number, got {value!r}")
    return float(value)


class FaultPlan:
    """The faults one emulator injects, and those it injected (thread-safe: the server is threaded)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.error_rate = 0.0
            self.services: tuple[str, ...] = ()
            self.kinds: tuple[str, ...] = KINDS
            self.seed: int | None = None
            self._random = random.Random()
            self.outages: list[Outage] = []
            self.injected: Counter[str] = Counter()

    def update(self, body: Any) -> None:
        """Apply a POSTed plan (module docstring); ValueError, with nothing changed, if any part is wrong."""
        if not isinstance(body, Mapping):
            raise ValueError("the plan is a JSON object")
        rate = _number(body.get("error_rate", self.error_rate), "error_rate")
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"error_rate is between 0 and 1, got {rate}")
        services = tuple(_service(s) for s in _listed(body.get("services", self.services), "services"))
        kinds = tuple(_listed(body.get("kinds", self.kinds), "kinds")) or KINDS
        if set(kinds) - set(KINDS):
            raise ValueError(f"kinds are among {', '.join(KINDS)}, got {', '.join(kinds)}")
        seed = body.get("seed")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ValueError(f"seed is a whole number, got {seed!r}")
        now = time.time()
        added = [outage(spec, now) for spec in _listed(body.get("outages", ()), "outages")]
        with self._lock:
            self.error_rate, self.services, self.kinds = rate, services, kinds
            if "seed" in body:
                self.seed, self._random = seed, random.Random(seed)
            self.outages += added

    def fault_for(self, service: str, action: str) -> str | None:
        """The kind of fault this call gets (counted as injected), or None."""
        now = time.time()
        with self._lock:
            if any(o.active(now) and o.matches(service, action) for o in self.outages):
                kind: str | None = "outage"
            elif self.error_rate and (not self.services or service in self.services) \
                    and self._random.random() < self.error_rate:
                kind = self._random.choice(self.kinds)
            else:
                return None
            self.injected[f"{service}:{action}:{kind}"] += 1
            return kind

    def report(self) -> dict[str, Any]:
        now = time.time()
        with self._lock:
            return {"plan": {"error_rate": self.error_rate, "services": list(self.services),
                             "kinds": list(self.kinds), "seed": self.seed},
                    "injected": dict(self.injected),
                    "outages": [o.report(now) for o in self.outages]}


def _listed(value: Any, name: str) -> list[Any]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise ValueError(f"{name} is a list, got {value!r}")
    return list(value)


class Faults:
    """The plan in front of moto: answers the control path, and the calls it faults."""

    def __init__(self) -> None:
        self.plan = FaultPlan()

    def control(self, environ: dict[str, Any], body: bytes,
                start_response: Callable[..., Any]) -> list[bytes]:
        """GET or POST /_orders/faults, POST /_orders/faults/reset."""
        path, method = environ.get("PATH_INFO", ""), environ.get("REQUEST_METHOD", "GET")
        status = "200 OK"
        try:
            if path == FAULTS_PATH + "/reset" and method == "POST":
                self.plan.reset()
            elif path == FAULTS_PATH and method == "POST":
                self.plan.update(json.loads(body or b"{}"))
            elif path != FAULTS_PATH or method != "GET":
                raise LookupError(f"{method} {path}: use GET or POST {FAULTS_PATH}, POST {FAULTS_PATH}/reset")
            payload: dict[str, Any] = self.plan.report()
        except LookupError as exc:
            status, payload = "404 Not Found", {"error": str(exc)}
        except ValueError as exc:  # json.JSONDecodeError is one
            status, payload = "400 Bad Request", {"error": str(exc)}
        return json_answer(start_response, status, payload)

    def inject(self, environ: dict[str, Any], call: str,
               start_response: Callable[..., Any]) -> list[bytes] | None:
        """The faulty answer to this AWS call ('service:Action'), or None to let moto answer."""
        service, _, action = call.partition(":")
        if service == "unknown":
            return None
        kind = self.plan.fault_for(service, action)
        if kind is None:
            return None
        status, headers, body = answer(environ, service, kind)
        start_response(status, [*headers, ("Content-Length", str(len(body)))])
        return [body]


def json_answer(start_response: Callable[..., Any], status: str, payload: Any) -> list[bytes]:
    body = json.dumps(payload, sort_keys=True).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


def control_request(endpoint: str, path: str, payload: Any = None) -> dict[str, Any]:
    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(endpoint.rstrip("/") + path, data=data,
                                     method="GET" if payload is None else "POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return dict(json.loads(response.read()))


def _outage_specs(outages: Iterable[Any]) -> list[dict[str, Any]]:
    """Outages as the HTTP plan takes them, from dicts or (target, seconds[, delay]) tuples."""
    specs = []
    for item in outages:
        if isinstance(item, Mapping):
            specs.append(dict(item))
        else:
            target, seconds, *delay = item
            specs.append({"target": target, "seconds": seconds, "delay": delay[0] if delay else 0})
    return specs


def set_faults(endpoint: str, error_rate: float = 0.0, services: Sequence[str] = (),
               outages: Iterable[Any] = (), seed: int | None = None, kinds: Sequence[str] = ()) -> None:
    """Set the error rate and its services (and seed, kinds) on the emulator; start `outages` now.

    Outages already under way go on (`clear_faults` ends them). urllib's HTTPError (400) on a bad plan.
    """
    plan: dict[str, Any] = {"error_rate": error_rate, "services": list(services),
                            "outages": _outage_specs(outages), "kinds": list(kinds)}
    if seed is not None:
        plan["seed"] = seed
    control_request(endpoint, FAULTS_PATH, plan)


def start_outage(endpoint: str, target: str, seconds: float, delay: float = 0.0) -> None:
    """Take `target` away for `seconds`, from now (or `delay` seconds from now), on top of the plan."""
    control_request(endpoint, FAULTS_PATH,
                    {"outages": [{"target": target, "seconds": seconds, "delay": delay}]})


def fault_report(endpoint: str) -> dict[str, Any]:
    """{"plan": {...}, "injected": {"service:Action:kind": n}, "outages": [{target, started, ends, active}]}
    (times in epoch seconds)."""
    return control_request(endpoint, FAULTS_PATH)


def clear_faults(endpoint: str) -> None:
    """No more faults, outages ended, counts zeroed."""
    control_request(endpoint, FAULTS_PATH + "/reset", {})


def parse_outage(text: str) -> dict[str, Any]:
    """`TARGET:SECONDS[@DELAY]` (the command line's form) as an outage of the plan; ValueError if not."""
    target, _, rest = text.partition(":")
    seconds, _, delay = rest.partition("@")
    try:
        spec = {"target": target, "seconds": float(seconds), "delay": float(delay or 0)}
        outage(spec, 0.0)
    except ValueError as exc:
        raise ValueError(f"--outage {text!r}: use TARGET:SECONDS[@DELAY], e.g. sns:180 or "
                         f"sqs-send:60@30 ({exc})") from None
    return spec


def service_list(text: str) -> list[str]:
    """`--fault-services sqs,sns` as a list (empty: every service)."""
    return [_service(name) for name in text.split(",") if name.strip()]


def add_fault_arguments(parser: Any) -> None:
    """The server's fault options (`orders emulator` passes its own on)."""
    parser.add_argument("--fault-rate", type=float, default=0.0,
                        help="share of AWS calls answered with throttling or a 5xx (0 to 1)")
    parser.add_argument("--fault-services", default="", help="comma-separated services the rate applies to")
    parser.add_argument("--fault-seed", type=int, default=None, help="seed of the faults' random choices")
    parser.add_argument("--outage", action="append", default=[], metavar="TARGET:SECONDS[@DELAY]",
                        help="take a target away for SECONDS, DELAY seconds after start (repeatable)")


def plan_from_arguments(parser: Any, args: Any) -> dict[str, Any] | None:
    """The plan the options ask for, None for none; the parser's error (exit 2) on a bad one."""
    try:
        plan: dict[str, Any] = {"error_rate": args.fault_rate, "services": service_list(args.fault_services),
                                "outages": [parse_outage(text) for text in args.outage]}
        if args.fault_seed is not None:
            plan["seed"] = args.fault_seed
        FaultPlan().update(plan)  # checked as the server will check it
    except ValueError as exc:
        parser.error(str(exc))
    return plan if plan["error_rate"] or plan["outages"] else None
