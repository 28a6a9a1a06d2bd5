"""Converge AWS onto the declared topology: `orders infra up`, `check` and `down`.

One code path serves `up` and `check`: each resource is compared with its
declaration, and the differences are either applied (`up`) or reported as
drift (`check`). A second `up` therefore finds nothing to do and says so.
Queues live here; topics and subscriptions in `orders.provisioning_sns`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from orders import aws
from orders.settings import Settings
from orders.topology import QUEUES, TOPICS, QueueSpec, tags

#: Attributes an emulator may accept and not echo back (moto does not store
#: RedriveAllowPolicy). Against such an endpoint their absence is reported as
#: "not verifiable here", never as drift; against AWS it is drift.
MAY_NOT_ECHO = frozenset({"RedriveAllowPolicy", "FifoThroughputLimit", "DeduplicationScope"})
#: Attributes whose JSON value is compared as data, not as text.
JSON_ATTRIBUTES = frozenset({"RedrivePolicy", "RedriveAllowPolicy", "Policy"})
#: Set once at creation; SQS refuses to change them afterwards.
IMMUTABLE = frozenset({"FifoQueue"})


@dataclass
class Report:
    """What `up` changed or `check` found, one readable line per difference."""

    changes: list[str] = field(default_factory=list)
    unverifiable: list[str] = field(default_factory=list)

    def add(self, line: str) -> None:
        self.changes.append(line)

    def note(self, line: str) -> None:
        """Something this endpoint cannot show: neither drift nor a change."""
        if line not in self.unverifiable:
            self.unverifiable.append(line)

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
        from orders import provisioning_sns

        self.queues()
        provisioning_sns.converge_topics(self)
        provisioning_sns.converge_subscriptions(self)
        for step in EXTRA_STEPS + self.extra_steps:
            step(self)
        return self.report

    def drift(self, line: str) -> None:
        """A difference from the declaration: fixed by `up`, reported by `check`."""
        self.report.add(line + ("; fixed" if self.apply else ""))

    def queues(self) -> None:
        for spec in QUEUES:
            self.queue_pair(spec)

    def queue_pair(self, spec: QueueSpec) -> None:
        """A queue and its DLQ: each needs the other's ARN, so the DLQ comes first."""
        dlq_name, src_name = spec.dlq_sqs_name(self.settings), spec.sqs_name(self.settings)
        dlq_initial = spec.dlq_attributes("")
        dlq_initial.pop("RedriveAllowPolicy")  # needs the source's ARN, known below
        dlq_url = self.find_or_create(dlq_name, spec.service, dlq_initial)
        dlq_live = live_attributes(dlq_url, self.settings) if dlq_url else {}

        src_wanted = spec.attributes(dlq_live.get("QueueArn", ""))
        if not dlq_url:
            src_wanted.pop("RedrivePolicy")  # the missing DLQ is the finding, not its ARN
        src_url = self.find_or_create(src_name, spec.service, src_wanted)
        if src_url:
            src_live = live_attributes(src_url, self.settings)
            self.converge(src_url, src_name, src_live, src_wanted)
            self.converge_tags(src_url, src_name, spec.service)
        if dlq_url:
            dlq_wanted = spec.dlq_attributes(src_live["QueueArn"] if src_url else "")
            if not src_url:
                dlq_wanted.pop("RedriveAllowPolicy")
            self.converge(dlq_url, dlq_name, dlq_live, dlq_wanted)
            self.converge_tags(dlq_url, dlq_name, spec.service)

    def find_or_create(self, name: str, service: str, attributes: dict[str, str]) -> str | None:
        """The queue's URL; a missing queue is created (up) or reported (check)."""
        sqs = aws.client("sqs", self.settings)
        try:
            return str(sqs.get_queue_url(QueueName=name)["QueueUrl"])
        except sqs.exceptions.QueueDoesNotExist:
            self.report.add(f"queue {name}: {'created' if self.apply else 'missing'}")
            if not self.apply:
                return None
        self.created.add(name)
        return str(sqs.create_queue(QueueName=name, Attributes=attributes,
                                    tags=tags(self.settings, service))["QueueUrl"])

    def converge(self, url: str, name: str, live: dict[str, str], wanted: dict[str, str]) -> None:
        """Compare a queue's attributes with the declared ones; set the stale ones (up)."""
        just_created = name in self.created
        stale = {}
        for key, value in wanted.items():
            if same_value(key, live.get(key), value):
                continue
            if key not in live and key in MAY_NOT_ECHO and self.on_emulator:
                self.report.note(f"queue {name}: {key} (the endpoint does not echo it)")
                if just_created:
                    stale[key] = value  # set it once; it cannot be compared afterwards
                continue
            if not just_created:  # a new queue is reported once, as created
                self.drift(f"queue {name}: {key} is {live.get(key)!r}, declared {value!r}")
            stale[key] = value
        for key in IMMUTABLE & stale.keys():
            del stale[key]
            self.report.add(f"queue {name}: {key} cannot change; delete the queue and run up again")
        if stale and self.apply:
            aws.client("sqs", self.settings).set_queue_attributes(QueueUrl=url, Attributes=stale)

    def converge_tags(self, url: str, name: str, service: str) -> None:
        """Declared tags present with their values (tags added by others are left alone)."""
        if name in self.created:
            return  # tagged at creation
        sqs = aws.client("sqs", self.settings)
        live = sqs.list_queue_tags(QueueUrl=url).get("Tags", {})
        stale = {k: v for k, v in tags(self.settings, service).items() if live.get(k) != v}
        for key, value in stale.items():
            self.drift(f"queue {name}: tag {key} is {live.get(key)!r}, declared {value!r}")
        if stale and self.apply:
            sqs.tag_queue(QueueUrl=url, Tags=stale)


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


def same_value(key: str, live: str | None, declared: str, as_json: bool = False) -> bool:
    if live is None:
        return False
    if as_json or key in JSON_ATTRIBUTES:
        try:
            return bool(json.loads(live) == json.loads(declared))
        except (TypeError, ValueError):
            return False
    return live == declared


def live_attributes(url: str, settings: Settings) -> dict[str, str]:
    sqs = aws.client("sqs", settings)
    return dict(sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"]).get("Attributes", {}))


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


def up(settings: Settings) -> Report:
    """Create or converge every declared resource."""
    return Converger(settings, apply=True).run()


def check(settings: Settings) -> Report:
    """Compare the live configuration with the declarations; change nothing."""
    return Converger(settings, apply=False).run()


def down(settings: Settings) -> list[str]:
    """Delete every declared resource of this environment; returns what was deleted."""
    from orders.provisioning_sns import delete_topics

    deleted = []
    for teardown in TEARDOWN_STEPS:
        deleted += teardown(settings)
    deleted += delete_topics(settings)
    deleted += delete_queues(settings)
    return deleted


def delete_queues(settings: Settings) -> list[str]:
    sqs = aws.client("sqs", settings)
    deleted = []
    for spec in QUEUES:
        for name in (spec.sqs_name(settings), spec.dlq_sqs_name(settings)):
            try:
                url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
            except sqs.exceptions.QueueDoesNotExist:
                continue
            sqs.delete_queue(QueueUrl=url)
            deleted.append(f"queue {name}")
    return deleted
