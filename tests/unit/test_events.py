"""Event envelopes, SNS attributes and PublishBatch splitting (no AWS needed)."""

from __future__ import annotations

import base64
import json

import pytest

from orders.aws.sns import MAX_BATCH_BYTES, batches, sns_entry
from orders.domain.errors import PermanentError
from orders.domain.events import Event, event


def record(**extra):
    return {"orderId": "ord-1", "correlationId": "corr-1", "customerTier": "vip", **extra}


def test_envelope_and_filterable_attributes():
    ev = event("PaymentDeclined", record(), {"reason": "card declined"})
    body = ev.envelope()
    assert body["eventType"] == "PaymentDeclined" and body["schemaVersion"] == 1
    assert body["orderId"] == "ord-1" and body["correlationId"] == "corr-1"
    assert body["occurredAt"].endswith("Z") and body["data"] == {"reason": "card declined"}
    attrs = ev.attributes()
    assert attrs["event_type"] == {"DataType": "String", "StringValue": "PaymentDeclined"}
    assert attrs["severity"]["StringValue"] == "warning"
    assert attrs["customer_tier"]["StringValue"] == "vip"
    assert ev.topic == "payment-notifications"


def test_event_ids_are_stable_so_duplicates_can_be_dropped():
    first, again = event("OrderPlaced", record()), event("OrderPlaced", record())
    assert first.event_id == again.event_id
    assert first.event_id != event("OrderShipped", record()).event_id
    assert event("StockLow", record(), key="A").event_id != event("StockLow", record(), key="B").event_id


def test_customer_events_carry_a_celery_message_for_sqs_subscribers():
    entry = sns_entry(event("OrderShipped", record(), {"trackingNumber": "1ZABC"}))
    assert entry["MessageStructure"] == "json"
    per_protocol = json.loads(entry["Message"])
    assert json.loads(per_protocol["default"])["eventType"] == "OrderShipped"
    assert "1ZABC" in per_protocol["sms"]
    celery = json.loads(per_protocol["sqs"])
    assert celery["headers"]["task"] == "notifications.notify"
    assert celery["headers"]["root_id"] == "corr-1"
    args, kwargs, _ = json.loads(base64.b64decode(celery["body"]))
    assert args[0]["eventType"] == "OrderShipped" and kwargs == {}
    internal = sns_entry(event("StockReserved", record()))
    assert "MessageStructure" not in internal and json.loads(internal["Message"])["orderId"] == "ord-1"


def test_batches_respect_entry_count_and_size():
    small = [sns_entry(Event("StockLow", f"o{n}", "c")) for n in range(23)]
    assert [len(b) for b in batches(small)] == [10, 10, 3]
    big = [sns_entry(Event("StockLow", f"o{n}", "c", {"pad": "x" * 100_000})) for n in range(5)]
    sizes = [len(b) for b in batches(big)]
    assert sizes == [2, 2, 1]
    huge = sns_entry(Event("StockLow", "o", "c", {"pad": "x" * MAX_BATCH_BYTES}))
    with pytest.raises(PermanentError):
        list(batches([huge]))


class FlakySNS:
    """An SNS stand-in that fails some entries transiently, then accepts them (no AWS involved)."""

    def __init__(self, failures):
        self.failures = list(failures)  # per call: ids to fail, or "throttle"
        self.calls = []

    def publish_batch(self, TopicArn, PublishBatchRequestEntries):  # noqa: N803 (boto3's names)
        self.calls.append([e["Id"] for e in PublishBatchRequestEntries])
        plan = self.failures.pop(0) if self.failures else ()
        if plan == "throttle":
            from botocore.exceptions import ClientError

            raise ClientError({"Error": {"Code": "Throttling", "Message": "slow down"},
                               "ResponseMetadata": {"HTTPStatusCode": 400}}, "PublishBatch")
        ids = [e["Id"] for e in PublishBatchRequestEntries]
        failed = [{"Id": i, "Code": "InternalError", "SenderFault": i.startswith("bad")}
                  for i in ids if i in plan]
        return {"Successful": [], "Failed": failed}


def entries(*ids):
    return [{"Id": i, "Message": "{}", "MessageAttributes": {}} for i in ids]


def test_publish_batch_resends_only_the_entries_that_failed_transiently():
    from orders.aws.sns import publish_batch

    sns = FlakySNS([{"b"}, "throttle", ()])
    publish_batch(sns, "arn:topic", entries("a", "b", "c"))
    assert sns.calls == [["a", "b", "c"], ["b"], ["b"]]


def test_publish_batch_gives_up_after_a_bound_and_never_retries_a_sender_fault():
    from orders.aws.sns import PUBLISH_ATTEMPTS, publish_batch
    from orders.domain.errors import RetryableError

    sns = FlakySNS([{"a"}] * 10)
    with pytest.raises(RetryableError):
        publish_batch(sns, "arn:topic", entries("a", "b"))
    assert len(sns.calls) == PUBLISH_ATTEMPTS
    refused = FlakySNS([{"bad-1"}])
    with pytest.raises(PermanentError):
        publish_batch(refused, "arn:topic", entries("bad-1", "ok"))
    assert len(refused.calls) == 1
