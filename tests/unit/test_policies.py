"""The roles' IAM policies (orders.infra.access, orders.infra.policies): no wildcard action, Resource "*"
only where AWS scopes nothing, every resource of the topology reached by someone, the template's roles
the same statements; and the evaluator (orders.infra.policy_check) and moto's view (orders.emulator.moto_iam)
that the least-privilege run relies on."""

from __future__ import annotations

import re
from typing import Any

import pytest

from orders.emulator.moto_iam import moto_view
from orders.infra.access import ROLES, Kind, worker_role
from orders.infra.cfn.roles import stack_roles
from orders.infra.kms import Account
from orders.infra.policies import (
    MANAGED_POLICY_CHARS,
    NEEDS_NO_GRANT,
    UNSCOPED,
    Arns,
    docs_text,
    policies,
    size,
    split,
)
from orders.infra.policy_check import Call, allowed_by, conditions_hold, matches, refused, unused
from orders.infra.template import template_dict
from orders.settings import Settings
from orders.steps.flow import COMPENSATION, REFUND, stages
from orders.topology import QUEUES, TABLES, TOPICS, queue_for_task

SETTINGS = Settings(env="prod", region="eu-west-1")
ACCOUNT = Account("aws", "eu-west-1", "111122223333")
KEY = "arn:aws:kms:eu-west-1:111122223333:key/0b5b4c6e-1111-2222-3333-444455556666"
DOCUMENTS = policies(SETTINGS, ACCOUNT, KEY)
ARNS = Arns(SETTINGS, ACCOUNT, KEY)


def statements(role: str | None = None) -> list[tuple[str, dict[str, Any]]]:
    return [(name, s) for name, doc in DOCUMENTS.items() if role in (None, name) for s in doc["Statement"]]


def granted(role: str, action: str, resource: str, **context: str) -> bool:
    return bool(allowed_by(DOCUMENTS[role], Call(role, action, resource, context)))


def test_every_role_has_one_policy_and_no_action_has_a_wildcard():
    assert list(DOCUMENTS) == list(ROLES)
    for role, statement in statements():
        for action in statement["Action"]:
            assert re.fullmatch(r"[a-z0-9]+:[A-Za-z0-9]+", action), (role, action)
        assert statement["Effect"] == "Allow" and statement["Resource"], (role, statement["Sid"])


def test_resource_star_only_for_the_actions_aws_does_not_scope():
    starred = {a for _, s in statements() if s["Resource"] == "*" for a in s["Action"]}
    assert starred == set(UNSCOPED)
    assert not set(NEEDS_NO_GRANT) & {a for _, s in statements() for a in s["Action"]}
    metrics = [s for _, s in statements() if s["Action"] == ["cloudwatch:PutMetricData"]]
    namespace = {"StringEquals": {"cloudwatch:namespace": "Orders"}}
    assert metrics and all(s["Condition"] == namespace for s in metrics)
    assert all(action in docs_text() for action in UNSCOPED)


def test_every_arn_is_this_environment_s_and_the_only_pattern_is_the_administrator_s_tagged_key():
    for role, statement in statements():
        for resource in statement["Resource"] if statement["Resource"] != "*" else []:
            assert resource.startswith("arn:aws:") and ":111122223333:" in resource, (role, resource)
            assert resource.startswith("arn:aws:cloudwatch::") or ":eu-west-1:" in resource, (role, resource)
            if "*" in resource:
                assert (role, resource) == ("admin", "arn:aws:kms:eu-west-1:111122223333:key/*")
                assert statement["Condition"]["StringEquals"]["aws:ResourceTag/environment"] == "prod"
            else:
                assert "prod-" in resource or resource == KEY, (role, resource)


def test_each_queue_is_consumed_by_its_own_workers_and_read_in_its_dlq_by_the_watcher_and_the_tools():
    for spec in QUEUES:
        consumers = {r for r in ROLES if granted(r, "sqs:ReceiveMessage", ARNS.queue(spec.name))}
        assert consumers == {worker_role(spec.name).name}
        readers = {r for r in ROLES if granted(r, "sqs:ReceiveMessage", ARNS.dlq(spec.name))}
        assert readers == {"worker-orders", "dlq-tools"}  # ops.* run on the orders queue
        assert granted(worker_role(spec.name).name, "sqs:SendMessage", ARNS.dlq(spec.name))  # its poison
        # Only the DLQ tools and automated redrive (ops.* on the orders queue) take a message out of a DLQ.
        deleters = {r for r in ROLES if granted(r, "sqs:DeleteMessage", ARNS.dlq(spec.name))}
        assert deleters == {"worker-orders", "dlq-tools"}


