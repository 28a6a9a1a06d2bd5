"""Fixes to moto's DynamoDB for a multi-threaded, busy emulator (applied by orders.emulator.server).

moto's TransactWriteItems deep-copies every table it touches before writing and,
when a condition fails, restores the copies: with moto's threaded server that
undoes other requests' writes made meanwhile (measured: stock oversold and
undersold by concurrent reservations), and the copy costs ~1 s a transaction
once a table holds 2,000 items. Here a transaction checks every condition first
(nothing is written if one fails, as on AWS), then applies its writes, undoing
only the items it touched if a write is refused. The emulator runs DynamoDB
requests one at a time (CountingMiddleware), which makes each one atomic.

moto 5.2 turns every response into JSON by walking botocore's output shape,
member by member: an order record (nested maps and lists) cost 6-7 ms of CPU a
GetItem that way, half the emulator's time in a pipeline run. An item-data
response is already DynamoDB JSON once moto has built it, so `fast_item_json`
dumps it directly, encoding bytes and times as the shape walk would.

moto also checks the 400 KB item limit after each attribute it stores while
building an item, re-measuring every attribute stored so far: quadratic in the
attributes, a third of a PutItem. `build_item` measures the item once, against
the same limit.

moto parses an UpdateExpression twice per UpdateItem (the handler and the backend),
then deep-copies the tree to validate it: 1.9 ms of CPU a call for the pipeline's
expressions, which are a handful of strings. `ParsedExpressions` parses each string
once and hands the validator a fresh tree from its pickle (0.13 ms); the tree the
handler reads is never changed (the validator works on its copy).

moto validates an update's tree with ten processors, each a depth-first walk that
asks the processor for its map of node types at every node it visits, and the
processor builds that map anew each time: a third of the DynamoDB process's CPU
went to validating in a pipeline run at 20/s (py-spy). `install_processing_maps`
has each processor build its map once; the walk itself is moto's.

moto accepts UpdateTable's SSESpecification and ignores it, so a table made
before the environment's KMS key stayed unencrypted after `orders infra up`
(which switches a live table's key with UpdateTable, as AWS allows).
`apply_encryption` applies it.

moto keeps every record of a table's stream, both images, for as long as it runs, and builds
each one as the write is made (both images to JSON, then the record dumped to size it): a
stream-enabled table kept 11.3 KB an update against 4.9 KB without, and a pipeline run at
20 orders/s grew the DynamoDB process by 6.6 MB a second. Only the replicator of a
multi-region stack reads the streams (orders.emulator.replication); a single-region run
starts its emulator with `--no-stream-records` (`drop_stream_records`): the streams stay
declared and described as provisioned, nothing is recorded in them, and the backend's update_item no
longer deep-copies the item it updates for a record's old image (the UpdateItem handler's own copy,
for the answer's return values, stays) (`python -m benchmarks.emulator_calls`:
one order's calls 33.6-40.5 -> 28.1-32.4 ms of the DynamoDB process's CPU).
"""

from __future__ import annotations

import base64
import copy
import json
import pickle
import threading
from datetime import UTC, datetime
from typing import Any

#: moto's item size limit (AWS documents 400 KB; moto measured it between 409 and 410 KB).
MAX_ITEM_BYTES = 405_000
#: The operations whose responses are items in DynamoDB JSON (no renamed members).
ITEM_DATA_OPERATIONS = frozenset({
    "GetItem", "PutItem", "UpdateItem", "DeleteItem", "BatchGetItem", "Query", "Scan", "TransactGetItems",
})


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


def _plain_json(value: Any) -> Any:
    """What the shape walk makes of the non-JSON values in moto's results (json protocol)."""
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")  # B and BS attributes
    if isinstance(value, datetime):  # the protocol's unixtimestamp: UTC, in milliseconds
        utc = value if value.tzinfo else value.replace(tzinfo=UTC)
        return int(utc.timestamp() * 1000) / 1000
    raise TypeError(f"not JSON: {type(value).__name__}")


def fast_item_json(result: Any, operation: str) -> str | None:
    """The response body of an item-data operation, or None where the shape walk must do it."""
    if operation not in ITEM_DATA_OPERATIONS:
        return None
    try:
        return json.dumps(result, separators=(",", ":"), default=_plain_json)
    except (TypeError, ValueError):
        return None


