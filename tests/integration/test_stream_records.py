"""The emulator's `--no-stream-records`: a single-region run's tables keep their declared streams, and
nothing is recorded in them (moto keeps every record, both images, for as long as it runs)."""

from __future__ import annotations

import logging
import uuid

import pytest
from botocore.exceptions import ClientError

from orders.aws import clients
from orders.emulator.replication import Replicator
from orders.emulator.server import EmulatorProcess
from orders.infra import tables
from orders.topology import TABLES_BY_NAME

STREAM = {"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"}


def _records_after_three_writes(emulator: EmulatorProcess) -> tuple[dict, dict, list | str]:
    """A stream-enabled table written three ways (put, update, delete): its description, the item as read
    after the update, and its stream's records from the start (or why they could not be read)."""
    settings = emulator.settings({"ORDERS_ENV": "streams-" + uuid.uuid4().hex[:6]})
    ddb = clients.new_client("dynamodb", settings)
    streams = clients.new_client("dynamodbstreams", settings)
    name = settings.prefix + "t"
    ddb.create_table(TableName=name, KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}],
                     AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}],
                     BillingMode="PAY_PER_REQUEST", StreamSpecification=STREAM)
    ddb.put_item(TableName=name, Item={"k": {"S": "a"}, "n": {"N": "1"}})
    ddb.update_item(TableName=name, Key={"k": {"S": "a"}}, UpdateExpression="SET n = n + :one",
                    ExpressionAttributeValues={":one": {"N": "1"}})
    updated = ddb.get_item(TableName=name, Key={"k": {"S": "a"}}, ConsistentRead=True)["Item"]
    ddb.delete_item(TableName=name, Key={"k": {"S": "a"}})
    table = ddb.describe_table(TableName=name)["Table"]
    shard = streams.describe_stream(StreamArn=table["LatestStreamArn"])["StreamDescription"]["Shards"][0]
    try:
        iterator = streams.get_shard_iterator(StreamArn=table["LatestStreamArn"], ShardId=shard["ShardId"],
                                              ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    except ClientError as exc:
        return table, updated, str(exc)
    return table, updated, streams.get_records(ShardIterator=iterator)["Records"]


@pytest.mark.parametrize("one_process", [False, True], ids=["dynamodb-apart", "one-process"])
@pytest.mark.parametrize("stream_records", [True, False], ids=["recorded", "no-stream-records"])
def test_a_stream_records_every_write_unless_the_emulator_is_told_not_to(stream_records, one_process):
    emulator = EmulatorProcess(with_redis=False, one_process=one_process, stream_records=stream_records)
    emulator.start()
    try:
        table, updated, records = _records_after_three_writes(emulator)
    finally:
        emulator.stop()
    # Declared and described as provisioned either way: `orders infra` sees no drift.
    assert table["StreamSpecification"] == STREAM and table["LatestStreamArn"]
    # The update did what it says either way (without records, moto updates the item it did not copy).
    assert updated == {"k": {"S": "a"}, "n": {"N": "2"}}
    if stream_records:
        assert [r["eventName"] for r in records] == ["INSERT", "MODIFY", "REMOVE"]
        assert records[1]["dynamodb"]["OldImage"]["n"] == {"N": "1"}
        assert records[1]["dynamodb"]["NewImage"]["n"] == {"N": "2"}
    else:  # a reader is told why, where an empty stream would look like a table no one writes
        assert isinstance(records, str) and "ValidationException" in records, records
        assert "--no-stream-records" in records


def test_the_replicator_says_once_that_a_region_records_no_stream(caplog):
    """An emulator started with --no-stream-records among a multi-region run's: the replicator cannot read
    that region's streams, and says so in its log, once, by region and table (an outage stays a debug
    line: it passes)."""
    recording = EmulatorProcess(with_redis=False, one_process=True)
    silent = EmulatorProcess(with_redis=False, one_process=True, stream_records=False)
    try:
        for emulator in (recording, silent):
            emulator.start()
        env = "repl-" + uuid.uuid4().hex[:6]
        regions = [recording.settings({"AWS_DEFAULT_REGION": "us-east-1", "ORDERS_ENV": env}),
                   silent.settings({"AWS_DEFAULT_REGION": "us-west-2", "ORDERS_ENV": env})]
        spec = TABLES_BY_NAME["stock"]
        for settings in regions:
            clients.new_client("dynamodb", settings).create_table(
                **tables.table_definition(spec, spec.table_name(settings)))
        replicator = Replicator(regions, tables=("stock",), delay=0.0)
        with caplog.at_level(logging.WARNING, logger="orders.emulator.replication"):
            replicator.step()
            replicator.step()
    finally:
        recording.stop()
        silent.stop()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith("region us-west-2, table stock: its stream cannot be read")
    assert "--no-stream-records" in warnings[0]
