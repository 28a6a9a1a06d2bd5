"""Tracing's pure parts (switch, order attributes, sampler, propagator, SNS attributes), and that off is off.

The SDK-level tests run in a subprocess: a TracerProvider and the instrumentations are
process-wide and cannot be taken back, and the test process must stay untraced.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from celery.exceptions import Ignore, Retry

from orders.aws.sns import MAX_MESSAGE_ATTRIBUTES, sns_entry
from orders.domain.errors import RetryableError
from orders.domain.events import Event
from orders.runtime.order_spans import outcome_of, step_of
from orders.runtime.redaction import order_in as order_id_of  # one reading of the arguments
from orders.runtime.tracing import TracingConfig

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.mark.parametrize(("env", "exporters", "enabled"), [
    ({}, (), False),
    ({"OTEL_TRACES_EXPORTER": "none"}, (), False),
    ({"OTEL_TRACES_EXPORTER": "console"}, ("console",), True),
    ({"OTEL_TRACES_EXPORTER": "OTLP, console"}, ("otlp", "console"), True),
    ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "true"}, ("otlp",), False),
])
def test_only_the_standard_variables_turn_tracing_on(env, exporters, enabled):
    config = TracingConfig.from_env(env)
    assert (config.exporters, config.enabled) == (exporters, enabled)


def test_aws_calls_can_be_left_out_by_the_standard_variable():
    config = TracingConfig.from_env({"OTEL_TRACES_EXPORTER": "otlp",
                                     "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "Botocore, requests"})
    assert config.enabled and config.disabled_instrumentations == {"botocore", "requests"}


def test_the_order_step_and_outcome_come_from_what_celery_carries():
    assert [step_of(t) for t in ("payments.charge", "shipping.create_shipment", "payments.refund",
                                 "notifications.notify", "inventory.release")] == \
        ["charge", "ship", "refund", "notify", "release"]
    assert order_id_of(["ord-1"]) == "ord-1"
    assert order_id_of(({"orderId": "ord-2", "items": []},)) == "ord-2"  # orders.place, notify's event
    assert order_id_of([[{"order_id": "ord-3"}]]) == "ord-3"  # notifications.publish's events
    assert order_id_of([]) is None and order_id_of([42]) is None
    assert outcome_of("SUCCESS", {"status": "paid", "next": "shipping.create_shipment"}) == \
        {"order.outcome": "ok", "order.status": "paid"}
    assert outcome_of("SUCCESS", {"status": "paid", "skipped": True})["order.outcome"] == "skipped"
    # A step that ended its order's chain returns and says so (StepTask.end); a branch raises Ignore.
    assert outcome_of("SUCCESS", {"status": "cancelled", "next": None, "ended": True}) == \
        {"order.outcome": "ended", "order.status": "cancelled"}
    # A step of an earlier release raised Celery's Ignore to end the chain too.
    assert outcome_of("IGNORED", Ignore("order ord-1 is cancelled: the rest of its chain is not sent")) == \
        {"order.outcome": "ended", "order.status": "cancelled"}
    assert outcome_of("IGNORED", Ignore("Replaced by new task")) == {"order.outcome": "branched"}
    assert outcome_of("RETRY", Retry(exc=RetryableError("gateway busy"))) == \
        {"order.outcome": "retry", "order.error": "RetryableError"}
    assert outcome_of("FAILURE", ValueError("bug")) == \
        {"order.outcome": "failed", "order.error": "ValueError"}


def test_an_events_trace_context_rides_in_its_message_attributes_within_snss_limit():
    context = {"traceparent": {"DataType": "String", "StringValue": TRACEPARENT}}
    entry = sns_entry(Event("StockLow", "ord-1", "corr-1"), context=context)
    assert entry["MessageAttributes"]["traceparent"]["StringValue"] == TRACEPARENT
    assert entry["MessageAttributes"]["event_type"]["StringValue"] == "StockLow"
    many = {f"k{n}": {"DataType": "String", "StringValue": "v"} for n in range(20)}
    assert len(sns_entry(Event("StockLow", "ord-1", "corr-1"), context=many)["MessageAttributes"]) == \
        MAX_MESSAGE_ATTRIBUTES
    assert "traceparent" not in sns_entry(Event("StockLow", "ord-1", "corr-1"))["MessageAttributes"]


def run_python(code: str, **env: str) -> dict:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    done = subprocess.run([sys.executable, "-c", code], env={**clean, **env}, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


#: What a worker process looks like after start: the app and tasks imported, both start signals sent.
PROBE = """
import json, sys
import botocore.client
from celery import signals
import orders.celery, tasks.orders, tasks.notifications
from orders.runtime import tracing
signals.worker_init.send(sender=None)
signals.worker_process_init.send(sender=None)
receivers = [r for s in (signals.before_task_publish, signals.task_prerun, signals.task_postrun)
             for _, r in s.receivers]
