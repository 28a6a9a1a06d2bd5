"""The emulator's wire log keeps SQS, SNS and DynamoDB bodies only while switched on."""

from __future__ import annotations

import json
from typing import Any

from werkzeug.test import Client

from orders.emulator.wire_log import WireLog


def echo(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    start_response("200 OK", [("Content-Type", "application/json")])
    return [b'{"echo": ' + json.dumps(body.decode()).encode() + b"}"]


def signed(service: str) -> dict[str, str]:
    return {"Authorization": f"AWS4-HMAC-SHA256 Credential=AKID/20260101/us-east-1/{service}/aws4_request, x",
            "X-Amz-Target": "AmazonSQS.SendMessage"}


def test_bodies_are_recorded_between_start_and_stop_for_the_recorded_services() -> None:
    client = Client(WireLog(echo))
    client.post("/", data="before", headers=signed("sqs"))
    assert client.post("/_orders/wire/start").json["recording"] is True
    assert client.post("/", data="sent", headers=signed("sqs")).json == {"echo": "sent"}
    client.post("/", data="a key", headers=signed("kms"))
    client.post("/_orders/wire/stop")
    client.post("/", data="after", headers=signed("sqs"))
    log = client.get("/_orders/wire").json
    assert log["recording"] is False and log["dropped"] == 0
    assert log["calls"] == [{"call": "sqs:SendMessage", "request": "sent", "response": '{"echo": "sent"}'}]
