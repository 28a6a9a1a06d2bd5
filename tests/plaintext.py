"""Find sensitive values in what a run wrote, however deeply it is wrapped.

What a run writes nests encodings: an SQS body on the wire is JSON (or a form-encoded query),
whose MessageBody is kombu's envelope in base64, whose `body` is the task's arguments in
base64 again; a DynamoDB item is JSON with typed values; an SNS message is JSON in JSON.
`findings` looks at every text, every string inside it that parses as JSON, and every run
of base64 in it that decodes to text, down to MAX_DEPTH layers, and matches values case-
insensitively (a label or a log may change the case of an address).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import unquote_plus

#: Layers of JSON, base64 and form encoding looked through.
MAX_DEPTH = 8
#: Shorter runs of base64 alphabet are words, not encodings worth decoding.
MIN_BASE64 = 16
_BASE64_RUN = re.compile(rf"[A-Za-z0-9+/_-]{{{MIN_BASE64},}}={{0,2}}")


def findings(plaintexts: Mapping[str, str], sources: Mapping[str, Any]) -> list[str]:
    """`source: label` for each plaintext (label -> value) found in each source (name -> text or JSON)."""
    needles = {label: value.lower() for label, value in plaintexts.items()}
    found = []
    for name, source in sources.items():
        text = source if isinstance(source, str) else json.dumps(source, default=str)
        views = "\n".join(view.lower() for view in layers(text))
        found += [f"{name}: {label}" for label, needle in needles.items() if needle in views]
    return found


def layers(text: str, depth: int = 0) -> Iterator[str]:
    """`text` and every text it carries encoded (JSON strings, base64, form encoding)."""
    yield text
    if depth >= MAX_DEPTH:
        return
    if "%" in text or "+" in text:
        unquoted = unquote_plus(text)
        if unquoted != text:
            yield from layers(unquoted, depth + 1)
    for inner in _json_strings(text):
        if inner != text:
            yield from layers(inner, depth + 1)
    for run in _BASE64_RUN.findall(text):
        decoded = _base64_text(run)
        if decoded is not None:
            yield from layers(decoded, depth + 1)


def _json_strings(text: str) -> list[str]:
    stripped = text.strip()
    if not stripped.startswith(("{", "[", '"')):
        return []
    try:
        value = json.loads(stripped)
    except ValueError:
        return []
    strings: list[str] = []
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            strings.append(item)
        elif isinstance(item, dict):
            strings += [k for k in item if isinstance(k, str)]
            stack += item.values()
        elif isinstance(item, list):
            stack += item
    return strings


def _base64_text(run: str) -> str | None:
    padded = run.rstrip("=") + "=" * (-len(run.rstrip("=")) % 4)
    for decode in (base64.b64decode, base64.urlsafe_b64decode):
        try:
            return decode(padded).decode("utf-8")
        except (binascii.Error, ValueError):  # not base64, or bytes that are not text (a ciphertext)
            continue
    return None
