"""Converge AWS onto the declared topology: `orders infra up`, `check` and `down`.

One code path serves `up` and `check`: each resource is compared with its
declaration, and the differences are either applied (`up`) or reported as
drift (`check`). A second `up` therefore finds nothing to do and says so.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from orders import aws
from orders.settings import Settings
from orders.topology import QUEUES, TOPICS, SubscriptionSpec, subscriptions, tags

#: Attributes an emulator may accept and not echo back (moto does not store
#: RedriveAllowPolicy). Against such an endpoint their absence is reported as
#: "not verifiable here", never as drift; against AWS it is drift.
MAY_NOT_ECHO = frozenset({"RedriveAllowPolicy", "FifoThroughputLimit", "DeduplicationScope"})
#: Attributes whose JSON value is compared as data, not as text.
JSON_ATTRIBUTES = frozenset({"RedrivePolicy", "RedriveAllowPolicy", "Policy"})


@dataclass
class Report:
    """What `up` changed or `check` found, one readable line per difference."""

    changes: list[str] = field(default_factory=list)
    unverifiable: list[str] = field(default_factory=list)

    def add(self, line: str) -> None:
        self.changes.append(line)

    @property
    def clean(self) -> bool:
        return not self.changes


@dataclass
class Converger:
    """Compares each resource with its declaration; applies the difference when `apply`."""

    settings: Settings
    apply: bool
    report: Report = field(default_factory=Report)
    created: set[str] = field(default_factory=set)
    extra_steps: list[Callable[[Converger], None]] = field(default_factory=list)

    @property
    def on_emulator(self) -> bool:
        return self.settings.has_endpoint

    def run(self) -> Report:
        self.queues()
        self.topics()
        self.subscriptions()
        for step in EXTRA_STEPS + self.extra_steps:
            step(self)
        return self.report

    def queues(self) -> None:
        for spec in QUEUES:
            dlq_name = spec.dlq_sqs_name(self.settings)
            without_source = spec.dlq_attributes("")
            without_source.pop("RedriveAllowPolicy")  # needs the source's ARN, known below
            dlq_url = self.queue(dlq_name, spec.service, without_source)
            dlq_arn = queue_arn(dlq_url, self.settings) if dlq_url else "(missing)"
            src_url = self.queue(spec.sqs_name(self.settings), spec.service,
                                 spec.attributes(dlq_arn))
            src_arn = queue_arn(src_url, self.settings) if src_url else "(missing)"
            if dlq_url:
                self.queue_attributes(dlq_url, dlq_name, spec.dlq_attributes(src_arn),
                                      quiet=dlq_name in self.created)

    def queue(self, name: str, service: str, attributes: dict[str, str]) -> str | None:
        """The queue's URL, created if missing (when applying); its attributes converged."""
        sqs = aws.client("sqs", self.settings)
        try:
            url: str = sqs.get_queue_url(QueueName=name)["QueueUrl"]
        except sqs.exceptions.QueueDoesNotExist:
            self.report.add(f"queue {name}: missing" if not self.apply else f"queue {name}: created")
            if not self.apply:
                return None
            self.created.add(name)
            return str(sqs.create_queue(QueueName=name, Attributes=attributes,
                                        tags=tags(self.settings, service))["QueueUrl"])
        self.queue_attributes(url, name, attributes)
        return url

    def queue_attributes(self, url: str, name: str, wanted: dict[str, str],
                         quiet: bool = False) -> None:
        sqs = aws.client("sqs", self.settings)
        live = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"]).get("Attributes", {})
        stale = {}
        for key, value in wanted.items():
            if same_value(key, live.get(key), value):
                continue
            if quiet:  # just created: set everything, report nothing more than the creation
                stale[key] = value
            elif key not in live and key in MAY_NOT_ECHO and self.on_emulator:
                self.report.unverifiable.append(f"queue {name}: {key} (the endpoint does not echo it)")
            else:
                self.report.add(f"queue {name}: {key} is {live.get(key)!r}, declared {value!r}")
                stale[key] = value
        stale.pop("FifoQueue", None)  # cannot change after creation; reported above
        if stale and self.apply:
            sqs.set_queue_attributes(QueueUrl=url, Attributes=stale)

    def topics(self) -> None:
        sns = aws.client("sns", self.settings)
        existing = set(topic_arns(self.settings).values())
        for spec in TOPICS:
            name = spec.sns_name(self.settings)
            arn = topic_arn_for(self.settings, name)
            if arn in existing:
                continue
            self.report.add(f"topic {name}: {'created' if self.apply else 'missing'}")
            if self.apply:
                sns.create_topic(Name=name, Tags=[{"Key": k, "Value": v} for k, v in
                                                  tags(self.settings, "events").items()])

    def subscriptions(self) -> None:
        sns = aws.client("sns", self.settings)
        arns = topic_arns(self.settings)
        for spec in subscriptions(self.settings):
            arn = arns.get(spec.topic)
            if arn is None:
                continue  # the topic itself is already reported missing
            self.subscription(sns, arn, spec)

    def subscription(self, sns: Any, topic_arn: str, spec: SubscriptionSpec) -> None:
        endpoint = self.endpoint_for(spec)
        live = {s["Endpoint"]: s["SubscriptionArn"]
                for s in list_subscriptions(sns, topic_arn) if s["Protocol"] == spec.protocol}
        label = f"subscription {spec.topic} -> {spec.protocol}:{spec.endpoint}"
        attributes = subscription_attributes(spec)
        if endpoint not in live:
            self.report.add(f"{label}: {'created' if self.apply else 'missing'}")
            if self.apply:
                if spec.protocol == "sqs":
                    self.allow_topic_to_send(endpoint, topic_arn)
                sns.subscribe(TopicArn=topic_arn, Protocol=spec.protocol, Endpoint=endpoint,
                              Attributes=attributes, ReturnSubscriptionArn=True)
            return
        sub_arn = live[endpoint]
        if sub_arn in ("PendingConfirmation", "Deleted"):
            return
        have = sns.get_subscription_attributes(SubscriptionArn=sub_arn)["Attributes"]
        for key, value in attributes.items():
            if not same_value(key, have.get(key), value, as_json=key == "FilterPolicy"):
                self.report.add(f"{label}: {key} is {have.get(key)!r}, declared {value!r}")
                if self.apply:
                    sns.set_subscription_attributes(SubscriptionArn=sub_arn,
                                                    AttributeName=key, AttributeValue=value)

    def endpoint_for(self, spec: SubscriptionSpec) -> str:
        if spec.protocol != "sqs":
            return spec.endpoint
        sqs = aws.client("sqs", self.settings)
        url = sqs.get_queue_url(QueueName=self.settings.prefix + spec.endpoint)["QueueUrl"]
        return queue_arn(url, self.settings)

    def allow_topic_to_send(self, queue_arn_: str, topic_arn: str) -> None:
        """A queue policy statement that lets this topic deliver to the queue."""
        sqs = aws.client("sqs", self.settings)
        url = sqs.get_queue_url(QueueName=queue_arn_.rsplit(":", 1)[1])["QueueUrl"]
        live = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["Policy"])
        policy = json.loads(live.get("Attributes", {}).get("Policy") or
                            '{"Version": "2012-10-17", "Statement": []}')
        sid = "sns-" + topic_arn.rsplit(":", 1)[1]
        if any(s.get("Sid") == sid for s in policy["Statement"]):
            return
        policy["Statement"].append({
            "Sid": sid, "Effect": "Allow", "Principal": {"Service": "sns.amazonaws.com"},
            "Action": "sqs:SendMessage", "Resource": queue_arn_,
            "Condition": {"ArnEquals": {"aws:SourceArn": topic_arn}},
        })
        sqs.set_queue_attributes(QueueUrl=url, Attributes={"Policy": json.dumps(policy)})


