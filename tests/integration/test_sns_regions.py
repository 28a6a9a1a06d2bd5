"""Customer events across regions (docs/multi-region.md, R7): each region's `order-status` topic delivers,
filtered and raw, to the other region's `notifications-replica` queue, through two emulator processes."""

from __future__ import annotations

import base64
import json
import time
import urllib.error
import uuid
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

import orders.celery  # noqa: F401 - the Celery app renders the notify task's message
from orders.aws import clients
from orders.domain.events import Event
from orders.emulator import moto_sns
from orders.emulator.faults import clear_faults, control_request, start_outage
from orders.emulator.server import EmulatorProcess, call_counts, free_port
from orders.runtime.publishing import publish
from orders.settings import Settings, get_settings
from orders.topology import CUSTOMER_EVENTS, QUEUES_BY_NAME, REPLICA_QUEUE
from tests.helpers import invoke, region_emulators, use_regions

pytestmark = pytest.mark.integration

PRIMARY, SECONDARY = "us-east-1", "us-west-2"
#: On `order-status`, and not a customer event: the notifications subscriptions filter it out.
NOT_FOR_CUSTOMERS = "OrderReviewed"


@pytest.fixture(scope="module")
def emulators() -> Iterator[dict[str, EmulatorProcess]]:
    """One emulator process per region, each told where the other is (as TwoRegions does)."""
    with region_emulators(PRIMARY, SECONDARY) as found:
        moto_sns.connect({region: emulator.endpoint for region, emulator in found.items()})
        yield found


@pytest.fixture(scope="module")
def provisioned(emulators: dict[str, EmulatorProcess]) -> Iterator[Settings]:
    """A fresh environment over both regions, provisioned by `orders infra up` as a user runs it."""
    with pytest.MonkeyPatch.context() as env:
        settings = use_regions(env, emulators, f"x{uuid.uuid4().hex[:10]}")
        code, output = invoke("infra", "up")
        assert code == 0, output
        yield settings
        get_settings.cache_clear()


def receive_all(settings: Settings, queue: str, until_event: str) -> list[dict[str, Any]]:
    """Every message of `queue` up to the one whose body carries `until_event` (long polls; deleted)."""
    sqs = clients.client("sqs", settings)
    url = sqs.get_queue_url(QueueName=QUEUES_BY_NAME[queue].sqs_name(settings))["QueueUrl"]
    found: list[dict[str, Any]] = []
    for _ in range(10):  # long polls of 2 s: the delivery is on a thread of the publisher's emulator
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=2,
                                  MessageAttributeNames=["All"]).get("Messages", [])
        for message in got:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        found += got
        if any(until_event in m["Body"] for m in found):
            return found
    return found


def notify_args(message: dict[str, Any]) -> dict[str, Any]:
    """The event a raw delivery carries: the notify task message's argument (orders.runtime.publishing)."""
    envelope = json.loads(message["Body"])
    assert envelope["headers"]["task"] == "notifications.notify"
    args, _kwargs, _embed = json.loads(base64.b64decode(envelope["body"]))
    return dict(args[0])


def test_up_subscribes_each_region_s_replica_queue_to_the_other_s_topic_and_check_is_clean(provisioned):
    code, output = invoke("infra", "check")
    assert code == 0, output
    assert f"No drift in region {PRIMARY}" in output and f"No drift in region {SECONDARY}" in output
    code, output = invoke("infra", "up")  # a second up changes nothing
    assert code == 0 and output.count("Nothing to change") == 2, output
    for here, there in ((PRIMARY, SECONDARY), (SECONDARY, PRIMARY)):
        regional = provisioned.for_region(here)
        sns = clients.client("sns", regional)
        [topic] = [t["TopicArn"] for t in sns.list_topics()["Topics"]
                   if t["TopicArn"].endswith(f":{regional.prefix}order-status")]
        subs = sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"]
        queues = sorted(f"{arn.split(':')[3]}:{arn.split(':')[5]}" for arn in (s["Endpoint"] for s in subs))
        assert queues == sorted([f"{here}:{regional.prefix}notifications",
                                 f"{there}:{regional.prefix}{REPLICA_QUEUE}"]), queues


