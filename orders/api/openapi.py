"""The API's OpenAPI 3.0 document, served at /openapi.json: its limits are the domain's own constants.

Every operation needs an API key (the `apiKey` bearer scheme) but the public ones (`security: []`),
and says so with its 401; answers carry X-Request-Id, and 503s Retry-After.
"""

from __future__ import annotations

from typing import Any

from orders.api.idempotency import KEY_CHARACTERS, MAX_KEY_LENGTH, TTL_SECONDS
from orders.domain.order import (
    ADDRESS_FIELDS,
    ADDRESS_LIMITS,
    CURRENCIES,
    MAX_EMAIL_LENGTH,
    MAX_ID_LENGTH,
    MAX_LINES,
    MAX_PHONE_LENGTH,
    MAX_QUANTITY,
    MAX_TOKEN_LENGTH,
    PAYMENT_METHODS,
    TIERS,
)

#: The largest request body the API reads (bytes); larger ones are answered 413 unread.
MAX_BODY_BYTES = 64 * 1024
#: What a 503's Retry-After says: AWS's transient faults (throttling, a failover) pass in seconds.
RETRY_AFTER_SECONDS = 5
ID = {"type": "string", "minLength": 1, "maxLength": MAX_ID_LENGTH,
      "pattern": "^[A-Za-z0-9][A-Za-z0-9_.:-]*$"}
AMOUNT = {"oneOf": [{"type": "string", "maxLength": 32, "example": "19.99"}, {"type": "number"}],
          "description": "A positive decimal amount; a string keeps its exact value"}


def _text(limit: int) -> dict[str, Any]:
    return {"type": "string", "minLength": 1, "maxLength": limit}


def _object(properties: dict[str, Any], required: list[str], description: str = "") -> dict[str, Any]:
    schema = {"type": "object", "properties": properties, "required": required}
    return schema | ({"description": description} if description else {})


ORDER = _object({
    "orderId": ID | {"description": "Chosen by the client (placing it twice is then harmless), else given"},
    "customerId": ID,
    "customerTier": {"type": "string", "enum": list(TIERS), "default": "standard"},
    "items": {"type": "array", "minItems": 1, "maxItems": MAX_LINES, "items": _object(
        {"sku": ID, "quantity": {"type": "integer", "minimum": 1, "maximum": MAX_QUANTITY},
         "unitPrice": AMOUNT}, ["sku", "quantity", "unitPrice"])},
    "totalAmount": AMOUNT | {"description": "The sum of the items' quantity x unitPrice"},
    "currency": {"type": "string", "enum": sorted(CURRENCIES)},
    "payment": _object({"method": {"type": "string", "enum": list(PAYMENT_METHODS)},
                        "token": _text(MAX_TOKEN_LENGTH) | {"example": "tok_visa"}}, ["method", "token"]),
    "shippingAddress": _object({**{name: _text(limit) for name, limit in ADDRESS_LIMITS.items()},
                                "country": {"type": "string", "pattern": "^[A-Z]{2}$", "example": "GB"}},
                               list(ADDRESS_FIELDS), "Other fields are ignored; no control characters"),
    "contact": _object({"email": _text(MAX_EMAIL_LENGTH) | {"format": "email"},
                        "phone": _text(MAX_PHONE_LENGTH)}, ["email"]),
}, ["customerId", "items", "totalAmount", "currency", "payment", "shippingAddress", "contact"],
    "Fields the order does not know are ignored. Text fields take no control characters.")
PROBLEMS = _object({"error": {"type": "string"}, "problems": {"type": "array", "items": {"type": "string"}}},
                   ["error", "problems"])
ERROR = _object({"error": {"type": "string"}}, ["error"])
ACCEPTED = _object({"orderId": {"type": "string"}, "status": {"type": "string", "enum": ["accepted"]},
                    "statusUrl": {"type": "string"}}, ["orderId", "status", "statusUrl"])


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _header(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"description": description, "schema": schema or {"type": "string"}}


UNAUTHORIZED = _json(ERROR, "No valid API key (missing, malformed, unknown or revoked)") | {
    "headers": {"WWW-Authenticate": _header('Bearer realm="orders"')}}
UNAVAILABLE = _json(ERROR, "Temporarily unavailable (AWS): retry after Retry-After seconds, "
                           "with the same Idempotency-Key") | {
    "headers": {"Retry-After": _header("Seconds", {"type": "integer"})}}
SECURITY_SCHEMES = {"apiKey": {
    "type": "http", "scheme": "bearer",
    "description": "An API key from `orders api-key create CLIENT`, as `Authorization: Bearer ok_...`"}}


def _parameter(name: str, where: str, required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": where, "required": required, "schema": {"type": "string"}}


def document() -> dict[str, Any]:
    """The OpenAPI document of the order-submission API."""
    key = {"name": "Idempotency-Key", "in": "header", "required": False,
           "description": "Retries with the same key and body get the first answer (kept "
                          f"{TTL_SECONDS // 3600} hours); the same key with another body is 409",
           "schema": {"type": "string", "minLength": 1, "maxLength": MAX_KEY_LENGTH,
                      "pattern": f"^[{KEY_CHARACTERS}]+$"}}
    return {
        "openapi": "3.0.3",
        "info": {"title": "Orders", "version": "1", "description": (
            f"Order submission. Request bodies above {MAX_BODY_BYTES} bytes are answered 413. Every "
            "answer carries X-Request-Id, the id under which the API logged the request.")},
        "components": {"securitySchemes": SECURITY_SCHEMES},
        "security": [{"apiKey": []}],
        "paths": {
            "/orders": {"post": {
                "operationId": "placeOrder", "summary": "Place an order (validated, then queued)",
                "parameters": [key],
                "requestBody": {"required": True, "content": {"application/json": {"schema": ORDER}}},
                "responses": {
                    "202": _json(ACCEPTED, "Accepted: follow it at statusUrl"),
                    "400": _json(PROBLEMS, "Invalid: every problem listed"),
                    "401": UNAUTHORIZED,
                    "409": _json(ERROR, "The Idempotency-Key was used with another body, or is in use; "
                                        "or the orderId was used by another client"),
                    "413": _json(ERROR, "The body is too large"),
                    "503": UNAVAILABLE}}},
            "/orders/{orderId}": {"get": {
                "operationId": "getOrder", "summary": "An order's status and history",
                "parameters": [_parameter("orderId", "path", required=True)],
                "responses": {"200": _json({"type": "object"}, "The order"),
                              "401": UNAUTHORIZED,
                              "404": _json(ERROR, "No such order, or another client's (the same answer)"),
                              "503": UNAVAILABLE}}},
            "/health": {"get": {
                "operationId": "health", "security": [],
                "summary": "Liveness, public; deep=1 (with an API key) also looks every queue up",
                "parameters": [_parameter("deep", "query")],
                "responses": {"200": _json({"type": "object"}, "Serving"),
                              "401": UNAUTHORIZED | {"description": "deep=1 without a valid API key"},
                              "503": _json({"type": "object"}, "A queue cannot be reached")}}},
            "/openapi.json": {"get": {
                "operationId": "openapi", "summary": "This document (public)", "security": [],
                "responses": {"200": _json({"type": "object"}, "The OpenAPI document")}}},
        },
    }
