"""A SIMULATED payment gateway: no money moves, no network call leaves the platform.

It stands where a card processor's API would be and follows the test-card
conventions such processors use, so every payment path can be exercised:

    tok_visa, tok_mastercard       approve
    tok_chargeDeclined             decline permanently ("card declined")
    tok_insufficientFunds          decline permanently ("insufficient funds")
    tok_processingError            fail transiently on the first two attempts, then approve
    wallet_ok                      approve (wallet payments)
    wallet_declined                decline permanently ("wallet declined")
    any other token                decline permanently ("unknown token")

The token is given in clear for the call only (the charge step opens it): the table keeps its
masked form (`tok_…visa`), as a processor's dashboard shows a card's last digits.

Like a real processor it is idempotent per key (`<order id>:charge`,
`<order id>:refund`): a repeated call returns the first outcome instead of
charging again. Its state (attempts, captures, refunds) lives in the
`<env>-gateway` DynamoDB table, so attempts are counted across workers and
retries, and a capture survives a worker crash.

The table is also the processor's ledger (`ledger`, `Gateway.entries`): every record
that settled as captured or refunded is money that moved. A record's key is
`<order id>:<operation>`, so the order is the key up to its last colon; `captures`
counts the captures under one key (always 1 here: a processor that captured twice
would count 2).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Any

from orders.aws import clients
from orders.aws.tables import aws_errors, from_item, now_iso, scan, table_name, to_item
from orders.domain.details import Payment, Refund
from orders.domain.errors import GatewayUnavailable, PaymentDeclined, PermanentError
from orders.domain.order import in_currency
from orders.domain.sensitive import mask_token
from orders.domain.writes import Guard, Write
from orders.settings import Settings

APPROVE = {"tok_visa", "tok_mastercard", "wallet_ok"}
DECLINE = {"tok_chargeDeclined": "card declined", "tok_insufficientFunds": "insufficient funds",
           "wallet_declined": "wallet declined"}
TRANSIENT = {"tok_processingError": 2}  # token -> attempts that fail before one succeeds
_IDS = uuid.UUID("0b9f6f1e-8c1d-4b7a-a3c2-5e6d7f8a9b0c")


class Movement(StrEnum):
    """What a ledger entry did with the money."""

    CAPTURE = "capture"
    REFUND = "refund"


@dataclass(frozen=True)
class LedgerEntry:
    """Money the gateway moved for an order: a capture or a refund, with its id and when."""

    order_id: str
    kind: Movement
    amount: Decimal
    currency: str
    id: str
    at: str | None = None

    def to_json(self) -> dict[str, str | None]:
        """As `orders status --json` shows it (amounts as decimal strings)."""
        return {"kind": self.kind.value, "amount": str(self.amount), "currency": self.currency,
                "id": self.id, "at": self.at}


def entries_of(record: dict[str, Any]) -> list[LedgerEntry]:
    """The money movements one gateway record holds (none for a decline or an unsettled attempt)."""
    order_id = str(record["key"]).rpartition(":")[0]
    currency = str(record.get("currency", ""))
    amount = in_currency(Decimal(str(record.get("amount", 0))), currency)
    if record.get("status") == "captured":
        entry = LedgerEntry(order_id, Movement.CAPTURE, amount, currency, str(record.get("paymentId")),
                            record.get("capturedAt"))
        return [entry] * int(record.get("captures", 1))
    if record.get("status") == "refunded":
        return [LedgerEntry(order_id, Movement.REFUND, amount, currency, str(record.get("refundId")),
                            record.get("refundedAt"))]
    return []


def ledger(settings: Settings) -> Iterator[LedgerEntry]:
    """Every movement in the gateway's table: a paginated, strongly consistent Scan."""
    for record in scan(settings.gateway_settings(), "gateway"):
        yield from entries_of(record)