#: Further convergence steps registered by other modules (tables, alarms, dashboard),
#: each a function of the Converger, so that `up`, `check` and `down` cover them too.
EXTRA_STEPS: list[Callable[[Converger], None]] = []
TEARDOWN_STEPS: list[Callable[[Settings], list[str]]] = []


def register(step: Callable[[Converger], None],
             teardown: Callable[[Settings], list[str]] | None = None) -> None:
    """Add a resource kind to `orders infra up/check/down`."""
    if step not in EXTRA_STEPS:
        EXTRA_STEPS.append(step)
    if teardown and teardown not in TEARDOWN_STEPS:
        TEARDOWN_STEPS.append(teardown)


def subscription_attributes(spec: SubscriptionSpec) -> dict[str, str]:
    attrs = {}
    if spec.filter_policy:
        attrs["FilterPolicy"] = json.dumps(spec.filter_policy, sort_keys=True)
        attrs["FilterPolicyScope"] = "MessageAttributes"
    if spec.protocol == "sqs":
        attrs["RawMessageDelivery"] = "true" if spec.raw_delivery else "false"
    return attrs


def same_value(key: str, live: str | None, declared: str, as_json: bool = False) -> bool:
    if live is None:
        return False
    if as_json or key in JSON_ATTRIBUTES:
        try:
            return bool(json.loads(live) == json.loads(declared))
        except (TypeError, ValueError):
            return False
    return live == declared


