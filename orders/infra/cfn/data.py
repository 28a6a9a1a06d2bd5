"""The DynamoDB tables, defined by the converger's own table definition.

Order data (orders, stock, the gateway's captures and refunds) gets point-in-time recovery,
deletion protection and a Retain policy: a stack deleted or replaced by mistake must not take
the records of orders and money with it. The DLQ archive expires by time to live and is not
protected. Every table is encrypted with the environment's KMS key (orders.infra.cfn.keys).

With several regions (ORDERS_REGIONS), the replicated tables are global tables
(docs/multi-region.md): one `AWS::DynamoDB::GlobalTable` each, in the primary region's stack only,
listing a replica per region (CloudFormation creates and deletes the other regions' replicas from
that one resource; a second stack declaring the same table would fail). The other regions' stacks
declare no replicated table and name them by their ARN (`external_tables`): the names are the same
in every region. Deploy the other regions' stacks first (their key's alias must exist before the
replica that is encrypted with it), then the primary's.
"""

from __future__ import annotations

from typing import Any

from orders.infra import tables as converger_tables
from orders.infra.cfn.intrinsics import Resource, Resources, logical_id, tag_list
from orders.infra.cfn.keys import key_arn, table_encryption
from orders.settings import Settings
from orders.topology import ENVIRONMENT_KEY, TABLES, TableSpec

ORDER_DATA = frozenset({"orders", "stock", "gateway"})


def table_id(name: str) -> str:
    return logical_id(name, "Table")


def tables(settings: Settings) -> Resources:
    """Every declared table of this region's stack: the global tables in the primary's only."""
    external = external_tables(settings)
    build = {True: global_table, False: table}
    return {table_id(spec.name): build[_global(settings, spec)](settings, spec)
            for spec in TABLES if spec.name not in external}


def external_tables(settings: Settings) -> frozenset[str]:
    """The tables this region's stack uses but does not declare: the global tables, outside the primary."""
    if len(settings.regions) < 2 or settings.region == settings.regions[0]:
        return frozenset()
    return frozenset(spec.name for spec in TABLES if spec.replicated)


def _global(settings: Settings, spec: TableSpec) -> bool:
    return spec.replicated and len(settings.regions) > 1


def global_table(settings: Settings, spec: TableSpec) -> Resource:
    """A replicated table: its definition once, then per replica what CloudFormation takes per region
    (tags, key, recovery, protection). The stream of new and old images is what replication reads."""
    plain = table(settings, spec)
    properties = {name: value for name, value in plain["Properties"].items()
                  if name not in ("Tags", "PointInTimeRecoverySpecification", "DeletionProtectionEnabled")}
    properties["SSESpecification"] = {"SSEEnabled": True, "SSEType": "KMS"}
    per_replica = {name: value for name, value in plain["Properties"].items()
                   if name in ("Tags", "PointInTimeRecoverySpecification", "DeletionProtectionEnabled")}
    properties["Replicas"] = [
        {"Region": region, **per_replica, "SSESpecification": {"KMSMasterKeyId": (
            key_arn() if region == settings.region else ENVIRONMENT_KEY.alias_name(settings))}}
        for region in settings.regions]
    return {**plain, "Type": "AWS::DynamoDB::GlobalTable", "Properties": properties}


def table(settings: Settings, spec: TableSpec) -> Resource:
    """One table: keys, indexes and capacity as `orders infra up` creates them, plus its protection."""
    properties: dict[str, Any] = {**definition(spec, spec.table_name(settings)),
                                  "SSESpecification": table_encryption(),
                                  "Tags": tag_list(settings, spec.service)}
    if spec.ttl:
        properties["TimeToLiveSpecification"] = {"AttributeName": spec.ttl, "Enabled": True}
    resource: Resource = {"Type": "AWS::DynamoDB::Table", "Properties": properties}
    if spec.name in ORDER_DATA:
        properties["PointInTimeRecoverySpecification"] = {"PointInTimeRecoveryEnabled": True}
        properties["DeletionProtectionEnabled"] = True
        resource.update(DeletionPolicy="Retain", UpdateReplacePolicy="Retain")
    else:
        resource.update(DeletionPolicy="Delete", UpdateReplacePolicy="Delete")
    return resource


def definition(spec: TableSpec, name: str) -> dict[str, Any]:
    """The CreateTable arguments `orders infra up` uses; CloudFormation's property names are the same.

    A thin adapter: orders.infra.tables keeps this builder private; once it is public, call it directly.
    """
    definition = converger_tables.table_definition(spec, name)
    stream = definition.get("StreamSpecification")
    if stream:  # CloudFormation's has no StreamEnabled: a view type enables the stream
        definition["StreamSpecification"] = {"StreamViewType": stream["StreamViewType"]}
    return definition
