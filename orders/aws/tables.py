"""The pipeline's DynamoDB plumbing: item (de)serialization, error classification, transactions.

Tables are declared in orders/topology.py (TABLES); every name carries the
environment prefix. Capacity is on demand (PAY_PER_REQUEST).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import BotoCoreError, ClientError

from orders.aws import clients
from orders.aws.errors import classify_aws_error
from orders.domain.errors import ConcurrentUpdate
from orders.domain.times import now_iso  # noqa: F401  (re-exported until callers move)
from orders.settings import Settings
from orders.topology import TABLES_BY_NAME

_SERIALIZER, _DESERIALIZER = TypeSerializer(), TypeDeserializer()


def to_item(values: dict[str, Any]) -> dict[str, Any]:
    """A DynamoDB item from plain values (None dropped; floats refused by boto3's serializer)."""
    return {k: _SERIALIZER.serialize(v) for k, v in values.items() if v is not None}


def from_item(item: dict[str, Any]) -> dict[str, Any]:
    """Plain values from a DynamoDB item (numbers come back as Decimal: see `plain`)."""
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


def scan(settings: Settings, name: str, consistent: bool = True) -> Iterator[dict[str, Any]]:
    """Every item of table `name`, as plain values: a paginated Scan, strongly consistent unless told."""
    pages = clients.client("dynamodb", settings).get_paginator("scan").paginate(
        TableName=table_name(settings, name), ConsistentRead=consistent)
    with aws_errors():
        for page in pages:
            yield from (from_item(item) for item in page.get("Items", []))


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
    ddb = clients.client("dynamodb", settings)
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
