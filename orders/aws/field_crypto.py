"""Client-side envelope encryption of the order's sensitive fields: KMS data keys, AES-GCM.

Sealing a field takes a data key (KMS GenerateDataKey, AES_256, under the environment's key
orders.topology.ENVIRONMENT_KEY, with the encryption context {app, env, field}) and
encrypts the plaintext with AES-256-GCM, a fresh 96-bit nonce each time, with the order id
and the field as additional data (orders.domain.sensitive.binding). The envelope carries
the data key as KMS wrapped it; opening asks KMS to unwrap it (Decrypt, with the same
encryption context: IAM grants each step's role the one field it needs, by
kms:EncryptionContext:field) and decrypts in memory.

Data keys are cached so that KMS is called almost never on an order's path: the sealer
reuses one data key per field for DATA_KEY_MAX_AGE seconds or DATA_KEY_MAX_USES seals,
whichever comes first; the opener keeps up to OPENED_KEYS_MAX unwrapped keys for
OPENED_KEY_MAX_AGE seconds. Both caches are per process (a forked child starts empty) and
keyed by the settings' identity (environment, endpoint, credentials) and the field, so a
key unwrapped under one role or field is never used for another. docs/security.md counts
what N orders cost in KMS calls.

With several regions (Settings.regions), a field sealed in one region must open in another
while the first is down (docs/multi-region.md, "Sealed fields across regions"): the data key
made in this process's region is also wrapped by KMS Encrypt under each other region's key
(once per data key, through that region's KMS, bounded at 2 s: orders.aws.clients.
OTHER_REGION_CONFIG), and the envelope (ofe2) carries every wrap by region, as the AWS
Encryption SDK's multi-keyring does. A region that does not answer is left out of that data
key's wraps and the key is replaced after PARTIAL_KEY_MAX_AGE instead. Opening uses this
region's wrap, or else another region's through that region's KMS.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from orders.aws import clients
from orders.aws.tables import aws_errors
from orders.domain.errors import RetryableError
from orders.domain.sensitive import Envelope, Field, UnreadableField
from orders.settings import Settings
from orders.topology import ENVIRONMENT_KEY

#: A data key seals for at most 5 minutes (as SQS's own SSE reuses its data keys by default)...
DATA_KEY_MAX_AGE = 300.0
#: ...and at most this many values: far below AES-GCM's bound for random nonces (2**32 per key).
DATA_KEY_MAX_USES = 10_000
#: Unwrapped data keys an opener keeps (a worker sees the keys of a few sealing processes)...
OPENED_KEYS_MAX = 256
#: ...each for at most this long, so that revoking a role's grant takes effect within it.
OPENED_KEY_MAX_AGE = 300.0
#: A data key that some region's KMS did not wrap is replaced this soon (a new one tries that
#: region again), so that few values are sealed without a region's wrap while it is out.
PARTIAL_KEY_MAX_AGE = 30.0
NONCE_BYTES = 12
APP = "orders"

logger = logging.getLogger(__name__)


class _NoDataKeys(logging.Filter):
    """Redacts botocore's DEBUG lines that carry a KMS body with a data key in clear (GenerateDataKey's
    and Decrypt's answers, Encrypt's request): a worker run at DEBUG must not write keys to its logs."""

    def filter(self, record: logging.LogRecord) -> bool:
        if "Plaintext" in record.getMessage():
            record.msg, record.args = "(a KMS request or answer with a data key in clear: not logged)", ()
        return True


#: The loggers that write requests' parameters and responses' bodies (botocore.endpoint, .parsers).
for _name in ("botocore.endpoint", "botocore.parsers"):
    logging.getLogger(_name).addFilter(_NoDataKeys())


@dataclass
class _DataKey:
    plaintext: bytes
    wrapped: bytes
    made: float
    uses: int = 0
    #: With several regions: (region, wrapped) for this region and each region that wrapped it.
    wraps: tuple[tuple[str, bytes], ...] = ()
    #: Every region of the deployment wrapped it.
    complete: bool = True

    @property
    def max_age(self) -> float:
        return DATA_KEY_MAX_AGE if self.complete else PARTIAL_KEY_MAX_AGE

    def envelope(self, nonce: bytes, ciphertext: bytes) -> Envelope:
        if self.wraps:
            return Envelope.regional(self.wraps, nonce, ciphertext)
        return Envelope(self.wrapped, nonce, ciphertext)


_lock = threading.Lock()
#: Held while a sealer makes a data key (its KMS calls: 2 s more when a region does not answer),
#: apart from `_lock` so that opening is never held up by it.
_seal_lock = threading.Lock()
_sealing: dict[tuple[Any, ...], _DataKey] = {}
_opened: OrderedDict[tuple[Any, ...], tuple[bytes, float]] = OrderedDict()
#: KMS calls made by this process, by operation (benchmarks and tests read it).
kms_calls: dict[str, int] = {"GenerateDataKey": 0, "Encrypt": 0, "Decrypt": 0}
#: When each region's KMS last did not answer a wrap (by identity and region): the other fields'
#: data keys made within PARTIAL_KEY_MAX_AGE leave it out without waiting for it again.
_out: dict[tuple[Any, ...], float] = {}


def _forget_keys() -> None:
    _sealing.clear()
    _opened.clear()
    _out.clear()


os.register_at_fork(after_in_child=_forget_keys)


def forget_keys() -> None:
    """Drop every cached data key of this process (the next seal or open asks KMS)."""
    with _seal_lock, _lock:
        _forget_keys()


def encryption_context(settings: Settings, field: Field) -> dict[str, str]:
    """What KMS binds a data key to, and what IAM conditions a role's use of the key on."""
    return {"app": APP, "env": settings.env, "field": field.value}


