"""Who is calling: an API key, sent as `Authorization: Bearer KEY`, on every route but the public ones.

Public: `GET /health` (shallow: it touches no AWS, so it costs nothing to ask) and
`GET /openapi.json` (the interface, which a client reads before it has a key;
it holds no secret). `GET /health?deep=1` calls AWS and needs a key. Every other
request, an unknown path included, is answered 401 without a valid key
(missing, malformed, unknown or revoked alike), with `WWW-Authenticate: Bearer`
(RFC 6750); the client a key names is then `current_client()`.
"""

from __future__ import annotations

import logging
import re

from flask import current_app, g, jsonify, request
from flask.typing import ResponseReturnValue

from orders.aws.api_keys import HINT_LENGTH, KEY_PATTERN, ApiKeys

log = logging.getLogger("orders.api")

PUBLIC_ENDPOINTS = frozenset({"health", "openapi"})
REALM = "orders"
#: RFC 6750's credentials: the scheme (any case), spaces, the token.
BEARER = re.compile(r"\A[Bb][Ee][Aa][Rr][Ee][Rr] +(\S+) *\Z")
UNAUTHORIZED = "a valid API key is required: Authorization: Bearer KEY"


def bearer_token(header: str | None) -> str | None:
    """The token of a Bearer Authorization header; None if there is none or it is malformed."""
    found = BEARER.match(header or "")
    return found.group(1) if found else None


def is_public() -> bool:
    """Whether this request needs no key."""
    deep_health = request.endpoint == "health" and bool(request.args.get("deep"))
    return request.endpoint in PUBLIC_ENDPOINTS and not deep_health


def authenticate() -> ResponseReturnValue | None:
    """Before every request: the caller's client in `g.client`, or the 401 answer."""
    if is_public():
        return None
    header = request.headers.get("Authorization")
    token = bearer_token(header)
    client = ApiKeys(current_app.config["ORDERS_SETTINGS"]).client_of(token) if token else None
    if client is None:
        log.info("401 %s %s %r: %s", g.request_id, request.method, request.path[:200], _reason(header, token))
        challenge = f'Bearer realm="{REALM}"' + ("" if header is None else ', error="invalid_token"')
        return jsonify(error=UNAUTHORIZED), 401, {"WWW-Authenticate": challenge}
    g.client = client
    return None


def _reason(header: str | None, token: str | None) -> str:
    """Why a request was refused, for the log: never a key, only an API key's hint (no secret)."""
    if header is None:
        return "no Authorization header"
    if token is None:
        return "malformed Authorization header"
    if not KEY_PATTERN.match(token):
        return "not an API key"
    return f"unknown or revoked key {token[:HINT_LENGTH]}..."


def current_client() -> str:
    """The client whose key this request carries."""
    client: str = g.client
    return client
