"""Where the code runs: an ECS Fargate service per queue (or a Lambda consumer), beat, Flower and the
API behind a load balancer, and the Redis control plane.

Each queue's workers scale on backlog per task, AWS's documented pattern for SQS workers: the
target is the backlog one task drains within the queue's latency target. CloudWatch has no such
metric, so the pipeline publishes it: `BacklogPerTask` in the `Orders` namespace, dimensions
Environment and Queue, the queue's visible messages divided by its service's running tasks
(ecs:DescribeServices on `orders.topology.worker_name`, in `cluster_name`). Its publisher is beat's
periodic `ops.sample_queues` (tasks/ops.py, orders.ops.sampling), beside QueueUtilisation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from orders.aws.metrics import NAMESPACE
from orders.infra.cfn.intrinsics import Resource, Resources, get_att, ref, sub, tag_list
from orders.infra.cfn.messaging import queue_id
from orders.infra.cfn.roles import worker_role_id
from orders.settings import Settings
from orders.topology import (
    QUEUES,
    REPLICA_QUEUE,
    SERVICE_LEVELS,
    QueueSpec,
    aws_name,
    cluster_name,
    worker_name,
)

LAMBDA_HANDLER = "orders.aws_lambda.handler"
#: Assumed wall time of one step on AWS (a few SQS, SNS and DynamoDB round trips of 10-30 ms,
#: ~35 ms of CPU): sets the backlog a task drains in time and the scaling bounds. Measure, then tune.
TASK_SECONDS = 0.2
#: The most tasks a queue scales to, as a multiple of what its peak rate needs.
PEAK_HEADROOM = 2
API_PORT, FLOWER_PORT, REDIS_PORT = 8000, 5555, 6379
#: Fargate's longest stop timeout: a worker's warm shutdown gets this long to finish its tasks.
STOP_TIMEOUT = 120


@dataclass(frozen=True)
class WorkerPlan:
    """How one queue's workers run: Celery pool and concurrency, Fargate task size."""

    concurrency: int = 8
    pool: str = "threads"
    cpu: int = 1024
    memory: int = 2048

    def target_backlog(self, spec: QueueSpec) -> int:
        """Messages per task that one task drains within the queue's latency target, and at most
        half the depth alarm's threshold, so that tasks are added well before that alarm fires."""
        level = SERVICE_LEVELS[spec.name]
        drained = int(level.p95_seconds * self.concurrency / TASK_SECONDS)
        return max(1, min(drained, level.backlog_limit // 2))

    def max_tasks(self, spec: QueueSpec) -> int:
        """Enough tasks for the queue's peak rate, with headroom."""
        needed = SERVICE_LEVELS[spec.name].peak_per_second * TASK_SECONDS / self.concurrency
        return max(2, math.ceil(PEAK_HEADROOM * needed))


#: Every step waits on AWS far longer than it computes, so threads, not processes: one Python
#: process uses one vCPU, and 8 threads keep it busy. Payments wait on the gateway, notifications
#: are one small write each: more threads for both. docs/deploy.md explains the choice.
PLANS: dict[str, WorkerPlan] = {
    "orders": WorkerPlan(),
    "orders-priority.fifo": WorkerPlan(),
    "payments": WorkerPlan(concurrency=16),
    "inventory.fifo": WorkerPlan(),
    "shipping": WorkerPlan(),
    "notifications": WorkerPlan(concurrency=16, cpu=512, memory=1024),
    # Idle in a passive region; after a failover it drains the lost region's events as notifications does.
    REPLICA_QUEUE: WorkerPlan(concurrency=16, cpu=512, memory=1024),
}


def environment(settings: Settings) -> list[dict[str, Any]]:
    """What every container is told: its environment, region and control plane."""
    control = {"Fn::If": ["CreateControlPlane", sub(
        "redis://${ControlPlane.PrimaryEndPoint.Address}:${ControlPlane.PrimaryEndPoint.Port}/0"),
        ref("ControlUrl")]}
    return [{"Name": "ORDERS_ENV", "Value": settings.env},
            {"Name": "AWS_DEFAULT_REGION", "Value": ref("AWS::Region")},
            {"Name": "ORDERS_CONTROL_URL", "Value": control}]


def shared(settings: Settings) -> Resources:
    """The cluster, its log group and the tasks' security group."""
    return {
        "Cluster": {"Type": "AWS::ECS::Cluster", "Properties": {
            "ClusterName": cluster_name(settings),
            "ClusterSettings": [{"Name": "containerInsights", "Value": "enabled"}],
            "Tags": tag_list(settings, "platform")}},
        "LogGroup": {"Type": "AWS::Logs::LogGroup", "DeletionPolicy": "Delete",
                     "UpdateReplacePolicy": "Delete", "Properties": {
                         "LogGroupName": f"/ecs/{settings.prefix}orders", "RetentionInDays": 30}},
        "TaskSecurityGroup": security_group("Workers, beat, Flower and the API: outbound only, "
                                            "and traffic from the load balancer", [
            ingress(API_PORT, source="LoadBalancerSecurityGroup"),
            ingress(FLOWER_PORT, source="LoadBalancerSecurityGroup")]),
    }


def security_group(description: str, rules: list[dict[str, Any]]) -> Resource:
    properties: dict[str, Any] = {"GroupDescription": description, "VpcId": ref("VpcId")}
    if rules:
        properties["SecurityGroupIngress"] = rules
    return {"Type": "AWS::EC2::SecurityGroup", "Properties": properties}


def ingress(port: int, source: str | None = None, cidr: Any = None) -> dict[str, Any]:
    rule: dict[str, Any] = {"IpProtocol": "tcp", "FromPort": port, "ToPort": port}
    if source:
        rule["SourceSecurityGroupId"] = ref(source)
    else:
        rule["CidrIp"] = cidr
    return rule


def container(settings: Settings, name: str, command: list[str], port: int | None = None) -> dict[str, Any]:
    """One container of the image, logging to the stack's log group."""
    definition: dict[str, Any] = {
        "Name": name, "Image": ref("Image"), "Command": command, "Essential": True,
        "Environment": environment(settings), "StopTimeout": STOP_TIMEOUT,
        "LogConfiguration": {"LogDriver": "awslogs", "Options": {
            "awslogs-group": ref("LogGroup"), "awslogs-region": ref("AWS::Region"),
            "awslogs-stream-prefix": name}}}
    if port:
        definition["PortMappings"] = [{"ContainerPort": port, "Protocol": "tcp"}]
    return definition


def task_definition(settings: Settings, family: str, plan: WorkerPlan, containers: list[dict[str, Any]],
                    role: str | None) -> Resource:
    properties: dict[str, Any] = {
        "Family": f"{settings.prefix}{family}", "RequiresCompatibilities": ["FARGATE"],
        "NetworkMode": "awsvpc", "Cpu": str(plan.cpu), "Memory": str(plan.memory),
        "ExecutionRoleArn": get_att("ExecutionRole", "Arn"), "ContainerDefinitions": containers}
    if role:
        properties["TaskRoleArn"] = get_att(role, "Arn")
    return {"Type": "AWS::ECS::TaskDefinition", "Properties": properties}


def service(settings: Settings, name: str, task: str, count: int, service_tag: str,
            rolling: tuple[int, int] = (100, 200), balanced: tuple[str, int, str] | None = None) -> Resource:
    """A Fargate service. `rolling` is (minimum healthy, maximum) percent during a deployment:
    new tasks start before old ones stop, and a failed deployment rolls back. `balanced` is
    (container, port, target group) for a service behind the load balancer."""
    properties: dict[str, Any] = {
        "ServiceName": name, "Cluster": ref("Cluster"), "TaskDefinition": ref(task),
        "LaunchType": "FARGATE", "DesiredCount": count, "PropagateTags": "SERVICE",
        "NetworkConfiguration": {"AwsvpcConfiguration": {
            "Subnets": ref("SubnetIds"), "SecurityGroups": [ref("TaskSecurityGroup")],
            "AssignPublicIp": ref("AssignPublicIp")}},
        "DeploymentConfiguration": {
            "MinimumHealthyPercent": rolling[0], "MaximumPercent": rolling[1],
            "DeploymentCircuitBreaker": {"Enable": True, "Rollback": True}},
        "Tags": tag_list(settings, service_tag)}
    resource: Resource = {"Type": "AWS::ECS::Service", "Properties": properties}
    if balanced:
        container_name, port, group = balanced
        properties["LoadBalancers"] = [{"ContainerName": container_name, "ContainerPort": port,
                                        "TargetGroupArn": ref(group)}]
        resource["DependsOn"] = ["Listener", "FlowerRule"]  # a target group must belong to a load balancer
    return resource


def workers(settings: Settings, spec: QueueSpec) -> Resources:
    """One queue's workers: task definition, service, and autoscaling on backlog per task."""
    plan, prefix = PLANS[spec.name], queue_id(spec.name).removesuffix("Queue")
    command = ["celery", "-A", "orders", "worker", "-Q", spec.name, "-n", f"{aws_name(spec.name)}@%h",
               "--pool", plan.pool, "--concurrency", str(plan.concurrency), "--loglevel", "INFO"]
    return {
        f"{prefix}TaskDefinition": task_definition(
            settings, f"worker-{aws_name(spec.name)}", plan, [container(settings, "worker", command)],
            worker_role_id(spec.name)),
        f"{prefix}Service": service(settings, worker_name(settings, spec.name),
                                    f"{prefix}TaskDefinition", 1, spec.service),
        f"{prefix}ScalableTarget": {"Type": "AWS::ApplicationAutoScaling::ScalableTarget", "Properties": {
            "ServiceNamespace": "ecs", "ScalableDimension": "ecs:service:DesiredCount",
            "ResourceId": sub(f"service/${{Cluster}}/${{{prefix}Service.Name}}"),
            "MinCapacity": 1, "MaxCapacity": plan.max_tasks(spec)}},
        f"{prefix}ScalingPolicy": backlog_policy(settings, spec, prefix, plan.target_backlog(spec)),
    }


def backlog_policy(settings: Settings, spec: QueueSpec, prefix: str, target: int) -> Resource:
    """Target tracking on BacklogPerTask: out within a minute, in slowly."""
    return {"Type": "AWS::ApplicationAutoScaling::ScalingPolicy", "Properties": {
        "PolicyName": f"{settings.prefix}{aws_name(spec.name)}-backlog-per-task",
        "PolicyType": "TargetTrackingScaling", "ScalingTargetId": ref(f"{prefix}ScalableTarget"),
        "TargetTrackingScalingPolicyConfiguration": {
            "TargetValue": float(target), "ScaleOutCooldown": 60, "ScaleInCooldown": 300,
            "CustomizedMetricSpecification": {
                "Namespace": NAMESPACE, "MetricName": "BacklogPerTask", "Statistic": "Average",
                "Dimensions": [{"Name": "Environment", "Value": settings.env},
                               {"Name": "Queue", "Value": spec.name}]}}}}


def beat(settings: Settings) -> Resources:
    """One beat, never two: a deployment stops the old task before starting the new one
    (a second beat would send every periodic task twice)."""
    # -q: no start-up banner, which beat prints before logging starts (every line JSON).
    command = ["celery", "-A", "orders", "-q", "beat", "--loglevel", "INFO",
               "--schedule", "/tmp/celerybeat-schedule"]
    return {
        "BeatTaskDefinition": task_definition(settings, "beat", WorkerPlan(cpu=256, memory=512),
                                              [container(settings, "beat", command)], "BeatRole"),
        "BeatService": service(settings, f"{settings.prefix}beat", "BeatTaskDefinition", 1, "ops",
                               rolling=(0, 100)),
    }


def web(settings: Settings) -> Resources:
    """Flower and the API behind one load balancer: /flower to Flower, everything else to the API."""
    small = WorkerPlan(cpu=512, memory=1024)
    flower = ["celery", "-A", "orders", "flower", "--address=0.0.0.0", f"--port={FLOWER_PORT}",
              "--url_prefix=flower"]
    api = ["gunicorn", "--bind", f"0.0.0.0:{API_PORT}", "--workers", "2", "--threads", "8",
           "orders.api.app:create_app()"]
    return {
        "LoadBalancerSecurityGroup": security_group("The load balancer: HTTP from IngressCidr",
                                                    [ingress(80, cidr=ref("IngressCidr"))]),
        "LoadBalancer": {"Type": "AWS::ElasticLoadBalancingV2::LoadBalancer", "Properties": {
            "Scheme": ref("LoadBalancerScheme"), "Subnets": ref("SubnetIds"),
            "SecurityGroups": [ref("LoadBalancerSecurityGroup")], "Tags": tag_list(settings, "platform")}},
        "ApiTargetGroup": target_group(API_PORT, "/health"),
        "FlowerTargetGroup": target_group(FLOWER_PORT, "/flower/healthcheck"),
        "Listener": {"Type": "AWS::ElasticLoadBalancingV2::Listener", "Properties": {
            "LoadBalancerArn": ref("LoadBalancer"), "Port": 80, "Protocol": "HTTP",
            "DefaultActions": [{"Type": "forward", "TargetGroupArn": ref("ApiTargetGroup")}]}},
        "FlowerRule": {"Type": "AWS::ElasticLoadBalancingV2::ListenerRule", "Properties": {
            "ListenerArn": ref("Listener"), "Priority": 10,
            "Conditions": [{"Field": "path-pattern",
                            "PathPatternConfig": {"Values": ["/flower", "/flower/*"]}}],
            "Actions": [{"Type": "forward", "TargetGroupArn": ref("FlowerTargetGroup")}]}},
        "FlowerTaskDefinition": task_definition(settings, "flower", small,
                                                [container(settings, "flower", flower, FLOWER_PORT)], None),
        "FlowerService": service(settings, f"{settings.prefix}flower", "FlowerTaskDefinition", 1,
                                 "ops", balanced=("flower", FLOWER_PORT, "FlowerTargetGroup")),
        "ApiTaskDefinition": task_definition(settings, "api", small,
                                             [container(settings, "api", api, API_PORT)], "ApiRole"),
        "ApiService": service(settings, f"{settings.prefix}api", "ApiTaskDefinition", 2, "orders",
                              balanced=("api", API_PORT, "ApiTargetGroup")),
    }


def target_group(port: int, health: str) -> Resource:
    return {"Type": "AWS::ElasticLoadBalancingV2::TargetGroup", "Properties": {
        "VpcId": ref("VpcId"), "Port": port, "Protocol": "HTTP", "TargetType": "ip",
        "HealthCheckPath": health}}


def control_plane(settings: Settings) -> Resources:
    """Redis for Flower, events and remote control (ORDERS_CONTROL_URL), unless ControlUrl names one.

    Two nodes with automatic failover: losing it stops monitoring, never SQS consumption.
    Transit encryption stays off until the control plane's client is checked with rediss://
    (the security work, issue 12); the group is reachable from the stack's tasks only.
    """
    conditional = {"Condition": "CreateControlPlane"}
    return {
        "ControlPlaneSecurityGroup": {**conditional, **security_group(
            "The control plane: Redis from the tasks of the stack",
            [ingress(REDIS_PORT, source="TaskSecurityGroup")])},
        "ControlPlaneSubnets": {**conditional, "Type": "AWS::ElastiCache::SubnetGroup", "Properties": {
            "Description": f"{settings.prefix}orders control plane", "SubnetIds": ref("SubnetIds")}},
        # Nothing durable lives there (events and control messages), so no final snapshot.
        "ControlPlane": {**conditional, "Type": "AWS::ElastiCache::ReplicationGroup",
                         "DeletionPolicy": "Delete", "UpdateReplacePolicy": "Delete", "Properties": {
            "ReplicationGroupDescription": f"{settings.prefix}orders control plane (Flower, events, control)",
            "Engine": "redis", "CacheNodeType": ref("ControlPlaneNodeType"), "NumCacheClusters": 2,
            "AutomaticFailoverEnabled": True, "MultiAZEnabled": True, "AtRestEncryptionEnabled": True,
            "CacheSubnetGroupName": ref("ControlPlaneSubnets"),
            "SecurityGroupIds": [get_att("ControlPlaneSecurityGroup", "GroupId")],
            "Tags": tag_list(settings, "platform")}},
    }


def lambda_consumer(settings: Settings, spec: QueueSpec) -> Resources:
    """The queue consumed by a Lambda function instead of ECS workers: same step code, partial
    batch failures reported so that only the failed messages come back (and reach the DLQ)."""
    prefix = queue_id(spec.name).removesuffix("Queue")
    return {
        f"{prefix}Function": {"Type": "AWS::Lambda::Function", "Properties": {
            "FunctionName": worker_name(settings, spec.name),
            "Runtime": "python3.11", "Handler": LAMBDA_HANDLER, "MemorySize": 1024,
            # Inside the visibility timeout, as a worker's time limit is.
            "Timeout": spec.task_time_limit,
            "Code": {"S3Bucket": ref("LambdaCodeBucket"), "S3Key": ref("LambdaCodeKey")},
            "Role": get_att(worker_role_id(spec.name), "Arn"),
            "Environment": {"Variables": {"ORDERS_ENV": settings.env, "ORDERS_LAMBDA_QUEUE": spec.name}},
            "Tags": tag_list(settings, spec.service)}},
        f"{prefix}EventSourceMapping": {"Type": "AWS::Lambda::EventSourceMapping", "Properties": {
            "EventSourceArn": get_att(queue_id(spec.name), "Arn"), "FunctionName": ref(f"{prefix}Function"),
            "BatchSize": 10, "FunctionResponseTypes": ["ReportBatchItemFailures"], "Enabled": True}},
    }


def compute(settings: Settings, lambda_queues: frozenset[str]) -> Resources:
    """Every compute resource: ECS for the queues not on Lambda, beat, web, control plane."""
    resources = {**shared(settings), **control_plane(settings), **beat(settings), **web(settings)}
    for spec in QUEUES:
        resources.update(lambda_consumer(settings, spec) if spec.name in lambda_queues
                         else workers(settings, spec))
    return resources
