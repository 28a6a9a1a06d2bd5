"""IAM roles: one per queue's workers, one for beat, one for the API, the tasks' execution role.

What the topology declares is scoped exactly: a worker consumes only its own queue (and the
service hosting `ops.*` also the DLQs it watches). What the topology does not declare yet is
scoped to the environment: a step hands off to other services' queues and publishes to the
topics of its events, and which services touch which tables lives in the steps' code. When the
topology declares those (the security work, issue 12), only the statement builders below change;
the roles and their attachment stay.

Every queue, topic and table is encrypted with the environment's KMS key (orders.infra.cfn.keys),
and SQS, SNS and DynamoDB use it with the credentials of the role calling them: each role may use
the key through the services it calls, and never directly (`kms:ViaService`).
"""

from __future__ import annotations

from typing import Any

from orders.aws.metrics import NAMESPACE
from orders.infra.cfn.data import table_id
from orders.infra.cfn.intrinsics import Resource, Resources, arn, get_att, logical_id, sub
from orders.infra.cfn.keys import key_arn
from orders.infra.cfn.messaging import dlq_id, queue_id, topic_id
from orders.settings import Settings
from orders.topology import QUEUES, SERVICE_QUEUES, TABLES, TOPICS, QueueSpec

Statement = dict[str, Any]

#: Batch calls are authorized by these too (DeleteMessageBatch by sqs:DeleteMessage, ...).
CONSUME = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility",
           "sqs:GetQueueAttributes", "sqs:GetQueueUrl"]
SEND = ["sqs:SendMessage", "sqs:GetQueueAttributes", "sqs:GetQueueUrl"]
#: TransactWriteItems is authorized per operation (UpdateItem, ConditionCheckItem, ...).
READ_ITEMS = ["dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:Query"]
WRITE_ITEMS = ["dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:ConditionCheckItem"]
#: What SQS, SNS and DynamoDB ask KMS on a caller's behalf: SQS and SNS a data key to encrypt a
#: message sent or published (GenerateDataKey) and its decryption, on receive too (Decrypt);
#: DynamoDB the decryption of the table's key, cached for minutes (Decrypt), and the key's
#: description (DescribeKey).
KEY_USE = ["kms:Decrypt", "kms:GenerateDataKey", "kms:DescribeKey"]
EXECUTION_POLICY = "arn:${AWS::Partition}:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"
LAMBDA_POLICY = "arn:${AWS::Partition}:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"


def worker_role_id(queue: str) -> str:
    return logical_id(queue, "WorkerRole")


def roles(settings: Settings, cluster: str, lambda_queues: frozenset[str]) -> Resources:
    """Every role of the stack."""
    resources = {worker_role_id(spec.name): role(
        "lambda" if spec.name in lambda_queues else "ecs-tasks", worker_statements(settings, spec, cluster),
        [LAMBDA_POLICY] if spec.name in lambda_queues else []) for spec in QUEUES}
    resources["BeatRole"] = role("ecs-tasks", [send(QUEUES), use_key("sqs")])
    resources["ApiRole"] = role("ecs-tasks", [
        send([q for q in QUEUES if q.service == "orders"]), items(READ_ITEMS), use_key("sqs", "dynamodb"),
        # GET /health?deep=1 looks every queue up.
        {"Sid": "LookUpQueues", "Effect": "Allow", "Action": "sqs:GetQueueUrl",
         "Resource": [get_att(queue_id(q.name), "Arn") for q in QUEUES]},
        # Idempotency-Key claims (orders.api.idempotency): claimed, answered, released on failure.
        api_table("ClaimIdempotencyKeys", "idempotency",
                  ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"]),
        # The API checks keys (never creates them: `orders api-key` runs as the administrator)
        # and records which client placed each order (orders.api.ownership).
        api_table("CheckApiKeys", "api-keys", ["dynamodb:GetItem"]),
        api_table("RecordOrderOwners", "api-orders", ["dynamodb:GetItem", "dynamodb:PutItem"])])
    resources["ExecutionRole"] = role("ecs-tasks", [], [EXECUTION_POLICY])
    return resources


def role(principal: str, statements: list[Statement], managed: list[str] | None = None) -> Resource:
    """A role that `principal` (ecs-tasks, lambda) assumes, with its statements as one inline policy."""
    properties: dict[str, Any] = {"AssumeRolePolicyDocument": {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"Service": f"{principal}.amazonaws.com"},
        "Action": "sts:AssumeRole"}]}}
    if statements:
        properties["Policies"] = [{"PolicyName": "orders", "PolicyDocument": {
            "Version": "2012-10-17", "Statement": statements}}]
    if managed:
        properties["ManagedPolicyArns"] = [sub(policy) for policy in managed]
    return {"Type": "AWS::IAM::Role", "Properties": properties}


