"""The HTTP API's keys: random, shown once, stored as their SHA-256 digest with the client they name.

A key is `ok_` and 43 URL-safe characters (`secrets.token_urlsafe(32)`: 256 random
bits). The `api-keys` table keeps, per key, its digest (the table's key, so a
request's key is found by one GetItem), the client's name, a hint (the key's
first characters, for an operator to tell two keys of a client apart), when it
was created and whether it is revoked. The key itself is stored nowhere.

Why a plain SHA-256 and no slow KDF (bcrypt, scrypt, Argon2): those protect
secrets people choose, which a dictionary can guess; nobody can enumerate 2^256
random keys, however fast each guess is, so a stolen table gives no key. An
unsalted digest is also what lets a key be looked up directly, and hashing is
cheap enough to run on every request.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from typing import Any

from orders.aws import clients
from orders.aws.tables import aws_errors, from_item, table_name, to_item
from orders.domain.times import now_iso
from orders.settings import Settings

TABLE = "api-keys"
PREFIX = "ok_"
#: What a key looks like; anything else is refused without a lookup.
KEY_PATTERN = re.compile(r"\Aok_[A-Za-z0-9_-]{43}\Z")
#: A client's name: it scopes the client's orders and idempotency keys (no spaces: see IdempotencyKeys).
CLIENT_PATTERN = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}\Z")
#: The key's prefix and first 7 random characters (42 of its 256 bits): enough to tell keys apart.
HINT_LENGTH = 10


class InvalidClientName(ValueError):
    """A client name the API cannot use."""


@dataclass(frozen=True)
class ApiKey:
    """What is stored about one key (never the key)."""

    client: str
    hint: str
    created_at: str
    revoked_at: str | None = None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> ApiKey:
        found = from_item(item)
        return cls(found["client"], found["hint"], found["createdAt"], found.get("revokedAt"))


def new_key() -> str:
    """A fresh random key."""
    return PREFIX + secrets.token_urlsafe(32)


def digest(key: str) -> str:
    """The key's SHA-256, as stored."""
    return hashlib.sha256(key.encode()).hexdigest()


def check_client_name(client: str) -> str:
    """`client` if it is a usable name; else InvalidClientName saying what is allowed."""
    if not CLIENT_PATTERN.match(client):
        raise InvalidClientName(f"client name {client[:80]!r}: use 1 to 64 letters, digits, '_', '.', "
                                "'@' or '-', starting with a letter or digit")
    return client


class ApiKeys:
    """The API keys of one environment (its `api-keys` table)."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.table = table_name(settings, TABLE)

    def _ddb(self) -> Any:
        return clients.client("dynamodb", self.settings)

    def create(self, client: str) -> tuple[str, ApiKey]:
        """A new key for `client` (a client may have several: rotate by creating, then revoking)."""
        key = new_key()
        record = ApiKey(check_client_name(client), key[:HINT_LENGTH], now_iso())
        item = {"keyHash": digest(key), "client": record.client, "hint": record.hint,
                "createdAt": record.created_at}
        with aws_errors():
            self._ddb().put_item(TableName=self.table, Item=to_item(item),
                                 ConditionExpression="attribute_not_exists(keyHash)")
        return key, record

    def client_of(self, key: str) -> str | None:
        """The client a key names; None if it is malformed, unknown or revoked."""
        if not KEY_PATTERN.match(key):
            return None
        wanted = digest(key)
        with aws_errors():
            # Consistent: a revocation holds from the next request on.
            item = self._ddb().get_item(TableName=self.table, Key=to_item({"keyHash": wanted}),
                                        ConsistentRead=True).get("Item")
        # The lookup is by digest, so no timing tells anything about a key; compare_digest anyway,
        # so that no code path compares key material with ==.
        if item is None or not hmac.compare_digest(item["keyHash"]["S"], wanted):
            return None
        record = ApiKey.from_item(item)
        return None if record.revoked else record.client

    def all(self) -> list[ApiKey]:
        """Every key of the environment, revoked ones included, oldest first."""
        pages = self._ddb().get_paginator("scan").paginate(
            TableName=self.table, ConsistentRead=True,
            ProjectionExpression="keyHash, #c, hint, createdAt, revokedAt",
            ExpressionAttributeNames={"#c": "client"})
        with aws_errors():
            items = [item for page in pages for item in page.get("Items", [])]
        return sorted((ApiKey.from_item(item) for item in items), key=lambda k: k.created_at)

    def revoke(self, client: str, hint: str | None = None) -> list[ApiKey]:
        """Revoke `client`'s live keys (only the one whose hint is `hint`, if given); those revoked."""
        names = {"#c": "client"}
        condition = "#c = :client AND attribute_not_exists(revokedAt)"
        values: dict[str, Any] = {":client": client}
        if hint is not None:
            condition += " AND hint = :hint"
            values[":hint"] = hint
        pages = self._ddb().get_paginator("scan").paginate(
            TableName=self.table, ConsistentRead=True, FilterExpression=condition,
            ExpressionAttributeNames=names, ExpressionAttributeValues=to_item(values))
        revoked = []
        with aws_errors():
            for item in (item for page in pages for item in page.get("Items", [])):
                at = now_iso()
                self._ddb().update_item(TableName=self.table, Key={"keyHash": item["keyHash"]},
                                        UpdateExpression="SET revokedAt = :at",
                                        ConditionExpression="attribute_exists(keyHash)",
                                        ExpressionAttributeValues=to_item({":at": at}))
                revoked.append(ApiKey.from_item({**item, **to_item({"revokedAt": at})}))
        return revoked
