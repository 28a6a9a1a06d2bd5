"""The generated stack, deployed with CloudFormation's create_stack on the embedded emulator: the
drift check finds nothing to say, and an order goes through the pipeline on the stack's resources.

moto's CloudFormation does not create every resource type of the template. The stack is deployed
without those (`template_dict(without=...)`, the documented option, which also leaves out whatever
refers to them); the ones the drift check covers are then applied from the template's own
properties through the services' APIs, as CloudFormation applies them on AWS, so that the check
still judges what the template says. docs/deploy.md lists what the emulator deploys.

moto's CloudFormation creates a stack's resources in its own process, tables included, so this
module's emulator is one process (`emulator` below), not the session's two
(orders.emulator.service_groups): there, the stack's tables would be in the process DynamoDB
calls do not reach.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from collections.abc import Iterator
from typing import Any

import pytest

from orders import place_order
from orders.aws import clients, metrics
from orders.aws.stock import set_stock
from orders.aws.store import OrderStore
from orders.emulator.server import EmulatorProcess
from orders.infra import provisioning
from orders.infra.queues import queue_arn
from orders.infra.template import template_dict
from orders.settings import Settings
from tests.helpers import wait_for
from tests.integration.pipeline_support import make_order, pipeline, statuses, wait_final

#: Types moto 5.2's CloudFormation does not implement (it would skip them with a warning).
NOT_IN_MOTO = ("AWS::CloudWatch::Alarm", "AWS::CloudWatch::AnomalyDetector", "AWS::SNS::Subscription",
               "AWS::SQS::QueuePolicy",
               "AWS::ApplicationAutoScaling::ScalableTarget", "AWS::ApplicationAutoScaling::ScalingPolicy")
#: What moto's CloudFormation creates from the rest. The ElastiCache replication group is not among
#: them: moto has no CloudFormation model for it, and the stack is given the emulator's Redis
#: (the ControlUrl parameter), so its condition leaves it out as it would on AWS.
DEPLOYED_BY_MOTO = {
    "AWS::SQS::Queue", "AWS::SNS::Topic", "AWS::DynamoDB::Table", "AWS::CloudWatch::Dashboard",
    "AWS::IAM::Role", "AWS::ECS::Cluster", "AWS::ECS::TaskDefinition", "AWS::ECS::Service",
    "AWS::Logs::LogGroup", "AWS::EC2::SecurityGroup", "AWS::ElasticLoadBalancingV2::LoadBalancer",
    "AWS::ElasticLoadBalancingV2::TargetGroup", "AWS::ElasticLoadBalancingV2::Listener",
    "AWS::ElasticLoadBalancingV2::ListenerRule", "AWS::KMS::Key", "AWS::KMS::Alias",
}
CUSTOMER_NOTIFICATIONS = {"OrderPlaced", "OrderShipped"}


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorProcess]:
    """An emulator of one process for this module, in place of the session's (see the docstring)."""
    emu = EmulatorProcess(one_process=True).start()
    with pytest.MonkeyPatch.context() as env:
        for name in [name for name in os.environ if name.startswith("AWS_ENDPOINT_URL_")]:
            env.delenv(name)
        for name, value in emu.env.items():
            env.setenv(name, value)
        try:
            yield emu
        finally:
            metrics.buffer().close()  # what the tests left pending goes to this emulator, while it answers
            emu.stop()


def deploy(settings: Settings, document: dict[str, Any], **parameters: str) -> dict[str, dict[str, str]]:
    """create_stack in the default VPC; the stack's resources by logical id."""
    document = for_moto(document)
    ec2 = clients.client("ec2", settings)
    vpc = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"][0]["VpcId"]
    subnets = [s["SubnetId"] for s in
               ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["Subnets"]][:2]
    values = {"Image": "orders:test", "VpcId": vpc, "SubnetIds": ",".join(subnets),
              "ControlUrl": settings.control_url or "redis://127.0.0.1:6379/0", **parameters}
    cfn, stack = clients.client("cloudformation", settings), settings.prefix + "orders"
    cfn.create_stack(StackName=stack, TemplateBody=json.dumps(document), Capabilities=["CAPABILITY_IAM"],
                     Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in values.items()])
    assert cfn.describe_stacks(StackName=stack)["Stacks"][0]["StackStatus"] == "CREATE_COMPLETE"
    return {r["LogicalResourceId"]: r for r in cfn.describe_stack_resources(StackName=stack)["StackResources"]
            if r.get("ResourceType")}


