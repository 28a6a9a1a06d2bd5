"""The plaintext scan can fail: a value planted anywhere, however wrapped, is found."""

from __future__ import annotations

import base64
import json
from urllib.parse import urlencode

from tests.plaintext import findings

SECRETS = {"email": "zq7x1@example.com", "token": "tok_visa", "address": "417 Quillfeather Lane"}


def celery_on_sqs(args: list[object]) -> str:
    """An SQS SendMessage request as kombu sends a task: JSON, whose body is base64 of an envelope
    whose body is base64 of the arguments."""
    envelope = {"body": base64.b64encode(json.dumps([args, {}, {}]).encode()).decode(),
                "headers": {"argsrepr": "(order ord-1: 1 line, 10.00 USD, standard)"}}
    return json.dumps({"QueueUrl": "http://sqs/orders",
                       "MessageBody": base64.b64encode(json.dumps(envelope).encode()).decode()})


def test_a_planted_plaintext_is_found_in_an_item_a_wire_body_and_a_form() -> None:
    item = {"pk": {"S": "ord-1"}, "order": {"M": {"contact": {"M": {"email": {"S": "ZQ7X1@example.com"}}}}}}
    sources = {
        "item": item,
        "wire": celery_on_sqs([{"payment": {"token": "tok_visa"}}]),
        "sns": urlencode({"Action": "Publish", "Message": json.dumps({"address": "417 Quillfeather Lane"})}),
        "clean": celery_on_sqs([{"payment": {"token": {"sealed": "ofe1.AAAA.BBBB.CCCC"}}}]),
    }
    assert sorted(findings(SECRETS, sources)) == ["item: email", "sns: address", "wire: token"]


def test_masked_and_sealed_forms_are_not_findings() -> None:
    sources = {"log": "order ord-1: told z***@example.com, paid with tok_…visa",
               "ciphertext": base64.b64encode(bytes(range(256))).decode()}
    assert findings(SECRETS, sources) == []
