"""What a run can see from outside the pipeline: the events it published and its DLQ depths.

`EventTap` subscribes one extra SQS queue to every topic, without a filter and
without raw delivery, so each delivery keeps its topic ARN and message
attributes: counting them counts what the pipeline really published, per topic
and event type. It is not part of the declared topology (`orders infra check`
ignores it) and is removed when the run ends.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from typing import Any

from orders.aws import clients
from orders.aws.sns import topic_arns
from orders.runtime.queue_urls import dlq_url
from orders.settings import Settings
from orders.topology import QUEUES, TOPICS

TAP_QUEUE = "event-tap"


class EventTap:
    """An unfiltered queue subscribed to every topic, counting (topic, event type)."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.counts: dict[str, Counter[str]] = defaultdict(Counter)
        self.url = ""
        self.subscriptions: list[str] = []

    def start(self) -> EventTap:
        sqs, sns = clients.client("sqs", self.settings), clients.client("sns", self.settings)
        self.url = sqs.create_queue(QueueName=self.settings.prefix + TAP_QUEUE)["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=self.url, AttributeNames=["QueueArn"])
        queue_arn = arn["Attributes"]["QueueArn"]
        topics = topic_arns(self.settings)
        sqs.set_queue_attributes(QueueUrl=self.url, Attributes={"Policy": _policy(queue_arn, topics)})
        self.subscriptions = [
            sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn,
                          ReturnSubscriptionArn=True)["SubscriptionArn"]
            for topic in topics.values()]
        return self

    def drain(self) -> dict[str, dict[str, int]]:
        """Receive and count everything delivered so far; returns the counts until now."""
        sqs = clients.client("sqs", self.settings)
        while True:
            got = sqs.receive_message(QueueUrl=self.url, MaxNumberOfMessages=10,
                                      WaitTimeSeconds=0).get("Messages", [])
            if not got:
                return self.snapshot()
            for message in got:
                topic, event_type = classify(message["Body"], self.settings.prefix)
                self.counts[topic][event_type] += 1
            sqs.delete_message_batch(QueueUrl=self.url, Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got)])

    def snapshot(self) -> dict[str, dict[str, int]]:
        known = [t.name for t in TOPICS]
        order = known + sorted(set(self.counts) - set(known))
        return {t: dict(self.counts[t]) for t in order if self.counts.get(t)}

    def stop(self) -> None:
        """Unsubscribe and delete the tap queue."""
        sns, sqs = clients.client("sns", self.settings), clients.client("sqs", self.settings)
        for arn in self.subscriptions:
            sns.unsubscribe(SubscriptionArn=arn)
        if self.url:
            sqs.delete_queue(QueueUrl=self.url)
        self.subscriptions, self.url = [], ""


def classify(body: str, prefix: str) -> tuple[str, str]:
    """(topic, event type) of one SNS delivery in its JSON envelope."""
    try:
        envelope = json.loads(body)
    except ValueError:
        return "(not SNS)", "(not JSON)"
    topic = str(envelope.get("TopicArn", "?")).rsplit(":", 1)[-1].removeprefix(prefix)
    attribute = (envelope.get("MessageAttributes") or {}).get("event_type") or {}
    event_type = attribute.get("Value") or _type_in_message(envelope.get("Message"))
    return topic, str(event_type or "?")


def _type_in_message(message: Any) -> str | None:
    try:
        payload = json.loads(message) if isinstance(message, str) else None
    except ValueError:
        return None
    if not isinstance(payload, dict):
        return None
    return payload.get("event_type") or payload.get("eventType") or payload.get("type")


def _policy(queue_arn: str, topics: dict[str, str]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": [{
        "Sid": "event-tap", "Effect": "Allow", "Principal": {"Service": "sns.amazonaws.com"},
        "Action": "sqs:SendMessage", "Resource": queue_arn,
        "Condition": {"ArnEquals": {"aws:SourceArn": list(topics.values())}},
    }]})


def dlq_depths(settings: Settings) -> dict[str, int]:
    """Messages in each dead-letter queue (visible plus in flight), by DLQ name."""
    sqs = clients.client("sqs", settings)
    depths = {}
    for spec in QUEUES:
        attrs = sqs.get_queue_attributes(QueueUrl=dlq_url(settings, spec.name), AttributeNames=[
            "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
        depths[spec.dlq_name] = sum(int(v) for v in attrs.values())
    return depths