def test_every_topic_and_table_of_the_topology_is_reached_and_only_the_api_touches_its_tables():
    for topic in TOPICS:
        assert any(granted(r, "sns:Publish", ARNS.topic(topic.name)) for r in ROLES), topic.name
    for table in TABLES:
        users = {r for r in ROLES for a in ("GetItem", "BatchGetItem", "UpdateItem", "PutItem")
                 if granted(r, f"dynamodb:{a}", ARNS.table(table.name))}
        assert users, table.name
        if table.service == "api":
            assert users <= {"api", "admin"}, (table.name, users)
    assert granted("worker-inventory.fifo", "dynamodb:Query", ARNS.index("orders", "active-holds"))
    assert not granted("worker-inventory.fifo", "dynamodb:Query", ARNS.table("orders"))


def test_each_step_may_hand_off_to_the_next_step_s_queue_and_to_the_refund():
    for review in (True, False):
        path = stages(review)
        for stage, after in zip(path, path[1:], strict=False):
            role = worker_role(queue_for_task(stage.task).name).name
            target = ARNS.queue(queue_for_task(after.task).name)
            assert granted(role, "sqs:SendMessage", target), (stage, after)
    refund = ARNS.queue(queue_for_task(REFUND.task).name)
    assert COMPENSATION is REFUND.step
    assert all(granted(worker_role(q).name, "sqs:SendMessage", refund) for q in ("payments", "shipping"))


def test_the_key_is_used_through_services_only_and_the_administrator_s_by_its_tags():
    via = {"kms:ViaService": "sqs.eu-west-1.amazonaws.com"}
    for role in ROLES:
        assert not granted(role, "kms:Decrypt", KEY), role  # never directly
        if role != "admin":
            assert granted(role, "kms:Decrypt", KEY, **via), role
    tags = {"aws:ResourceTag/app": "orders", "aws:ResourceTag/environment": "prod"}
    assert granted("admin", "kms:EnableKeyRotation", KEY, **tags)
    another = {**tags, "aws:ResourceTag/environment": "dev"}
    assert not granted("admin", "kms:EnableKeyRotation", KEY, **another)


def test_the_roles_policies_name_the_key_so_they_need_it_but_the_administrator_s_does_not():
    with pytest.raises(LookupError, match="orders infra up"):
        policies(SETTINGS, ACCOUNT, None, ["beat"])
    assert policies(SETTINGS, ACCOUNT, None, ["admin"])["admin"] == DOCUMENTS["admin"]


#: How a stack resource's ARN is made: (service, prefix, the property naming it).
STACK_ARNS = {"AWS::SQS::Queue": ("sqs", "", "QueueName"), "AWS::SNS::Topic": ("sns", "", "TopicName"),
              "AWS::DynamoDB::Table": ("dynamodb", "table/", "TableName")}


def stack_names(doc: dict[str, Any]) -> dict[str, str]:
    """What each reference of the template stands for in this account: pseudo parameters, `Id.Arn`s, Refs."""
    names = {"AWS::Partition": "aws", "AWS::Region": ACCOUNT.region, "AWS::AccountId": ACCOUNT.account_id}
    for rid, res in doc["Resources"].items():
        if res["Type"] == "AWS::KMS::Key":
            names[f"{rid}.Arn"] = KEY
        elif res["Type"] in STACK_ARNS:
            service, prefix, prop = STACK_ARNS[res["Type"]]
            names[f"{rid}.Arn"] = ACCOUNT.arn(service, prefix + res["Properties"][prop])
            if res["Type"] == "AWS::SNS::Topic":
                names[rid] = names[f"{rid}.Arn"]  # a topic's Ref is its ARN
    return names


def resolved(value: Any, names: dict[str, str]) -> Any:
    """A template value with its Ref, GetAtt and Sub replaced by what they stand for."""
    if isinstance(value, list):
        return [resolved(v, names) for v in value]
    if isinstance(value, dict) and len(value) == 1 and next(iter(value)) in ("Ref", "Fn::GetAtt", "Fn::Sub"):
        kind, arg = next(iter(value.items()))
        if kind == "Fn::Sub":
            return re.sub(r"\$\{([^}]+)\}", lambda m: names[m.group(1)], arg)
        return names[arg] if kind == "Ref" else names[f"{arg[0]}.{arg[1]}"]
    if isinstance(value, dict):
        return {k: resolved(v, names) for k, v in value.items()}
    return value


