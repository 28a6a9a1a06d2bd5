"""Idempotency keys of `POST /orders`, as payment APIs have them: one key, one order, one answer.

A client that may send a request twice (a timeout, a double click) sends an
`Idempotency-Key` header. The first request with a key claims it (a conditional
write: concurrent duplicates cannot both win) with a digest of its body and the
order id it places; once placed, its answer is stored with the claim. Later
requests with the key get:

- the stored answer (nothing placed again) if their body is the same;
- 409 if their body differs (the key was used for another order);
- 409 with Retry-After while the first request is still being answered.

A request that could not be answered (SQS or DynamoDB unavailable: 503) leaves
the claim open, and a retry with the same key places under the same order id
(placing is idempotent by order id). A claim whose request died mid-way is open
again after STALE_CLAIM_SECONDS. An invalid order claims nothing. Keys are kept
TTL_SECONDS (24 hours) by DynamoDB's time to live; an expired key is free even
before DynamoDB deletes its item.

Keys are each client's own (the API key's client, orders.aws.api_keys): two
clients that send the same key claim two items, `<client> <key>`, and never see
each other's answers. The space cannot occur in a client's name, so no two
(client, key) pairs make the same item.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from orders.aws import clients
from orders.aws.tables import aws_errors, condition_failed, from_item, table_name, to_item
from orders.domain.errors import PermanentError
from orders.settings import Settings

TABLE = "idempotency"
TTL_SECONDS = 24 * 3600
#: A claim this old whose request never finished (its process died) may be taken over.
STALE_CLAIM_SECONDS = 60
#: What a key may be: 1 to MAX_KEY_LENGTH printable ASCII characters without spaces (a UUID is typical).
MAX_KEY_LENGTH = 255
KEY_CHARACTERS = "!-~"  # a regular expression's character class, here and in the OpenAPI document
KEY_PATTERN = re.compile(rf"\A[{KEY_CHARACTERS}]{{1,{MAX_KEY_LENGTH}}}\Z")
KEY_RULE = f"Idempotency-Key: must be 1-{MAX_KEY_LENGTH} printable ASCII characters without spaces"


class ClaimState(StrEnum):
    """Where the request that claimed a key is."""

    PENDING = "pending"  # being answered
    OPEN = "open"  # its last attempt could not be answered: a retry may go ahead
    DONE = "done"  # answered; the answer is stored


@dataclass(frozen=True)
class Claim:
    """A key's claim: the body it was for, its order id, and its answer once there is one."""

    key: str  # as stored: `<client> <key>`
    fingerprint: str
    order_id: str
    state: ClaimState
    claimed_ms: int  # epoch milliseconds (DynamoDB numbers are not floats here)
    status: int = 0
    answer: dict[str, Any] | None = None

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> Claim:
        answer = json.loads(item["answer"]) if "answer" in item else None
        return cls(item["key"], item["fingerprint"], item["orderId"], ClaimState(item["state"]),
                   int(item["claimedAt"]), int(item.get("status", 0)), answer)

    def available(self, now: float) -> bool:
        """Whether a request may take this claim over and place (again) under its order id."""
        return self.state is ClaimState.OPEN or (
            self.state is ClaimState.PENDING and now - self.claimed_ms / 1000 > STALE_CLAIM_SECONDS)


def fingerprint(body: Any) -> str:
    """A digest of a request body (its JSON, keys sorted): same body, same digest."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


class IdempotencyKeys:
    """One client's idempotency keys in one environment (its `idempotency` table)."""

    def __init__(self, settings: Settings, client: str):
        self.settings = settings
        self.client = client
        self.table = table_name(settings, TABLE)

    def _ddb(self) -> Any:
        return clients.client("dynamodb", self.settings)

    def _key(self, key: str) -> dict[str, Any]:
        """The table key of the client's `key`."""
        return to_item({"key": f"{self.client} {key}"})

    def get(self, key: str) -> Claim | None:
        """The key's live claim, if any (an expired one is none)."""
        with aws_errors():
            item = self._ddb().get_item(TableName=self.table, Key=self._key(key),
                                        ConsistentRead=True).get("Item")
        if item is None:
            return None
        found = from_item(item)
        return Claim.from_item(found) if int(found["expiresAt"]) > time.time() else None

    def claim(self, key: str, digest: str, order_id: str, previous: Claim | None) -> bool:
        """Claim the key for this request; False if another request got there first.

        `previous` is the claim read before (None: the key was free), taken over only
        if it is still exactly as read.
        """
        now = time.time()
        item = self._key(key) | to_item({"fingerprint": digest, "orderId": order_id,
                                         "state": ClaimState.PENDING, "claimedAt": int(now * 1000),
                                         "expiresAt": int(now) + TTL_SECONDS})
        if previous is None:
            condition = "attribute_not_exists(#k) OR expiresAt < :now"
            values = to_item({":now": int(now)})
        else:
            condition = "claimedAt = :seen AND #s = :state"
            values = to_item({":seen": previous.claimed_ms, ":state": previous.state})
        names = {"#s": "state"} if previous else {"#k": "key"}
        try:
            with aws_errors():
                self._ddb().put_item(TableName=self.table, Item=item, ConditionExpression=condition,
                                     ExpressionAttributeNames=names, ExpressionAttributeValues=values)
        except PermanentError as exc:
            if condition_failed(exc):
                return False
            raise
        return True

    def answer(self, key: str, status: int, body: dict[str, Any]) -> None:
        """Store the answer given under the key (later requests with the same body get it)."""
        self._update(key, "SET #s = :done, #status = :status, answer = :answer",
                     {":done": ClaimState.DONE, ":status": status, ":answer": json.dumps(body)})

    def reopen(self, key: str) -> None:
        """The request could not be answered (503): a retry with the same key may go ahead at once."""
        self._update(key, "SET #s = :open", {":open": ClaimState.OPEN})

    def release(self, key: str) -> None:
        """Nothing was placed (the order was invalid, or its id another's): the key is free again."""
        with aws_errors():
            self._ddb().delete_item(TableName=self.table, Key=self._key(key))

    def _update(self, key: str, expression: str, values: dict[str, Any]) -> None:
        names = {"#s": "state", **({"#status": "status"} if "#status" in expression else {})}
        with aws_errors():
            self._ddb().update_item(TableName=self.table, Key=self._key(key),
                                    UpdateExpression=expression, ExpressionAttributeNames=names,
                                    ExpressionAttributeValues=to_item(values))