def build_item(self: Any, hash_key: Any, range_key: Any, attrs: dict[str, Any]) -> None:
    """moto's Item.__init__, with the item's size measured once instead of once per attribute."""
    from moto.dynamodb.exceptions import ItemSizeTooLarge
    from moto.dynamodb.models.dynamo_type import DynamoType, LimitedSizeDict
    from moto.dynamodb.models.utilities import bytesize

    self.hash_key = hash_key
    self.range_key = range_key
    values = {key: DynamoType(value) for key, value in attrs.items()}
    if sum(bytesize(key) + value.size() for key, value in values.items()) > MAX_ITEM_BYTES:
        raise ItemSizeTooLarge
    self.attrs = LimitedSizeDict()
    dict.update(self.attrs, values)  # LimitedSizeDict re-measures on __setitem__ only


def apply_encryption(handler: Any) -> None:
    """UpdateTable's SSESpecification applied as AWS applies it (moto 5.2 accepts it and ignores it):
    a KMS key (the given one, else DynamoDB's AWS managed key) or, disabled, the AWS owned key."""
    sse = handler.body.get("SSESpecification")
    if sse is None:
        return
    table = handler.dynamodb_backend.get_table(handler.body["TableName"])
    if not sse.get("Enabled"):
        table.sse_specification = None
        return
    key = sse.get("KMSMasterKeyId") or table._get_default_encryption_key(table.account_id, table.region_name)
    table.sse_specification = {"Enabled": True, "SSEType": "KMS", "KMSMasterKeyId": key}


class ParsedExpressions:
    """UpdateExpression trees by their text, parsed once; their copies come from a pickle."""

    def __init__(self, parse: Any, deepcopy: Any, limit: int = 512):
        self._parse = parse
        self._deepcopy = deepcopy
        self._limit = limit
        self._trees: dict[str, Any] = {}
        self._pickles: dict[int, tuple[Any, bytes]] = {}  # id(tree) -> (tree, its pickle)
        self._lock = threading.Lock()

    def parse(self, expression: str) -> Any:
        """The tree of `expression` (a parse error raises, and is not remembered)."""
        tree = self._trees.get(expression)
        if tree is not None:
            return tree
        tree = self._parse(expression)
        try:
            blob = pickle.dumps(tree)
        except Exception:  # noqa: BLE001 - a tree that does not pickle is copied the usual way
            return tree
        with self._lock:
            if len(self._trees) >= self._limit:
                self._trees.clear()
                self._pickles.clear()
            self._trees[expression] = tree
            self._pickles[id(tree)] = (tree, blob)
        return tree

    def copy(self, node: Any, memo: Any = None) -> Any:
        """What `copy.deepcopy` gives, from the pickle when `node` is a remembered tree."""
        known = self._pickles.get(id(node))
        if known is not None and known[0] is node:
            return pickle.loads(known[1])  # noqa: S301 - our own pickle of our own tree
        return self._deepcopy(node, memo)


def install() -> None:
    """Patch moto's DynamoDB in this process (the emulator's): transactions, response JSON, UpdateTable's
    encryption."""
    from moto.dynamodb.models import DynamoDBBackend
    from moto.dynamodb.models.dynamo_type import Item
    from moto.dynamodb.responses import DynamoHandler, DynamoResult

    setattr(DynamoDBBackend, "transact_write_items", transact_write_items)  # noqa: B010 (patching moto)
    install_parsed_expressions()
    install_processing_maps()
    setattr(Item, "__init__", build_item)  # noqa: B010 (patching moto)
    update_table = DynamoHandler.update_table

    def update_table_with_encryption(self: Any) -> Any:
        apply_encryption(self)
        return update_table(self)

    setattr(DynamoHandler, "update_table", update_table_with_encryption)  # noqa: B010 (patching moto)
    walk_shape = DynamoResult.execute_result

    def execute_result(self: Any, context: Any) -> Any:
        body = fast_item_json(self.result, context.operation_model.name)
        if body is None:
            return walk_shape(self, context)
        return 200, {"Content-Type": "application/x-amz-json-1.0"}, body

    setattr(DynamoResult, "execute_result", execute_result)  # noqa: B010 (patching moto)