def for_moto(document: dict[str, Any]) -> dict[str, Any]:
    """The document as moto's CloudFormation reads it: a key's policy as a JSON string (an object
    is stored as is, and DescribeKey then fails), no key Tags (it reads KMS's TagKey/TagValue;
    `_key_tags` applies them after), a table's SSESpecification by the API's names (it ignores
    SSEEnabled). What moto deploys is then what the template says, and the drift check judges it."""
    resources = {}
    for name, resource in document["Resources"].items():
        props = dict(resource["Properties"])
        if resource["Type"] == "AWS::KMS::Key":
            del props["Tags"]
            props["KeyPolicy"] = {"Fn::Sub": json.dumps(_as_sub_text(props["KeyPolicy"]))}
        if resource["Type"] == "AWS::DynamoDB::Table":
            sse = dict(props["SSESpecification"])
            props["SSESpecification"] = {"Enabled": sse.pop("SSEEnabled"), **sse}
        resources[name] = {**resource, "Properties": props}
    return {**document, "Resources": resources}


def _as_sub_text(value: Any) -> Any:
    """A policy whose Fn::Sub and pseudo-parameter Refs are written as ${...} text, for one Fn::Sub."""
    if isinstance(value, list):
        return [_as_sub_text(item) for item in value]
    if isinstance(value, dict):
        if "Fn::Sub" in value:
            return value["Fn::Sub"]
        if "Ref" in value:
            return "${" + value["Ref"] + "}"
        return {key: _as_sub_text(item) for key, item in value.items()}
    return value


def resolve(value: Any, stack: dict[str, dict[str, str]], settings: Settings) -> Any:
    """Ref and GetAtt(Arn of a queue) resolved against the deployed stack; anything else is refused."""
    if isinstance(value, list):
        return [resolve(item, stack, settings) for item in value]
    if not isinstance(value, dict):
        return value
    if "Ref" in value:
        return stack[value["Ref"]]["PhysicalResourceId"]
    if "Fn::GetAtt" in value:
        name, attribute = value["Fn::GetAtt"]
        kind, physical = stack[name]["ResourceType"], stack[name]["PhysicalResourceId"]
        assert attribute == "Arn" and kind in ("AWS::SQS::Queue", "AWS::KMS::Key"), value
        if kind == "AWS::KMS::Key":
            return clients.client("kms", settings).describe_key(KeyId=physical)["KeyMetadata"]["Arn"]
        return queue_arn(physical, settings)
    assert not any(key.startswith("Fn::") for key in value), value
    return {key: resolve(item, stack, settings) for key, item in value.items()}


