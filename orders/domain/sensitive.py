"""The order's sensitive fields, their sealed form (an envelope's text) and their masked forms.

Three fields never travel or rest in clear: the payment token, the contact (email, phone)
and the shipping address. At the door each is sealed on its own (orders.aws.field_crypto:
a KMS data key, AES-GCM) into an envelope whose text is

    ofe1.<wrapped data key>.<nonce>.<ciphertext and tag>    (each part base64url, unpadded)

or, in a deployment of several regions (docs/multi-region.md), the data key wrapped under each
region's key, named by region, so that any region opens it while another is down:

    ofe2.<region>:<wrapped data key>,<region>:<wrapped data key>....<nonce>.<ciphertext and tag>

and only the step that needs a field opens it, in memory (docs/security.md). The envelope's
additional authenticated data names the order and the field (`binding`), so a ciphertext
copied to another order or another field fails to open. Operators see masked forms only.
Plain Python: no AWS here.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from orders.domain.errors import FailureCategory, PermanentError

#: The envelope's version: a later format gets another prefix, and readers keep the old one.
#: ofe1 has one wrap of the data key (the sealing region's); ofe2 one per region, named.
ENVELOPE_VERSION = "ofe1"
REGIONAL_ENVELOPE_VERSION = "ofe2"
ENVELOPE_VERSIONS = (ENVELOPE_VERSION, REGIONAL_ENVELOPE_VERSION)
#: The most regions an ofe2 envelope names (a deployment has two or three).
MAX_WRAPS = 8
#: The longest envelope text accepted. The largest address seals to about 1.4 KB; a wrapped
#: 256-bit data key is about 250 characters (KMS's blob of 184 bytes on AWS; 96 on moto), so
#: even MAX_WRAPS wraps leave room to spare.
MAX_SEALED_CHARS = 12_000
SEALED_KEY = "sealed"
_PART = r"[A-Za-z0-9_-]+"
_WRAP = rf"[a-z0-9-]{{1,32}}:{_PART}"
ENVELOPE_PATTERN = re.compile(rf"\A(?:{ENVELOPE_VERSION}\.{_PART}"
                              rf"|{REGIONAL_ENVELOPE_VERSION}\.{_WRAP}(?:,{_WRAP}){{0,{MAX_WRAPS - 1}}})"
                              rf"\.{_PART}\.{_PART}\Z")


class Field(StrEnum):
    """A sensitive field, named by its path in the order's JSON (the KMS encryption context's `field`)."""

    PAYMENT_TOKEN = "payment.token"
    CONTACT = "contact"
    SHIPPING_ADDRESS = "shippingAddress"


SENSITIVE_FIELDS = tuple(Field)


class UnreadableField(PermanentError):
    """A sealed field did not open: tampered with, copied from another order or field, or its key is gone."""

    category = FailureCategory.INVALID_INPUT
    reason = "unreadable-field"


@dataclass(frozen=True)
class Sealed:
    """A sensitive value as the order carries it: the envelope's text, never the value."""

    text: str

    def to_json(self) -> dict[str, str]:
        return {SEALED_KEY: self.text}

    def __repr__(self) -> str:  # an envelope is long and tells a reader nothing
        return f"Sealed(<{len(self.text)} chars>)"


@dataclass(frozen=True)
class Envelope:
    """The parts of a sealed value: the data key as KMS wrapped it, the AES-GCM nonce, the ciphertext.

    `wraps` is empty in an ofe1 envelope, whose one wrap is `wrapped_key` (made by the sealing
    region's key, unnamed); in an ofe2 envelope it holds (region, wrapped key) for each region
    that wrapped the data key, the sealing region's first, which is also `wrapped_key`.
    """

    wrapped_key: bytes
    nonce: bytes
    ciphertext: bytes
    wraps: tuple[tuple[str, bytes], ...] = ()

    @classmethod
    def regional(cls, wraps: tuple[tuple[str, bytes], ...], nonce: bytes, ciphertext: bytes) -> Envelope:
        """An ofe2 envelope: the data key wrapped in each region of `wraps`, the sealer's first."""
        return cls(wraps[0][1], nonce, ciphertext, wraps)

    @property
    def version(self) -> str:
        return REGIONAL_ENVELOPE_VERSION if self.wraps else ENVELOPE_VERSION

    def text(self) -> str:
        if self.wraps:
            key = ",".join(f"{region}:{_b64(wrapped)}" for region, wrapped in self.wraps)
        else:
            key = _b64(self.wrapped_key)
        return ".".join((self.version, key, _b64(self.nonce), _b64(self.ciphertext)))

    @classmethod
    def parse(cls, text: str) -> Envelope:
        """The envelope of `text`; UnreadableField if it is not one (the text is never quoted)."""
        if not is_envelope(text):
            raise UnreadableField("not a sealed field (ofe1 or ofe2 envelope)")
        version, key, *rest = text.split(".")
        try:
            nonce, ciphertext = (_unb64(p) for p in rest)
            if version == ENVELOPE_VERSION:
                return cls(_unb64(key), nonce, ciphertext)
            wraps = tuple((region, _unb64(wrapped)) for region, _, wrapped in
                          (pair.partition(":") for pair in key.split(",")))
        except (binascii.Error, ValueError):
            raise UnreadableField("a sealed field's envelope is not base64url") from None
        if len({region for region, _ in wraps}) < len(wraps):
            raise UnreadableField("a sealed field's envelope names a region twice")
        return cls.regional(wraps, nonce, ciphertext)

    def aad(self, order_id: str, field: Field) -> bytes:
        """The additional data this envelope's ciphertext is bound to (its version's `binding`)."""
        return binding(order_id, field, self.version)


def is_envelope(value: Any) -> bool:
    """Whether `value` has the shape of an envelope's text (length checked before the pattern)."""
    return isinstance(value, str) and len(value) <= MAX_SEALED_CHARS and bool(ENVELOPE_PATTERN.match(value))


def sealed_value(value: Any) -> Sealed | None:
    """`{"sealed": "ofe1..."}` (or ofe2) as a Sealed value; None for anything else (in clear, or junk)."""
    if isinstance(value, dict) and set(value) == {SEALED_KEY} and is_envelope(value[SEALED_KEY]):
        return Sealed(value[SEALED_KEY])
    return None


def looks_sealed(value: Any) -> bool:
    """Whether `value` claims to be sealed (has the `sealed` key), well formed or not."""
    return isinstance(value, dict) and SEALED_KEY in value


def binding(order_id: str, field: Field, version: str = ENVELOPE_VERSION) -> bytes:
    """The AES-GCM additional data of a field's ciphertext: opening it elsewhere fails (or as
    another version: an ofe2 envelope cut down to an ofe1 does not open)."""
    return f"{version}|{order_id}|{field.value}".encode()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def mask_email(email: str) -> str:
    """`alice@example.com` -> `a***@example.com`: enough for an operator to tell customers apart."""
    local, at, domain = email.rpartition("@")
    return f"{local[:1]}***@{domain}" if at and local else "***"


def mask_phone(phone: str) -> str:
    """`+44 7700 900123` -> `***23`: the last two digits only."""
    digits = [c for c in phone if c.isdigit()]
    return "***" + "".join(digits[-2:])


def mask_token(token: str) -> str:
    """`tok_visa` -> `tok_…visa`: the method's prefix and the last four characters."""
    prefix, underscore, rest = token.partition("_")
    head = prefix + underscore if underscore else ""
    return f"{head}…{(rest or token)[-4:]}"