@pytest.mark.parametrize("source,target", [(PRIMARY, SECONDARY), (SECONDARY, PRIMARY)])
def test_a_customer_event_reaches_the_other_region_s_replica_queue_raw_and_filtered(provisioned, source,
                                                                                     target):
    order_id = f"ord-{uuid.uuid4().hex[:12]}"
    filtered_out = Event(NOT_FOR_CUSTOMERS, order_id, order_id)
    wanted = Event("OrderShipped", order_id, order_id, {"trackingNumber": "TRK-1"})
    assert wanted.type in CUSTOMER_EVENTS and NOT_FOR_CUSTOMERS not in CUSTOMER_EVENTS
    publish(provisioned.for_region(source), [filtered_out])
    publish(provisioned.for_region(source), [wanted])  # after it: the peer's deliveries keep their order

    there = receive_all(provisioned.for_region(target), REPLICA_QUEUE, wanted.event_id)
    assert [notify_args(m)["eventId"] for m in there] == [wanted.event_id]  # the filtered one never came
    [message] = there
    assert notify_args(message) == wanted.envelope()  # the event id as published: the claim dedups on it
    attributes = message["MessageAttributes"]  # raw delivery: SNS's attributes as SQS's
    assert attributes["event_type"] == {"DataType": "String", "StringValue": "OrderShipped"}
    assert attributes["schema_version"]["DataType"] == "Number"

    # The source region's own notifications queue has it too, and its replica queue nothing of its own.
    here = receive_all(provisioned.for_region(source), "notifications", wanted.event_id)
    assert [notify_args(m)["eventId"] for m in here] == [wanted.event_id]
    sqs = clients.client("sqs", provisioned.for_region(source))
    url = sqs.get_queue_url(QueueName=QUEUES_BY_NAME[REPLICA_QUEUE].sqs_name(provisioned))["QueueUrl"]
    assert sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1).get("Messages", []) == []


def test_a_publish_succeeds_when_no_emulator_serves_the_subscribed_queue_s_region(provisioned, emulators):
    endpoint = emulators[PRIMARY].endpoint
    before = moto_sns.peer_report(endpoint)["counts"].get("undeliverable", 0)
    moto_sns.set_peers(endpoint, {})  # us-west-2's queue is then nowhere this emulator knows
    try:
        order_id = f"ord-{uuid.uuid4().hex[:12]}"
        publish(provisioned.for_region(PRIMARY), [Event("OrderPlaced", order_id, order_id)])  # no error
        assert moto_sns.peer_report(endpoint)["counts"]["undeliverable"] == before + 1
    finally:
        moto_sns.connect({region: emulator.endpoint for region, emulator in emulators.items()})


def test_one_region_subscribes_no_replica_queue(emulators, monkeypatch):
    settings = emulators[PRIMARY].settings({"ORDERS_ENV": f"o{uuid.uuid4().hex[:10]}"})
    for name, value in {**emulators[PRIMARY].env, "ORDERS_ENV": settings.env}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("ORDERS_REGIONS", raising=False)
    get_settings.cache_clear()
    try:
        code, output = invoke("infra", "up")
        assert code == 0, output
        assert f"queue {settings.prefix}{REPLICA_QUEUE}: created" in output  # declared in every deployment
        assert REPLICA_QUEUE not in "".join(line for line in output.splitlines() if "subscription" in line)
    finally:
        get_settings.cache_clear()


@pytest.mark.parametrize("peers", [{"us-west-2": "file:///etc/passwd"}, {"us-west-2": ""},
                                   {"us-west-2": "http://"}, {"us-west-2": 5002}, ["us-west-2"]],
                         ids=["file-url", "empty", "no-host", "not-a-string", "not-an-object"])
def test_peers_that_are_not_http_endpoints_are_refused_and_the_peers_kept(emulators, peers):
    endpoint = emulators[PRIMARY].endpoint
    before = moto_sns.peer_report(endpoint)["peers"]
    with pytest.raises(urllib.error.HTTPError) as refused:
        control_request(endpoint, moto_sns.PEERS_PATH, peers)  # as a hostile client posts it
    assert refused.value.code == 400
    assert moto_sns.peer_report(endpoint)["peers"] == before == {SECONDARY: emulators[SECONDARY].endpoint}


def test_deliveries_held_for_a_peer_that_is_down_are_bounded_and_the_overflow_counted():
    deliveries = moto_sns.Deliveries(max_held=2)
    endpoint = f"http://127.0.0.1:{free_port()}"  # a peer that is down
    queue_arn = f"arn:aws:sqs:{SECONDARY}:123456789012:e-{REPLICA_QUEUE}"
    target = moto_sns.target_for(queue_arn, {SECONDARY: endpoint})
    assert target is not None
    for n in range(5):  # the peer takes none of them: each is held, for the hour of retries
        deliveries.add(moto_sns.Delivery(target, f"event {n}", {}, until=time.monotonic() + 3_600))
    assert deliveries.counts["overflow"] == 3


