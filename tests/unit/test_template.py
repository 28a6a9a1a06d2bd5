"""The CloudFormation template generated from the topology: valid for cfn-lint, and saying what the
topology and `orders infra up` say (names, redrive, subscriptions, roles, compute)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from cfnlint.api import ManualArgs, lint
from click.testing import CliRunner

from orders.cli.template import template_command
from orders.infra.alarms import alarm_specs
from orders.infra.cfn.compute import PLANS
from orders.infra.cfn.data import table_id
from orders.infra.cfn.messaging import queue_id
from orders.infra.cfn.roles import worker_role_id
from orders.infra.template import template, template_dict, to_yaml
from orders.settings import Settings
from orders.topology import CUSTOMER_EVENTS, QUEUES, SERVICE_LEVELS, SERVICE_QUEUES, TABLES, TOPICS

DEFAULT = Settings(env="prod")
#: Every optional subscription configured, and one queue on Lambda.
EVERYTHING = Settings(env="prod", alert_email="ops@example.com", alert_sms="+15555550100",
                      customer_email="orders@example.com",
                      lambda_arn="arn:aws:lambda:us-east-1:123456789012:function:order-hook")


def lint_problems(text: str) -> list[str]:
    """Errors, warnings and informational findings of cfn-lint (PyPI)."""
    config = ManualArgs(regions=["us-east-1"], include_checks=["I"])
    return [str(match) for match in lint(text, config=config)]


def resources(document: dict[str, Any], type_: str) -> dict[str, dict[str, Any]]:
    return {name: r["Properties"] for name, r in document["Resources"].items() if r["Type"] == type_}


@pytest.mark.parametrize("fmt", ["yaml", "json"])
def test_cfn_lint_passes_on_the_template(fmt):
    assert lint_problems(template(DEFAULT, fmt)) == []


def test_cfn_lint_passes_with_every_subscription_and_a_queue_on_lambda():
    assert lint_problems(template(EVERYTHING, "yaml", lambda_queues=["notifications"])) == []


def test_yaml_and_json_are_the_same_document():
    text = template(EVERYTHING, "yaml", lambda_queues=["payments"])
    assert yaml.safe_load(text) == json.loads(template(EVERYTHING, "json", lambda_queues=["payments"]))


def test_yaml_quotes_what_yaml_would_read_as_something_else():
    tricky = ["yes", "No", "on", "null", "~", "1.0", "0123", "-A", "orders@%h", "a: b", "x #y", "ends:",
              "", " padded", "padded ", "*alias", "&anchor", "!tag", "{json}", "[list]", "%h", "'q'",
              'say "hi"', "line\nbreak", "@at", "`cmd`", "orders.api.app:create_app()"]
    document = {"strings": tricky, "numbers": [0, 7, 1.5, 1e-05, 500.0], "flags": [True, False, None],
                "empty": {"dict": {}, "list": []}, "nested": [{"a": [1, {"b": "c"}]}, [["deep"]]]}
    assert yaml.safe_load(to_yaml(document)) == document


def test_names_are_those_orders_infra_up_creates():
    doc = template_dict(DEFAULT)
    queue_names = {p["QueueName"] for p in resources(doc, "AWS::SQS::Queue").values()}
    assert queue_names == {n for q in QUEUES for n in (q.sqs_name(DEFAULT), q.dlq_sqs_name(DEFAULT))}
    assert {p["TopicName"] for p in resources(doc, "AWS::SNS::Topic").values()} == {
        t.sns_name(DEFAULT) for t in TOPICS}
    assert {p["TableName"] for p in resources(doc, "AWS::DynamoDB::Table").values()} == {
        t.table_name(DEFAULT) for t in TABLES}
    assert {p["AlarmName"] for p in resources(doc, "AWS::CloudWatch::Alarm").values()} == {
        a.name(DEFAULT) for a in alarm_specs(DEFAULT)}
    assert all(name.startswith("prod-") for name in queue_names)


def test_each_queue_redrives_to_its_own_dlq_which_accepts_only_its_source():
    doc = template_dict(DEFAULT)
    by_name = {p["QueueName"]: (logical, p) for logical, p in resources(doc, "AWS::SQS::Queue").items()}
    for spec in QUEUES:
        _, source = by_name[spec.sqs_name(DEFAULT)]
        dlq_logical, dlq = by_name[spec.dlq_sqs_name(DEFAULT)]
        assert source["RedrivePolicy"] == {"deadLetterTargetArn": {"Fn::GetAtt": [dlq_logical, "Arn"]},
                                           "maxReceiveCount": spec.max_receive_count}
        assert source["VisibilityTimeout"] == spec.visibility_timeout
        assert dlq["RedriveAllowPolicy"]["sourceQueueArns"] == [{"Fn::Sub": (
            "arn:${AWS::Partition}:sqs:${AWS::Region}:${AWS::AccountId}:" + spec.sqs_name(DEFAULT))}]
        assert source.get("FifoQueue", False) is dlq.get("FifoQueue", False) is spec.fifo
        assert {"Key": "service", "Value": spec.service} in source["Tags"]


def test_the_notifications_queue_subscribes_to_customer_events_and_lets_the_topic_send():
    doc = template_dict(DEFAULT)
    [sub] = resources(doc, "AWS::SNS::Subscription").values()
    assert sub["Endpoint"] == {"Fn::GetAtt": ["NotificationsQueue", "Arn"]}
    assert sub["TopicArn"] == {"Ref": "OrderStatusTopic"}
    assert sub["FilterPolicy"] == {"event_type": list(CUSTOMER_EVENTS)} and sub["RawMessageDelivery"] is True
    [policy] = resources(doc, "AWS::SQS::QueuePolicy").values()
    [statement] = policy["PolicyDocument"]["Statement"]
    assert policy["Queues"] == [{"Ref": "NotificationsQueue"}]
    assert statement["Sid"] == "sns-prod-order-status"  # what `orders infra check` looks for
    assert statement["Condition"] == {"ArnEquals": {"aws:SourceArn": {"Ref": "OrderStatusTopic"}}}


def test_a_lambda_subscription_comes_with_the_permission_for_sns_to_invoke_it():
    doc = template_dict(EVERYTHING)
    [permission] = resources(doc, "AWS::Lambda::Permission").values()
    assert permission == {"Action": "lambda:InvokeFunction", "FunctionName": EVERYTHING.lambda_arn,
                          "Principal": "sns.amazonaws.com", "SourceArn": {"Ref": "OrderStatusTopic"}}
    protocols = sorted(p["Protocol"] for p in resources(doc, "AWS::SNS::Subscription").values())
    assert protocols == ["email", "email", "email", "lambda", "sms", "sms", "sqs"]
    assert "AWS::Lambda::Permission" not in {r["Type"] for r in template_dict(DEFAULT)["Resources"].values()}


def test_order_data_is_protected_and_the_archive_expires():
    tables = {r["Properties"]["TableName"]: r for r in template_dict(DEFAULT)["Resources"].values()
              if r["Type"] == "AWS::DynamoDB::Table"}
    for name in ("orders", "stock", "gateway"):
        table = tables[f"prod-{name}"]
        assert table["Properties"]["DeletionProtectionEnabled"] is True
        assert table["Properties"]["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
        assert table["DeletionPolicy"] == table["UpdateReplacePolicy"] == "Retain"
    archive = tables["prod-dlq-archive"]["Properties"]
    assert archive["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    assert archive["BillingMode"] == "PAY_PER_REQUEST"


def test_alarms_notify_system_health():
    for alarm in resources(template_dict(DEFAULT), "AWS::CloudWatch::Alarm").values():
        assert alarm["AlarmActions"] == alarm["OKActions"] == [{"Ref": "SystemHealthTopic"}]


def test_every_queue_has_a_fargate_worker_scaling_on_backlog_per_task():
    doc = template_dict(DEFAULT)
    commands = [p["ContainerDefinitions"][0]["Command"]
                for p in resources(doc, "AWS::ECS::TaskDefinition").values()]
    for spec in QUEUES:
        worker = ["celery", "-A", "orders", "worker", "-Q", spec.name]
        assert any(command[:6] == worker for command in commands), spec.name
    tracked = {}
    for policy in resources(doc, "AWS::ApplicationAutoScaling::ScalingPolicy").values():
        config = policy["TargetTrackingScalingPolicyConfiguration"]
        metric = config["CustomizedMetricSpecification"]
        dimensions = {d["Name"]: d["Value"] for d in metric["Dimensions"]}
        assert metric["MetricName"] == "BacklogPerTask" and dimensions["Environment"] == "prod"
        # Tasks are added before the queue's depth alarm fires.
        assert 0 < config["TargetValue"] < SERVICE_LEVELS[dimensions["Queue"]].backlog_limit
        tracked[dimensions["Queue"]] = config
    assert tracked.keys() == {q.name for q in QUEUES}


def test_beat_runs_alone_even_during_a_deployment():
    services = resources(template_dict(DEFAULT), "AWS::ECS::Service")
    beat = services["BeatService"]
    assert beat["DesiredCount"] == 1
    assert beat["DeploymentConfiguration"]["MaximumPercent"] == 100
    beats = [p for p in resources(template_dict(DEFAULT), "AWS::ECS::TaskDefinition").values()
             if "beat" in p["ContainerDefinitions"][0]["Command"]]
    assert len(beats) == 1


def test_a_queue_on_lambda_has_an_event_source_mapping_and_no_ecs_service():
    doc = template_dict(DEFAULT, lambda_queues=["notifications"])
    [mapping] = resources(doc, "AWS::Lambda::EventSourceMapping").values()
    [function] = resources(doc, "AWS::Lambda::Function").values()
    assert mapping["EventSourceArn"] == {"Fn::GetAtt": ["NotificationsQueue", "Arn"]}
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert function["Handler"] == "orders.aws_lambda.handler"
    assert function["Timeout"] < 60  # inside the notifications queue's visibility timeout
    names = {p["ServiceName"] for p in resources(doc, "AWS::ECS::Service").values()}
    assert "prod-worker-notifications" not in names and "prod-worker-payments" in names
    trust = doc["Resources"]["NotificationsWorkerRole"]["Properties"]["AssumeRolePolicyDocument"]
    assert trust["Statement"][0]["Principal"] == {"Service": "lambda.amazonaws.com"}


def test_a_worker_consumes_its_own_queue_only_and_the_ops_host_watches_the_dlqs():
    roles = resources(template_dict(DEFAULT), "AWS::IAM::Role")
    for spec in QUEUES:
        statements = {s["Sid"]: s for s in
                      roles[worker_role_id(spec.name)]["Policies"][0]["PolicyDocument"]["Statement"]}
        assert statements["ConsumeOwnQueue"]["Resource"] == [{"Fn::GetAtt": [queue_id(spec.name), "Arn"]}]
        watch = statements.get("WatchDeadLetterQueues")
        assert (watch is not None) is (SERVICE_QUEUES["ops"] == spec.name)
        assert watch is None or "sqs:DeleteMessage" not in watch["Action"]  # the watcher never deletes
        sends = [s for s in statements.values()
                 if "sqs:SendMessage" in s["Action"] and s["Sid"] != "QuarantinePoison"]
        assert sends and all(s["Action"] == ["sqs:SendMessage"] for s in sends)  # to other queues: send only


def test_the_api_claims_idempotency_keys_in_their_table_only():
    api = resources(template_dict(DEFAULT), "AWS::IAM::Role")["ApiRole"]
    statements = {s["Sid"]: s for s in api["Policies"][0]["PolicyDocument"]["Statement"]}
    claims = statements["ClaimIdempotencyKeys"]
    assert "dynamodb:DeleteItem" in claims["Action"]
    assert claims["Resource"] == [{"Fn::GetAtt": [table_id("idempotency"), "Arn"]}]
    others = [s for sid, s in statements.items() if sid != "ClaimIdempotencyKeys"]
    assert all("dynamodb:DeleteItem" not in s["Action"] for s in others)
    assert statements["CheckApiKeys"]["Action"] == ["dynamodb:GetItem"]


def test_no_worker_may_touch_the_api_keys_or_the_order_owners():
    roles = resources(template_dict(DEFAULT), "AWS::IAM::Role")
    api_tables = [{"Fn::GetAtt": [table_id(t.name), "Arn"]} for t in TABLES if t.service == "api"]
    for spec in QUEUES:
        for statement in roles[worker_role_id(spec.name)]["Policies"][0]["PolicyDocument"]["Statement"]:
            granted = statement["Resource"]
            granted = granted if isinstance(granted, list) else [granted]
            assert not [r for r in granted if r in api_tables], (spec.name, statement["Sid"])


def test_without_leaves_out_a_type_and_what_refers_to_it():
    full = template_dict(DEFAULT)
    doc = template_dict(DEFAULT, without=["AWS::ApplicationAutoScaling::ScalableTarget"])
    kinds = {r["Type"] for r in doc["Resources"].values()}
    assert "AWS::ApplicationAutoScaling::ScalingPolicy" not in kinds  # each names its target
    assert len(resources(doc, "AWS::ECS::Service")) == len(resources(full, "AWS::ECS::Service"))
    doc = template_dict(DEFAULT, without=["AWS::ElastiCache::ReplicationGroup"])
    assert resources(doc, "AWS::ECS::TaskDefinition") == {}  # every container is told its address
    assert "ControlPlaneAddress" not in doc["Outputs"] and "ApiUrl" in doc["Outputs"]
    with pytest.raises(ValueError, match="AWS::Nope::Thing"):
        template_dict(DEFAULT, without=["AWS::Nope::Thing"])


def test_the_command_prints_either_format_and_refuses_unknown_queues(monkeypatch):
    monkeypatch.setenv("ORDERS_ENV", "prod")
    from orders.settings import get_settings

    get_settings.cache_clear()
    try:
        runner = CliRunner()
        as_json = runner.invoke(template_command, ["--format", "json"])
        as_yaml = runner.invoke(template_command, [])
        unknown = runner.invoke(template_command, ["--lambda", "nope"])
    finally:
        get_settings.cache_clear()
    assert as_json.exit_code == 0 and as_yaml.exit_code == 0
    assert json.loads(as_json.output) == yaml.safe_load(as_yaml.output) == template_dict(DEFAULT)
    assert unknown.exit_code == 2 and "nope" in unknown.output


def test_the_deploy_guide_shows_the_plans_in_the_template():
    guide = (Path(__file__).resolve().parents[2] / "docs" / "deploy.md").read_text()
    for spec in QUEUES:
        plan, level = PLANS[spec.name], SERVICE_LEVELS[spec.name]
        row = (f"| `{spec.name}` | {plan.pool} | {plan.concurrency} | {plan.cpu / 1024:g} vCPU, "
               f"{plan.memory / 1024:g} GB | {level.p95_seconds:g} s at {level.peak_per_second:g}/s | "
               f"{plan.target_backlog(spec)} | {level.backlog_limit} | 1-{plan.max_tasks(spec)} |")
        assert row in guide, f"docs/deploy.md's table of plans is out of date: {row}"


def test_the_environment_key_rotates_is_retained_and_has_the_converger_s_policy():
    from orders.infra.cfn.keys import STACK_ACCOUNT
    from orders.infra.kms import key_policy

    doc = template_dict(DEFAULT)
    key = doc["Resources"]["EnvironmentKey"]
    assert key["Type"] == "AWS::KMS::Key"
    assert key["Properties"]["EnableKeyRotation"] is True
    assert key["DeletionPolicy"] == key["UpdateReplacePolicy"] == "Retain"  # the retained tables need it
    admin, sns, _ = policy = key["Properties"]["KeyPolicy"]["Statement"]
    assert [s["Sid"] for s in policy] == [s["Sid"] for s in key_policy(DEFAULT, STACK_ACCOUNT)["Statement"]]
    assert admin["Principal"] == {"AWS": {"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:root"}}
    assert sns["Condition"]["StringEquals"] == {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}
    assert {"Fn::Sub": "arn:${AWS::Partition}:sns:${AWS::Region}:${AWS::AccountId}:prod-order-status"} in (
        sns["Condition"]["ArnEquals"]["aws:SourceArn"])
    [alias] = resources(doc, "AWS::KMS::Alias").values()
    assert alias == {"AliasName": "alias/prod-orders", "TargetKeyId": {"Ref": "EnvironmentKey"}}


def test_every_queue_topic_and_table_is_encrypted_with_the_environment_key():
    doc = template_dict(EVERYTHING, lambda_queues=["payments"])
    key = {"Fn::GetAtt": ["EnvironmentKey", "Arn"]}
    queues = resources(doc, "AWS::SQS::Queue")
    assert len(queues) == 2 * len(QUEUES)
    for name, queue in queues.items():
        assert (queue["KmsMasterKeyId"], queue["KmsDataKeyReusePeriodSeconds"]) == (key, 300), name
    assert [t["KmsMasterKeyId"] for t in resources(doc, "AWS::SNS::Topic").values()] == [key] * len(TOPICS)
    tables = resources(doc, "AWS::DynamoDB::Table")
    assert len(tables) == len(TABLES)
    for name, table in tables.items():
        assert table["SSESpecification"] == {"SSEEnabled": True, "SSEType": "KMS",
                                             "KMSMasterKeyId": key}, name


def test_each_role_uses_the_key_only_through_the_services_it_calls():
    from orders.infra.access import KEY_USE

    roles = resources(template_dict(DEFAULT, lambda_queues=["notifications"]), "AWS::IAM::Role")
    expected = {worker_role_id(q.name): ["sqs", "dynamodb"] if q.cross_region else ["sqs", "sns", "dynamodb"]
                for q in QUEUES}  # a cross-region queue's workers only notify: they publish nothing
    expected.update(BeatRole=["sqs"], ApiRole=["sqs", "dynamodb"])
    for name, role in roles.items():
        policies = role.get("Policies", [])
        statements = policies[0]["PolicyDocument"]["Statement"] if policies else []
        # Directly only for the sensitive fields' data keys, each scoped to its fields (test_policies).
        uses = [s for s in statements if "kms:" in json.dumps(s["Action"])
                and "kms:EncryptionContext:field" not in s["Condition"]["StringEquals"]]
        via = [[{"Fn::Sub": f"{s}.${{AWS::Region}}.amazonaws.com"}] for s in expected.get(name, [])]
        assert [s["Condition"]["StringEquals"]["kms:ViaService"] for s in uses] == via, name
        for use, service in zip(uses, expected.get(name, []), strict=True):
            assert use["Resource"] == [{"Fn::GetAtt": ["EnvironmentKey", "Arn"]}], name
            assert use["Action"] == list(KEY_USE[service]), name  # no wildcard (kms:GenerateDataKey*)