def drop_stream_records() -> None:
    """Record nothing in any table's stream in this process (the emulator's `--no-stream-records`):
    a write to a stream-enabled table costs what it does on a table without one, nor does a Lambda
    mapped to a stream get anything (the emulator maps none). A reader asking for a shard iterator
    is refused with `NO_STREAM_RECORDS`, where reading nothing would look like a table no one writes
    (the multi-region replicator says so in its log).

    moto's update_item also deep-copies the item it updates, before the update, for that record's
    old image alone (about half of the 9% of the DynamoDB process's CPU that copying items took at
    10 orders/s, py-spy): that module's `copy` becomes one that hands an Item back as it is
    (`ItemsUncopied`)."""
    from moto.dynamodb import models
    from moto.dynamodb.models.table import StreamShard
    from moto.dynamodbstreams.models import DynamoDBStreamsBackend

    setattr(StreamShard, "add", _record_nothing)  # noqa: B010 (patching moto)
    setattr(models, "copy", ItemsUncopied)  # noqa: B010
    setattr(DynamoDBStreamsBackend, "get_shard_iterator", _refuse_to_read)  # noqa: B010


def records_streams() -> bool:
    """Whether this process's moto records DynamoDB streams: False once `drop_stream_records` ran in it,
    which no emulator of the process can undo (moto's classes are the process's)."""
    from moto.dynamodb.models.table import StreamShard

    return getattr(StreamShard, "add", None) is not _record_nothing


#: What `--no-stream-records` does, as `orders emulator --help` and the server's own help say it.
NO_STREAM_RECORDS_HELP = ("Record nothing in DynamoDB streams (still declared and described): for a run that "
                          "reads none; moto keeps every record, both images, for as long as it runs.")
#: What a stream reader is told by an emulator started with `--no-stream-records`.
NO_STREAM_RECORDS = ("this emulator records nothing in DynamoDB streams (started with --no-stream-records, "
                     "as a single-region run starts it): start it without that option to read them")


def _refuse_to_read(self: Any, *args: Any, **kwargs: Any) -> Any:
    from moto.core.exceptions import JsonRESTError

    raise JsonRESTError("ValidationException", NO_STREAM_RECORDS)


def _record_nothing(self: Any, old: Any, new: Any) -> None:
    """StreamShard.add, recording nothing."""


class ItemsUncopied:
    """`copy` as moto's DynamoDB backend module uses it, with an Item not copied: the module copies an
    Item only in update_item, for its stream record's old image (tests/unit/test_moto_patches.py holds
    it to that)."""

    @staticmethod
    def deepcopy(value: Any, memo: dict[int, Any] | None = None) -> Any:
        from moto.dynamodb.models.dynamo_type import Item

        return value if isinstance(value, Item) else copy.deepcopy(value, memo)


def install_parsed_expressions() -> None:
    """UpdateExpressionParser.make remembers its trees; the validator copies them from a pickle."""
    from moto.dynamodb.parsing import validators
    from moto.dynamodb.parsing.expressions import UpdateExpressionParser  # type: ignore[attr-defined]

    if isinstance(getattr(validators.deepcopy, "__self__", None), ParsedExpressions):
        return  # installed already in this process
    make = UpdateExpressionParser.make
    parsed = ParsedExpressions(make, validators.deepcopy)
    setattr(UpdateExpressionParser, "make", staticmethod(parsed.parse))  # noqa: B010 (patching moto)
    setattr(validators, "deepcopy", parsed.copy)  # noqa: B010


def install_processing_maps() -> None:
    """Each of moto's tree processors builds its map of node types once, not at every node it visits
    (every `_processing_map` of moto's returns the same bound methods each time it is asked)."""
    from moto.dynamodb.parsing.ast_nodes import DepthFirstTraverser  # type: ignore[attr-defined]

    def nodes_to_be_processed(self: Any) -> tuple[type, ...]:
        return tuple(_processing_map(self))

    def process(self: Any, node: Any) -> Any:
        for kind, processor in _processing_map(self).items():
            if isinstance(node, kind):
                return processor(node)
        return None

    setattr(DepthFirstTraverser, "nodes_to_be_processed", nodes_to_be_processed)  # noqa: B010 (patching moto)
    setattr(DepthFirstTraverser, "process", process)  # noqa: B010


def _processing_map(processor: Any) -> dict[type, Any]:
    """The processor's map of node types, built on its first node and kept for its life (one validation)."""
    kept = processor.__dict__.get("_orders_processing_map")
    if kept is None:
        kept = processor.__dict__["_orders_processing_map"] = processor._processing_map()
    return kept  # type: ignore[no-any-return]
