"""Topics and subscriptions for `orders infra up/check/down`.

Topic ARNs and queue ARNs are discovered (ListTopics, GetQueueAttributes), never
built from an account id: emulators and AWS accounts differ.
"""

from __future__ import annotations

import json
from typing import Any

from orders import topology
from orders.aws import clients
from orders.aws.sns import topic_arns
from orders.infra import kms
from orders.infra.converger import Converger, same_value
from orders.settings import Settings
from orders.topology import TOPICS, SubscriptionSpec, tags

#: What SNS shows instead of an ARN for a subscription that cannot be managed yet.
NOT_AN_ARN = ("PendingConfirmation", "Deleted")


def list_subscriptions(sns: Any, topic_arn: str) -> list[dict[str, str]]:
    pages = sns.get_paginator("list_subscriptions_by_topic").paginate(TopicArn=topic_arn)
    return [s for page in pages for s in page.get("Subscriptions", [])]


def converge_topics(converger: Converger) -> None:
    """Every declared topic exists, encrypted with the environment's key, and carries its tags."""
    sns = clients.client("sns", converger.settings)
    existing = topic_arns(converger.settings)
    wanted_tags = tags(converger.settings, "events")
    for spec in TOPICS:
        name = spec.sns_name(converger.settings)
        arn = existing.get(spec.name)
        if arn is None:
            converger.report.add(f"topic {name}: {'created' if converger.apply else 'missing'}")
            if converger.apply:
                sns.create_topic(Name=name, Attributes={kms.KEY_ID: converger.key},
                                 Tags=[{"Key": k, "Value": v} for k, v in wanted_tags.items()])
                converger.created.add(name)
            continue
        converge_topic_key(converger, sns, name, arn)
        live = {t["Key"]: t["Value"] for t in sns.list_tags_for_resource(ResourceArn=arn).get("Tags", [])}
        stale = {k: v for k, v in wanted_tags.items() if live.get(k) != v}
        for key, value in stale.items():
            converger.drift(f"topic {name}: tag {key} is {live.get(key)!r}, declared {value!r}")
        if stale and converger.apply:
            sns.tag_resource(ResourceArn=arn, Tags=[{"Key": k, "Value": v} for k, v in stale.items()])


def converge_topic_key(converger: Converger, sns: Any, name: str, arn: str) -> None:
    """The topic is encrypted with the environment's key (SNS encrypts each message it stores with it)."""
    live = sns.get_topic_attributes(TopicArn=arn)["Attributes"].get(kms.KEY_ID)
    problem = kms.misencrypted(converger, live)
    if problem is None:
        return
    converger.drift(f"topic {name}: {problem}")
    if converger.apply:
        sns.set_topic_attributes(TopicArn=arn, AttributeName=kms.KEY_ID, AttributeValue=converger.key)


def converge_subscriptions(converger: Converger) -> None:
    """Exactly the declared subscriptions on our topics: missing ones made, others removed."""
    sns = clients.client("sns", converger.settings)
    declared = topology.subscriptions(converger.settings)
    for topic, arn in topic_arns(converger.settings).items():
        live = list_subscriptions(sns, arn)
        kept: set[str] = set()
        for spec in (s for s in declared if s.topic == topic):
            endpoint = endpoint_for(converger, spec)
            if endpoint is None:
                continue  # its queue is missing, which is already reported (in its own region's pass)
            found = next((s for s in live if s["Protocol"] == spec.protocol
                          and s["Endpoint"] == endpoint), None)
            if found:
                kept.add(found["SubscriptionArn"])
            subscription(converger, sns, arn, spec, endpoint, found)
        for sub in live:
            if sub["SubscriptionArn"] not in kept and sub["SubscriptionArn"] not in NOT_AN_ARN:
                label = f"subscription {topic} -> {sub['Protocol']}:{sub['Endpoint']}"
                converger.report.add(f"{label}: not declared" + (", removed" if converger.apply else ""))
                if converger.apply:
                    sns.unsubscribe(SubscriptionArn=sub["SubscriptionArn"])


