"""One IAM policy document per role, made from the declarations of orders.infra.access.

The statement builder here is the only one: `orders infra policies` gives it concrete ARNs
(`Arns`: the environment's account, region and key), the template's roles give it CloudFormation
references (orders.infra.cfn.roles.StackRefs). Either way a statement names declared resources
only, with no wildcard in any action.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Protocol

from orders.aws import region_switch
from orders.aws.field_crypto import APP
from orders.aws.metrics import NAMESPACE
from orders.infra.access import ROLES, Grant, Kind, Role
from orders.infra.alarms import alarm_specs
from orders.infra.dashboard import dashboard_name
from orders.infra.kms import Account
from orders.settings import Settings
from orders.topology import (
    ENVIRONMENT_KEY,
    QUEUES_BY_NAME,
    TABLES_BY_NAME,
    TOPICS_BY_NAME,
    cluster_name,
    subscriptions,
    tags,
    worker_name,
)

Statement = dict[str, Any]
Policy = dict[str, Any]
#: The tags that make a key the environment's (orders.infra.kms tags it so when it creates it).
KEY_TAGS = ("app", "environment")

#: The actions granted on Resource "*", and why AWS gives them no resource to scope.
UNSCOPED: dict[str, str] = {
    "sns:ListTopics": "lists the account's topics: SNS has no resource for it (topic ARNs are discovered "
                      "with it, never built by hand)",
    "cloudwatch:PutMetricData": "metrics have no ARN; the grant holds for the pipeline's namespace only "
                                f"(condition cloudwatch:namespace = {NAMESPACE})",
    "sns:GetSubscriptionAttributes": "SNS authorizes subscription actions on no resource (a subscription's "
                                     "ARN is not a resource IAM scopes); the administrator's only",
    "sns:SetSubscriptionAttributes": "as sns:GetSubscriptionAttributes",
    "sns:Unsubscribe": "as sns:GetSubscriptionAttributes",
    "cloudwatch:DescribeAlarms": "the environment's alarms are listed by name prefix, so the request names "
                                 "no alarm ARN (read-only, `orders infra up|check|down`)",
    "cloudwatch:PutAnomalyDetector": "an anomaly detector (the model behind a predictive alarm's band) has "
                                     "no ARN: IAM scopes the anomaly-detector actions to no resource; the "
                                     "administrator's only",
    "cloudwatch:DescribeAnomalyDetectors": "as cloudwatch:PutAnomalyDetector (read-only, "
                                           "`orders infra up|check`)",
    "cloudwatch:DeleteAnomalyDetector": "as cloudwatch:PutAnomalyDetector (`orders infra down`)",
    "kms:CreateKey": "no key exists before it is created; the grant holds for requests that tag the key as "
                     "this environment's (conditions aws:RequestTag/app and aws:RequestTag/environment)",
    "kms:TagResource": "with kms:CreateKey: tags given when the key is created, under the same conditions",
}
#: IAM's limit on a managed policy, in characters of JSON without white space (a role's inline
#: policies may hold 10,240 together): a longer document is attached as several (`split`).
MANAGED_POLICY_CHARS = 6_144
#: What a field grant on this region's key needs on each other region's key (orders.aws.field_crypto):
#: the sealer wraps its data key there too (Encrypt), the opener unwraps another region's wrap there.
IN_OTHER_REGIONS = {"kms:GenerateDataKey": "kms:Encrypt", "kms:Decrypt": "kms:Decrypt"}
#: Called, but granted to no one: AWS authorizes it for every caller.
NEEDS_NO_GRANT = {"sts:GetCallerIdentity": "AWS answers it for any credentials (even an explicit Deny cannot "
                                           "refuse it): `orders infra up|policies` read the account id"}


class Refs(Protocol):
    """How a statement names resources: concrete ARNs, or a template's references."""

    def queue(self, name: str) -> Any: ...
    def dlq(self, name: str) -> Any: ...
    def topic(self, name: str) -> Any: ...
    def table(self, name: str) -> Any: ...
    def index(self, table: str, index: str) -> Any: ...
    def key(self) -> Any: ...
    def pattern(self, service: str, resource: str, regional: bool = True) -> Any: ...
    def value(self, text: str) -> Any: ...


