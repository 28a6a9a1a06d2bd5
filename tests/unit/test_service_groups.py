"""The front of the two-process emulator (orders.emulator.service_groups), without its processes."""

from __future__ import annotations

import http.server
import json
import threading
from typing import Any

import pytest
from werkzeug.test import Client

from orders.emulator.server import free_port
from orders.emulator.service_groups import (
    Front,
    merge_counts,
    merge_fault_reports,
    merge_wire_logs,
    processes,
)
from orders.settings import child_environment


def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "application/json")])
    return [b'{"served": "front"}']


def signed(service: str) -> dict[str, str]:
    return {"Authorization": f"AWS4-HMAC-SHA256 Credential=AKID/20260101/us-east-1/{service}/aws4_request, x",
            "X-Amz-Target": "DynamoDB_20120810.GetItem", "Content-Type": "application/x-amz-json-1.0"}


def test_two_processes_unless_one_is_asked_for():
    assert processes({}) == 2
    assert processes({"ORDERS_EMULATOR_PROCESSES": " 1 "}) == 1
    with pytest.raises(ValueError, match="ORDERS_EMULATOR_PROCESSES='3': 1 .one process. or 2"):
        processes({"ORDERS_EMULATOR_PROCESSES": "3"})


def test_a_bad_process_count_is_refused_before_any_process_starts(monkeypatch):
    from click.testing import CliRunner

    from orders.cli import cli

    monkeypatch.setenv("ORDERS_EMULATOR_PROCESSES", "two")
    result = CliRunner().invoke(cli, ["emulator"])
    assert result.exit_code == 2 and "ORDERS_EMULATOR_PROCESSES='two'" in result.output


def test_a_dynamodb_call_the_dynamodb_process_does_not_answer_is_a_retryable_aws_error():
    """The process gone (the front stops soon after): the client reads DynamoDB's own 503, which the SDK
    retries, not a connection error from the wrong host or a hang."""
    client = Client(Front(app, f"http://127.0.0.1:{free_port()}"))
    answer = client.post("/", data=b'{"TableName": "t"}', headers=signed("dynamodb"))
    assert answer.status_code == 503
    assert json.loads(answer.data)["__type"].endswith("#ServiceUnavailable")
    assert client.post("/", data=b"Action=ListQueues", headers=signed("sqs")).json == {"served": "front"}
    counts = client.get("/_orders/calls")
    assert counts.status_code == 502 and "did not answer" in counts.json["error"]


def test_what_the_two_processes_report_is_merged():
    assert merge_counts({"sqs:SendMessage": 2, "kms:Decrypt": 1}, {"dynamodb:GetItem": 3}) == {
        "sqs:SendMessage": 2, "kms:Decrypt": 1, "dynamodb:GetItem": 3}
    front = {"plan": {"error_rate": 0.5}, "injected": {"sqs:SendMessage:500": 1}, "outages": []}
    back = {"plan": {"error_rate": 0.5}, "injected": {"dynamodb:GetItem:500": 2, "sqs:SendMessage:500": 1}}
    injected = {"sqs:SendMessage:500": 2, "dynamodb:GetItem:500": 2}
    assert merge_fault_reports(front, back) == {**front, "injected": injected}
    wire = merge_wire_logs({"recording": True, "dropped": 1, "calls": [{"call": "sqs:X"}]},
                           {"recording": True, "dropped": 2, "calls": [{"call": "dynamodb:Y"}]})
    assert wire == {"recording": True, "dropped": 3, "calls": [{"call": "sqs:X"}, {"call": "dynamodb:Y"}]}


def test_a_child_given_a_new_endpoint_does_not_keep_the_old_one_s_service_endpoints(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://old:1")
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", "http://old:2")
    assert child_environment({})["AWS_ENDPOINT_URL_DYNAMODB"] == "http://old:2"
    moved = child_environment({"AWS_ENDPOINT_URL": "http://new:1"})
    assert moved["AWS_ENDPOINT_URL"] == "http://new:1" and "AWS_ENDPOINT_URL_DYNAMODB" not in moved
    both = child_environment({"AWS_ENDPOINT_URL": "http://new:1", "AWS_ENDPOINT_URL_DYNAMODB": "http://new:2"})
    assert both["AWS_ENDPOINT_URL_DYNAMODB"] == "http://new:2"


class _Backend(http.server.BaseHTTPRequestHandler):
    """A server that answers and then closes the connection without saying so (as a keep-alive limit
    does to an idle one), or, with `mute`, closes it without answering."""

    protocol_version = "HTTP/1.1"
    seen: list[str] = []
    mute = False

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        type(self).seen.append(self.path)
        self.close_connection = True
        if type(self).mute:
            return
        body = b'{"answered": true}'
        self.send_response(200)
        self.send_header("Content-Type", "application/x-amz-json-1.0")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def backend() -> Any:
    _Backend.seen, _Backend.mute = [], False
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Backend)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()


def test_a_kept_connection_closed_while_idle_is_opened_again_and_the_call_sent_once(backend):
    client = Client(Front(app, f"http://127.0.0.1:{backend.server_port}"))
    for n in range(3):  # the 2nd and 3rd go out on the connection the server closed after the one before
        answer = client.post(f"/{n}", data=b"{}", headers=signed("dynamodb"))
        assert answer.status_code == 200 and json.loads(answer.data) == {"answered": True}
    assert _Backend.seen == ["/0", "/1", "/2"]


def test_a_new_connection_closed_without_an_answer_is_not_sent_again(backend):
    """The process may have served it: a 503 the SDK retries, not a second copy of a write from here."""
    _Backend.mute = True
    client = Client(Front(app, f"http://127.0.0.1:{backend.server_port}"))
    assert client.post("/", data=b"{}", headers=signed("dynamodb")).status_code == 503
    assert _Backend.seen == ["/"]


def test_an_unsigned_dynamodb_call_is_passed_on_by_its_target(backend):
    client = Client(Front(app, f"http://127.0.0.1:{backend.server_port}"))
    answer = client.post("/", data=b"{}", headers={"X-Amz-Target": "DynamoDBStreams_20120810.ListStreams"})
    assert json.loads(answer.data) == {"answered": True} and _Backend.seen == ["/"]
    sqs = client.post("/", data=b"{}", headers={"X-Amz-Target": "AmazonSQS.ListQueues"})
    assert sqs.json == {"served": "front"}


def test_a_plan_the_dynamodb_process_does_not_take_is_said_to_hold_for_the_front_only(backend):
    _Backend.mute = True
    client = Client(Front(app, f"http://127.0.0.1:{backend.server_port}"))
    answer = client.post("/_orders/faults", data=b'{"error_rate": 0.5}')
    assert answer.status_code == 502
    assert "holds for the front only" in answer.json["error"] and answer.json["front"] == {"served": "front"}


def test_the_dynamodb_port_is_the_same_at_every_start():
    from orders.emulator.server import dynamodb_port

    assert dynamodb_port(5000, None) == 5100 and dynamodb_port(5001, None) == 5101
    assert dynamodb_port(5000, 7000) == 7000 and dynamodb_port(5000, 0) == 0
    assert dynamodb_port(0, None) == 0 and dynamodb_port(65500, None) == 0  # any free one
