"""`orders api`: serve the order-submission HTTP API."""

from __future__ import annotations

import click

from orders.cli.common import aws_settings
from orders.runtime.logs import setup_process


@click.command("api")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535),
              help="Port to listen on.")
def api(host: str, port: int) -> None:
    """Serve POST /orders and GET /orders/<id> (with an API key) and GET /health (Ctrl-C stops)."""
    from werkzeug.serving import run_simple

    from orders.api.app import create_app

    settings = aws_settings()  # one clear message now, not a 500 on the first request
    setup_process("api")
    click.echo(f"Order API for environment {settings.env!r} on http://{host}:{port}")
    click.echo("Requests but GET /health and GET /openapi.json need 'Authorization: Bearer KEY' "
               "(orders api-key create NAME).")
    # Werkzeug's threaded server is enough for a demo and tests; in production put
    # `orders.api.app:create_app()` behind a WSGI server (gunicorn, as the image does) instead.
    run_simple(host, port, create_app(settings), threaded=True)


commands = [api]
