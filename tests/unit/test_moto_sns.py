"""The emulator's SNS delivery to another region's emulator (orders.emulator.moto_sns): where a queue ARN
goes, and the attributes raw delivery gives SQS."""

from __future__ import annotations

from orders.emulator.moto_sns import Target, sqs_attributes, target_for

PEERS = {"us-west-2": "http://127.0.0.1:5002/"}


def test_a_queue_of_a_peer_s_region_goes_to_that_peer_by_its_url_there():
    assert target_for("arn:aws:sqs:us-west-2:123456789012:e-notifications-replica", PEERS) == Target(
        "http://127.0.0.1:5002", "us-west-2", "http://127.0.0.1:5002/123456789012/e-notifications-replica")


def test_a_queue_of_a_region_no_peer_serves_stays_with_moto():
    assert target_for("arn:aws:sqs:us-east-1:123456789012:e-notifications", PEERS) is None
    assert target_for("arn:aws:lambda:us-west-2:123456789012:function:f", PEERS) is None
    assert target_for("not-an-arn", PEERS) is None


def test_raw_delivery_gives_sns_attributes_as_sqs_attributes():
    found = sqs_attributes({"event_type": {"Type": "String", "Value": "OrderShipped"},
                            "schema_version": {"Type": "Number", "Value": 1},
                            "blob": {"Type": "Binary", "Value": b"\x00"}})
    assert found == {"event_type": {"DataType": "String", "StringValue": "OrderShipped"},
                     "schema_version": {"DataType": "Number", "StringValue": "1"},
                     "blob": {"DataType": "Binary", "BinaryValue": b"\x00"}}
    assert sqs_attributes(None) == {}