def queue_arn(url: str, settings: Settings) -> str:
    sqs = aws.client("sqs", settings)
    return str(sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
               ["Attributes"]["QueueArn"])


def list_subscriptions(sns: Any, topic_arn: str) -> list[dict[str, str]]:
    pages = sns.get_paginator("list_subscriptions_by_topic").paginate(TopicArn=topic_arn)
    return [s for page in pages for s in page.get("Subscriptions", [])]


def topic_arns(settings: Settings) -> dict[str, str]:
    """Declared topic name -> ARN, for the topics that exist (discovered, never built by hand)."""
    sns = aws.client("sns", settings)
    by_sns_name = {arn.rsplit(":", 1)[1]: arn
                   for page in sns.get_paginator("list_topics").paginate()
                   for arn in (t["TopicArn"] for t in page.get("Topics", []))}
    return {spec.name: by_sns_name[spec.sns_name(settings)]
            for spec in TOPICS if spec.sns_name(settings) in by_sns_name}


def topic_arn_for(settings: Settings, sns_name: str) -> str | None:
    return next((arn for name, arn in topic_arns(settings).items()
                 if arn.rsplit(":", 1)[1] == sns_name), None)


def up(settings: Settings) -> Report:
    """Create or converge every declared resource."""
    return Converger(settings, apply=True).run()


def check(settings: Settings) -> Report:
    """Compare the live configuration with the declarations; change nothing."""
    return Converger(settings, apply=False).run()


def down(settings: Settings) -> list[str]:
    """Delete every declared resource of this environment; returns what was deleted."""
    sqs, sns = aws.client("sqs", settings), aws.client("sns", settings)
    deleted = []
    for teardown in TEARDOWN_STEPS:
        deleted += teardown(settings)
    for arn in topic_arns(settings).values():
        for sub in list_subscriptions(sns, arn):
            if sub["SubscriptionArn"].startswith("arn:"):
                sns.unsubscribe(SubscriptionArn=sub["SubscriptionArn"])
        sns.delete_topic(TopicArn=arn)
        deleted.append(f"topic {arn.rsplit(':', 1)[1]}")
    for spec in QUEUES:
        for name in (spec.sqs_name(settings), spec.dlq_sqs_name(settings)):
            try:
                url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
            except sqs.exceptions.QueueDoesNotExist:
                continue
            sqs.delete_queue(QueueUrl=url)
            deleted.append(f"queue {name}")
    return deleted