class Arns:
    """Concrete ARNs of one environment in one account and region, with its key's ARN."""

    def __init__(self, settings: Settings, account: Account, key_arn: str | None):
        self.settings, self.account, self.key_arn = settings, account, key_arn

    def queue(self, name: str) -> str:
        return self.account.arn("sqs", QUEUES_BY_NAME[name].sqs_name(self.settings))

    def dlq(self, name: str) -> str:
        return self.account.arn("sqs", QUEUES_BY_NAME[name].dlq_sqs_name(self.settings))

    def topic(self, name: str) -> str:
        return self.account.arn("sns", TOPICS_BY_NAME[name].sns_name(self.settings))

    def table(self, name: str) -> str:
        return self.account.arn("dynamodb", "table/" + TABLES_BY_NAME[name].table_name(self.settings))

    def index(self, table: str, index: str) -> str:
        return f"{self.table(table)}/index/{index}"

    def key(self) -> str:
        if self.key_arn is None:
            raise LookupError(f"the environment's key {ENVIRONMENT_KEY.alias_name(self.settings)} does not "
                              "exist: run `orders infra up` first (the roles' policies name its ARN)")
        return self.key_arn

    def pattern(self, service: str, resource: str, regional: bool = True) -> str:
        return self.account.arn(service, resource, regional)

    def value(self, text: str) -> str:
        pseudo = {"${AWS::Region}": self.account.region, "${AWS::Partition}": self.account.partition,
                  "${AWS::AccountId}": self.account.account_id}
        for name, found in pseudo.items():
            text = text.replace(name, found)
        return text


def subscribed(settings: Settings) -> dict[Kind, tuple[str, ...]]:
    """The topics with a subscription, and the queues subscribed to a topic, in this environment."""
    declared = subscriptions(settings)
    return {Kind.SUBSCRIBED_TOPICS: tuple(sorted({s.topic for s in declared})),
            Kind.SUBSCRIBED_QUEUES: tuple(sorted({s.endpoint for s in declared if s.protocol == "sqs"}))}


def resources(grant: Grant, refs: Refs, settings: Settings) -> Any:
    """What a grant's Resource names."""
    names = subscribed(settings).get(grant.kind, grant.names)
    by_name: dict[Kind, Callable[[str], Any]] = {
        Kind.QUEUE: refs.queue, Kind.SUBSCRIBED_QUEUES: refs.queue, Kind.DLQ: refs.dlq,
        Kind.TOPIC: refs.topic, Kind.SUBSCRIBED_TOPICS: refs.topic,
        Kind.TABLE: lambda name: elsewhere(name, refs, settings) or refs.table(name),
        Kind.INDEX: lambda name: refs.index(*name.split("/", 1)),
        Kind.WORKER_SERVICES: lambda queue: refs.pattern(
            "ecs", f"service/{cluster_name(settings)}/{worker_name(settings, queue)}"),
    }
    if grant.kind in by_name:
        return [by_name[grant.kind](name) for name in names]
    if grant.kind is Kind.ALARMS:
        return [refs.pattern("cloudwatch", f"alarm:{spec.name(settings)}") for spec in alarm_specs(settings)
                if spec.kind in grant.names]
    single = {Kind.KEY: refs.key, Kind.TAGGED_KEY: lambda: refs.pattern("kms", "key/*"),
              Kind.ALIAS: lambda: refs.pattern("kms", ENVIRONMENT_KEY.alias_name(settings)),
              Kind.DASHBOARD: lambda: refs.pattern("cloudwatch", f"dashboard/{dashboard_name(settings)}",
                                                   regional=False)}
    return [single[grant.kind]()] if grant.kind in single else "*"


def key_tags(settings: Settings, condition_key: str) -> dict[str, str]:
    """The environment's key tags as `condition_key`/<tag> conditions (the key's, or a request's)."""
    environment = tags(settings, ENVIRONMENT_KEY.name)
    return {f"{condition_key}/{k}": environment[k] for k in KEY_TAGS}


def condition(grant: Grant, refs: Refs, settings: Settings) -> dict[str, Any]:
    """A grant's Condition (empty: none)."""
    equal: dict[str, Any] = {}
    if grant.via:
        equal["kms:ViaService"] = [refs.value(f"{s}.${{AWS::Region}}.amazonaws.com") for s in grant.via]
    if grant.kind is Kind.TAGGED_KEY:
        equal.update(key_tags(settings, "aws:ResourceTag"))
    if grant.kind is Kind.REQUESTED_TAGS:
        equal.update(key_tags(settings, "aws:RequestTag"))
    if grant.kind is Kind.METRICS:
        equal["cloudwatch:namespace"] = NAMESPACE
    if grant.fields:  # the data keys of these fields of this environment only (orders.aws.field_crypto)
        equal["kms:EncryptionContext:app"] = APP
        equal["kms:EncryptionContext:env"] = settings.env
        equal["kms:EncryptionContext:field"] = list(grant.fields)
    return {"StringEquals": equal} if equal else {}


def statement(grant: Grant, refs: Refs, settings: Settings) -> Statement:
    """One grant as an IAM statement."""
    found: Statement = {"Sid": grant.sid, "Effect": "Allow", "Action": list(grant.actions),
                        "Resource": resources(grant, refs, settings)}
    when = condition(grant, refs, settings)
    if when:
        found["Condition"] = when
    return found


