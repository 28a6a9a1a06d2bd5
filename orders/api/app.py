"""The HTTP API for order submission (the exercise's API Gateway): a small Flask app.

    POST /orders          place an order: 202 with its id, 400 with every problem, 409 for a
                          reused Idempotency-Key, 413 for a body over MAX_BODY_BYTES
    GET  /orders/<id>     the order's status and history (404 if unknown)
    GET  /health          liveness; `?deep=1` also checks that every queue is reachable
    GET  /openapi.json    the OpenAPI document (orders.api.openapi)

Submission is what `place_order.delay(order)` does (validation at the door, then
one SQS message), into the environment of the settings the API was created with,
whatever else the process serves: the catalogue looked up, the queue sent to, the
order store read and the idempotency keys are all that environment's. Workers do
the rest. No input is answered with a 5xx: a body is read only up to its limit,
parsed without recursion limits being reached, and validated with every problem
listed (docs/reliability.md); a 503 means AWS was unavailable, whatever the input.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from flask import Flask, Request, current_app, jsonify, request
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import HTTPException

from orders.api.idempotency import KEY_PATTERN, ClaimState, IdempotencyKeys, fingerprint
from orders.api.openapi import MAX_BODY_BYTES, document
from orders.aws.store import OrderStore
from orders.aws.tables import aws_errors
from orders.celery import app as celery_app
from orders.domain.errors import InvalidOrder, RetryableError
from orders.domain.order import ID_PATTERN
from orders.domain.times import now_iso
from orders.runtime.envelope import depth
from orders.runtime.queue_urls import resolve_queue_urls
from orders.runtime.step_tasks import admit
from orders.settings import Settings, get_settings
from tasks.orders import place_order

#: JSON nested deeper than this is refused before validation (an order is 3 levels deep).
MAX_BODY_DEPTH = 16
NOT_AN_OBJECT = "the request body must be a JSON object (Content-Type: application/json)"


class BadBody(Exception):
    """The request body is not a JSON object the API can read."""


def create_app(settings: Settings | None = None) -> Flask:
    """The API bound to `settings` (default: the process's settings)."""
    app = Flask("orders.api.app")
    app.config["ORDERS_SETTINGS"] = settings or get_settings()
    # Werkzeug answers 413 for a longer body, before anything reads it.
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    app.add_url_rule("/orders", "submit", submit_order, methods=["POST"])
    app.add_url_rule("/orders/<order_id>", "status", order_status, methods=["GET"])
    app.add_url_rule("/health", "health", health, methods=["GET"])
    app.add_url_rule("/openapi.json", "openapi", openapi, methods=["GET"])
    app.register_error_handler(HTTPException, http_error)
    app.register_error_handler(RetryableError, unavailable)
    return app


def _settings() -> Settings:
    settings: Settings = current_app.config["ORDERS_SETTINGS"]
    return settings


def place(settings: Settings, raw: Any) -> None:
    """`place_order.delay(raw)` into `settings`' environment; InvalidOrder if invalid, nothing sent then."""
    order, options = admit(settings, raw)
    with aws_errors(), celery_app.producer_pool_for(settings).acquire(block=True) as producer:
        place_order.apply_async((order.to_json(),), {"placed_at": now_iso()}, producer=producer, **options)


def submit_order() -> ResponseReturnValue:
    """Validate and enqueue one order (once per Idempotency-Key)."""
    try:
        order = read_json_object(request)
    except BadBody as exc:
        return _invalid([str(exc)])
    key = request.headers.get("Idempotency-Key")
    if key is None:
        # The caller may choose the id (placing the same order twice is then harmless);
        # otherwise the API gives one.
        return _place_answer(order, order["orderId"] if "orderId" in order else _new_order_id())
    if not KEY_PATTERN.match(key):
        return _invalid(["Idempotency-Key: must be 1-255 printable ASCII characters without spaces"])
    return _idempotent(IdempotencyKeys(_settings()), key, order)


def _idempotent(keys: IdempotencyKeys, key: str, order: dict[str, Any]) -> ResponseReturnValue:
    """The first answer to `key`, or 409; else place under the key's order id and keep the answer."""
    digest = fingerprint(order)
    claim = keys.get(key)
    if claim is not None and claim.fingerprint != digest:
        return jsonify(error="this Idempotency-Key was used with another request body"), 409
    if claim is not None and claim.state is ClaimState.DONE:
        return jsonify(claim.answer), claim.status, {"Idempotent-Replayed": "true",
                                                     "Location": f"/orders/{claim.order_id}"}
    if claim is not None and not claim.available(time.time()):
        return jsonify(error="a request with this Idempotency-Key is in progress"), 409, {"Retry-After": "1"}
    order_id = claim.order_id if claim is not None else \
        (order["orderId"] if "orderId" in order else _new_order_id())
    if not keys.claim(key, digest, str(order_id), claim):  # another request claimed it meanwhile
        return jsonify(error="a request with this Idempotency-Key is in progress"), 409, {"Retry-After": "1"}
    try:
        body, status, headers = _place_answer(order, order_id)
    except RetryableError:
        keys.reopen(key)
        raise
    if status == 400:
        keys.release(key)  # nothing placed: the key is free for a corrected request
    else:
        keys.answer(key, status, body.get_json())
    return body, status, headers


def _place_answer(order: dict[str, Any], order_id: Any) -> Any:
    """Place `order` under `order_id`: the 202 answer, or 400 with every problem."""
    try:
        place(_settings(), {**order, "orderId": order_id})
    except InvalidOrder as exc:
        return _invalid(exc.problems)
    body = {"orderId": order_id, "status": "accepted", "statusUrl": f"/orders/{order_id}"}
    return jsonify(body), 202, {"Location": f"/orders/{order_id}"}


def _new_order_id() -> str:
    return f"ord-{uuid.uuid4().hex}"


def read_json_object(req: Request) -> dict[str, Any]:
    """The request's JSON object; BadBody if it is not one (Werkzeug raises 413 past the limit)."""
    if not req.is_json:
        raise BadBody(NOT_AN_OBJECT)
    data = req.get_data(cache=False)
    try:
        value = json.loads(data)
    except RecursionError:
        raise BadBody(f"{NOT_AN_OBJECT}: JSON nested too deeply") from None
    except ValueError as exc:  # not JSON, not UTF-8, or an integer of thousands of digits
        raise BadBody(f"{NOT_AN_OBJECT}: {str(exc)[:100]}") from None
    if not isinstance(value, dict):
        raise BadBody(NOT_AN_OBJECT)
    if depth(value) > MAX_BODY_DEPTH:
        raise BadBody(f"{NOT_AN_OBJECT}: JSON nested deeper than {MAX_BODY_DEPTH} levels")
    return value


def _invalid(problems: list[str]) -> Any:
    return jsonify(error="invalid order", problems=problems), 400, {}


def order_status(order_id: str) -> ResponseReturnValue:
    """The order store's record: status, reason, history."""
    record: dict[str, Any] | None = None
    if ID_PATTERN.match(order_id):  # no order has another id: not looked up
        record = OrderStore(_settings()).get(order_id)
    if record is None:
        return jsonify(error="no such order", orderId=order_id[:100]), 404
    return jsonify(record)


def health() -> ResponseReturnValue:
    """200 while the process serves; with ?deep=1, 503 unless every queue can be looked up."""
    settings = _settings()
    body: dict[str, Any] = {"status": "ok", "env": settings.env}
    if request.args.get("deep"):
        try:
            body["queues"] = sorted(resolve_queue_urls(settings))
        except Exception as exc:  # noqa: BLE001 - any failure means unhealthy, said in the body
            return jsonify(status="unhealthy", env=settings.env, error=str(exc)), 503
    return jsonify(body)


def openapi() -> ResponseReturnValue:
    """The OpenAPI document of this API."""
    return jsonify(document())


def http_error(exc: HTTPException) -> ResponseReturnValue:
    """Flask's own answers (404, 405, 413...) as JSON, like the others."""
    return jsonify(error=exc.description or exc.name), exc.code or 500


def unavailable(exc: RetryableError) -> ResponseReturnValue:
    """AWS was unavailable (throttling, 5xx, network): a retry may well succeed."""
    return jsonify(error="temporarily unavailable", detail=str(exc)[:300]), 503, {"Retry-After": "5"}
