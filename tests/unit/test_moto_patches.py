"""What the emulator's patches to moto rely on in moto's own code: a moto upgrade that breaks it fails
here, by name, not as a wrong answer in a pipeline run."""

from __future__ import annotations

import ast
import inspect

from orders.emulator.moto_dynamodb import ItemsUncopied


def _functions_copying(module_source: str) -> dict[str, list[str]]:
    """Each function of a module that calls copy.deepcopy, with the names it assigns the copies to."""
    found: dict[str, list[str]] = {}
    for function in ast.walk(ast.parse(module_source)):
        if not isinstance(function, ast.FunctionDef):
            continue
        for node in ast.walk(function):
            if isinstance(node, ast.Call) and ast.unparse(node.func) == "copy.deepcopy":
                found.setdefault(function.name, [])
        for node in ast.walk(function):
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call) \
                    and ast.unparse(node.value.func) == "copy.deepcopy":
                found[function.name] += [ast.unparse(target) for target in node.targets]
    return found


def test_moto_copies_an_updated_item_only_for_its_stream_record():
    """--no-stream-records hands update_item the item itself where it asks for a copy: right only while
    the copy goes nowhere but the stream record (which records nothing then)."""
    from moto.dynamodb import models

    source = inspect.getsource(models)
    # The module's `copy` is replaced whole (ItemsUncopied): it may use nothing of it but deepcopy.
    used = {ast.unparse(node) for node in ast.walk(ast.parse(source)) if isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name) and node.value.id == "copy"}
    assert used == {"copy.deepcopy"}, used
    copying = _functions_copying(source)
    # transact_write_items is moto's, replaced by the emulator's (orders.emulator.moto_dynamodb), and copies
    # tables, not Items.
    assert set(copying) == {"update_item", "transact_write_items"}, copying
    assert copying["update_item"] == ["orig_item"]
    update_item = next(f for f in ast.walk(ast.parse(source))
                       if isinstance(f, ast.FunctionDef) and f.name == "update_item")
    reads = [node for node in ast.walk(update_item)
             if isinstance(node, ast.Name) and node.id == "orig_item" and isinstance(node.ctx, ast.Load)]
    calls = [ast.unparse(node) for node in ast.walk(update_item) if isinstance(node, ast.Call)
             and any(isinstance(a, ast.Name) and a.id == "orig_item" for a in node.args)]
    assert len(reads) == 1 and calls == ["table.stream_shard.add(orig_item, item)"], calls


def test_anything_but_an_item_is_still_copied():
    from moto.dynamodb.models.dynamo_type import DynamoType, Item

    item = Item(DynamoType({"S": "k"}), None, {"k": {"S": "k"}, "m": {"M": {"n": {"N": "1"}}}})
    assert ItemsUncopied.deepcopy(item) is item
    tables = {"t": {"k": item}}
    copied = ItemsUncopied.deepcopy(tables)
    assert copied == tables and copied is not tables and copied["t"]["k"] is not item


def test_an_emulator_that_records_streams_refuses_a_process_whose_moto_records_none(monkeypatch):
    """`--no-stream-records` patches moto's classes, which are the process's: a second emulator of the process
    that should record (a multi-region one, whose replicator reads the records) would record nothing, and
    its replicator read nothing, silently. It refuses to start instead."""
    import pytest
    from moto.dynamodb.models.table import StreamShard

    from orders.emulator import moto_dynamodb
    from orders.emulator.server import AwsEmulator

    assert moto_dynamodb.records_streams()
    monkeypatch.setattr(StreamShard, "add", moto_dynamodb._record_nothing)  # as drop_stream_records leaves it
    assert not moto_dynamodb.records_streams()
    with pytest.raises(RuntimeError, match="records no DynamoDB stream"):
        AwsEmulator(stream_records=True).start()
