"""The HTTP API for order submission (the exercise's API Gateway): a small Flask app.

    POST /orders          place an order: 202 with its id, or 400 with every problem
    GET  /orders/<id>     the order's status and history (404 if unknown)
    GET  /health          liveness; `?deep=1` also checks that every queue is reachable

Submission is `place_order.delay(order)`, exactly what application code calls:
the API validates at the door and hands the order to SQS; workers do the rest.
"""

from __future__ import annotations

import uuid
from typing import Any

from flask import Flask, jsonify, request
from flask.typing import ResponseReturnValue

from orders.domain.errors import InvalidOrder, RetryableError
from orders.settings import Settings, get_settings


def create_app(settings: Settings | None = None) -> Flask:
    """The API bound to `settings` (default: the process's settings)."""
    app = Flask("orders.api.app")
    app.config["ORDERS_SETTINGS"] = settings
    app.add_url_rule("/orders", "submit", submit_order, methods=["POST"])
    app.add_url_rule("/orders/<order_id>", "status", order_status, methods=["GET"])
    app.add_url_rule("/health", "health", health, methods=["GET"])
    return app


def _settings() -> Settings:
    from flask import current_app

    return current_app.config["ORDERS_SETTINGS"] or get_settings()


def submit_order() -> ResponseReturnValue:
    """Validate and enqueue one order."""
    from orders import place_order

    order = request.get_json(silent=True)
    if not isinstance(order, dict):
        return _invalid(["the request body must be a JSON object (Content-Type: application/json)"])
    # The caller may choose the id (placing the same order twice is then harmless);
    # otherwise the API gives one.
    order.setdefault("orderId", f"ord-{uuid.uuid4().hex}")
    try:
        place_order.delay(order)
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
    from orders.aws.store import OrderStore

    record: dict[str, Any] | None = OrderStore(_settings()).get(order_id)
    if record is None:
        return jsonify(error="no such order", orderId=order_id), 404
    return jsonify(record)


def health() -> ResponseReturnValue:
    """200 while the process serves; with ?deep=1, 503 unless every queue can be looked up."""
    settings = _settings()
    body: dict[str, Any] = {"status": "ok", "env": settings.env}
    if request.args.get("deep"):
        from orders.runtime.queue_urls import resolve_queue_urls

        try:
            body["queues"] = sorted(resolve_queue_urls(settings))
        except Exception as exc:  # noqa: BLE001 - any failure means unhealthy, said in the body
            return jsonify(status="unhealthy", env=settings.env, error=str(exc)), 503
    return jsonify(body)