def test_a_delivery_the_peer_s_queue_refuses_is_dropped_at_once_not_retried_for_an_hour(provisioned,
                                                                                      emulators):
    secondary = provisioned.for_region(SECONDARY)
    sqs = clients.client("sqs", secondary)
    url = sqs.get_queue_url(QueueName=QUEUES_BY_NAME[REPLICA_QUEUE].sqs_name(secondary))["QueueUrl"]
    replica = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    peers = {SECONDARY: emulators[SECONDARY].endpoint}
    oversize = moto_sns.target_for(replica, peers)  # SQS takes 1 MiB at most
    missing = moto_sns.target_for(replica + "-not-made-yet", peers)  # the other region not provisioned yet
    assert oversize is not None and missing is not None
    deliveries = moto_sns.Deliveries()
    for target, body in ((oversize, "x" * (1024 * 1024 + 1)), (missing, "an event")):
        deliveries.add(moto_sns.Delivery(target, body, {}, until=time.monotonic() + 3_600))
    for _ in range(100):  # bounded: the thread's first pass answers both
        if deliveries.counts["rejected"] + deliveries.counts["retried"] >= 2:
            break
        time.sleep(0.1)
    assert deliveries.counts == {"rejected": 2}


def test_deliveries_held_while_the_peer_was_down_go_by_batches_once_it_answers(provisioned, emulators):
    secondary, endpoint = provisioned.for_region(SECONDARY), emulators[SECONDARY].endpoint
    sqs = clients.client("sqs", secondary)
    url = sqs.get_queue_url(QueueName=QUEUES_BY_NAME[REPLICA_QUEUE].sqs_name(secondary))["QueueUrl"]
    replica = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    target = moto_sns.target_for(replica, {SECONDARY: endpoint})
    assert target is not None
    deliveries, events = moto_sns.Deliveries(), [f"event-{uuid.uuid4().hex[:8]}-{n}" for n in range(25)]
    start_outage(endpoint, "sqs", 3_600)
    try:
        for body in events:
            deliveries.add(moto_sns.Delivery(target, body, {}, until=time.monotonic() + 3_600))
        for _ in range(100):  # bounded: every delivery failed once, so all wait together
            if deliveries.counts["retried"] >= len(events):
                break
            time.sleep(0.1)
        before = call_counts(endpoint)
    finally:
        clear_faults(endpoint)
    for _ in range(100):  # bounded: the next pass sends them
        if deliveries.counts["delivered"] == len(events):
            break
        time.sleep(0.1)
    assert deliveries.counts["delivered"] == len(events)
    calls = {k: n - before.get(k, 0) for k, n in call_counts(endpoint).items()}
    assert calls.get("sqs:SendMessage", 0) == 0 and calls["sqs:SendMessageBatch"] <= 6, calls  # 3 by ten
    received = [m["Body"] for m in receive_all(secondary, REPLICA_QUEUE, events[-1])]
    assert received == events  # in the order published


def test_one_peer_serving_two_regions_gets_each_region_s_deliveries_in_that_region(emulators):
    endpoint, other = emulators[SECONDARY].endpoint, "eu-west-1"
    settings = emulators[SECONDARY].settings({"ORDERS_ENV": f"p{uuid.uuid4().hex[:10]}"})
    urls = {region: clients.client("sqs", settings.for_region(region) if region in settings.regions
                                   else replace(settings, region=region)).create_queue(
                QueueName=f"{settings.prefix}{REPLICA_QUEUE}")["QueueUrl"] for region in (SECONDARY, other)}
    deliveries, peers = moto_sns.Deliveries(), {SECONDARY: endpoint, other: endpoint}
    for region in (SECONDARY, other):  # the first makes the peer's client, signed for us-west-2
        queue_arn = f"arn:aws:sqs:{region}:123456789012:{settings.prefix}{REPLICA_QUEUE}"
        target = moto_sns.target_for(queue_arn, peers)
        assert target is not None
        deliveries.add(moto_sns.Delivery(target, f"for {region}", {}, until=time.monotonic() + 3_600))
    for _ in range(100):  # bounded: one pass answers both
        if sum(deliveries.counts.values()) >= 2:
            break
        time.sleep(0.1)
    assert deliveries.counts == {"delivered": 2}
    for region in (SECONDARY, other):
        sqs = clients.client("sqs", replace(settings, region=region))
        got = sqs.receive_message(QueueUrl=urls[region], WaitTimeSeconds=1).get("Messages", [])
        assert [m["Body"] for m in got] == [f"for {region}"]