@pytest.mark.parametrize("lambda_queues", [[], ["notifications"]])
def test_the_template_s_roles_are_the_generated_policies_with_references(lambda_queues):
    doc = template_dict(SETTINGS, lambda_queues=lambda_queues)
    for role_id, name in stack_roles().items():
        [inline] = doc["Resources"][role_id]["Properties"]["Policies"]
        assert resolved(inline["PolicyDocument"], stack_names(doc)) == DOCUMENTS[name], role_id


def test_every_grant_that_a_run_may_not_use_says_why_and_metrics_and_topics_are_declared_kinds():
    for role in ROLES.values():
        sids = [g.sid for g in role.grants]
        assert len(sids) == len(set(sids)), role.name
        for grant in role.grants:
            assert grant.why, (role.name, grant.sid)
            assert grant.kind is not Kind.ANY or set(grant.actions) <= set(UNSCOPED), (role.name, grant.sid)


def test_the_evaluator_matches_actions_resources_and_conditions_as_iam_does():
    assert matches("sqs:Send*", "SQS:SendMessage", ignore_case=True)
    assert not matches("sqs:Send*", "sqs:Receive")
    assert matches("arn:aws:sqs:*:1:q-?", "arn:aws:sqs:eu-west-1:1:q-a") and not matches("a*", "A")
    assert conditions_hold({"StringEquals": {"k": ["a", "b"]}}, {"k": "b"})
    assert not conditions_hold({"StringEquals": {"k": "a"}}, {})  # a missing key never matches
    assert not conditions_hold({"NumericLessThan": {"k": "1"}}, {"k": "0"})  # an operator it does not know
    policy = {"Statement": [{"Sid": "A", "Effect": "Allow", "Action": "s:*", "Resource": "*"},
                            {"Sid": "B", "Effect": "Allow", "Action": ["s:Put"], "Resource": ["r", "q"]},
                            {"Sid": "D", "Effect": "Deny", "Action": "s:Delete", "Resource": "r"}]}
    assert allowed_by(policy, Call("x", "s:Put", "r")) == ["A", "B"]
    assert allowed_by(policy, Call("x", "s:Delete", "r")) == []  # an explicit deny wins
    calls = [Call("x", "s:Put", "r"), Call("x", "s:Delete", "r")]
    assert refused({"x": policy}, calls) == [calls[1]]
    assert [(u.sid, u.resource) for u in unused({"x": policy}, calls)] == [("B", "q")]


def test_moto_s_view_keeps_queue_arns_and_widens_what_moto_cannot_scope():
    view = moto_view(DOCUMENTS["worker-payments"])["Statement"]
    sends = [s for s in view if "sqs:SendMessage" in s["Action"] and s["Resource"] != "*"]
    assert sends and all("sqs:SendMessageBatch" in s["Action"] for s in sends)
    assert {"Effect": "Allow", "Action": ["sqs:GetQueueUrl"], "Resource": "*"} in view
    assert all(s["Resource"] == "*" for s in view if not s["Action"][0].startswith("sqs:"))
    assert any("monitoring:PutMetricData" in s["Action"] for s in view)
    assert all("Condition" not in s for s in view)


def test_every_document_fits_iam_as_an_inline_role_policy_or_as_managed_policies_once_split():
    long = Settings(env="x" * 40, region="ap-southeast-2")  # the longest names an environment can give
    documents = policies(long, Account("aws-us-gov", "ap-southeast-2", "123456789012"), KEY)
    for role_id, name in stack_roles().items():
        assert size(documents[name]) <= 10_240, role_id  # a role's inline policies, together
    for name, document in documents.items():
        parts = split(name, document)
        assert all(size(part) <= MANAGED_POLICY_CHARS for part in parts.values()), name
        assert [s for part in parts.values() for s in part["Statement"]] == document["Statement"], name
    assert list(split("admin", documents["admin"]))[:2] == ["admin-1", "admin-2"]  # too long for one
    assert list(split("beat", documents["beat"])) == ["beat"]


