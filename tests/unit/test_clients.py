"""The platform's boto3 clients send what botocore's own would, byte for byte and signed alike, with a
query-protocol body url-encoded once instead of at every read (orders.aws.clients.encode_form_once)."""

from __future__ import annotations

import datetime
from typing import Any

import boto3
import botocore.auth
import botocore.awsrequest
import pytest

from orders.aws import clients
from orders.settings import Settings

ENDPOINT = "http://127.0.0.1:9"
SETTINGS = Settings.from_env({"AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": ENDPOINT}
                             ).with_credentials("AKIDEXAMPLE", "secret")
ENTRIES = [{"Id": str(i), "Message": '{"default": "ünïcode & spaces=+/", "sqs": "a+b/c=="}',
            "MessageStructure": "json",
            "MessageAttributes": {"event_type": {"DataType": "String", "StringValue": "OrderShipped"}}}
           for i in range(3)]


class Sent(Exception):
    """Carries the request as it would have gone out."""

    def __init__(self, request: Any):
        super().__init__("sent")
        self.request = request


def capture(**kwargs: Any) -> None:
    raise Sent(kwargs["request"])


def sent(client: Any, call: str, **params: Any) -> Any:
    client.meta.events.register("before-send", capture)
    with pytest.raises(Sent) as got:
        getattr(client, call)(**params)
    return got.value.request


@pytest.fixture
def fixed_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Both requests signed at the same instant, so their signatures can be compared."""
    at = datetime.datetime(2026, 12, 7, 3, 0, 0)
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: at)


def shipped(service: str) -> Any:
    return boto3.session.Session(aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="secret").client(
        service, region_name="us-east-1", endpoint_url=ENDPOINT, config=clients.CLIENT_CONFIG)


@pytest.mark.parametrize(("service", "call", "params"), [
    ("sns", "publish_batch", {"TopicArn": "arn:aws:sns:us-east-1:123456789012:t",
                              "PublishBatchRequestEntries": ENTRIES}),
    ("sns", "publish", {"TopicArn": "arn:aws:sns:us-east-1:123456789012:t", "Message": "a b&c=d+e"}),
    ("sts", "get_caller_identity", {}),
    ("dynamodb", "get_item", {"TableName": "t", "Key": {"pk": {"S": "ord-1"}}}),  # JSON: left alone
])
def test_a_request_is_the_same_bytes_and_signature_as_botocores_own(fixed_time, service, call, params):
    ours = sent(clients.new_client(service, SETTINGS), call, **params)
    theirs = sent(shipped(service), call, **params)
    assert ours.body == theirs.body and ours.url == theirs.url
    assert ours.headers["Authorization"] == theirs.headers["Authorization"]
    assert ours.headers["Content-Type"] == theirs.headers["Content-Type"]


def test_a_query_body_is_url_encoded_once_where_botocore_encodes_it_twice(monkeypatch):
    encoded = {"n": 0}
    real = botocore.awsrequest.urlencode

    def counting(*args: Any, **kwargs: Any) -> str:
        encoded["n"] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(botocore.awsrequest, "urlencode", counting)
    params = {"TopicArn": "arn:aws:sns:us-east-1:123456789012:t", "PublishBatchRequestEntries": ENTRIES}
    sent(shipped("sns"), "publish_batch", **params)
    theirs, encoded["n"] = encoded["n"], 0
    sent(clients.new_client("sns", SETTINGS), "publish_batch", **params)
    assert (encoded["n"], theirs) == (1, 2)


@pytest.mark.parametrize(("service", "call", "params"), [
    ("sns", "publish", {"TopicArn": "arn:aws:sns:us-east-1:123456789012:t", "Message": "a b&c=d+e"}),
    ("sqs", "receive_message", {"QueueUrl": f"{ENDPOINT}/123456789012/orders", "MaxNumberOfMessages": 10}),
])
def test_a_presigned_url_is_botocores_own(fixed_time, service, call, params):
    """A presigned URL carries the body's parameters in its query string: the body must reach the signer
    as botocore leaves it (encoded once, it could not be moved there: JSONDecodeError)."""
    ours = clients.new_client(service, SETTINGS).generate_presigned_url(call, Params=params)
    assert ours == shipped(service).generate_presigned_url(call, Params=params)
    assert "X-Amz-Signature=" in ours
