"""Poison messages of every shape known to have crashed, spun or silently lost a worker; plain code.

Each shape is an SQS body as an attacker or a broken producer would send it with
a plain SendMessage: kombu envelopes with a part of the wrong type, a task header
without an id, JSON nested far past any recursion limit, a 5,000-digit integer,
a body that does not decode under a valid task header, arbitrary text and bytes,
a task no worker knows, a content type it does not accept (docs/reliability.md,
"Poison messages"). `poison(n, seed)` cycles through them with seeded variations,
every body unique (FIFO queues deduplicate by content).
"""

from __future__ import annotations

import base64
import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

#: A task every worker knows (every worker loads every task module).
KNOWN_TASK = "orders.place"
NESTING = 50_000


@dataclass(frozen=True)
class PoisonMessage:
    """One poison message: its shape's name and the SQS body to send."""

    shape: str
    body: str


def envelope(rng: random.Random, headers: Any = None, properties: Any = None, raw_body: str | None = None,
             content_type: str = "application/json", **extra: Any) -> str:
    """A kombu envelope as Celery sends it over SQS, with any part replaced."""
    task_id = f"poison-{rng.getrandbits(64):016x}"
    if raw_body is None:
        raw_body = _b64(json.dumps([[task_id], {}, {}]).encode())
    message = {
        "body": raw_body, "content-encoding": "utf-8", "content-type": content_type,
        "headers": {"lang": "py", "task": KNOWN_TASK, "id": task_id} if headers is None else headers,
        "properties": {"body_encoding": "base64", "delivery_tag": task_id,
                       "delivery_info": {"exchange": "", "routing_key": "orders"}}
        if properties is None else properties,
        **extra,
    }
    return json.dumps(message)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _nested(depth: int, marker: str) -> str:
    return "[" * depth + json.dumps(marker) + "]" * depth


def _text(rng: random.Random, size: int) -> str:
    """Printable characters SQS accepts in a body (it refuses most control characters and surrogates)."""
    codes = rng.choices(range(0x20, 0x2FFF), k=size)
    return "".join(chr(c) for c in codes if not 0xD800 <= c <= 0xDFFF)


def _tag(rng: random.Random) -> str:
    return f"{rng.getrandbits(48):012x}"


SHAPES: dict[str, Callable[[random.Random], str]] = {
    "headers-not-an-object": lambda r: envelope(r, headers=f"task={KNOWN_TASK};{_tag(r)}"),
    "properties-not-an-object": lambda r: envelope(r, properties=["x", _tag(r)]),
    "task-without-id": lambda r: envelope(r, headers={"lang": "py", "task": KNOWN_TASK, "tag": _tag(r)}),
    "deeply-nested-envelope": lambda r: _nested(NESTING, _tag(r)),
    "deeply-nested-body": lambda r: envelope(r, raw_body=_b64(_nested(NESTING, _tag(r)).encode())),
    "5000-digit-integer": lambda r: envelope(r, priority="BIG").replace(
        '"BIG"', str(r.randint(1, 9)) + "7" * 4999),
    "5000-digit-integer-in-body": lambda r: envelope(
        r, raw_body=_b64(b"[[" + str(r.randint(1, 9)).encode() + b"9" * 4999 + b"], {}, {}]")),
    "undecodable-body": lambda r: envelope(r, raw_body=_b64(b"{not json " + _tag(r).encode())),
    "arbitrary-text": lambda r: _text(r, 2000),
    "arbitrary-bytes-in-base64": lambda r: _b64(r.randbytes(3000)),
    "unknown-task": lambda r: envelope(r, headers={"lang": "py", "task": f"nope.never_{_tag(r)}",
                                                   "id": _tag(r)}),
    "pickle-content-type": lambda r: envelope(r, content_type="application/x-python-serialize"),
    "json-but-not-an-envelope": lambda r: json.dumps({"order": _tag(r), "items": [1, 2, 3]}),
    # A valid task whose chain is not signatures: Celery would fail on it only after the step had run.
    "chain-not-signatures": lambda r: envelope(
        r, raw_body=_b64(json.dumps([[f"poison-{_tag(r)}"], {}, {"chain": [_tag(r), 1]}]).encode())),
}


def poison(n: int, seed: int = 1) -> list[PoisonMessage]:
    """n poison messages, the shapes in turn, each body different."""
    rng = random.Random(seed)
    names = list(SHAPES)
    return [PoisonMessage(names[i % len(names)], SHAPES[names[i % len(names)]](rng)) for i in range(n)]
