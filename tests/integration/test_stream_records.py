"""The emulator's `--no-stream-records`: a single-region run's tables keep their declared streams, and
nothing is recorded in them (moto keeps every record, both images, for as long as it runs)."""

from __future__ import annotations

import uuid

import pytest

from orders.aws import clients
from orders.emulator.server import EmulatorProcess

STREAM = {"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"}


def _records_after_three_writes(emulator: EmulatorProcess) -> tuple[dict, dict, list]:
    """A stream-enabled table written three ways (put, update, delete): its description, the item as read
    after the update, and its stream's records from the start."""
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
    iterator = streams.get_shard_iterator(StreamArn=table["LatestStreamArn"], ShardId=shard["ShardId"],
                                          ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
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
    expected = ["INSERT", "MODIFY", "REMOVE"] if stream_records else []
    assert [r["eventName"] for r in records] == expected
    if stream_records:
        assert records[1]["dynamodb"]["OldImage"]["n"] == {"N": "1"}
        assert records[1]["dynamodb"]["NewImage"]["n"] == {"N": "2"}
