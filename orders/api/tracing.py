"""A server span around each API request, so that an order placed through the API starts its trace there.

The caller's context (a `traceparent` header) is honoured: a client that traces hands
its trace on. Nothing is registered unless tracing is on (orders.runtime.tracing).
"""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, g, request

from orders.runtime import tracing


def trace_requests(app: Flask) -> None:
    """Open a span before anything else runs for a request (authentication included), close it last."""
    if not tracing.active():
        return
    app.before_request_funcs.setdefault(None, []).insert(0, _open_span)
    app.after_request(_record_answer)
    app.teardown_request(_close_span)


def _open_span() -> None:
    from opentelemetry import context, propagate, trace

    rule = request.url_rule.rule if request.url_rule else request.path
    span = trace.get_tracer(__name__).start_span(
        f"{request.method} {rule}", context=propagate.extract(request.headers),
        kind=trace.SpanKind.SERVER,
        attributes={"http.request.method": request.method, "http.route": rule, "url.path": request.path})
    g.otel_span, g.otel_token = span, context.attach(trace.set_span_in_context(span))


def _record_answer(response: Response) -> Response:
    span = g.get("otel_span")
    if span is not None:
        span.set_attribute("http.response.status_code", response.status_code)
        answer = response.get_json(silent=True) if response.is_json else None
        if isinstance(answer, dict) and isinstance(answer.get("orderId"), str):
            span.set_attribute("order.id", answer["orderId"])
    return response


def _close_span(exc: Any = None) -> None:
    from opentelemetry import context

    span, token = g.pop("otel_span", None), g.pop("otel_token", None)
    if span is not None:
        if exc is not None:
            span.record_exception(exc)
        span.end()
    if token is not None:
        context.detach(token)
