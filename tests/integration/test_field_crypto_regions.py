"""Sealed fields across regions (docs/multi-region.md, "Sealed fields across regions"): two emulator
processes, one per region, each provisioned as `orders infra up` does with ORDERS_REGIONS. A value
sealed in one region opens in the other while the first does not answer (its emulator SIGSTOPped:
its port accepts connections and nothing answers), a value sealed while a region was out opens
there once it is back, a tampered wrap opens nowhere, and one region still writes ofe1.

The sealed text is handed from one region's FieldCrypto to the other's as the replicated order
record carries it (global tables copy the item unchanged); each region's process has its own
settings (`Settings.for_region`), so its own KMS client, caches and identity.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import socket
import uuid
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

from orders.aws import clients, field_crypto
from orders.aws.field_crypto import FieldCrypto, forget_keys
from orders.domain.errors import PermanentError
from orders.domain.sensitive import Envelope, Field, UnreadableField
from orders.infra import provisioning
from orders.settings import Settings
from tests.helpers import paused, region_emulators, regions_variable

A, B = "us-east-1", "us-west-2"
TOKEN = "tok_visa4242"

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def emulators() -> Iterator[dict[str, Any]]:
    with region_emulators(A, B) as found:
        yield found


@pytest.fixture(scope="module")
def deployment(emulators: dict[str, Any]) -> dict[str, Settings]:
    """Each region's settings of one environment over both regions, provisioned in both."""
    primary = emulators[A].settings({"ORDERS_ENV": f"k{uuid.uuid4().hex[:10]}",
                                     "ORDERS_REGIONS": regions_variable(emulators)})
    provisioning.in_every_region(primary, provisioning.up)
    return {region: primary.for_region(region) for region in primary.regions}


@pytest.fixture(autouse=True)
def fresh_keys() -> Iterator[None]:
    forget_keys()  # each seal and open below asks KMS, as a new process would
    yield
    forget_keys()


def wraps(sealed: str) -> dict[str, bytes]:
    return dict(Envelope.parse(sealed).wraps)


def spent(before: dict[str, int]) -> dict[str, int]:
    return {call: n - before[call] for call, n in field_crypto.kms_calls.items()}


def test_a_value_sealed_in_one_region_opens_in_the_other_while_the_first_does_not_answer(deployment,
                                                                                          emulators):
    before = dict(field_crypto.kms_calls)
    sealed = FieldCrypto(deployment[A]).seal("ord-1", Field.PAYMENT_TOKEN, TOKEN)
    assert sealed.startswith("ofe2.") and set(wraps(sealed)) == {A, B}
    assert spent(before) == {"GenerateDataKey": 1, "Encrypt": 1, "Decrypt": 0}

    forget_keys()
    with paused(emulators[A].endpoint):
        assert FieldCrypto(deployment[B]).open("ord-1", Field.PAYMENT_TOKEN, sealed) == TOKEN
    assert FieldCrypto(deployment[A]).open("ord-1", Field.PAYMENT_TOKEN, sealed) == TOKEN


def test_a_value_sealed_while_a_region_is_out_opens_there_once_it_is_back(deployment, emulators, caplog,
                                                                          monkeypatch):
    west = FieldCrypto(deployment[B])
    with caplog.at_level(logging.WARNING, logger=field_crypto.__name__), paused(emulators[A].endpoint):
        sealed = west.seal("ord-2", Field.SHIPPING_ADDRESS, '{"line1": "1 Main St"}')
        contact = west.seal("ord-2", Field.CONTACT, '{"email": "pat@example.com"}')
    assert set(wraps(sealed)) == set(wraps(contact)) == {B}  # A did not answer: left out of these data keys
    # ...asked once: the next field's data key, made within PARTIAL_KEY_MAX_AGE, does not wait for it again.
    # Only field_crypto's lines: the metrics thread may also warn that A's CloudWatch did not answer.
    assert [r.getMessage().split(" (")[0] for r in caplog.records if r.name == field_crypto.__name__] == [
        f"KMS in {A} did not wrap a data key for shippingAddress"]

    forget_keys()
    before = dict(field_crypto.kms_calls)
    opened = FieldCrypto(deployment[A]).open("ord-2", Field.SHIPPING_ADDRESS, sealed)
    assert opened == '{"line1": "1 Main St"}'  # through B's KMS: A has no wrap of its own
    assert spent(before) == {"GenerateDataKey": 0, "Encrypt": 0, "Decrypt": 1}

    # While a region is missing, the data key is replaced sooner; the next one, A back, wraps there too.
    monkeypatch.setattr(field_crypto, "PARTIAL_KEY_MAX_AGE", 0.0)
    again = west.seal("ord-3", Field.SHIPPING_ADDRESS, "{}")
    assert set(wraps(again)) == {A, B}


