"""Two fixes to moto's DynamoDB for a multi-threaded emulator (applied by orders.emulator).

moto's TransactWriteItems deep-copies every table it touches before writing and,
when a condition fails, restores the copies: with moto's threaded server that
undoes other requests' writes made meanwhile (measured: stock oversold and
undersold by concurrent reservations), and the copy costs ~1 s a transaction
once a table holds 2,000 items. Here a transaction checks every condition first
(nothing is written if one fails, as on AWS), then applies its writes, undoing
only the items it touched if a write is refused. The emulator runs DynamoDB
requests one at a time (CountingMiddleware), which makes each one atomic.
"""

from __future__ import annotations

import copy
from typing import Any


def check(backend: Any, items: list[dict[str, Any]]) -> list[tuple[Any, Any, Any]]:
    """Per-item results of a transaction's conditions, in moto's error format."""
    from moto.dynamodb.comparisons import get_filter_expression
    from moto.dynamodb.exceptions import MultipleTransactionsException, TooManyTransactionsException

    if len(items) > 100:
        raise TooManyTransactionsException()
    seen: set[tuple[str, str]] = set()
    errors: list[tuple[str | None, str | None, Any]] = []
    for item in items:
        kind, op = next(iter(item.items()))
        table = backend.get_table(op["TableName"])
        key = _key(table, op["Item"] if kind == "Put" else op["Key"])
        marker = (op["TableName"], str(sorted(key.items())))
        if marker in seen:
            raise MultipleTransactionsException()
        seen.add(marker)
        current = backend.get_item(op["TableName"], key)
        condition = op.get("ConditionExpression")
        if condition and not get_filter_expression(
                condition, op.get("ExpressionAttributeNames"),
                op.get("ExpressionAttributeValues")).expr(current):
            old = current.to_json()["Attributes"] if current and \
                op.get("ReturnValuesOnConditionCheckFailure") == "ALL_OLD" else None
            errors.append(("ConditionalCheckFailed", "The conditional request failed", old))
        else:
            errors.append((None, None, None))
    return errors


def transact_write_items(backend: Any, items: list[dict[str, Any]]) -> None:
    """Check, then apply; on a refused write, put the touched items back as they were."""
    from moto.dynamodb.exceptions import TransactionCanceledException

    errors = check(backend, items)
    if any(code for code, _, _ in errors):
        raise TransactionCanceledException(errors)
    touched: list[tuple[str, dict[str, Any], Any]] = []
    try:
        for item in items:
            kind, op = next(iter(item.items()))
            if kind == "ConditionCheck":
                continue
            table = backend.get_table(op["TableName"])
            key = _key(table, op["Item"] if kind == "Put" else op["Key"])
            touched.append((op["TableName"], key, copy.deepcopy(backend.get_item(op["TableName"], key))))
            _apply(backend, kind, op, key)
    except Exception as exc:
        for table_name, key, before in reversed(touched):
            _restore(backend, table_name, key, before)
        raise TransactionCanceledException([(type(exc).__name__, str(exc), None)] * len(items)) from exc


def _key(table: Any, attrs: dict[str, Any]) -> dict[str, Any]:
    key = {table.hash_key_attr: attrs[table.hash_key_attr]}
    if table.range_key_attr:
        key[table.range_key_attr] = attrs[table.range_key_attr]
    return key


def _apply(backend: Any, kind: str, op: dict[str, Any], key: dict[str, Any]) -> None:
    names, values = op.get("ExpressionAttributeNames"), op.get("ExpressionAttributeValues")
    if kind == "Put":
        backend.put_item(op["TableName"], op["Item"])
    elif kind == "Delete":
        backend.delete_item(op["TableName"], key)
    else:
        backend.update_item(op["TableName"], key, update_expression=op["UpdateExpression"],
                            expression_attribute_names=names, expression_attribute_values=values)


def _restore(backend: Any, table_name: str, key: dict[str, Any], before: Any) -> None:
    if before is None:
        backend.delete_item(table_name, key)
    else:
        backend.put_item(table_name, before.to_json()["Attributes"])


def install() -> None:
    """Replace moto's TransactWriteItems in this process (the emulator's)."""
    from moto.dynamodb.models import DynamoDBBackend

    setattr(DynamoDBBackend, "transact_write_items", transact_write_items)  # noqa: B010 (patching moto)
