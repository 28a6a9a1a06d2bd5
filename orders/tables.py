"""The pipeline's DynamoDB plumbing: item (de)serialization, error classification,
transactions, and the tables' provisioning (`orders infra up/check/down`).

Tables are declared in orders/topology.py (TABLES); every name carries the
environment prefix. Capacity is on demand (PAY_PER_REQUEST).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import BotoCoreError, ClientError

from orders import aws, provisioning
from orders.errors import ConcurrentUpdate, classify_aws_error
from orders.settings import Settings
from orders.topology import TABLES, TABLES_BY_NAME, TableSpec, tags

_SERIALIZER, _DESERIALIZER = TypeSerializer(), TypeDeserializer()


def now_iso() -> str:
    """The current time as the store writes it."""
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def to_item(values: dict[str, Any]) -> dict[str, Any]:
    """A DynamoDB item from plain values (None dropped; floats refused by boto3's serializer)."""
    return {k: _SERIALIZER.serialize(v) for k, v in values.items() if v is not None}


def from_item(item: dict[str, Any]) -> dict[str, Any]:
    return {k: _DESERIALIZER.deserialize(v) for k, v in item.items()}


def plain(value: Any) -> Any:
    """JSON-ready: DynamoDB numbers become ints (only counters are stored as numbers)."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else str(value)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | set | tuple):
        return [plain(v) for v in value]
    return value


def table_name(settings: Settings, name: str) -> str:
    return TABLES_BY_NAME[name].table_name(settings)


@contextmanager
def aws_errors() -> Iterator[None]:
    """Turn botocore errors into our hierarchy: retryable (throttling, 5xx) or permanent."""
    try:
        yield
    except (ClientError, BotoCoreError) as exc:
        raise classify_aws_error(exc) from exc


def cancellation_codes(exc: ClientError) -> list[str]:
    """Per-item reasons of a cancelled transaction ('None', 'ConditionalCheckFailed', ...)."""
    return [r.get("Code", "None") for r in exc.response.get("CancellationReasons", [])]


def transact(settings: Settings, items: Sequence[dict[str, Any]]) -> list[str] | None:
    """Run a transaction; None when it committed, else the per-item cancellation codes.

    A conflict with another transaction in flight is retryable; anything else
    that is not a condition is classified as usual.
    """
    ddb = aws.client("dynamodb", settings)
    with aws_errors():
        try:
            ddb.transact_write_items(TransactItems=list(items))
            return None
        except ddb.exceptions.TransactionCanceledException as exc:
            codes = cancellation_codes(exc)
    if "TransactionConflict" in codes or "ThrottlingError" in codes:
        raise ConcurrentUpdate(f"transaction conflict: {codes}")
    return codes


def condition_failed(exc: BaseException) -> bool:
    cause = exc.__cause__ if exc.__cause__ is not None else exc
    return isinstance(cause, ClientError) and \
        cause.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


def converge_tables(converger: provisioning.Converger) -> None:
    """Provisioning step: every declared table exists with its keys and indexes."""
    ddb = aws.client("dynamodb", converger.settings)
    for spec in TABLES:
        name = spec.table_name(converger.settings)
        try:
            live = ddb.describe_table(TableName=name)["Table"]
        except ddb.exceptions.ResourceNotFoundException:
            converger.report.add(f"table {name}: {'created' if converger.apply else 'missing'}")
            if converger.apply:
                ddb.create_table(**_table_definition(spec, name),
                                 Tags=[{"Key": k, "Value": v}
                                       for k, v in tags(converger.settings, spec.service).items()])
            continue
        declared = _key_schema(spec.keys)
        if live["KeySchema"] != declared:
            converger.report.add(f"table {name}: keys are {live['KeySchema']}, declared {declared} "
                                 "(a table's keys cannot change: recreate it)")
        live_indexes = {i["IndexName"] for i in live.get("GlobalSecondaryIndexes", [])}
        for index in sorted(set(spec.indexes) - live_indexes):
            converger.report.add(f"table {name}: index {index} missing"
                                 + (" (created)" if converger.apply else ""))
            if converger.apply:
                definition = _table_definition(spec, name)
                ddb.update_table(TableName=name,
                                 AttributeDefinitions=definition["AttributeDefinitions"],
                                 GlobalSecondaryIndexUpdates=[{"Create": gsi} for gsi in
                                                              definition["GlobalSecondaryIndexes"]
                                                              if gsi["IndexName"] == index])


def _key_schema(keys: tuple[str, str | None]) -> list[dict[str, str]]:
    schema = [{"AttributeName": keys[0], "KeyType": "HASH"}]
    if keys[1]:
        schema.append({"AttributeName": keys[1], "KeyType": "RANGE"})
    return schema


def _table_definition(spec: TableSpec, name: str) -> dict[str, Any]:
    attributes = {a for a in spec.keys if a}
    for keys in spec.indexes.values():
        attributes |= {a for a in keys if a}
    definition: dict[str, Any] = {
        "TableName": name, "BillingMode": "PAY_PER_REQUEST", "KeySchema": _key_schema(spec.keys),
        "AttributeDefinitions": [{"AttributeName": a, "AttributeType": "N" if a in spec.numeric else "S"}
                                 for a in sorted(attributes)],
    }
    if spec.indexes:
        definition["GlobalSecondaryIndexes"] = [
            {"IndexName": index, "KeySchema": _key_schema(keys), "Projection": {"ProjectionType": "ALL"}}
            for index, keys in spec.indexes.items()]
    return definition


def delete_tables(settings: Settings) -> list[str]:
    """Teardown step: delete this environment's tables."""
    ddb, deleted = aws.client("dynamodb", settings), []
    for spec in TABLES:
        try:
            ddb.delete_table(TableName=spec.table_name(settings))
            deleted.append(f"table {spec.table_name(settings)}")
        except ddb.exceptions.ResourceNotFoundException:
            continue
    return deleted


provisioning.register(converge_tables, delete_tables)