def test_another_region_s_kms_is_asked_once_and_not_retried(deployment):
    """A KMS that accepts the connection and never answers: one connection, no retry (botocore's
    standard mode would otherwise try again, each attempt bounded by the read timeout)."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        there = replace(deployment[A], region_endpoints=((A, deployment[A].endpoint_url),
                                                         (B, f"http://127.0.0.1:{port}")))
        sealed = FieldCrypto(there).seal("ord-6", Field.PAYMENT_TOKEN, TOKEN)
        silent.setblocking(False)
        accepted = []
        with contextlib.suppress(BlockingIOError):
            while True:
                accepted.append(silent.accept()[0])
        for connection in accepted:
            connection.close()
    assert set(wraps(sealed)) == {A} and len(accepted) == 1


def test_a_tampered_or_misnamed_wrap_opens_nowhere(deployment):
    sealed = FieldCrypto(deployment[A]).seal("ord-4", Field.CONTACT, '{"email": "pat@example.com"}')
    envelope = Envelope.parse(sealed)
    found = dict(envelope.wraps)

    def opened_in(region: str, changed: dict[str, bytes]) -> str:
        text = Envelope.regional(tuple(changed.items()), envelope.nonce, envelope.ciphertext).text()
        return FieldCrypto(deployment[region]).open("ord-4", Field.CONTACT, text)

    flipped = found[B][:-1] + bytes([found[B][-1] ^ 0xFF])
    with pytest.raises(UnreadableField):  # KMS in B refuses it; A's intact wrap is not tried instead
        opened_in(B, {A: found[A], B: flipped})
    # A wrap named as another region's: AWS refuses it as IncorrectKeyException (UnreadableField),
    # moto as AccessDeniedException (a PermanentError): either way the order ends, never retried.
    for region, changed in ((B, {B: found[A]}), (A, {A: found[B]})):
        with pytest.raises(PermanentError):
            opened_in(region, changed)
            pytest.fail(f"{changed} opened in {region}")
    # Cut down to ofe1 around A's wrap (the same data key): the version is bound, it does not open.
    cut = Envelope(found[A], envelope.nonce, envelope.ciphertext).text()
    with pytest.raises(UnreadableField):
        FieldCrypto(deployment[A]).open("ord-4", Field.CONTACT, cut)
    assert FieldCrypto(deployment[B]).open("ord-4", Field.CONTACT, sealed) == '{"email": "pat@example.com"}'


def test_one_region_still_writes_ofe1_with_one_kms_call(emulators):
    alone = emulators[A].settings({"ORDERS_ENV": f"k{uuid.uuid4().hex[:10]}", "AWS_DEFAULT_REGION": A})
    provisioning.up(alone)
    before = dict(field_crypto.kms_calls)
    crypto = FieldCrypto(alone)
    sealed = crypto.seal("ord-5", Field.PAYMENT_TOKEN, TOKEN)
    assert sealed.startswith("ofe1.") and len(sealed.split(".")) == 4 and Envelope.parse(sealed).wraps == ()
    assert crypto.open("ord-5", Field.PAYMENT_TOKEN, sealed) == TOKEN
    assert spent(before) == {"GenerateDataKey": 1, "Encrypt": 0, "Decrypt": 1}


def test_a_wrap_naming_a_region_outside_the_deployment_is_unreadable_and_asks_no_kms(deployment):
    """A hostile ofe2 envelope whose wraps name regions not in ORDERS_REGIONS (each could become a client's
    region and endpoint): refused before any KMS client is made or called, not retried."""
    sealed = FieldCrypto(deployment[A]).seal("ord-7", Field.PAYMENT_TOKEN, TOKEN)
    envelope = Envelope.parse(sealed)
    forged = Envelope.regional((("attacker-1", envelope.wraps[1][1]), ("eu-west-1", envelope.wraps[0][1])),
                               envelope.nonce, envelope.ciphertext).text()
    before = dict(field_crypto.kms_calls)
    with pytest.raises(UnreadableField, match="regions this deployment does not have"):
        FieldCrypto(deployment[B]).open("ord-7", Field.PAYMENT_TOKEN, forged)
    assert spent(before) == {"GenerateDataKey": 0, "Encrypt": 0, "Decrypt": 0}
    assert "attacker-1" not in {key[1] for key in clients._clients}


def test_no_data_key_reaches_a_log_line_even_at_debug(deployment, caplog):
    """botocore logs each request's parameters and each response's body at DEBUG: with several regions
    the Encrypt request carries the data key in clear, and GenerateDataKey's answer always does."""
    with caplog.at_level(logging.DEBUG):
        sealed = FieldCrypto(deployment[A]).seal("ord-8", Field.CONTACT, '{"email": "pat@example.com"}')
        FieldCrypto(deployment[B]).open("ord-8", Field.CONTACT, sealed)
    [key] = [k for k in field_crypto._sealing.values()]
    text = "\n".join(record.getMessage() for record in caplog.records)
    assert "kms" in text.lower()  # botocore did log the calls...
    for form in (base64.b64encode(key.plaintext).decode(), repr(key.plaintext)):
        assert form not in text  # ...never the data key
