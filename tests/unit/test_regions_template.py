"""The template over several regions (ORDERS_REGIONS): the replicated tables are global tables declared
by the primary region's stack, which lists a replica per region; the other regions' stacks name them."""

from __future__ import annotations

import json

import pytest
from cfnlint.api import ManualArgs, lint
from click.testing import CliRunner

from orders.cli.template import template_command
from orders.infra.template import template, template_dict
from orders.settings import Settings, get_settings
from orders.topology import TABLES

REGIONS = "us-east-1,us-west-2"
PRIMARY = Settings.from_env({"ORDERS_ENV": "prod", "ORDERS_REGIONS": REGIONS})
SECONDARY = PRIMARY.for_region("us-west-2")


def of_type(document, type_):
    return {name: r for name, r in document["Resources"].items() if r["Type"] == type_}


@pytest.mark.parametrize("settings", [PRIMARY, SECONDARY], ids=["primary", "secondary"])
def test_cfn_lint_passes_on_each_regions_stack(settings):
    config = ManualArgs(regions=[settings.region], include_checks=["I"])
    assert [str(problem) for problem in lint(template(settings, "yaml"), config=config)] == []


def test_the_primary_declares_each_replicated_table_once_with_a_replica_per_region():
    document = template_dict(PRIMARY)
    declared = of_type(document, "AWS::DynamoDB::GlobalTable").values()
    globals_ = {r["Properties"]["TableName"]: r for r in declared}
    assert set(globals_) == {spec.table_name(PRIMARY) for spec in TABLES if spec.replicated}
    for name, resource in globals_.items():
        properties = resource["Properties"]
        assert properties["StreamSpecification"] == {"StreamViewType": "NEW_AND_OLD_IMAGES"}, name
        assert [replica["Region"] for replica in properties["Replicas"]] == ["us-east-1", "us-west-2"]
        keys = [replica["SSESpecification"]["KMSMasterKeyId"] for replica in properties["Replicas"]]
        assert keys == [{"Fn::GetAtt": ["EnvironmentKey", "Arn"]}, "alias/prod-orders"], name
    orders = globals_["prod-orders"]  # order data stays protected in every replica
    assert orders["DeletionPolicy"] == "Retain"
    assert all(replica["DeletionProtectionEnabled"] for replica in orders["Properties"]["Replicas"])
    tables = {r["Properties"]["TableName"] for r in of_type(document, "AWS::DynamoDB::Table").values()}
    assert tables == {spec.table_name(PRIMARY) for spec in TABLES if not spec.replicated}


def test_the_other_regions_stack_declares_only_its_regional_tables_and_names_the_global_ones():
    text = json.dumps(template_dict(SECONDARY))
    document = json.loads(text)
    assert not of_type(document, "AWS::DynamoDB::GlobalTable")
    tables = {r["Properties"]["TableName"] for r in of_type(document, "AWS::DynamoDB::Table").values()}
    assert tables == {spec.table_name(SECONDARY) for spec in TABLES if not spec.replicated}
    assert ":table/prod-stock" in text  # the workers' roles still reach the replica in their region


def test_one_region_is_the_template_as_it_was():
    single = Settings(env="prod")
    assert single.regions == ("us-east-1",)
    assert not of_type(template_dict(single), "AWS::DynamoDB::GlobalTable")


def test_the_command_prints_a_regions_stack_and_refuses_an_unknown_region(monkeypatch):
    monkeypatch.setenv("ORDERS_ENV", "prod")
    monkeypatch.setenv("ORDERS_REGIONS", REGIONS)
    get_settings.cache_clear()
    try:
        west = CliRunner().invoke(template_command, ["--region", "us-west-2", "--format", "json"])
        assert west.exit_code == 0, west.output
        assert not of_type(json.loads(west.output), "AWS::DynamoDB::GlobalTable")
        east = CliRunner().invoke(template_command, ["--format", "json"])
        assert of_type(json.loads(east.output), "AWS::DynamoDB::GlobalTable")
        unknown = CliRunner().invoke(template_command, ["--region", "eu-west-1"])
        assert unknown.exit_code != 0 and "is not one of ORDERS_REGIONS" in str(unknown.exception)
    finally:
        get_settings.cache_clear()


@pytest.mark.parametrize("settings,other", [(PRIMARY, "us-west-2"), (SECONDARY, "us-east-1")],
                         ids=["primary", "secondary"])
def test_each_stack_subscribes_the_other_region_s_replica_queue_and_lets_the_other_topic_send_to_its_own(
        settings, other):
    document = template_dict(settings)
    subs = of_type(document, "AWS::SNS::Subscription")
    across = subs["OrderStatusToNotificationsReplica" + "".join(p.title() for p in other.split("-"))
                  + "Subscription"]["Properties"]
    assert across["Endpoint"] == {"Fn::Sub": f"arn:${{AWS::Partition}}:sqs:{other}:${{AWS::AccountId}}:"
                                             "prod-notifications-replica"}
    assert across["RawMessageDelivery"] is True
    local = subs["OrderStatusToNotificationsSubscription"]["Properties"]
    assert across["FilterPolicy"] == local["FilterPolicy"]
    policy = of_type(document, "AWS::SQS::QueuePolicy")["NotificationsReplicaQueuePolicy"]["Properties"]
    [statement] = policy["PolicyDocument"]["Statement"]
    assert statement["Condition"]["ArnEquals"]["aws:SourceArn"] == {
        "Fn::Sub": f"arn:${{AWS::Partition}}:sns:{other}:${{AWS::AccountId}}:prod-order-status"}
    assert statement["Sid"] == "sns-prod-order-status"  # what `orders infra check` looks for


def test_one_region_s_stack_subscribes_no_replica_queue():
    document = template_dict(Settings.from_env({"ORDERS_ENV": "prod"}))
    assert not [n for n in of_type(document, "AWS::SNS::Subscription") if "Replica" in n]
    assert "NotificationsReplicaQueuePolicy" not in of_type(document, "AWS::SQS::QueuePolicy")
    assert "NotificationsReplicaQueue" in of_type(document, "AWS::SQS::Queue")  # declared, idle


@pytest.mark.parametrize("settings,other", [(PRIMARY, "us-west-2"), (SECONDARY, "us-east-1")],
                         ids=["primary", "secondary"])
def test_each_region_s_key_lets_sns_deliver_the_other_region_s_topic_to_its_replica_queue(settings, other):
    [key] = of_type(template_dict(settings), "AWS::KMS::Key").values()
    [statement] = [s for s in key["Properties"]["KeyPolicy"]["Statement"]
                   if s["Sid"] == "DeliverTopicsToEncryptedQueues"]
    assert {"Fn::Sub": f"arn:${{AWS::Partition}}:sns:{other}:${{AWS::AccountId}}:prod-order-status"} in (
        statement["Condition"]["ArnEquals"]["aws:SourceArn"])
