"""IAM roles: one per queue's workers, one for beat, one for the API, the tasks' execution role.

Each role's inline policy is its declaration in orders.infra.access, made into statements by the
one builder (orders.infra.policies) with the stack's references: GetAtt/Ref for the queues, topics,
tables and key of the stack, Sub for what the stack does not create (the ECS services' ARNs, the
region of kms:ViaService). `orders infra policies` gives the same statements with concrete ARNs;
tests/unit/test_policies.py checks that both say the same. The DLQ tools and the administrator are
people, not tasks of the stack: their policies come from `orders infra policies` only.

Every queue, topic and table is encrypted with the environment's KMS key (orders.infra.cfn.keys):
each role uses the key through the services it calls, never directly (`kms:ViaService`).
"""

from __future__ import annotations

from typing import Any

from orders.infra import policies
from orders.infra.access import ROLES, Role, worker_role
from orders.infra.cfn.data import external_tables, table_id
from orders.infra.cfn.intrinsics import Resource, Resources, arn, get_att, logical_id, ref, sub
from orders.infra.cfn.keys import key_arn
from orders.infra.cfn.messaging import dlq_id, queue_id, topic_id
from orders.settings import Settings
from orders.topology import QUEUES, TABLES_BY_NAME

EXECUTION_POLICY = "arn:${AWS::Partition}:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"
LAMBDA_POLICY = "arn:${AWS::Partition}:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"
#: The template's role of each declared role that runs in the stack.
STACK_ROLES = {"BeatRole": "beat", "ApiRole": "api"}


class StackRefs:
    """Resources as the template names them: its own by GetAtt/Ref, the rest by Sub (a global table
    declared by the primary region's stack, in another region's: orders.infra.cfn.data)."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.external = external_tables(settings)

    def queue(self, name: str) -> Any:
        return get_att(queue_id(name), "Arn")

    def dlq(self, name: str) -> Any:
        return get_att(dlq_id(name), "Arn")

    def topic(self, name: str) -> Any:
        return ref(topic_id(name))

    def table(self, name: str) -> Any:
        if name in self.external:
            return arn("dynamodb", f"table/{TABLES_BY_NAME[name].table_name(self.settings)}")
        return get_att(table_id(name), "Arn")

    def index(self, table: str, index: str) -> Any:
        if table in self.external:
            return arn("dynamodb", f"table/{TABLES_BY_NAME[table].table_name(self.settings)}/index/{index}")
        return sub(f"${{{table_id(table)}.Arn}}/index/{index}")

    def key(self) -> Any:
        return key_arn()

    def pattern(self, service: str, resource: str, regional: bool = True) -> Any:
        return arn(service, resource, regional)

    def value(self, text: str) -> Any:
        return sub(text)


def worker_role_id(queue: str) -> str:
    return logical_id(queue, "WorkerRole")


def stack_roles() -> dict[str, str]:
    """The template's role id of each declared role that runs in the stack."""
    return {**{worker_role_id(q.name): worker_role(q.name).name for q in QUEUES}, **STACK_ROLES}


def roles(settings: Settings, cluster: str, lambda_queues: frozenset[str]) -> Resources:
    """Every role of the stack (`cluster` is the ECS cluster the workers' services run in)."""
    found = {role_id: role("lambda" if ROLES[name].queue in lambda_queues else "ecs-tasks",
                           policy(ROLES[name], settings),
                           [LAMBDA_POLICY] if ROLES[name].queue in lambda_queues else [])
             for role_id, name in stack_roles().items()}
    found["ExecutionRole"] = role("ecs-tasks", None, [EXECUTION_POLICY])
    return found


def policy(declared: Role, settings: Settings) -> dict[str, Any]:
    """A declared role's policy document, with the stack's references."""
    return policies.document(declared, StackRefs(settings), settings)


def role(principal: str, document: dict[str, Any] | None, managed: list[str] | None = None) -> Resource:
    """A role that `principal` (ecs-tasks, lambda) assumes, with `document` as its one inline policy."""
    properties: dict[str, Any] = {"AssumeRolePolicyDocument": {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"Service": f"{principal}.amazonaws.com"},
        "Action": "sts:AssumeRole"}]}}
    if document:
        properties["Policies"] = [{"PolicyName": "orders", "PolicyDocument": document}]
    if managed:
        properties["ManagedPolicyArns"] = [sub(p) for p in managed]
    return {"Type": "AWS::IAM::Role", "Properties": properties}
