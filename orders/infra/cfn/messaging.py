"""Queues with their DLQs, topics, subscriptions and the policies that let SNS deliver.

Names, attributes, filter policies and tags come from the same builders `orders infra up`
uses (orders.topology, orders.infra.topics), so the stack and the converger cannot disagree.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from orders import topology
from orders.infra import kms
from orders.infra.cfn.intrinsics import (
    Resource,
    Resources,
    arn,
    get_att,
    logical_id,
    ref,
    tag_list,
    typed,
)
from orders.infra.cfn.keys import KEY_PLACEHOLDER, key_arn
from orders.infra.topics import send_statement as topic_send_statement
from orders.infra.topics import subscription_attributes
from orders.settings import Settings
from orders.topology import QUEUES, TOPICS, QueueSpec, SubscriptionSpec

#: Stand-ins for ARNs the attribute builders need and only CloudFormation knows.
DLQ_ARN = "<dlq-arn>"
SOURCE_ARN = "<source-arn>"


def queue_id(name: str) -> str:
    return logical_id(name, "Queue")


def dlq_id(name: str) -> str:
    return logical_id(name, "DeadLetterQueue")


def topic_id(name: str) -> str:
    return logical_id(name, "Topic")


def queues(settings: Settings) -> Resources:
    """Every declared queue and its DLQ."""
    return {key: value for spec in QUEUES for key, value in queue_pair(settings, spec).items()}


def queue_pair(settings: Settings, spec: QueueSpec) -> Resources:
    """A queue and its DLQ. The queue names the DLQ by GetAtt (so the DLQ exists first); the DLQ
    names its source by a built ARN, since a GetAtt both ways would be a cycle."""
    source_arn = arn("sqs", spec.sqs_name(settings))
    encryption = typed(kms.queue_encryption(KEY_PLACEHOLDER), {KEY_PLACEHOLDER: key_arn()})
    dlq = {"QueueName": spec.dlq_sqs_name(settings),
           **typed(spec.dlq_attributes(SOURCE_ARN), {SOURCE_ARN: source_arn}), **encryption,
           "Tags": tag_list(settings, spec.service)}
    source = {"QueueName": spec.sqs_name(settings),
              **typed(spec.attributes(DLQ_ARN), {DLQ_ARN: get_att(dlq_id(spec.name), "Arn")}), **encryption,
              "Tags": tag_list(settings, spec.service)}
    return {dlq_id(spec.name): _queue(dlq), queue_id(spec.name): _queue(source)}


def _queue(properties: dict[str, Any]) -> Resource:
    # Said explicitly: deleting the stack deletes its queues with their messages (drain first,
    # docs/deploy.md), and a change SQS cannot make in place (FifoQueue) replaces the queue.
    return {"Type": "AWS::SQS::Queue", "Properties": properties,
            "DeletionPolicy": "Delete", "UpdateReplacePolicy": "Delete"}


def topics(settings: Settings) -> Resources:
    """Every declared topic, encrypted and tagged as `orders infra up` makes it."""
    return {topic_id(spec.name): {"Type": "AWS::SNS::Topic", "Properties": {
        "TopicName": spec.sns_name(settings), kms.KEY_ID: key_arn(), "Tags": tag_list(settings, "events")}}
        for spec in TOPICS}


def subscriptions(settings: Settings) -> Resources:
    """The environment's subscriptions (orders.topology.subscriptions), the queue policies that
    let SNS deliver to the subscribed queues, and the permission that lets it invoke a Lambda."""
    resources: Resources = {}
    numbers: Counter[tuple[str, str]] = Counter()
    declared = topology.subscriptions(settings)
    for spec in declared:
        numbers[(spec.topic, spec.protocol)] += 1
        name = subscription_id(spec, numbers[(spec.topic, spec.protocol)])
        resources[name] = {"Type": "AWS::SNS::Subscription", "Properties": {
            "TopicArn": ref(topic_id(spec.topic)), "Protocol": spec.protocol,
            "Endpoint": endpoint(settings, spec), **typed(subscription_attributes(spec))}}
        if spec.protocol == "lambda":
            resources[name.removesuffix("Subscription") + "Permission"] = invoke_permission(spec)
    resources.update(queue_policies(settings, [s for s in declared if s.protocol == "sqs"]))
    return resources


def subscription_id(spec: SubscriptionSpec, number: int) -> str:
    if spec.protocol == "sqs":
        where = logical_id(spec.region, "") if spec.region else ""
        return logical_id(spec.topic, "To" + logical_id(spec.endpoint, where + "Subscription"))
    return logical_id(spec.topic, logical_id(spec.protocol, f"{number}Subscription"))


def endpoint(settings: Settings, spec: SubscriptionSpec) -> Any:
    """What SNS is given: the queue's ARN for 'sqs' (built for another region's queue), else the address.

    A cross-region subscription is declared with its topic: SNS takes it before the other region's
    stack has made the queue, and delivers once that stack exists with its policy.
    """
    if spec.protocol != "sqs":
        return spec.endpoint
    if spec.region:
        return arn("sqs", settings.prefix + spec.endpoint, region=spec.region)
    return get_att(queue_id(spec.endpoint), "Arn")


def queue_policies(settings: Settings, sqs_subscriptions: list[SubscriptionSpec]) -> Resources:
    """One policy per subscribed queue, a statement per topic, as orders.infra.topics writes them.

    A cross-region subscription of this region's topic to another region's queue means, the regions
    being declared alike, the same subscription of that region's topic to this region's queue: the
    queue's policy here lets that topic send.
    """
    by_queue: dict[str, list[tuple[str, str | None]]] = {}
    for spec in sqs_subscriptions:
        by_queue.setdefault(spec.endpoint, []).append((spec.topic, spec.region))
    return {logical_id(queue, "QueuePolicy"): {"Type": "AWS::SQS::QueuePolicy", "Properties": {
        "Queues": [ref(queue_id(queue))],
        "PolicyDocument": {"Version": "2012-10-17", "Statement": [
            send_statement(settings, queue, topic, region) for topic, region in topics_of]}}}
        for queue, topics_of in by_queue.items()}


def send_statement(settings: Settings, queue: str, topic: str, region: str | None = None) -> dict[str, Any]:
    """The statement that lets `topic` (this region's, or `region`'s) send to `queue`; its Sid is what
    `orders infra check` looks for."""
    sns_name = topology.TOPICS_BY_NAME[topic].sns_name(settings)
    source = arn("sns", sns_name, region=region) if region else ref(topic_id(topic))
    return topic_send_statement("sns-" + sns_name, get_att(queue_id(queue), "Arn"), source)


def invoke_permission(spec: SubscriptionSpec) -> dict[str, Any]:
    """SNS may invoke the subscribed function, for this topic only."""
    return {"Type": "AWS::Lambda::Permission", "Properties": {
        "Action": "lambda:InvokeFunction", "FunctionName": spec.endpoint,
        "Principal": "sns.amazonaws.com", "SourceArn": ref(topic_id(spec.topic))}}
