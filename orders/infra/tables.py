"""DynamoDB tables for `orders infra up/check/down`: every table declared in the topology.

Keys, secondary indexes and encryption with the environment's key are created with the table;
an index declared later is added, and a table made before the key is encrypted with it. A table's
keys cannot change: a difference is reported, never applied. Capacity is on demand (PAY_PER_REQUEST).
"""

from __future__ import annotations

from typing import Any

from orders.aws import clients
from orders.infra import kms
from orders.infra.converger import Converger
from orders.settings import Settings
from orders.topology import TABLES, TABLES_BY_NAME, TableSpec, tags

#: The stream of a replicated table (TableSpec.replicated): every write with its new and old image.
STREAM = {"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"}
AWS_MANAGED_ENCRYPTION = {"Enabled": True, "SSEType": "KMS"}


def converge_tables(converger: Converger) -> None:
    """Provisioning step: every declared table exists with its keys, indexes and encryption."""
    ddb = clients.client("dynamodb", converger.settings)
    for spec in TABLES:
        name = spec.table_name(converger.settings)
        try:
            live = ddb.describe_table(TableName=name)["Table"]
        except ddb.exceptions.ResourceNotFoundException:
            converger.report.add(f"table {name}: {'created' if converger.apply else 'missing'}")
            if converger.apply:
                _create(converger, spec, name)
            continue
        declared = _key_schema(spec.keys)
        if live["KeySchema"] != declared:
            converger.report.add(f"table {name}: keys are {live['KeySchema']}, declared {declared} "
                                 "(a table's keys cannot change: recreate it)")
        _converge_encryption(converger, name, live)
        _converge_stream(converger, spec, name, live)
        live_indexes = {i["IndexName"] for i in live.get("GlobalSecondaryIndexes", [])}
        for index in sorted(set(spec.indexes) - live_indexes):
            converger.report.add(f"table {name}: index {index} missing"
                                 + (" (created)" if converger.apply else ""))
            if converger.apply:
                definition = table_definition(spec, name)
                ddb.update_table(TableName=name,
                                 AttributeDefinitions=definition["AttributeDefinitions"],
                                 GlobalSecondaryIndexUpdates=[{"Create": gsi} for gsi in
                                                              definition["GlobalSecondaryIndexes"]
                                                              if gsi["IndexName"] == index])
        if spec.ttl:
            _converge_ttl(converger, spec, name)


def _create(converger: Converger, spec: TableSpec, name: str, place: Settings | None = None) -> None:
    """Create the table in this region, or in `place` outside the regions (then with the AWS managed key
    of that place: the environment's key is made in the regions)."""
    where = place or converger.settings
    ddb = clients.client("dynamodb", where)
    encryption = kms.table_encryption(converger.key) if place is None else AWS_MANAGED_ENCRYPTION
    ddb.create_table(**table_definition(spec, name), SSESpecification=encryption,
                     Tags=[{"Key": k, "Value": v} for k, v in tags(where, spec.service).items()])
    if spec.ttl:  # time to live can be set once the table is active
        ddb.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 1})
        _converge_ttl(converger, spec, name, quiet=True, where=where)


def _converge_encryption(converger: Converger, name: str, live: dict[str, Any]) -> None:
    """The table is encrypted with the environment's key; UpdateTable switches a live table's key
    without interrupting it (before any index is added: one table update at a time)."""
    sse = live.get("SSEDescription") or {}
    status = sse.get("Status")  # INACCESSIBLE_ENCRYPTION_CREDENTIALS: DynamoDB cannot use the key
    usable = status in ("ENABLED", "UPDATING")
    problem = kms.misencrypted(converger, sse.get("KMSMasterKeyArn") if usable else None)
    if problem is None:
        return
    if status and not usable:
        problem += f" (its encryption is {status})"
    converger.drift(f"table {name}: {problem}")
    if not converger.apply:
        return
    ddb = clients.client("dynamodb", converger.settings)
    ddb.update_table(TableName=name, SSESpecification=kms.table_encryption(converger.key))
    ddb.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 1})
    if converger.on_emulator and not ddb.describe_table(TableName=name)["Table"].get("SSEDescription"):
        # moto 5.2 accepts UpdateTable's SSESpecification and ignores it.
        converger.report.note(f"table {name}: the endpoint ignored UpdateTable's SSESpecification")


