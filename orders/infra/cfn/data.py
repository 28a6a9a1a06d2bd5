"""The DynamoDB tables, defined by the converger's own table definition.

Order data (orders, stock, the gateway's captures and refunds) gets point-in-time recovery,
deletion protection and a Retain policy: a stack deleted or replaced by mistake must not take
the records of orders and money with it. The DLQ archive expires by time to live and is not
protected. Every table is encrypted with the environment's KMS key (orders.infra.cfn.keys).
"""

from __future__ import annotations

from typing import Any

from orders.infra import tables as converger_tables
from orders.infra.cfn.intrinsics import Resource, Resources, logical_id, tag_list
from orders.infra.cfn.keys import table_encryption
from orders.settings import Settings
from orders.topology import TABLES, TableSpec

ORDER_DATA = frozenset({"orders", "stock", "gateway"})


def table_id(name: str) -> str:
    return logical_id(name, "Table")


def tables(settings: Settings) -> Resources:
    """Every declared table."""
    return {table_id(spec.name): table(settings, spec) for spec in TABLES}


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
