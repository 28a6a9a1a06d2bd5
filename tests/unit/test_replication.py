"""The replicator's pure parts (orders.emulator.replication): stamps, image comparison, conditions."""

from __future__ import annotations

import pytest

from orders.emulator.replication import REPLICATED_TABLES, Replicator, Stamp
from orders.emulator.streams import same, unchanged
from orders.settings import Settings


def test_the_later_write_wins_and_a_tie_is_broken_by_region_the_same_way_everywhere():
    assert Stamp(2, "us-east-1") > Stamp(1, "us-west-2")
    assert Stamp(1, "us-west-2") > Stamp(1, "us-east-1")
    east, west = Stamp(1, "us-east-1"), Stamp(1, "us-west-2")
    assert max(east, west) == max(west, east) == west


def test_images_compare_as_dynamodb_compares_them_not_as_spelled():
    assert same({"n": {"N": "1.0"}, "s": {"SS": ["b", "a"]}}, {"s": {"SS": ["a", "b"]}, "n": {"N": "1"}})
    nested = {"m": {"M": {"l": {"L": [{"NS": ["2", "10"]}]}}}}
    assert same(nested, {"m": {"M": {"l": {"L": [{"NS": ["10", "2.0"]}]}}}})
    assert not same({"n": {"N": "1"}}, {"n": {"S": "1"}})
    assert not same({"n": {"N": "1"}}, None) and same(None, None)


def test_the_condition_names_every_attribute_of_the_expected_image_or_its_absence():
    assert unchanged(None, "pk") == {"ConditionExpression": "attribute_not_exists(#k)",
                                     "ExpressionAttributeNames": {"#k": "pk"}}
    condition = unchanged({"pk": {"S": "o1"}, "status": {"S": "placed"}}, "pk")
    assert condition["ConditionExpression"] == "#a0 = :a0 AND #a1 = :a1"
    assert condition["ExpressionAttributeNames"] == {"#a0": "pk", "#a1": "status"}  # reserved words too
    assert condition["ExpressionAttributeValues"] == {":a0": {"S": "o1"}, ":a1": {"S": "placed"}}


def test_the_replicated_tables_are_the_order_data_and_the_apis_not_the_gateway_nor_the_archive():
    assert set(REPLICATED_TABLES) == {"orders", "stock", "idempotency", "api-keys", "api-orders"}


def test_a_replicator_needs_two_distinct_regions():
    east = Settings(region="us-east-1", endpoint_url="http://127.0.0.1:1")
    with pytest.raises(ValueError, match="two or more distinct regions"):
        Replicator([east, east])
    with pytest.raises(ValueError):
        Replicator([east])
