"""The order's sensitive fields, their sealed form (an envelope's text) and their masked forms.

Three fields never travel or rest in clear: the payment token, the contact (email, phone)
and the shipping address. At the door each is sealed on its own (orders.aws.field_crypto:
a KMS data key, AES-GCM) into an envelope whose text is

    ofe1.<wrapped data key>.<nonce>.<ciphertext and tag>    (each part base64url, unpadded)

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
ENVELOPE_VERSION = "ofe1"
#: The longest envelope text accepted (the largest address seals to about 1.4 KB; a KMS
#: ciphertext blob is at most 6 KB of base64).
MAX_SEALED_CHARS = 12_000
SEALED_KEY = "sealed"
_PART = r"[A-Za-z0-9_-]+"
ENVELOPE_PATTERN = re.compile(rf"\A{ENVELOPE_VERSION}\.{_PART}\.{_PART}\.{_PART}\Z")


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
    """The parts of a sealed value: the data key as KMS wrapped it, the AES-GCM nonce, the ciphertext."""

    wrapped_key: bytes
    nonce: bytes
    ciphertext: bytes

    def text(self) -> str:
        parts = (self.wrapped_key, self.nonce, self.ciphertext)
        return ".".join((ENVELOPE_VERSION, *(_b64(p) for p in parts)))

    @classmethod
    def parse(cls, text: str) -> Envelope:
        """The envelope of `text`; UnreadableField if it is not one (the text is never quoted)."""
        if not is_envelope(text):
            raise UnreadableField("not a sealed field (ofe1 envelope)")
        try:
            wrapped, nonce, ciphertext = (_unb64(p) for p in text.split(".")[1:])
        except (binascii.Error, ValueError):
            raise UnreadableField("a sealed field's envelope is not base64url") from None
        return cls(wrapped, nonce, ciphertext)


def is_envelope(value: Any) -> bool:
    """Whether `value` has the shape of an envelope's text (length checked before the pattern)."""
    return isinstance(value, str) and len(value) <= MAX_SEALED_CHARS and bool(ENVELOPE_PATTERN.match(value))


def sealed_value(value: Any) -> Sealed | None:
    """`{"sealed": "ofe1..."}` as a Sealed value; None for anything else (a value in clear, or junk)."""
    if isinstance(value, dict) and set(value) == {SEALED_KEY} and is_envelope(value[SEALED_KEY]):
        return Sealed(value[SEALED_KEY])
    return None


def looks_sealed(value: Any) -> bool:
    """Whether `value` claims to be sealed (has the `sealed` key), well formed or not."""
    return isinstance(value, dict) and SEALED_KEY in value


def binding(order_id: str, field: Field) -> bytes:
    """The AES-GCM additional data of a field's ciphertext: opening it elsewhere fails."""
    return f"{ENVELOPE_VERSION}|{order_id}|{field.value}".encode()


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