class Gateway:
    """The simulator's API: `charge` and `refund`, idempotent per order.

    It answers where ORDERS_GATEWAY says (settings.gateway_settings): in a multi-region deployment,
    outside both regions, as a real processor keeps one set of idempotency keys for the account
    (docs/multi-region.md, rule R3); otherwise in the platform's own region and account.
    """

    def __init__(self, settings: Settings):
        self.settings = settings.gateway_settings()
        #: Whether its records can share the order's transaction (the same account, region and endpoint).
        self.beside_orders = self.settings == settings
        self.table = table_name(self.settings, "gateway")

    @property
    def ddb(self) -> Any:
        return clients.client("dynamodb", self.settings)

    def charge(self, order_id: str, amount: Decimal, currency: str, token: str) -> Payment:
        """The capture of `amount`; else PaymentDeclined (permanent) or GatewayUnavailable (transient)."""
        key = f"{order_id}:charge"
        masked = mask_token(token)
        if token not in TRANSIENT:  # the outcome does not depend on the attempt: one write
            state = self._attempt(key, amount, currency, masked, settle=self._outcome(order_id, token))
        else:
            state = self._attempt(key, amount, currency, masked)
            if "status" not in state and int(state["attempts"]) > TRANSIENT[token]:
                state = self._settle(key, self._outcome(order_id, token))
        if state.get("status") == "captured":
            return _capture(state)
        if state.get("status") == "declined":
            raise PaymentDeclined(state["declineReason"])
        raise GatewayUnavailable(f"processing error (attempt {int(state['attempts'])}); try again")

    def quote(self, order_id: str, amount: Decimal, currency: str,
              token: str) -> tuple[Write, Payment] | None:
        """The charge as a write to go in the order's own transaction, and the payment it records;
        None for a token whose outcome depends on the attempt, or a processor answering elsewhere
        (ORDERS_GATEWAY): `charge` then, one call at a time.

        The simulator's table is in the platform's own account, so its record of the call can
        commit with the order's: the capture and `paid` happen together or not at all. The
        write is conditional on the key being unsettled (Guard.PAYMENT): a key an earlier call
        settled refuses it, and `charge` returns that first outcome, as a replayed call does.
        """
        if token in TRANSIENT or not self.beside_orders:
            return None
        outcome = self._outcome(order_id, token)
        request = self._attempt_request(f"{order_id}:charge", amount, currency, mask_token(token), outcome)
        request["ConditionExpression"] = "attribute_not_exists(#status)"
        request["ExpressionAttributeNames"]["#status"] = "status"
        if outcome["status"] == "declined":
            return Write(Guard.PAYMENT, {"Update": request}), Payment.declined(outcome["declineReason"])
        payment = Payment.captured(outcome["paymentId"], amount, currency, 1)
        return Write(Guard.PAYMENT, {"Update": request}), payment

    def refund(self, order_id: str, payment_id: str, amount: Decimal, currency: str) -> Refund:
        """Refund a capture in full, once."""
        charge = self.lookup(f"{order_id}:charge")
        if not charge or charge.get("paymentId") != payment_id:
            raise PermanentError(f"no capture {payment_id} for order {order_id} to refund")
        refund_id = "re_" + uuid.uuid5(_IDS, order_id + ":refund").hex[:24]
        state = self._attempt(f"{order_id}:refund", amount, currency, payment_id,
                              settle={"status": "refunded", "refundId": refund_id, "refundedAt": now_iso()})
        return Refund(str(state["refundId"]), payment_id, amount, currency)

    @staticmethod
    def _outcome(order_id: str, token: str) -> dict[str, Any]:
        """What the processor decides for `token` (once its transient failures are spent)."""
        if token in APPROVE or token in TRANSIENT:
            return {"status": "captured", "paymentId": "pay_" + uuid.uuid5(_IDS, order_id).hex[:24],
                    "capturedAt": now_iso(), "captures": 1}
        return {"status": "declined", "declineReason": DECLINE.get(token, "unknown token")}

    def capture_of(self, order_id: str) -> Payment | None:
        """The order's capture if the gateway took the money, else None."""
        state = self.lookup(f"{order_id}:charge")
        return _capture(state) if state and state.get("status") == "captured" else None

    def entries(self, order_id: str) -> list[LedgerEntry]:
        """The order's captures and refunds, from its own keys (`orders status` shows them)."""
        found = (self.lookup(f"{order_id}:{operation}") for operation in ("charge", "refund"))
        return [entry for record in found if record for entry in entries_of(record)]

    def lookup(self, key: str) -> dict[str, Any] | None:
        """The gateway's record for an idempotency key (tests and `orders status` read it)."""
        with aws_errors():
            item = self.ddb.get_item(TableName=self.table, Key=to_item({"key": key}),
                                     ConsistentRead=True).get("Item")
        return from_item(item) if item else None

    def _attempt(self, key: str, amount: Decimal, currency: str, reference: str,
                 settle: dict[str, Any] | None = None) -> dict[str, Any]:
        """Count one call durably and return the key's state (a replay sees the first outcome).

        `reference` is what was charged (a masked token) or refunded (a payment id). With
        `settle`, the same write records that outcome unless one is recorded already.
        """
        with aws_errors():
            new = self.ddb.update_item(**self._attempt_request(key, amount, currency, reference, settle),
                                       ReturnValues="ALL_NEW")["Attributes"]
        return from_item(new)

    def _attempt_request(self, key: str, amount: Decimal, currency: str, reference: str,
                         settle: dict[str, Any] | None) -> dict[str, Any]:
        """The UpdateItem of one call to `key` (see `_attempt`), as a request."""
        fields = {"amount": amount, "currency": currency, "token": reference, **(settle or {})}
        names = {f"#f{n}": name for n, name in enumerate(fields)}
        values = {f":f{n}": value for n, value in enumerate(fields.values())}
        assignments = ", ".join(f"#f{n} = if_not_exists(#f{n}, :f{n})" for n in range(len(fields)))
        return {"TableName": self.table, "Key": to_item({"key": key}),
                "UpdateExpression": f"ADD attempts :one SET {assignments}",
                "ExpressionAttributeNames": names,
                "ExpressionAttributeValues": to_item({":one": 1, **values})}

    def _settle(self, key: str, outcome: dict[str, Any]) -> dict[str, Any]:
        """Record the outcome unless another call settled first; return whichever stands."""
        names = {f"#a{n}": k for n, k in enumerate(outcome)}
        values = {f":a{n}": v for n, v in enumerate(outcome.values())}
        assignments = ", ".join(f"#a{n} = :a{n}" for n in range(len(outcome)))
        try:
            with aws_errors():
                new = self.ddb.update_item(
                    TableName=self.table, Key=to_item({"key": key}),
                    UpdateExpression="SET " + assignments,
                    ConditionExpression="attribute_not_exists(#status)",
                    ExpressionAttributeNames={**names, "#status": "status"},
                    ExpressionAttributeValues=to_item(values), ReturnValues="ALL_NEW")["Attributes"]
            return from_item(new)
        except PermanentError:
            existing = self.lookup(key)
            if not existing or "status" not in existing:
                raise
            return existing


def _capture(state: dict[str, Any]) -> Payment:
    return Payment.captured(state["paymentId"], Decimal(state["amount"]), state["currency"],
                            int(state["attempts"]))
