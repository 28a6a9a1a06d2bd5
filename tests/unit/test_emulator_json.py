"""The emulator's direct JSON for DynamoDB item responses encodes what moto's shape walk would."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from orders.emulator.moto_dynamodb import fast_item_json


def test_bytes_become_base64_and_times_utc_epoch_seconds_to_the_millisecond():
    naive, aware = datetime(2026, 1, 1, 12, 0, 0, 123456), datetime(2026, 1, 1, 12, 0, 0, 123456, tzinfo=UTC)
    assert fast_item_json({"Item": {"b": {"B": b"\x00\xff"}}, "At": naive}, "GetItem") == \
        '{"Item":{"b":{"B":"AP8="}},"At":1767268800.123}'
    assert fast_item_json({"At": aware}, "Query") == '{"At":1767268800.123}'


def test_what_it_cannot_encode_or_does_not_serve_goes_to_the_shape_walk():
    assert fast_item_json({"Item": {"n": Decimal("1")}}, "GetItem") is None
    assert fast_item_json({"Table": {"TableName": "t"}}, "DescribeTable") is None
