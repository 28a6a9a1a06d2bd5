"""The HTTP API for order submission (the exercise's API Gateway): a small Flask app.

    POST /orders          place an order: 202 with its id, or 400 with every problem
    GET  /orders/<id>     the order's status and history (404 if unknown)
    GET  /health          liveness; `?deep=1` also checks that every queue is reachable

Submission is what `place_order.delay(order)` does (validation at the door, then
one SQS message), into the environment of the settings the API was created with,
whatever else the process serves: the catalogue looked up, the queue sent to and
the order store read are all that environment's. Workers do the rest.
"""

from __future__ import annotations

import uuid
from typing import Any

from flask import Flask, current_app, jsonify, request
from flask.typing import ResponseReturnValue

from orders.aws.store import OrderStore
from orders.aws.tables import aws_errors
from orders.celery import app as celery_app
from orders.domain.errors import InvalidOrder, RetryableError
from orders.domain.times import now_iso
from orders.runtime.queue_urls import resolve_queue_urls
from orders.runtime.step_tasks import admit
from orders.settings import Settings, get_settings
from tasks.orders import place_order


def create_app(settings: Settings | None = None) -> Flask:
    """The API bound to `settings` (default: the process's settings)."""
    app = Flask("orders.api.app")
    app.config["ORDERS_SETTINGS"] = settings or get_settings()
    app.add_url_rule("/orders", "submit", submit_order, methods=["POST"])
    app.add_url_rule("/orders/<order_id>", "status", order_status, methods=["GET"])
    app.add_url_rule("/health", "health", health, methods=["GET"])
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
    """Validate and enqueue one order."""
    order = request.get_json(silent=True)
    if not isinstance(order, dict):
        return _invalid(["the request body must be a JSON object (Content-Type: application/json)"])
    # The caller may choose the id (placing the same order twice is then harmless);
    # otherwise the API gives one.
    order.setdefault("orderId", f"ord-{uuid.uuid4().hex}")
    try:
        place(_settings(), order)
    except InvalidOrder as exc:
        return _invalid(exc.problems)
    except RetryableError as exc:
        return jsonify(error="temporarily unavailable", detail=str(exc)), 503, {"Retry-After": "5"}
    order_id = str(order["orderId"])
    body = {"orderId": order_id, "status": "accepted", "statusUrl": f"/orders/{order_id}"}
    return jsonify(body), 202, {"Location": f"/orders/{order_id}"}


def _invalid(problems: list[str]) -> ResponseReturnValue:
    return jsonify(error="invalid order", problems=problems), 400


def order_status(order_id: str) -> ResponseReturnValue:
    """The order store's record: status, reason, history."""
    record: dict[str, Any] | None = OrderStore(_settings()).get(order_id)
    if record is None:
        return jsonify(error="no such order", orderId=order_id), 404
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
