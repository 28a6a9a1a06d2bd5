"""The OpenTelemetry SDK of a traced process (loaded only when tracing is on: orders.runtime.tracing).

What the ecosystem's instrumentations do, and what is ours:

- opentelemetry-instrumentation-celery: a producer span around every task message sent
  (its context injected into the message's headers) and a consumer span around every
  task run (its parent extracted from them). A chain's next hop, a retry and a
  compensation branch are all sent inside the running task's span, so each is its child.
- opentelemetry-instrumentation-botocore: a client span per AWS call made in a task or a
  request (DynamoDB, a send), and the X-Ray trace header on each request.
- Ours (orders.runtime.order_spans): the `order.*` attributes of each step's span, and
  the SNS hop: a producer span per publish, its context in each event's `traceparent`
  message attribute and in the headers of the task message SNS delivers to SQS.

Two things the instrumentations get wrong on this platform, put right here:

- Publishes and sends are batched: the PublishBatch and SendMessageBatch calls run on
  a batcher's thread, outside any trace, carrying entries of several orders. The
  botocore instrumentation would start a root span (a stray trace) for each such
  call, and for each receive, ack and heartbeat; `UntracedAwsCalls` drops AWS calls
  that have no parent. The time a task waits for its batched call is in its own
  producer span.
- Its SNS extension writes the batcher thread's context into each entry's
  `traceparent` attribute, over the one the entry's order put there;
  `KeepCarriedContext` leaves a message attribute that already carries a context alone.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, MutableMapping, Sequence
from contextlib import contextmanager
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.instrumentation.botocore import BotocoreInstrumentor
from opentelemetry.instrumentation.celery import CeleryInstrumentor
from opentelemetry.propagators.textmap import (
    CarrierT,
    Getter,
    Setter,
    TextMapPropagator,
    default_getter,
    default_setter,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from opentelemetry.trace import Link, SpanKind
from opentelemetry.util.types import Attributes

from orders.domain.events import Event
from orders.runtime import order_spans


class UntracedAwsCalls(Sampler):
    """`delegate`'s decision, except that an AWS call outside any trace is not recorded (see the module)."""

    def __init__(self, delegate: Sampler):
        self.delegate = delegate

    def should_sample(self, parent_context: Context | None, trace_id: int, name: str,
                      kind: SpanKind | None = None, attributes: Attributes = None,
                      links: Sequence[Link] | None = None, trace_state: Any = None) -> SamplingResult:
        parent = trace.get_current_span(parent_context).get_span_context()
        if not parent.is_valid and (attributes or {}).get("rpc.system") == "aws-api":
            return SamplingResult(Decision.DROP)
        return self.delegate.should_sample(parent_context, trace_id, name, kind, attributes, links,
                                           trace_state)

    def get_description(self) -> str:
        return f"UntracedAwsCalls{{{self.delegate.get_description()}}}"


class KeepCarriedContext(TextMapPropagator):
    """`inner`, except that it does not overwrite a message attribute that already carries a context."""

    def __init__(self, inner: TextMapPropagator):
        self.inner = inner

    def extract(self, carrier: CarrierT, context: Context | None = None,
                getter: Getter[CarrierT] = default_getter) -> Context:
        return self.inner.extract(carrier, context, getter)

    def inject(self, carrier: CarrierT, context: Context | None = None,
               setter: Setter[CarrierT] = default_setter) -> None:
        if isinstance(carrier, Mapping) and any(_is_message_attribute(carrier.get(f)) for f in self.fields):
            return
        self.inner.inject(carrier, context, setter)

    @property
    def fields(self) -> set[str]:
        return set(self.inner.fields)


def _is_message_attribute(value: Any) -> bool:
    return isinstance(value, Mapping) and "DataType" in value


def setup(exporters: Sequence[str], instrument_aws: bool = True) -> None:
    """Install the SDK in this process: provider, exporters, propagator, instrumentations, order spans
    (AWS calls too, unless not `instrument_aws`)."""
    provider = TracerProvider(resource=Resource.create(), sampler=UntracedAwsCalls(_sampler_from_env()))
    for name in exporters:
        provider.add_span_processor(BatchSpanProcessor(exporter(name)))
    trace.set_tracer_provider(provider)
    propagate.set_global_textmap(KeepCarriedContext(propagate.get_global_textmap()))
    order_spans.connect_before_instrumentation()
    CeleryInstrumentor().instrument(tracer_provider=provider)
    if instrument_aws:
        BotocoreInstrumentor().instrument(tracer_provider=provider)
    order_spans.connect_after_instrumentation()


def _sampler_from_env() -> Sampler:
    # What OTEL_TRACES_SAMPLER (and its argument) say; the SDK's default is parentbased_always_on.
    return TracerProvider(shutdown_on_exit=False).sampler


def exporter(name: str) -> SpanExporter:
    """The exporter OTEL_TRACES_EXPORTER names (the SDK reads its OTEL_EXPORTER_* settings)."""
    if name == "console":
        return ConsoleSpanExporter()
    if name == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()
    raise ValueError(f"OTEL_TRACES_EXPORTER: unknown exporter {name!r} (console, otlp or none)")


def flush(timeout_millis: int = 5000) -> None:
    """Export every finished span now, waiting `timeout_millis` at most.

    The SDK's force_flush does not keep to its timeout (each queued batch waits out the
    exporter's own, 10 s, when the collector is down): a worker stopping would outlive its
    stop timeout and be killed. The flush runs on a daemon thread, abandoned at the bound.
    """
    provider = trace.get_tracer_provider()
    if isinstance(provider, TracerProvider):
        flushing = threading.Thread(target=provider.force_flush, args=(timeout_millis,), daemon=True,
                                    name="otel-flush")
        flushing.start()
        flushing.join(timeout_millis / 1000)


def inject(headers: MutableMapping[str, Any]) -> None:
    """The current context into a task message's headers."""
    propagate.inject(headers)


#: What an event carries of the context: the W3C trace context only. Baggage is whatever a
#: caller put in it (a hand-made message's header), which events must not take to subscribers.
EVENT_CONTEXT = ("traceparent", "tracestate")


def message_attributes() -> dict[str, dict[str, str]]:
    """The current context (its trace, not its baggage) as SNS/SQS message attributes."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return {key: {"DataType": "String", "StringValue": carrier[key]} for key in EVENT_CONTEXT
            if key in carrier}


@contextmanager
def publish_span(events: Sequence[Event]) -> Iterator[None]:
    """A producer span around one publish of `events` (one step's, usually one order's)."""
    topics = sorted({ev.topic for ev in events})
    attributes: dict[str, Any] = {"messaging.system": "aws_sns", "messaging.operation.type": "send",
                                  "messaging.destination.name": ",".join(topics),
                                  "messaging.batch.message_count": len(events),
                                  "order.events": [ev.type for ev in events]}
    order_ids = {ev.order_id for ev in events}
    if len(order_ids) == 1:
        attributes["order.id"] = order_ids.pop()
    tracer = trace.get_tracer(__name__)
    with tracer.start_as_current_span(f"{','.join(topics)} publish", kind=SpanKind.PRODUCER,
                                      attributes=attributes):
        yield