def subscription(converger: Converger, sns: Any, topic_arn: str, spec: SubscriptionSpec,
                 endpoint: str, found: dict[str, str] | None) -> None:
    """One declared subscription: created if missing, its attributes converged."""
    label = spec.label
    wanted = subscription_attributes(spec)
    if spec.protocol == "sqs":
        # A cross-region subscription made now comes with its statement on the other region's queue,
        # which that region's pass has just created: a change, not drift.
        allow_topic_to_send(converger, endpoint, topic_arn, queue_settings(converger.settings, spec),
                            new=spec.region is not None and found is None)
    if found is None:
        converger.report.add(f"{label}: {'created' if converger.apply else 'missing'}")
        if converger.apply:
            sns.subscribe(TopicArn=topic_arn, Protocol=spec.protocol, Endpoint=endpoint,
                          Attributes=wanted, ReturnSubscriptionArn=True)
        return
    if found["SubscriptionArn"] in NOT_AN_ARN:
        converger.report.note(f"{label}: pending confirmation by the endpoint's owner")
        return
    sub_arn = found["SubscriptionArn"]
    live = sns.get_subscription_attributes(SubscriptionArn=sub_arn)["Attributes"]
    for key, value in wanted.items():
        if not same_value(key, live.get(key), value, as_json=key == "FilterPolicy"):
            converger.drift(f"{label}: {key} is {live.get(key)!r}, declared {value!r}")
            if converger.apply:
                sns.set_subscription_attributes(SubscriptionArn=sub_arn,
                                                AttributeName=key, AttributeValue=value)


def subscription_attributes(spec: SubscriptionSpec) -> dict[str, str]:
    attrs = {}
    if spec.filter_policy:
        attrs["FilterPolicy"] = json.dumps(spec.filter_policy, sort_keys=True)
        attrs["FilterPolicyScope"] = "MessageAttributes"
    if spec.protocol == "sqs":
        attrs["RawMessageDelivery"] = "true" if spec.raw_delivery else "false"
    return attrs


def queue_settings(settings: Settings, spec: SubscriptionSpec) -> Settings:
    """The settings of the region a subscribed queue lives in: the topic's, or the other region's."""
    return settings.for_region(spec.region) if spec.region else settings


def endpoint_for(converger: Converger, spec: SubscriptionSpec) -> str | None:
    """The endpoint SNS knows: a queue's ARN for 'sqs' (None if the queue is missing)."""
    if spec.protocol != "sqs":
        return spec.endpoint
    sqs = clients.client("sqs", queue_settings(converger.settings, spec))
    try:
        url = sqs.get_queue_url(QueueName=converger.settings.prefix + spec.endpoint)["QueueUrl"]
    except sqs.exceptions.QueueDoesNotExist:
        return None
    return str(sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
               ["Attributes"]["QueueArn"])


def allow_topic_to_send(converger: Converger, queue_arn: str, topic_arn: str, where: Settings,
                        new: bool = False) -> None:
    """The queue policy statement that lets this topic deliver to the queue (SNS needs it on AWS);
    `where` is the queue's region (another region's for a cross-region subscription)."""
    sqs = clients.client("sqs", where)
    name = queue_arn.rsplit(":", 1)[1]
    url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
    live = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["Policy"])
    policy = json.loads(live.get("Attributes", {}).get("Policy") or
                        '{"Version": "2012-10-17", "Statement": []}')
    sid = "sns-" + topic_arn.rsplit(":", 1)[1]
    if any(s.get("Sid") == sid for s in policy["Statement"]):
        return
    if name not in converger.created and not new:
        converger.drift(f"queue {name}: policy does not let topic {topic_arn.rsplit(':', 1)[1]} "
                             "send to it")
    if not converger.apply:
        return
    policy["Statement"].append(send_statement(sid, queue_arn, topic_arn))
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"Policy": json.dumps(policy)})


def send_statement(sid: str, queue_arn: Any, topic_arn: Any) -> dict[str, Any]:
    """The queue-policy statement that lets a topic deliver to a queue (ARNs as values or as template
    intrinsics); its Sid, "sns-<topic's SNS name>", is what the drift check looks for."""
    return {"Sid": sid, "Effect": "Allow", "Principal": {"Service": "sns.amazonaws.com"},
            "Action": "sqs:SendMessage", "Resource": queue_arn,
            "Condition": {"ArnEquals": {"aws:SourceArn": topic_arn}}}


def delete_topics(settings: Settings) -> list[str]:
    """Unsubscribe everything from our topics and delete them."""
    sns = clients.client("sns", settings)
    deleted = []
    for arn in topic_arns(settings).values():
        for sub in list_subscriptions(sns, arn):
            if sub["SubscriptionArn"] not in NOT_AN_ARN:
                sns.unsubscribe(SubscriptionArn=sub["SubscriptionArn"])
        sns.delete_topic(TopicArn=arn)
        deleted.append(f"topic {arn.rsplit(':', 1)[1]}")
    return deleted