class FieldCrypto:
    """The steps' `Fields` (orders.steps.ports): seal at the door, open in the one step that needs a field."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.alias = ENVIRONMENT_KEY.alias_name(settings)
        self.identity = (settings.env, settings.region, clients.endpoint("kms", settings),
                         settings.access_key_id, self.alias)

    @property
    def kms(self) -> Any:
        return clients.client("kms", self.settings)

    def seal(self, order_id: str, field: Field, plaintext: str) -> str:
        """The envelope text of `plaintext`, bound to `order_id` and `field`."""
        key = self._data_key(field)
        nonce = os.urandom(NONCE_BYTES)
        envelope = key.envelope(nonce, b"")
        ciphertext = AESGCM(key.plaintext).encrypt(nonce, plaintext.encode(), envelope.aad(order_id, field))
        return replace(envelope, ciphertext=ciphertext).text()

    def open(self, order_id: str, field: Field, sealed: str) -> str:
        """The plaintext of an envelope sealed for `order_id` and `field`; UnreadableField if it is not."""
        envelope = Envelope.parse(sealed)
        key = self._opened_key(field, envelope)
        try:
            aad = envelope.aad(order_id, field)
            plaintext = AESGCM(key).decrypt(envelope.nonce, envelope.ciphertext, aad)
        except (InvalidTag, ValueError):
            raise UnreadableField(f"order {order_id}: {field.value} did not open (tampered with, "
                                  "or sealed for another order or field)") from None
        return plaintext.decode()

    def _data_key(self, field: Field) -> _DataKey:
        """This process's data key for `field`, a new one once the current is too old or too used."""
        slot = (*self.identity, field)
        with _seal_lock:
            key = _sealing.get(slot)
            if key is None or key.uses >= DATA_KEY_MAX_USES or time.monotonic() - key.made > key.max_age:
                key = _sealing[slot] = self._generate(field)
            key.uses += 1
            return key

    def _generate(self, field: Field) -> _DataKey:
        with aws_errors():
            made = self.kms.generate_data_key(KeyId=self.alias, KeySpec="AES_256",
                                              EncryptionContext=encryption_context(self.settings, field))
        kms_calls["GenerateDataKey"] += 1
        key = _DataKey(made["Plaintext"], made["CiphertextBlob"], time.monotonic())
        others = self.settings.other_regions
        if others:
            wraps = [(str(self.settings.region), key.wrapped)]
            wraps += [(region, wrapped) for region in others
                      if (wrapped := self._wrap_in(region, field, key.plaintext)) is not None]
            key.wraps, key.complete = tuple(wraps), len(wraps) == len(others) + 1
        return key

    def _wrap_in(self, region: str, field: Field, plaintext: bytes) -> bytes | None:
        """The data key wrapped under `region`'s key (KMS Encrypt there); None if that KMS did not answer,
        now or within PARTIAL_KEY_MAX_AGE."""
        out = (*self.identity, region)
        since = _out.get(out)
        if since is not None and time.monotonic() - since < PARTIAL_KEY_MAX_AGE:
            return None
        try:
            wrapped: bytes = self._kms_in(region).encrypt(
                KeyId=self.alias, Plaintext=plaintext,
                EncryptionContext=encryption_context(self.settings, field))["CiphertextBlob"]
        except (BotoCoreError, ClientError) as exc:
            logger.warning("KMS in %s did not wrap a data key for %s (%s): values sealed for the next "
                           "%.0f s open in the other regions only", region, field.value,
                           type(exc).__name__, PARTIAL_KEY_MAX_AGE)
            _out[out] = time.monotonic()
            return None
        kms_calls["Encrypt"] += 1
        return wrapped

    def _kms_in(self, region: str) -> Any:
        return clients.client("kms", self.settings.for_region(region), clients.OTHER_REGION_CONFIG)

    def _opened_key(self, field: Field, envelope: Envelope) -> bytes:
        """The data key of `envelope`: this region's wrap if it has one (ofe1: its only wrap), else
        another region's, through that region's KMS (the next one when a region does not answer)."""
        if not envelope.wraps:
            return self._unwrapped(field, envelope.wrapped_key, None)
        wraps = dict(envelope.wraps)
        if self.settings.region in wraps:
            return self._unwrapped(field, wraps[self.settings.region], None)
        reachable = [region for region in wraps if region in self.settings.other_regions]
        if not reachable:
            raise UnreadableField(f"{field.value}: sealed in regions this deployment does not have")
        for region in reachable[:-1]:
            try:
                return self._unwrapped(field, wraps[region], region)
            except RetryableError as exc:  # that region did not answer; a refusal is final
                logger.warning("KMS in %s did not unwrap a data key for %s (%s): trying the next region",
                               region, field.value, type(exc).__name__)
        return self._unwrapped(field, wraps[reachable[-1]], reachable[-1])

    def _unwrapped(self, field: Field, wrapped: bytes, region: str | None) -> bytes:
        """The data key KMS wrapped as `wrapped` for `field` (cached; KMS Decrypt in `region`, default
        this process's, on a miss)."""
        slot = (*self.identity, field, wrapped)
        with _lock:
            found = _opened.get(slot)
            if found is not None and time.monotonic() - found[1] <= OPENED_KEY_MAX_AGE:
                _opened.move_to_end(slot)
                return found[0]
        key = self._decrypt(field, wrapped, self.kms if region is None else self._kms_in(region))
        with _lock:
            _opened[slot] = (key, time.monotonic())
            while len(_opened) > OPENED_KEYS_MAX:
                _opened.popitem(last=False)
        return key

    def _decrypt(self, field: Field, wrapped: bytes, kms: Any) -> bytes:
        try:
            with aws_errors():
                # KeyId: KMS refuses a blob of another key, and IAM scopes the call to this key's ARN.
                answer = kms.decrypt(CiphertextBlob=wrapped, KeyId=self.alias,
                                     EncryptionContext=encryption_context(self.settings, field))
        except Exception as exc:
            if _refused_blob(exc.__cause__):
                raise UnreadableField(f"{field.value}: KMS did not unwrap its data key "
                                      f"({type(exc.__cause__).__name__})") from None
            raise
        with _lock:
            kms_calls["Decrypt"] += 1
        plaintext: bytes = answer["Plaintext"]
        return plaintext


#: KMS's answers to a blob it will never unwrap (tampered with, another context or key): no retry helps.
REFUSED_BLOB = ("InvalidCiphertextException", "IncorrectKeyException")


def _refused_blob(cause: BaseException | None) -> bool:
    response = getattr(cause, "response", None) or {}
    return response.get("Error", {}).get("Code") in REFUSED_BLOB
