"""The front of the two-process emulator (orders.emulator.service_groups), without its processes."""

from __future__ import annotations

import json
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
    assert json.dumps(wire)


def test_a_child_given_a_new_endpoint_does_not_keep_the_old_one_s_service_endpoints(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://old:1")
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", "http://old:2")
    assert child_environment({})["AWS_ENDPOINT_URL_DYNAMODB"] == "http://old:2"
    moved = child_environment({"AWS_ENDPOINT_URL": "http://new:1"})
    assert moved["AWS_ENDPOINT_URL"] == "http://new:1" and "AWS_ENDPOINT_URL_DYNAMODB" not in moved
    both = child_environment({"AWS_ENDPOINT_URL": "http://new:1", "AWS_ENDPOINT_URL_DYNAMODB": "http://new:2"})
    assert both["AWS_ENDPOINT_URL_DYNAMODB"] == "http://new:2"
