"""The pipeline's DynamoDB plumbing: item (de)serialization, error classification, transactions.

Tables are declared in orders/topology.py (TABLES); every name carries the
environment prefix. Capacity is on demand (PAY_PER_REQUEST).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import BotoCoreError, ClientError

from orders.aws import clients
from orders.aws.errors import Backoff, classify_aws_error
from orders.domain.errors import ConcurrentUpdate, RetryableError
from orders.domain.times import now_iso  # noqa: F401  (re-exported until callers move)
from orders.domain.writes import Refusal, Write
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


def refusal(writes: Sequence[Write], codes: Sequence[str] | None) -> Refusal | None:
    """What refused a transaction of `writes` (None: it committed): the guards whose condition failed,
    told by the cancellation codes, and the codes themselves."""
    if codes is None:
        return None
    failed = frozenset(w.guard for w, code in zip(writes, codes, strict=False)
                       if code == "ConditionalCheckFailed")
    return Refusal(failed, tuple(codes))


#: BatchGetItem calls one request may take: DynamoDB leaves keys unprocessed when it throttles.
BATCH_GET_CALLS = 6
BATCH_GET_BACKOFF = Backoff(base=0.1, cap=2.0)


class Unprocessed(RetryableError):
    """DynamoDB kept leaving keys of a BatchGetItem unprocessed (throttling): the read is not complete."""

    def __init__(self, table: str, keys: Sequence[dict[str, Any]]):
        self.keys = list(keys)
        shown = ", ".join(str(k) for k in self.keys[:5]) + (", ..." if len(self.keys) > 5 else "")
        super().__init__(f"{table}: DynamoDB left {len(self.keys)} key(s) unprocessed after "
                         f"{BATCH_GET_CALLS} BatchGetItem calls ({shown}): try again later")


def batch_get(settings: Settings, name: str, keys: Sequence[dict[str, Any]],
              consistent: bool = True) -> list[dict[str, Any]]:
    """The items of table `name` found at `keys` (plain values), 100 keys a BatchGetItem; Unprocessed
    (retryable) if DynamoDB still leaves some unread after BATCH_GET_CALLS calls for them."""
    table, ddb = table_name(settings, name), clients.client("dynamodb", settings)
    unique = list({tuple(sorted(k.items())): k for k in keys}.values())  # DynamoDB refuses a repeated key
    found: list[dict[str, Any]] = []
    for start in range(0, len(unique), 100):
        request = {table: {"Keys": [to_item(k) for k in unique[start:start + 100]],
                           "ConsistentRead": consistent}}
        with aws_errors():
            found += (from_item(item) for item in get_all(ddb.batch_get_item, request, table))
    return found


def get_all(batch_get_item: Callable[..., Any], request: dict[str, Any], table: str,
            sleep: Callable[[float], None] = time.sleep) -> list[dict[str, Any]]:
    """The items (as DynamoDB returns them) of one BatchGetItem request, asking again for the keys it
    leaves unprocessed, with backoff: BATCH_GET_CALLS calls at most, then Unprocessed."""
    items: list[dict[str, Any]] = []
    for call in range(1, BATCH_GET_CALLS + 1):
        answer = batch_get_item(RequestItems=request)
        items += answer.get("Responses", {}).get(table, [])
        request = answer.get("UnprocessedKeys") or {}
        if not request:
            return items
        if call < BATCH_GET_CALLS:
            sleep(BATCH_GET_BACKOFF.delay(call))
    raise Unprocessed(table, [from_item(key) for keys in request.values() for key in keys.get("Keys", [])])


def condition_failed(exc: BaseException) -> bool:
    cause = exc.__cause__ if exc.__cause__ is not None else exc
    return isinstance(cause, ClientError) and \
        cause.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"
