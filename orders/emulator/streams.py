"""DynamoDB Streams and item images as the emulator's replicator reads and writes them.

The replicator (orders.emulator.replication) reads every record of a table's stream, compares
item images as DynamoDB compares values (not as they are spelled), and writes on condition
that an item is still the image it last read.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from orders.aws import clients
from orders.settings import Settings
from orders.topology import TABLES_BY_NAME

#: One attempt a call, and short timeouts: a region that does not answer is tried again on the
#: replicator's next pass, and botocore's backoff on one region must not hold up every other one.
CLIENT_CONFIG = Config(retries={"mode": "standard", "total_max_attempts": 1},
                       connect_timeout=2, read_timeout=10)
_clients: dict[tuple[str, str, str | None], Any] = {}

Image = dict[str, Any] | None  # an item in DynamoDB JSON; None: deleted


def canonical(value: Any) -> Any:
    """DynamoDB JSON in one spelling: sets sorted, numbers normalised (to compare images)."""
    if isinstance(value, dict):
        if len(value) == 1 and ("N" in value or "NS" in value):
            (kind, raw), = value.items()
            if kind == "N":
                return {"N": str(Decimal(raw).normalize())}
            return {"NS": sorted(str(Decimal(n).normalize()) for n in raw)}
        if len(value) == 1 and ("SS" in value or "BS" in value):
            (kind, raw), = value.items()
            return {kind: sorted(raw)}
        return {k: canonical(v) for k, v in value.items()}
    if isinstance(value, list):
        return [canonical(v) for v in value]
    return value


def same(a: Image, b: Image) -> bool:
    return canonical(a) == canonical(b)


class StreamReader:
    """The records of one table's stream in one region, from its start, in order, shard by shard."""

    def __init__(self, settings: Settings, table: str):
        self.settings, self.table = settings, table
        self.name = TABLES_BY_NAME[table].table_name(settings)
        self._iterators: dict[str, str | None] | None = None

    def read(self) -> list[dict[str, Any]]:
        """Every record written since the last read (ClientError, BotoCoreError when unreachable).

        A call that fails after others returned records gives back what they returned: their
        iterators have moved past them, so raising would lose them (and the replicator would then
        write into this region on a copy it never saw change). The rest comes with the next read.
        """
        streams = client("dynamodbstreams", self.settings)
        if self._iterators is None:
            self._iterators = self._open(streams)
        records: list[dict[str, Any]] = []
        try:
            for shard, iterator in self._iterators.items():
                while iterator:
                    page = streams.get_records(ShardIterator=iterator)
                    records += page["Records"]
                    self._iterators[shard] = iterator = page.get("NextShardIterator")
                    if not page["Records"]:
                        break
        except (ClientError, BotoCoreError):
            if not records:
                raise
        return records

    def _open(self, streams: Any) -> dict[str, str | None]:
        table = client("dynamodb", self.settings).describe_table(TableName=self.name)["Table"]
        arn = table.get("LatestStreamArn")
        if not arn or not table.get("StreamSpecification", {}).get("StreamEnabled"):
            raise RuntimeError(f"table {self.name} has no stream: provision it (`orders infra up`)")
        shards = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]
        return {s["ShardId"]: streams.get_shard_iterator(StreamArn=arn, ShardId=s["ShardId"],
                                                         ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
                for s in shards}


def client(service: str, settings: Settings) -> Any:
    """The replicator's own client of a region (made once; used by the replicator's thread only)."""
    key = (service, str(settings.region), clients.endpoint(service, settings))
    if key not in _clients:
        session: Any = boto3.session.Session(aws_access_key_id=settings.access_key_id,
                                             aws_secret_access_key=settings.secret_access_key)
        _clients[key] = session.client(service, region_name=settings.region, endpoint_url=key[2],
                                       config=CLIENT_CONFIG)
    return _clients[key]


def unchanged(image: Image, key_attribute: str) -> dict[str, Any]:
    """A condition that holds while the item is exactly `image` (absent when None)."""
    if image is None:
        return {"ConditionExpression": "attribute_not_exists(#k)",
                "ExpressionAttributeNames": {"#k": key_attribute}}
    names = {f"#a{n}": name for n, name in enumerate(image)}
    values = {f":a{n}": value for n, value in enumerate(image.values())}
    return {"ConditionExpression": " AND ".join(f"#a{n} = :a{n}" for n in range(len(image))),
            "ExpressionAttributeNames": names, "ExpressionAttributeValues": values}