def test_the_door_seals_and_each_step_s_role_opens_its_own_field_only():
    def context(field: str, env: str = "prod") -> dict[str, str]:
        return {"kms:EncryptionContext:app": "orders", "kms:EncryptionContext:env": env,
                "kms:EncryptionContext:field": field}

    opens = {"worker-payments": "payment.token", "worker-shipping": "shippingAddress",
             "worker-notifications": "contact", "worker-notifications-replica": "contact"}
    fields = ("payment.token", "contact", "shippingAddress")
    for role in ROLES:
        for field in fields:
            opened = granted(role, "kms:Decrypt", KEY, **context(field))
            assert opened == (opens.get(role) == field), (role, field)
            seals = role in ("api", "worker-orders", "worker-orders-priority.fifo")
            assert granted(role, "kms:GenerateDataKey", KEY, **context(field)) == seals, (role, field)
    assert not granted("worker-payments", "kms:Decrypt", KEY, **context("payment.token", env="dev"))
    assert not granted("api", "kms:GenerateDataKey", KEY, **{"kms:EncryptionContext:field": "contact"})


def test_with_several_regions_the_sealers_wrap_and_the_openers_unwrap_on_the_other_regions_keys():
    regions = (("eu-west-1", None), ("eu-central-1", None), ("us-east-2", None))
    west = Settings(env="prod", region="eu-west-1", region_endpoints=regions)
    documents = policies(west, ACCOUNT, KEY)
    central = "arn:aws:kms:eu-central-1:111122223333:key/7c1e"
    context = {"aws:ResourceTag/app": "orders", "aws:ResourceTag/environment": "prod",
               "kms:EncryptionContext:app": "orders", "kms:EncryptionContext:env": "prod"}

    def allowed(role: str, action: str, resource: str, field: str, **more: str) -> bool:
        call = Call(role, action, resource, {**context, "kms:EncryptionContext:field": field, **more})
        return bool(allowed_by(documents[role], call))

    for role in ("api", "worker-orders"):
        assert allowed(role, "kms:Encrypt", central, "contact")
        assert not allowed(role, "kms:Decrypt", central, "contact")
        assert not allowed(role, "kms:Encrypt", KEY, "contact")  # its own region's key: GenerateDataKey only
    assert allowed("worker-payments", "kms:Decrypt", central, "payment.token")
    assert not allowed("worker-payments", "kms:Decrypt", central, "contact")
    assert not allowed("worker-payments", "kms:Encrypt", central, "payment.token")
    assert not allowed("worker-payments", "kms:Decrypt", central, "payment.token",
                       **{"aws:ResourceTag/environment": "dev"})  # another environment's key there
    assert not allowed("worker-payments", "kms:Decrypt", "arn:aws:kms:ap-south-1:111122223333:key/7c1e",
                       "payment.token")  # a region not in the deployment
    payments = documents["worker-payments"]["Statement"]
    others = [s["Resource"] for s in payments if "InOtherRegions" in s["Sid"]]
    assert others == [[f"arn:aws:kms:{r}:111122223333:key/*" for r in ("eu-central-1", "us-east-2")]]
    alone = Settings(env="prod", region="eu-west-1", region_endpoints=(("eu-west-1", None),))
    assert policies(alone, ACCOUNT, KEY) == DOCUMENTS  # one region: the policies as they were


def test_with_a_switch_and_a_processor_elsewhere_every_role_reads_the_switch_and_charges_there():
    settings = Settings.from_env({"ORDERS_ENV": "prod", "ORDERS_REGIONS": "us-east-1,us-west-2",
                                  "ORDERS_SWITCH": "us-east-2", "ORDERS_GATEWAY": "us-east-2"})
    account = Account("aws", "us-east-1", "123456789012")
    found = policies(settings, account, "arn:aws:kms:us-east-1:123456789012:key/k")
    switch = "arn:aws:dynamodb:us-east-2:123456789012:table/prod-region-switch"
    for name, document in found.items():
        reads = [s for s in document["Statement"] if s["Sid"] == "ReadRegionSwitch"]
        assert reads == [{"Sid": "ReadRegionSwitch", "Effect": "Allow", "Action": ["dynamodb:GetItem"],
                          "Resource": [switch]}], name
    gateway = [s for d in found.values() for s in d["Statement"] if s["Sid"] == "UseGateway"]
    assert gateway and all(s["Resource"] == ["arn:aws:dynamodb:us-east-2:123456789012:table/prod-gateway"]
                           for s in gateway)
    # One region, no switch: nothing of the kind.
    alone = policies(Settings.from_env({"ORDERS_ENV": "prod", "AWS_DEFAULT_REGION": "us-east-1"}), account,
                     "arn:aws:kms:us-east-1:123456789012:key/k")
    assert not [s for d in alone.values() for s in d["Statement"] if s["Sid"] == "ReadRegionSwitch"]