print(json.dumps({
    "modules": sorted(m for m in sys.modules if m.startswith("opentelemetry")),
    "botocore_patched": type(botocore.client.BaseClient.__dict__["_make_api_call"]).__name__,
    "otel_receivers": [repr(r) for r in receivers if getattr(r, "__module__", "").startswith(
        ("opentelemetry", "orders.runtime.order_spans"))],
    "active": tracing.active(),
}))
"""


def test_without_otel_variables_nothing_is_loaded_or_patched():
    off = run_python(PROBE)
    assert off == {"modules": [], "botocore_patched": "function", "otel_receivers": [], "active": False}
    disabled = run_python(PROBE, OTEL_TRACES_EXPORTER="otlp", OTEL_SDK_DISABLED="true")
    assert disabled == off
    on = run_python(PROBE, OTEL_TRACES_EXPORTER="console")  # the probe sees it when it is there
    assert on["active"] and on["botocore_patched"] == "FunctionWrapper" and len(on["otel_receivers"]) >= 5


SDK_PROBE = """
import json
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_ON
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from orders.runtime.tracing_sdk import KeepCarriedContext, UntracedAwsCalls

sampler = UntracedAwsCalls(ALWAYS_ON)
aws = {"rpc.system": "aws-api"}
tracer = TracerProvider().get_tracer("t")
with tracer.start_as_current_span("task"):
    in_trace = sampler.should_sample(None, 1, "DynamoDB.GetItem", attributes=aws).decision
outside = sampler.should_sample(None, 1, "SQS.ReceiveMessage", attributes=aws).decision
root_task = sampler.should_sample(None, 1, "apply_async/orders.place").decision

keep = KeepCarriedContext(TraceContextTextMapPropagator())
carried = {"traceparent": {"DataType": "String", "StringValue": TRACEPARENT}}
plain = {}
with tracer.start_as_current_span("batch call"):
    keep.inject(carried)
    keep.inject(plain)
print(json.dumps({"in_trace": in_trace.name, "outside": outside.name, "root_task": root_task.name,
                  "carried": carried["traceparent"]["StringValue"], "plain": sorted(plain)}))
""".replace("TRACEPARENT", repr(TRACEPARENT))


def test_aws_calls_outside_a_trace_are_dropped_and_an_entrys_context_is_kept():
    seen = run_python(SDK_PROBE)
    assert (seen["in_trace"], seen["outside"], seen["root_task"]) == \
        ("RECORD_AND_SAMPLE", "DROP", "RECORD_AND_SAMPLE")
    assert seen["carried"] == TRACEPARENT  # not the batch call's context
    assert seen["plain"] == ["traceparent"]


def test_an_event_carries_the_trace_and_never_the_baggage_a_caller_put_in_the_context():
    found = run_python("""
import json
from opentelemetry import baggage, context, trace
from opentelemetry.sdk.trace import TracerProvider
from orders.runtime import tracing_sdk
trace.set_tracer_provider(TracerProvider())
context.attach(baggage.set_baggage("email", "pat@example.com"))  # a hand-made message's baggage header
with trace.get_tracer("t").start_as_current_span("step"):
    print(json.dumps(sorted(tracing_sdk.message_attributes())))
""")
    assert found == ["traceparent"]


def test_a_flush_gives_up_at_its_bound_when_the_exporter_hangs():
    # An exporter that never answers (a collector gone): the SDK's own force_flush would wait for ever.
    assert run_python("""
import json, threading
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from orders.runtime import tracing_sdk
class Hanging(SpanExporter):
    def export(self, spans):
        threading.Event().wait()
provider = TracerProvider(shutdown_on_exit=False)  # exit without waiting for it either
provider.add_span_processor(BatchSpanProcessor(Hanging()))
trace.set_tracer_provider(provider)
with trace.get_tracer("t").start_as_current_span("step"):
    pass
tracing_sdk.flush(300)
print(json.dumps("returned"))
""") == "returned"