def worker_statements(settings: Settings, spec: QueueSpec, cluster: str) -> list[Statement]:
    """What the workers of one queue may do."""
    statements = [
        {"Sid": "ConsumeOwnQueue", "Effect": "Allow", "Action": CONSUME,
         "Resource": [get_att(queue_id(spec.name), "Arn")]},
        send(QUEUES),  # hand-offs, compensation and Celery's retries
        *publish(),
        items(READ_ITEMS + WRITE_ITEMS),
        use_key("sqs", "sns", "dynamodb"),
        {"Sid": "PutOwnMetrics", "Effect": "Allow", "Action": "cloudwatch:PutMetricData", "Resource": "*",
         "Condition": {"StringEquals": {"cloudwatch:namespace": NAMESPACE}}},
    ]
    if SERVICE_QUEUES["ops"] == spec.name:
        statements += ops_statements(settings, cluster)
    return statements


def ops_statements(settings: Settings, cluster: str) -> list[Statement]:
    """The `ops.*` tasks watch the DLQs, sample every queue, and read the workers' task counts
    (for BacklogPerTask, orders.infra.cfn.compute)."""
    return [
        {"Sid": "WatchDeadLetterQueues", "Effect": "Allow", "Action": CONSUME,
         "Resource": [get_att(dlq_id(q.name), "Arn") for q in QUEUES]},
        {"Sid": "CountRunningWorkers", "Effect": "Allow", "Action": "ecs:DescribeServices",
         "Resource": arn("ecs", f"service/{cluster}/{settings.prefix}*")},
    ]


def send(queues: Any) -> Statement:
    """Send to `queues` (the API places orders, workers hand off, beat sends periodic tasks)."""
    return {"Sid": "SendToPipelineQueues", "Effect": "Allow", "Action": SEND,
            "Resource": [get_att(queue_id(q.name), "Arn") for q in queues]}


def publish() -> list[Statement]:
    """Publish to the environment's topics; their ARNs are discovered by ListTopics, which has no resource."""
    return [{"Sid": "PublishEvents", "Effect": "Allow", "Action": "sns:Publish",
             "Resource": [{"Ref": topic_id(t.name)} for t in TOPICS]},
            {"Sid": "FindTopics", "Effect": "Allow", "Action": "sns:ListTopics", "Resource": "*"}]


def use_key(*services: str) -> Statement:
    """Use the environment's key through `services` only (their encryption at rest), never directly."""
    return {"Sid": "UseEnvironmentKeyThroughServices", "Effect": "Allow", "Action": KEY_USE,
            "Resource": key_arn(),
            "Condition": {"StringEquals": {"kms:ViaService": [
                sub(f"{service}.${{AWS::Region}}.amazonaws.com") for service in services]}}}


def items(actions: list[str]) -> Statement:
    """Item actions on the pipeline's tables and their indexes (the API's own tables are the API's)."""
    pipeline = [t for t in TABLES if t.service != "api"]
    tables = [get_att(table_id(t.name), "Arn") for t in pipeline]
    indexes = [sub(f"${{{table_id(t.name)}.Arn}}/index/*") for t in pipeline if t.indexes]
    return {"Sid": "UseTables", "Effect": "Allow", "Action": actions, "Resource": tables + indexes}


def api_table(sid: str, table: str, actions: list[str]) -> Statement:
    """Item actions on one of the API's own tables."""
    return {"Sid": sid, "Effect": "Allow", "Action": actions, "Resource": [get_att(table_id(table), "Arn")]}