def as_attribute(value: Any) -> str:
    """A template property as an SNS attribute string."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value) if isinstance(value, dict) else str(value)


def apply_what_moto_leaves_out(settings: Settings, document: dict[str, Any],
                               stack: dict[str, dict[str, str]]) -> None:
    """What CloudFormation does on AWS and moto's does not: three resource types it lacks, and the
    properties it drops (a topic's tags, a table's time to live) or cannot take (a key's tags,
    `for_moto`). A key's policy is left to the drift check: moto's CloudFormation applies it."""
    appliers = {"AWS::SQS::QueuePolicy": _queue_policy, "AWS::SNS::Subscription": _subscription,
                "AWS::CloudWatch::Alarm": _alarm, "AWS::SNS::Topic": _topic_tags,
                "AWS::DynamoDB::Table": _time_to_live, "AWS::KMS::Key": _key_tags}
    for resource in document["Resources"].values():
        if resource["Type"] in appliers:
            properties = {k: v for k, v in resource["Properties"].items() if k != "KeyPolicy"}
            props = resolve(properties, stack, settings)
            appliers[resource["Type"]](settings, props, stack)


def _queue_policy(settings: Settings, props: dict[str, Any], stack: dict[str, dict[str, str]]) -> None:
    for url in props["Queues"]:
        clients.client("sqs", settings).set_queue_attributes(
            QueueUrl=url, Attributes={"Policy": json.dumps(props["PolicyDocument"])})


def _subscription(settings: Settings, props: dict[str, Any], stack: dict[str, dict[str, str]]) -> None:
    attributes = {key: as_attribute(value) for key, value in props.items()
                  if key not in ("TopicArn", "Protocol", "Endpoint")}
    clients.client("sns", settings).subscribe(TopicArn=props["TopicArn"], Protocol=props["Protocol"],
                                              Endpoint=props["Endpoint"], Attributes=attributes,
                                              ReturnSubscriptionArn=True)


def _alarm(settings: Settings, props: dict[str, Any], stack: dict[str, dict[str, str]]) -> None:
    clients.client("cloudwatch", settings).put_metric_alarm(**props)


def _topic_tags(settings: Settings, props: dict[str, Any], stack: dict[str, dict[str, str]]) -> None:
    [arn] = [r["PhysicalResourceId"] for r in stack.values() if r["ResourceType"] == "AWS::SNS::Topic"
             and r["PhysicalResourceId"].endswith(":" + props["TopicName"])]
    clients.client("sns", settings).tag_resource(ResourceArn=arn, Tags=props["Tags"])


def _time_to_live(settings: Settings, props: dict[str, Any], stack: dict[str, dict[str, str]]) -> None:
    if "TimeToLiveSpecification" in props:
        clients.client("dynamodb", settings).update_time_to_live(
            TableName=props["TableName"], TimeToLiveSpecification=props["TimeToLiveSpecification"])


def _key_tags(settings: Settings, props: dict[str, Any], stack: dict[str, dict[str, str]]) -> None:
    [key_id] = [r["PhysicalResourceId"] for r in stack.values() if r["ResourceType"] == "AWS::KMS::Key"]
    clients.client("kms", settings).tag_resource(
        KeyId=key_id, Tags=[{"TagKey": t["Key"], "TagValue": t["Value"]} for t in props["Tags"]])


def test_the_stack_deployed_by_cloudformation_has_no_drift_and_runs_an_order(settings):
    deployable = template_dict(settings, without=NOT_IN_MOTO)
    stack = deploy(settings, deployable)
    assert {r["ResourceType"] for r in stack.values()} == DEPLOYED_BY_MOTO
    assert {r["LogicalResourceId"] for r in stack.values()} == set(deployable["Resources"]) - {
        "ControlPlane", "ControlPlaneSubnets", "ControlPlaneSecurityGroup"}  # ControlUrl was given

    before = provisioning.check(settings)
    apply_what_moto_leaves_out(settings, template_dict(settings), stack)
    report = provisioning.check(settings)

    assert any("alarm" in line for line in before.changes)  # the check does look at what was added
    assert report.clean, report.changes
    # What the check judged is the stack's key, found by its alias, and every table is encrypted with it.
    key = clients.client("kms", settings).describe_key(KeyId=f"alias/{settings.prefix}orders")["KeyMetadata"]
    assert key["KeyId"] == stack["EnvironmentKey"]["PhysicalResourceId"]
    tables = [r["PhysicalResourceId"] for r in stack.values() if r["ResourceType"] == "AWS::DynamoDB::Table"]
    ddb = clients.client("dynamodb", settings)
    keys = {ddb.describe_table(TableName=t)["Table"]["SSEDescription"]["KMSMasterKeyArn"] for t in tables}
    assert keys == {key["Arn"]}
    set_stock(settings, "SKU-1", 5)
    order = make_order(quantity=2)
    place_order.delay(order)
    with pipeline():
        record = wait_final(settings, order["orderId"])
        # The customer events reach the notifications queue through the template's subscription.
        wait_for(lambda: set(OrderStore(settings).get(order["orderId"])["notifications"])
                 >= CUSTOMER_NOTIFICATIONS, timeout=60)
    assert record["status"] == "completed"
    assert statuses(record) == ["placed", "validated", "reserved", "paid", "shipped", "completed"]


def test_a_queue_put_on_lambda_gets_its_function_and_event_source_mapping(settings):
    s3 = clients.client("s3", settings)
    bucket, key = f"{settings.prefix}code", "orders.zip"
    s3.create_bucket(Bucket=bucket)
    package = io.BytesIO()
    with zipfile.ZipFile(package, "w") as archive:
        archive.writestr("orders/aws_lambda.py", "def handler(event, context):\n    return {}\n")
    s3.put_object(Bucket=bucket, Key=key, Body=package.getvalue())

    document = template_dict(settings, lambda_queues=["notifications"], without=NOT_IN_MOTO)
    stack = deploy(settings, document, LambdaCodeBucket=bucket, LambdaCodeKey=key)

    lambdas = clients.client("lambda", settings)
    function = lambdas.get_function(FunctionName=stack["NotificationsFunction"]["PhysicalResourceId"])
    assert function["Configuration"]["Handler"] == "orders.aws_lambda.handler"
    notifications_arn = queue_arn(stack["NotificationsQueue"]["PhysicalResourceId"], settings)
    [mapping] = lambdas.list_event_source_mappings(EventSourceArn=notifications_arn)["EventSourceMappings"]
    assert mapping["FunctionArn"] == function["Configuration"]["FunctionArn"]
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    ecs_services = {r["PhysicalResourceId"].rsplit("/", 1)[-1] for r in stack.values()
                    if r["ResourceType"] == "AWS::ECS::Service"}
    assert f"{settings.prefix}worker-payments" in ecs_services
    assert f"{settings.prefix}worker-notifications" not in ecs_services
