"""Client-side envelope encryption of the sensitive fields (orders.aws.field_crypto) on the emulator's KMS:
a sealed field opens only for its order and field, KMS is called per data key and not per order, key
rotation leaves sealed orders readable, the door seals and still recognises a duplicate, and one order
runs through real workers with its fields sealed wherever it is stored or sent."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from celery import signals

from orders import place_order
from orders.aws import clients, field_crypto
from orders.aws.field_crypto import FieldCrypto, forget_keys
from orders.aws.gateway import Gateway
from orders.aws.stock import set_stock
from orders.domain.order import validate
from orders.domain.sensitive import Field, UnreadableField
from orders.runtime.dependencies import dependencies
from orders.steps.admission import place
from orders.topology import ENVIRONMENT_KEY, TABLES_BY_NAME
from tasks.orders import placement
from tests.helpers import wait_for
from tests.integration.pipeline_support import make_order, pipeline, wait_final


def kms_calls() -> dict[str, int]:
    return dict(field_crypto.kms_calls)


def spent(before: dict[str, int]) -> dict[str, int]:
    return {call: n - before[call] for call, n in field_crypto.kms_calls.items()}


def test_a_sealed_field_opens_only_for_its_order_and_field_and_never_once_tampered_with(infra):
    crypto = FieldCrypto(infra)
    sealed = crypto.seal("ord-a", Field.PAYMENT_TOKEN, "tok_visa")
    assert sealed.startswith("ofe1.") and "tok_visa" not in sealed
    assert crypto.open("ord-a", Field.PAYMENT_TOKEN, sealed) == "tok_visa"
    wrapped, nonce, ciphertext = sealed.split(".")[1:]
    flipped = ciphertext[:-2] + ("A" if ciphertext[-2] != "A" else "B") + ciphertext[-1]
    attempts = {
        "another order": ("ord-b", Field.PAYMENT_TOKEN, sealed),
        "another field": ("ord-a", Field.CONTACT, sealed),  # KMS refuses the context, AES-GCM the binding
        "ciphertext changed": ("ord-a", Field.PAYMENT_TOKEN, f"ofe1.{wrapped}.{nonce}.{flipped}"),
        "wrapped key changed": ("ord-a", Field.PAYMENT_TOKEN,
                                f"ofe1.{wrapped[:-4]}AAAA.{nonce}.{ciphertext}"),
        "not an envelope": ("ord-a", Field.PAYMENT_TOKEN, "ofe1.a.b.c"),
    }
    for name, (order_id, field, text) in attempts.items():
        with pytest.raises(UnreadableField):
            crypto.open(order_id, field, text)
            pytest.fail(f"{name}: opened")


def test_an_envelope_copied_into_another_order_does_not_open_there(infra):
    crypto = FieldCrypto(infra)
    victim = validate(make_order()).sealed(crypto.seal)
    thief = validate(make_order()).sealed(crypto.seal)
    stolen = {**thief.to_json(), "contact": victim.to_json()["contact"]}
    with pytest.raises(UnreadableField):
        validate(stolen).opened(Field.CONTACT, crypto.open)
    assert validate(thief.to_json()).opened(Field.CONTACT, crypto.open)["email"] == "pat@example.com"


def test_kms_is_called_per_data_key_not_per_order(infra, monkeypatch):
    """N orders sealed by one process and opened by another cost 3 GenerateDataKey and 3 Decrypt."""
    forget_keys()
    before, crypto = kms_calls(), FieldCrypto(infra)
    orders = [validate(make_order()).sealed(crypto.seal) for _ in range(200)]
    assert spent(before) == {"GenerateDataKey": 3, "Encrypt": 0, "Decrypt": 0}
    forget_keys()  # as a worker process: no key of the sealer's
    for order in orders:
        for field in Field:
            order.opened(field, crypto.open)
    assert spent(before) == {"GenerateDataKey": 3, "Encrypt": 0, "Decrypt": 3}
    monkeypatch.setattr(field_crypto, "DATA_KEY_MAX_USES", 50)
    forget_keys()
    for n in range(100):
        crypto.seal(f"ord-{n}", Field.CONTACT, "{}")
    assert spent(before)["GenerateDataKey"] == 3 + 2  # a data key seals 50 values, then a new one


def rotate(settings: Any) -> list[str]:
    """Rotate the environment's key on demand (KMS takes its id, not its alias); its rotations' types."""
    kms = clients.client("kms", settings)
    key_id = kms.describe_key(KeyId=ENVIRONMENT_KEY.alias_name(settings))["KeyMetadata"]["KeyId"]
    kms.rotate_key_on_demand(KeyId=key_id)
    return [r["RotationType"] for r in kms.list_key_rotations(KeyId=key_id)["Rotations"]]


def test_orders_sealed_before_a_key_rotation_open_after_it(infra):
    crypto = FieldCrypto(infra)
    before = validate(make_order()).sealed(crypto.seal)
    assert rotate(infra) == ["ON_DEMAND"]
    forget_keys()  # nothing cached: KMS unwraps the old data keys after the rotation
    after = validate(make_order()).sealed(crypto.seal)
    for order in (before, after):
        assert order.opened(Field.SHIPPING_ADDRESS, crypto.open)["postalCode"] == "12345"


def test_the_door_seals_and_a_second_placement_of_the_same_order_is_a_duplicate(infra, caplog):
    set_stock(infra, "SKU-1", 10)
    order = make_order()
    (first,), _, _ = placement(order)
    (second,), _, _ = placement(order)
    assert first["contact"] != second["contact"] and first["fingerprint"] == second["fingerprint"]
    for secret in ("tok_visa", "pat@example.com", "5555550100", "1 Main St", "Springfield"):
        assert secret not in json.dumps([first, second])
    deps = dependencies(infra)
    created = place(deps, first, "2026-01-01T00:00:00.000000Z", "c1")
    again = place(deps, second, "2026-01-01T00:00:00.000000Z", "c2")
    assert not created.conflict and not again.conflict and again.record.version == created.record.version
    other = dict(order, contact={"email": "someone.else@example.com"})
    (conflicting,), _, _ = placement(other)
    assert place(deps, conflicting, "2026-01-01T00:00:00.000000Z", "c3").conflict
    # A place message sent in clear, past the door: sealed by the step before it is recorded.
    clear = make_order()
    with caplog.at_level(logging.WARNING, logger="orders.steps.admission"):
        recorded = place(deps, clear, "2026-01-01T00:00:00.000000Z", "c4").record
    assert recorded is not None and recorded.content is not None
    assert "pat@example.com" not in json.dumps(recorded.content) and "in clear" in caplog.text
    assert "pat@example.com" not in caplog.text


def raw_items(settings: Any, table: str) -> str:
    """Every item of a table as DynamoDB returns it, as one text."""
    name = TABLES_BY_NAME[table].table_name(settings)
    return json.dumps(clients.client("dynamodb", settings).scan(TableName=name)["Items"])


def test_an_order_runs_with_its_fields_sealed_wherever_stored_or_sent_and_across_a_rotation(infra):
    set_stock(infra, "SKU-1", 10)
    unique = make_order()["orderId"].removeprefix("ord-")
    secrets = {"email": f"fe-{unique}@example.com", "phone": f"+1555{int(unique, 16) % 10**7:07d}",
               "line1": f"{unique} Secret Lane"}
    order = make_order(contact={"email": secrets["email"], "phone": secrets["phone"]},
                       shippingAddress={"line1": secrets["line1"], "city": "Springfield",
                                        "postalCode": "12345", "country": "US"})
    bodies: list[str] = []

    def record(body: Any = None, **_: Any) -> None:
        bodies.append(json.dumps(body, default=str))

    signals.before_task_publish.connect(record, weak=False, dispatch_uid="tests.field_encryption")
    try:
        place_order.delay(order)
        rotate(infra)  # while the order waits in its queue
        forget_keys()
        before = kms_calls()
        with pipeline():
            assert wait_final(infra, order["orderId"])["status"] == "completed"
            wait_for(lambda: "OrderShipped" in (dependencies(infra).orders.load(order["orderId"])
                                                .notifications), timeout=60)
    finally:
        signals.before_task_publish.disconnect(dispatch_uid="tests.field_encryption")
    # Charge, shipping and notifications each unwrapped their field's data key (cached after).
    assert spent(before) == {"GenerateDataKey": 0, "Encrypt": 0, "Decrypt": 3}
    stored = raw_items(infra, "orders") + raw_items(infra, "gateway")
    for text in (*bodies, stored):
        for secret in (*secrets.values(), "tok_visa"):
            assert secret not in text
    assert Gateway(infra).lookup(f"{order['orderId']}:charge")["token"] == "tok_…visa"