def in_region(refs: Refs, service: str, region: str | None, resource: str) -> Any:
    """The ARN of `resource` in another region of the environment's account (a template's Fn::Sub)."""
    return refs.value(f"arn:${{AWS::Partition}}:{service}:{region}:${{AWS::AccountId}}:{resource}")


def in_other_regions(grant: Grant, refs: Refs, settings: Settings) -> list[Statement]:
    """A field grant's counterpart on the other regions' keys (none with one region). Their ARNs are
    not known here: the keys are named by region and by the environment's tags, as the
    administrator's key before it exists."""
    others = settings.other_regions
    if not (grant.fields and others):
        return []
    keys = [in_region(refs, "kms", region, "key/*") for region in others]
    when = {**key_tags(settings, "aws:ResourceTag"), **condition(grant, refs, settings)["StringEquals"]}
    return [{"Sid": f"{grant.sid}InOtherRegions", "Effect": "Allow",
             "Action": [IN_OTHER_REGIONS[action] for action in grant.actions], "Resource": keys,
             "Condition": {"StringEquals": when}}]


def elsewhere(table: str, refs: Refs, settings: Settings) -> Any:
    """The ARN of a table that lives outside the regions (the processor's, ORDERS_GATEWAY), else None."""
    if table != "gateway" or settings.gateway_place is None:
        return None
    place = settings.gateway_settings()
    return in_region(refs, "dynamodb", place.region, "table/" + TABLES_BY_NAME[table].table_name(place))


def read_switch(settings: Settings, refs: Refs) -> list[Statement]:
    """With a switch (ORDERS_SWITCH), every role reads it: workers and producers act only in the active
    region, and a switch they may not read makes none active (orders.aws.region_switch)."""
    place = settings.switch_settings()
    if place is None or not settings.switched:
        return []
    arn = in_region(refs, "dynamodb", place.region, "table/" + region_switch.table_name(place))
    return [{"Sid": "ReadRegionSwitch", "Effect": "Allow", "Action": ["dynamodb:GetItem"], "Resource": [arn]}]


def statements(role: Role, refs: Refs, settings: Settings) -> list[Statement]:
    """A role's statements, in the order of its grants (a field grant followed by its other regions'),
    then the switch's read in a multi-region deployment."""
    return [*(one for grant in role.grants
              for one in (statement(grant, refs, settings), *in_other_regions(grant, refs, settings))),
            *read_switch(settings, refs)]


def document(role: Role, refs: Refs, settings: Settings) -> Policy:
    return {"Version": "2012-10-17", "Statement": statements(role, refs, settings)}


def policies(settings: Settings, account: Account, key_arn: str | None,
             names: list[str] | None = None) -> dict[str, Policy]:
    """{role: policy document} for the roles named (all by default), with this environment's ARNs."""
    arns = Arns(settings, account, key_arn)
    return {name: document(ROLES[name], arns, settings) for name in names or ROLES}


def size(document: Policy) -> int:
    """A policy's size as IAM counts it (no white space)."""
    return len(json.dumps(document, separators=(",", ":")))


def split(name: str, document: Policy, limit: int = MANAGED_POLICY_CHARS) -> dict[str, Policy]:
    """`document` as managed policies of at most `limit` characters each: {name: it} when it fits, else
    {name-1: part, name-2: part, ...} with the statements in order."""
    if size(document) <= limit:
        return {name: document}
    parts: list[list[Statement]] = [[]]
    for one in document["Statement"]:
        if parts[-1] and size({**document, "Statement": [*parts[-1], one]}) > limit:
            parts.append([])
        parts[-1].append(one)
    return {f"{name}-{n}": {**document, "Statement": part} for n, part in enumerate(parts, 1)}


def docs_text() -> str:
    """What the policies grant on Resource "*" and why, and what they grant no one."""
    lines = ['Granted on Resource "*" (AWS scopes these actions to no resource):']
    lines += [f"  {action}: {why}" for action, why in UNSCOPED.items()]
    lines += ["Granted to no one:"] + [f"  {action}: {why}" for action, why in NEEDS_NO_GRANT.items()]
    lines.append("The key (kms:*) is used through SQS, SNS and DynamoDB only (condition kms:ViaService), "
                 "and directly for the sensitive fields' data keys, each role for its own fields only "
                 "(condition kms:EncryptionContext:field); with several regions, the same fields' "
                 "data keys on the other regions' keys (kms:Encrypt to wrap, kms:Decrypt to unwrap), "
                 "named by region and by the environment's tags.")
    return "\n".join(lines)