def _converge_stream(converger: Converger, spec: TableSpec, name: str, live: dict[str, Any]) -> None:
    """A replicated table's stream carries new and old images (what global tables need); it is
    switched on in place, before any index is added (one table update at a time)."""
    if not spec.replicated or live.get("StreamSpecification") == STREAM:
        return
    converger.drift(f"table {name}: stream is {live.get('StreamSpecification')}, declared {STREAM}")
    if converger.apply:
        ddb = clients.client("dynamodb", converger.settings)
        ddb.update_table(TableName=name, StreamSpecification=STREAM)
        ddb.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 1})


def _converge_ttl(converger: Converger, spec: TableSpec, name: str, quiet: bool = False,
                  where: Settings | None = None) -> None:
    """Items expire on the declared attribute (DynamoDB's time to live)."""
    ddb = clients.client("dynamodb", where or converger.settings)
    ttl = ddb.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
    if ttl.get("TimeToLiveStatus") in ("ENABLED", "ENABLING") and ttl.get("AttributeName") == spec.ttl:
        return
    if not quiet:
        converger.drift(f"table {name}: time to live on {spec.ttl} is {ttl.get('TimeToLiveStatus')}")
    if converger.apply:
        ddb.update_time_to_live(TableName=name, TimeToLiveSpecification={
            "Enabled": True, "AttributeName": spec.ttl})


def _key_schema(keys: tuple[str, str | None]) -> list[dict[str, str]]:
    schema = [{"AttributeName": keys[0], "KeyType": "HASH"}]
    if keys[1]:
        schema.append({"AttributeName": keys[1], "KeyType": "RANGE"})
    return schema


def table_definition(spec: TableSpec, name: str) -> dict[str, Any]:
    attributes = {a for a in spec.keys if a}
    for keys in spec.indexes.values():
        attributes |= {a for a in keys if a}
    definition: dict[str, Any] = {
        "TableName": name, "BillingMode": "PAY_PER_REQUEST", "KeySchema": _key_schema(spec.keys),
        "AttributeDefinitions": [{"AttributeName": a, "AttributeType": "N" if a in spec.numeric else "S"}
                                 for a in sorted(attributes)],
    }
    if spec.replicated:
        definition["StreamSpecification"] = STREAM
    if spec.indexes:
        definition["GlobalSecondaryIndexes"] = [
            {"IndexName": index, "KeySchema": _key_schema(keys),
             "Projection": {"ProjectionType": "KEYS_ONLY" if index in spec.keys_only else "ALL"}}
            for index, keys in spec.indexes.items()]
    return definition


def delete_tables(settings: Settings) -> list[str]:
    """Teardown step: delete this environment's tables."""
    return [f"table {spec.table_name(settings)}" for spec in TABLES if _delete(settings, spec)]


def delete_processor_table(settings: Settings) -> list[str]:
    """Teardown, once for all the regions: the processor's table where ORDERS_GATEWAY puts it."""
    if settings.gateway_place is None:
        return []
    place, spec = settings.gateway_settings(), TABLES_BY_NAME["gateway"]
    deleted = _delete(place, spec)
    return [f"table {spec.table_name(place)} in {place.region} (ORDERS_GATEWAY)"] if deleted else []


def _delete(settings: Settings, spec: TableSpec) -> bool:
    """Delete the table; False when it was not there."""
    ddb = clients.client("dynamodb", settings)
    try:
        ddb.delete_table(TableName=spec.table_name(settings))
    except ddb.exceptions.ResourceNotFoundException:
        return False
    return True



def converge_processor_table(converger: Converger) -> None:
    """Provisioning step, once for all the regions: the simulated payment processor's table where
    ORDERS_GATEWAY puts it (outside the regions: rule R3 of docs/multi-region.md), created if absent."""
    if converger.settings.gateway_place is None:
        return
    place, spec = converger.settings.gateway_settings(), TABLES_BY_NAME["gateway"]
    ddb, name = clients.client("dynamodb", place), spec.table_name(place)
    try:
        ddb.describe_table(TableName=name)
    except ddb.exceptions.ResourceNotFoundException:
        converger.report.add(f"table {name} in {place.region} (ORDERS_GATEWAY): "
                             + ("created" if converger.apply else "missing"))
        if converger.apply:
            _create(converger, spec, name, place)
