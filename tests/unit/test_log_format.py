"""Log lines: the JSON formatter's fields, the switch between JSON and text, the masking net."""

from __future__ import annotations

import io
import json
import logging
import sys
from typing import Any

import pytest
from celery.app import trace
from opentelemetry.sdk.trace import TracerProvider

from orders.runtime import logs
from orders.runtime.redaction import describe
from orders.settings import ConfigurationError, Settings


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def record(msg: str, args: Any = None, name: str = "orders.test", level: int = logging.INFO,
           exc_info: Any = None) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, args, exc_info)


def as_json(rec: logging.LogRecord) -> dict[str, Any]:
    line = logs.JsonLines().format(rec)
    assert "\n" not in line
    parsed: dict[str, Any] = json.loads(line)
    return parsed


def test_the_setting_reads_auto_json_or_text_and_refuses_anything_else() -> None:
    assert Settings.from_env({}).log_format == "auto"
    assert Settings.from_env({"ORDERS_LOG_FORMAT": "JSON"}).log_format == "json"
    assert Settings.from_env({"ORDERS_LOG_FORMAT": "text"}).log_format == "text"
    with pytest.raises(ConfigurationError, match="ORDERS_LOG_FORMAT='yaml': use one of auto, json, text"):
        Settings.from_env({"ORDERS_LOG_FORMAT": "yaml"})


@pytest.mark.parametrize(("setting", "stream", "json_wanted"), [
    ("auto", _Terminal(), False), ("auto", io.StringIO(), True), ("auto", None, True),
    ("json", _Terminal(), True), ("text", io.StringIO(), False)])
def test_json_off_a_terminal_unless_the_setting_forces_a_format(setting: str, stream: Any,
                                                                json_wanted: bool) -> None:
    assert logs.wants_json(setting, stream) is json_wanted
    formatter = logs.formatter_for(stream, logging.Formatter("%(levelname)s %(message)s"), setting)
    assert isinstance(formatter, logs.JsonLines if json_wanted else logs.MaskedText)


def test_a_line_has_an_iso_utc_time_level_logger_and_message_and_no_empty_field() -> None:
    rec = record("stock of %s is %d", ("SKU-1", 3))
    rec.created = 1_780_000_000.25
    rec.data = {"args": "('secret',)"}  # Celery's extra: never copied into the line
    line = as_json(rec)
    assert line["time"] == "2026-05-28T20:26:40.250Z"
    assert (line["level"], line["logger"], line["message"]) == ("INFO", "orders.test", "stock of SKU-1 is 3")
    assert "data" not in line and None not in line.values()
    assert "trace_id" not in line  # no span


def test_messages_and_tracebacks_are_masked_in_both_formats() -> None:
    try:
        raise ValueError("no route to pat@example.com with tok_visa4242")
    except ValueError:
        rec = record("charge failed for %s (+15555550100)", ("pat@example.com",), level=logging.ERROR,
                     exc_info=sys.exc_info())
    line = as_json(rec)
    text = logs.MaskedText(logging.Formatter("%(message)s")).format(rec)
    for shown in (json.dumps(line), text):
        assert "pat@example.com" not in shown and "tok_visa4242" not in shown and "5555550100" not in shown
        assert "p***@example.com" in shown
    assert "ValueError" in line["exc_info"] and "ValueError" in text


def test_celery_s_received_line_names_the_task_step_and_order_from_its_redacted_arguments() -> None:
    order = {"orderId": "ord-7", "items": [], "totalAmount": "1.00", "currency": "USD"}
    for task, args, step in [("payments.charge", ("ord-7",), "charge"), ("orders.place", (order,), "place")]:
        argsrepr, kwargsrepr = describe(task, args, {})  # what the message's headers carry
        data = {"id": "tid-1", "name": task, "args": argsrepr, "kwargs": kwargsrepr, "eta": None}
        line = as_json(record(trace.LOG_RECEIVED, data, name="celery.worker.strategy"))
        assert line["message"] == f"Task {task}[tid-1] received"
        shown = (line["task_id"], line["task_name"], line["order_id"], line["step"])
        assert shown == ("tid-1", task, "ord-7", step)
        assert "outcome" not in line
    event = {"eventType": "OrderShipped", "orderId": "ord-7"}
    notify = "notifications.notify"
    data = {"id": "tid-2", "name": notify, "args": describe(notify, (event,), {})[0]}
    assert as_json(record(trace.LOG_RECEIVED, data))["order_id"] == "ord-7"
    data = {"id": "tid-3", "name": "ops.watch_dlqs", "args": "('ord-7',)"}  # not a task of an order
    assert "order_id" not in as_json(record(trace.LOG_RECEIVED, data))


def test_a_hand_made_message_s_id_is_never_a_field_of_the_line() -> None:
    data = {"id": "pat@example.com", "name": "payments.charge", "args": "('ord-7',)"}
    line = as_json(record(trace.LOG_RECEIVED, data, name="celery.worker.strategy"))
    assert line["task_id"] == "?" and "pat@example.com" not in json.dumps(line)


@pytest.mark.parametrize(("template", "outcome"), [
    (trace.LOG_SUCCESS, "succeeded"), (trace.LOG_FAILURE, "failed"), (trace.LOG_RETRY, "retried"),
    (trace.LOG_IGNORED, "ignored"), (trace.LOG_REJECTED, "rejected")])
def test_the_line_that_ends_a_task_says_its_outcome(template: str, outcome: str) -> None:
    data = {"id": "tid-1", "name": "shipping.create_shipment", "args": "('ord-7',)", "exc": "Boom()",
            "description": "raised unexpected", "runtime": 0.1, "return_value": "{}"}
    line = as_json(record(template.strip(), data, name="celery.app.trace"))
    assert (line["outcome"], line["step"], line["order_id"]) == (outcome, "ship", "ord-7")


def test_the_order_id_comes_from_the_arguments_of_a_task_of_an_order_only() -> None:
    assert logs.order_of("payments.refund", ["ord-9"]) == "ord-9"
    assert logs.order_of("orders.place", [{"orderId": "ord-9", "payment": {"token": "tok_visa"}}]) == "ord-9"
    event = {"eventType": "OrderPlaced", "orderId": "ord-9"}
    assert logs.order_of("notifications.notify", [event]) == "ord-9"
    assert logs.order_of("payments.charge", ["not an id at all!"]) is None
    assert logs.order_of("inventory.restock", ["SKU-1", 5]) is None


def test_the_current_span_s_ids_are_on_the_line() -> None:
    tracer = TracerProvider().get_tracer("tests")  # a provider of its own: the process's is left alone
    with tracer.start_as_current_span("step") as span:
        line = as_json(record("inside a span"))
    context = span.get_span_context()
    assert line["trace_id"] == f"{context.trace_id:032x}" and line["span_id"] == f"{context.span_id:016x}"
    assert "trace_id" not in as_json(record("outside"))


def test_setup_process_gives_the_root_one_handler_however_often_called(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(logs, "_process", logs._Process())
    root = logging.getLogger()
    before, level = list(root.handlers), root.level
    stream = io.StringIO()
    try:
        logs.setup_process("api", stream=stream)
        logs.setup_process("api", stream=stream)
        assert len(root.handlers) == len(before) + 1
        logging.getLogger("orders.api").warning("request %s failed", "r-1")
        [line] = stream.getvalue().splitlines()
        assert json.loads(line)["service"] == "api" and json.loads(line)["message"] == "request r-1 failed"
    finally:
        root.handlers = before
        root.setLevel(level)
