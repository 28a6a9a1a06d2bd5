"""Event envelopes, SNS attributes, and the one publishing path's splitting and retries (no AWS needed)."""

from __future__ import annotations

import base64
import json
import pickle

import pytest
from botocore.exceptions import ClientError

from orders.aws.batching import MAX_ATTEMPTS, MAX_BATCH_BYTES, BatchEntryError, Batcher, publish_batch
from orders.aws.errors import is_retryable_aws_error
from orders.aws.sns import deliver, raise_for, sns_entry
from orders.aws.tables import aws_errors
from orders.domain.errors import PermanentError, RetryableError
from orders.domain.events import Event, event
from orders.domain.records import OrderRecord
from orders.domain.states import OrderState
from orders.runtime.publishing import celery_message


def record():
    return OrderRecord("ord-1", OrderState.VALIDATED, 1, customer_tier="vip", correlation_id="corr-1")


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
    entry = sns_entry(event("OrderShipped", record(), {"trackingNumber": "1ZABC"}), celery_message)
    assert entry["MessageStructure"] == "json"
    per_protocol = json.loads(entry["Message"])
    assert json.loads(per_protocol["default"])["eventType"] == "OrderShipped"
    assert "1ZABC" in per_protocol["sms"]
    celery = json.loads(per_protocol["sqs"])
    assert celery["headers"]["task"] == "notifications.notify"
    assert celery["headers"]["root_id"] == "corr-1"
    args, kwargs, _ = json.loads(base64.b64decode(celery["body"]))
    assert args[0]["eventType"] == "OrderShipped" and kwargs == {}
    internal = sns_entry(event("StockReserved", record()), celery_message)
    assert "MessageStructure" not in internal and json.loads(internal["Message"])["orderId"] == "ord-1"


def batches(entries):
    """The PublishBatch calls the one publishing path makes for these entries (one topic, linger 0)."""
    sizes = []

    def call(client, arn, batch):
        sizes.append(len(batch))
        return {"Successful": [{"Id": e["Id"]} for e in batch]}

    raise_for(deliver(Batcher("test-publish", call, linger=0.0), None, [("arn:topic", e) for e in entries]))
    return sizes


def test_batches_respect_entry_count_and_size():
    small = [sns_entry(Event("StockLow", f"o{n}", "c")) for n in range(23)]
    assert batches(small) == [10, 10, 3]
    big = [sns_entry(Event("StockLow", f"o{n}", "c", {"pad": "x" * 100_000})) for n in range(5)]
    sizes = batches(big)
    assert sizes == [2, 2, 1]
    huge = sns_entry(Event("StockLow", "o", "c", {"pad": "x" * MAX_BATCH_BYTES}))
    with pytest.raises(PermanentError):
        batches([huge])


class FlakySNS:
    """An SNS stand-in that fails some entries transiently, then accepts them (no AWS involved).

    Entries are named by their Message (the batcher numbers their Ids per call).
    """

    def __init__(self, failures):
        self.failures = list(failures)  # per call: messages to fail, or "throttle"
        self.calls = []

    def publish_batch(self, TopicArn, PublishBatchRequestEntries):  # noqa: N803 (boto3's names)
        self.calls.append([e["Message"] for e in PublishBatchRequestEntries])
        plan = self.failures.pop(0) if self.failures else ()
        if plan == "throttle":
            from botocore.exceptions import ClientError

            raise ClientError({"Error": {"Code": "Throttling", "Message": "slow down"},
                               "ResponseMetadata": {"HTTPStatusCode": 400}}, "PublishBatch")
        failed = [_failure(e) for e in PublishBatchRequestEntries if e["Message"] in plan]
        ok = [{"Id": e["Id"], "MessageId": e["Message"]} for e in PublishBatchRequestEntries
              if e["Message"] not in plan]
        return {"Successful": ok, "Failed": failed}


def _failure(entry):
    """SNS's failed entry: `bad-*` refused (the sender's fault), `throttled-*` throttled (SNS calls that the
    sender's fault too), any other SNS's own trouble."""
    message = entry["Message"]
    if message.startswith("bad"):
        return {"Id": entry["Id"], "Code": "InvalidParameter", "SenderFault": True}
    if message.startswith("throttled"):
        return {"Id": entry["Id"], "Code": "Throttled", "SenderFault": True}
    return {"Id": entry["Id"], "Code": "InternalError", "SenderFault": False}


def entries(*ids):
    return [("arn:topic", {"Message": i, "MessageAttributes": {}}) for i in ids]


def publish_entries(sns, pairs):
    """What a publish does: through a batcher (linger 0), raising as a task would see it."""
    raise_for(deliver(Batcher("test-publish", publish_batch, linger=0.0), sns, pairs))


def test_publish_batch_resends_only_the_entries_that_failed_transiently():
    sns = FlakySNS([{"b"}, "throttle", ()])
    publish_entries(sns, entries("a", "b", "c"))
    assert sns.calls == [["a", "b", "c"], ["b"], ["b"]]


def test_publish_batch_gives_up_after_a_bound_and_never_retries_a_sender_fault():
    sns = FlakySNS([{"a"}] * 10)
    with pytest.raises(RetryableError):
        publish_entries(sns, entries("a", "b"))
    assert len(sns.calls) == MAX_ATTEMPTS
    refused = FlakySNS([{"bad-1"}])
    with pytest.raises(PermanentError):
        publish_entries(refused, entries("bad-1", "ok"))
    assert len(refused.calls) == 1


def test_a_throttled_entry_is_retried_even_when_sns_calls_it_the_sender_s_fault():
    sns = FlakySNS([{"throttled-1"}, ()])
    publish_entries(sns, entries("throttled-1", "ok"))
    assert sns.calls == [["throttled-1", "ok"], ["throttled-1"]]
    always = FlakySNS([{"throttled-1"}] * 10)
    with pytest.raises(RetryableError):  # a task retries it later, with its own backoff
        publish_entries(always, entries("throttled-1"))


def test_a_failed_entry_is_an_aws_error_like_a_failed_call_s():
    """Caught and classified where botocore's errors are (`aws_errors`), and pickled whole (prefork)."""
    error = BatchEntryError("ServiceUnavailable", "try later", False, "sqs-sends")
    assert isinstance(error, ClientError) and is_retryable_aws_error(error)
    assert not is_retryable_aws_error(BatchEntryError("InvalidParameter", "no", True))
    with pytest.raises(RetryableError):
        with aws_errors():
            raise error
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.code, copy.sender_fault, str(copy)) == ("ServiceUnavailable", False, str(error))


def test_each_entry_has_its_own_outcome():
    """The DLQ watcher marks alerted only the alerts that went (the others go again next pass)."""
    sns = FlakySNS([{"bad-1"}])
    batcher = Batcher("test-publish", publish_batch, linger=0.0)
    outcomes = deliver(batcher, sns, entries("ok-1", "bad-1", "ok-2"))
    assert [o is None for o in outcomes] == [True, False, True]
