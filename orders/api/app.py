"""The HTTP API for order submission (the exercise's API Gateway): a small Flask app.

    POST /orders          place an order: 202 with its id, 400 with every problem, 409 for a
                          reused Idempotency-Key or an order id another client used, 413 for
                          a body over MAX_BODY_BYTES
    GET  /orders/<id>     the order's status and history (404 if unknown or another client's)
    GET  /health          liveness (public); `?deep=1` also checks that every queue is reachable
    GET  /openapi.json    the OpenAPI document (public; orders.api.openapi)

Every other request carries an API key (`Authorization: Bearer KEY`, orders.api.auth)
naming its client: 401 without one. A client reads only the orders it placed
(orders.api.ownership) and its Idempotency-Keys are its own.

Submission is what `place_order.delay(order)` does (validation at the door, then
one SQS message), into the environment of the settings the API was created with,
whatever else the process serves: the catalogue looked up, the queue sent to, the
order store read and the idempotency keys are all that environment's. Workers do
the rest. No input is answered with a 5xx: a body is read only up to its limit,
parsed without recursion limits being reached, and validated with every problem
listed (docs/reliability.md); a 503 means AWS was unavailable, whatever the input.
No answer carries internal error text: a 503 or 500 says what to do and gives the
request id (also in every answer's X-Request-Id), under which the log has the details.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from typing import Any, cast

from flask import Flask, Request, Response, current_app, g, jsonify, request
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import HTTPException

from orders.api.auth import authenticate, current_client
from orders.api.idempotency import KEY_PATTERN, KEY_RULE, ClaimState, IdempotencyKeys, fingerprint
from orders.api.openapi import MAX_BODY_BYTES, RETRY_AFTER_SECONDS, document
from orders.api.ownership import OrderOwners
from orders.api.tracing import trace_requests
from orders.aws.store import OrderStore
from orders.celery import app as celery_app
from orders.domain.errors import InvalidOrder, RetryableError
from orders.domain.order import ID_PATTERN, Order
from orders.runtime import region_gate
from orders.runtime.amqp import AMQP
from orders.runtime.dependencies import dependencies
from orders.runtime.envelope import depth
from orders.runtime.logs import setup_process
from orders.runtime.publishing import send_errors
from orders.runtime.queue_urls import resolve_queue_urls
from orders.runtime.step_tasks import admit
from orders.settings import Settings, get_settings
from orders.steps.admission import seal
from tasks.orders import message_arguments, place_order

#: JSON nested deeper than this is refused before validation (an order is 3 levels deep).
MAX_BODY_DEPTH = 16
NOT_AN_OBJECT = "the request body must be a JSON object (Content-Type: application/json)"
ID_IN_USE = "this orderId is already in use: choose another, or leave it out and the API gives one"
IN_PROGRESS = "a request with this Idempotency-Key is in progress"

log = logging.getLogger("orders.api")


class BadBody(Exception):
    """The request body is not a JSON object the API can read."""


def create_app(settings: Settings | None = None) -> Flask:
    """The API bound to `settings` (default: the process's settings)."""
    app = Flask("orders.api.app")
    if settings is None:  # a server's entry point (gunicorn's `orders.api.app:create_app()`): logs as the API
        setup_process("api")
    app.config["ORDERS_SETTINGS"] = settings or get_settings()
    # Werkzeug answers 413 for a longer body, before anything reads it.
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    app.add_url_rule("/orders", "submit", submit_order, methods=["POST"])
    app.add_url_rule("/orders/<order_id>", "status", order_status, methods=["GET"])
    app.add_url_rule("/health", "health", health, methods=["GET"])
    app.add_url_rule("/openapi.json", "openapi", openapi, methods=["GET"])
    app.before_request(_number_request)
    app.before_request(authenticate)
    app.after_request(_echo_request_id)
    app.register_error_handler(HTTPException, http_error)
    app.register_error_handler(RetryableError, unavailable)
    app.register_error_handler(Exception, internal_error)
    trace_requests(app)  # a span per request when tracing is on
    return app


def _number_request() -> None:
    # Ours, never the caller's: it goes into log lines as it is.
    g.request_id = uuid.uuid4().hex


def _echo_request_id(response: Response) -> Response:
    response.headers["X-Request-Id"] = g.get("request_id", "")
    return response


def _settings() -> Settings:
    settings: Settings = current_app.config["ORDERS_SETTINGS"]
    return settings


def send(settings: Settings, order: Order, options: dict[str, Any]) -> None:
    """What `place_order.delay(order)` sends, into `settings`' environment; RetryableError if SQS fails.

    The sensitive fields are sealed first, with `settings`' key and credentials (the API role's).
    """
    settings = region_gate.producing(settings)  # the active region's queues (multi-region, rule R1)
    pool = cast(AMQP, celery_app.amqp).producer_pool_for(settings)
    args, kwargs = message_arguments(seal(dependencies(settings).fields, order))
    with send_errors(), pool.acquire(block=True) as producer:
        place_order.apply_async(args, kwargs, producer=producer, **options)


def submit_order() -> ResponseReturnValue:
    """Validate and enqueue one order (once per Idempotency-Key)."""
    try:
        order = read_json_object(request)
    except BadBody as exc:
        return _invalid([str(exc)])
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return _place_answer(order, _order_id(order))
    if not KEY_PATTERN.match(key):
        return _invalid([KEY_RULE])
    return _idempotent(IdempotencyKeys(_settings(), current_client()), key, order)


def _idempotent(keys: IdempotencyKeys, key: str, order: dict[str, Any]) -> ResponseReturnValue:
    """The first answer to `key`, or 409; else place under the key's order id and keep the answer."""
    digest = fingerprint(order)
    claim = keys.get(key)
    if claim is not None and claim.fingerprint != digest:
        return jsonify(error="this Idempotency-Key was used with another request body"), 409
    if claim is not None and claim.state is ClaimState.DONE:
        return jsonify(claim.answer), claim.status, {"Idempotent-Replayed": "true",
                                                     "Location": f"/orders/{claim.order_id}"}
    order_id = claim.order_id if claim is not None else _order_id(order)
    # Another request is answering under the key, or claimed it since it was read.
    if (claim is not None and not claim.available(time.time())) or \
            not keys.claim(key, digest, str(order_id), claim):
        return jsonify(error=IN_PROGRESS), 409, {"Retry-After": "1"}
    try:
        body, status, headers = _place_answer(order, order_id)
    except RetryableError:
        keys.reopen(key)
        raise
    if status in (400, 409):
        keys.release(key)  # nothing placed: the key is free for a corrected request
    else:
        keys.answer(key, status, body.get_json())
    return body, status, headers


def _place_answer(order: dict[str, Any], order_id: Any) -> Any:
    """Place `order` under `order_id`: the 202 answer, 400 with every problem, 409 if the id is taken.

    Validated, then the id reserved to the client, then sent: a request that fails
    part-way (503) has sent nothing, or only reserved an id that its retry places.
    """
    settings = _settings()
    try:
        valid, options = admit(settings, {**order, "orderId": order_id})
    except InvalidOrder as exc:
        return _invalid(exc.problems)
    if not _reserve(settings, valid.order_id, chosen="orderId" in order):
        return jsonify(error=ID_IN_USE), 409, {}
    send(settings, valid, options)
    body = {"orderId": valid.order_id, "status": "accepted", "statusUrl": f"/orders/{valid.order_id}"}
    return jsonify(body), 202, {"Location": f"/orders/{valid.order_id}"}


def _reserve(settings: Settings, order_id: str, chosen: bool) -> bool:
    """Make the client the owner of `order_id`; False if another client, or another producer, used it."""
    owners = OrderOwners(settings)
    if chosen:  # an id the API gives is new; one the client chose may not be
        owner = owners.owner(order_id)
        if owner is not None:
            return owner == current_client()
        # Placed other than through the API (place_order.delay): its record would be read as ours.
        if OrderStore(settings).load(order_id) is not None:
            return False
    return owners.reserve(order_id, current_client())


def _order_id(order: dict[str, Any]) -> Any:
    """The id the client chose (placing the same order twice is then harmless), else a new one."""
    return order["orderId"] if "orderId" in order else f"ord-{uuid.uuid4().hex}"


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
    # No order has another id: not looked up. Another client's order is answered as an unknown one.
    if ID_PATTERN.match(order_id) and OrderOwners(_settings()).owner(order_id) == current_client():
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
        except Exception:  # noqa: BLE001 - any failure means unhealthy; what it was goes to the log
            log.warning("unhealthy %s: a queue cannot be looked up", g.request_id, exc_info=True)
            return jsonify(status="unhealthy", env=settings.env, error="a queue cannot be looked up",
                           requestId=g.request_id), 503
    return jsonify(body)


def openapi() -> ResponseReturnValue:
    """The OpenAPI document of this API."""
    return jsonify(document())


def http_error(exc: HTTPException) -> ResponseReturnValue:
    """Flask's own answers (404, 405, 413...) as JSON, like the others."""
    return jsonify(error=exc.description or exc.name), exc.code or 500


def unavailable(exc: RetryableError) -> ResponseReturnValue:
    """AWS was unavailable (throttling, 5xx, network): a retry may well succeed. The details go to the log."""
    log.warning("503 %s %s %r: %s", g.request_id, request.method, request.path[:200], exc, exc_info=exc)
    return (jsonify(error="temporarily unavailable: retry later (with the same Idempotency-Key)",
                    requestId=g.request_id), 503, {"Retry-After": str(RETRY_AFTER_SECONDS)})


def internal_error(exc: Exception) -> ResponseReturnValue:
    """Anything else (a bug, AWS refusing for good): 500, the details in the log only."""
    log.error("500 %s %s %r", g.get("request_id"), request.method, request.path[:200], exc_info=exc)
    return jsonify(error="internal error", requestId=g.get("request_id")), 500
