"""Notification claims that arrive together, made in one transaction instead of one call each.

A notifications worker runs the events of one receive on its pool's threads at once,
each claiming (order id, event type) with a conditional write (orders.aws.store,
`OrderStore.claim_notification`). The first thread to claim waits `CLAIM_LINGER`
seconds for the others, then makes every claim waiting by then: one claim alone is
one UpdateItem that returns the order, as before; two or more are one TransactWriteItems
(the claims of distinct orders: DynamoDB refuses two writes to one item in a
transaction, so a second claim of an order goes in the next round), after one
BatchGetItem of their orders: two calls for any number of claims.

A transaction is all or nothing: a claim made before (a duplicate event) or of no
order fails its condition and cancels the others. The cancellation reasons name it;
it is answered None (nothing to send) and the others are tried again without it. A
conflict with another write in flight (`ConcurrentUpdate`) or any other failure is
every waiting claim's error: nothing was written, and their tasks retry.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from orders.aws.gathering import Gathering

#: How long the first claim waits for others to join it (a notification is not on the order's path).
CLAIM_LINGER = 0.02
#: How long a claim waits for the thread making its batch: longer than botocore's bounded
#: retries of two calls, so a claim gives up only when that thread is gone.
ANSWER_TIMEOUT = 180.0
#: Claims of one transaction at most (DynamoDB takes 100 writes; fewer keeps a refusal cheap).
MAX_CLAIMS = 25


@dataclass(eq=False)
class Claim:
    order_id: str
    event_type: str
    answer: Future[Any] = field(default_factory=Future)


#: Makes one claim alone: the order's record (plain values) or None if refused.
ClaimOne = Callable[[Claim], "dict[str, Any] | None"]
#: Runs one transaction of claims: None once done, else the per-claim cancellation codes.
ClaimMany = Callable[[Sequence[Claim]], "list[str] | None"]
#: Reads the orders of claims made: their records (plain values), by order id.
ReadMany = Callable[[Sequence[str]], "dict[str, dict[str, Any]]"]


class ClaimBatch:
    """Claims waiting to be made together; the thread whose claim came first makes them all
    (orders.aws.gathering)."""

    def __init__(self, one: ClaimOne, many: ClaimMany, read: ReadMany, linger: float = CLAIM_LINGER):
        self.one, self.many, self.read = one, many, read
        self.gathering: Gathering[Claim] = Gathering(self._make, linger, ANSWER_TIMEOUT, "notification claim")

    def claim(self, order_id: str, event_type: str) -> dict[str, Any] | None:
        """The order's record once this claim is made, None if it was made before (or no order)."""
        return self.gathering.wait(Claim(order_id, event_type))  # type: ignore[no-any-return]

    def _make(self, batch: list[Claim]) -> None:
        """Make every claim of `batch` (a failure is the answer of each claim it left unmade)."""
        if len(batch) == 1:
            batch[0].answer.set_result(self.one(batch[0]))
            return
        rest = batch
        while rest:
            ahead, rest = rounds(rest)
            self._transact(ahead)

    def _transact(self, claims: list[Claim]) -> None:
        """Make `claims` (distinct orders) in as few transactions as the refused ones allow.

        The orders are read first: a read that fails once the claims were made would leave
        them made and their notifications unsent (each task's retry finds its claim taken).
        Read before, a failure claims nothing and the tasks retry whole. The copies read
        lack only these claims, which the notify step does not look at.
        """
        found = self.read([c.order_id for c in claims])
        while claims:
            codes = self.many(claims)
            if codes is None:
                break
            refused = [c for c, code in zip(claims, codes, strict=True) if code == "ConditionalCheckFailed"]
            if not refused:
                raise RuntimeError(f"claims refused without a failed condition: {codes}")
            for claim in refused:
                claim.answer.set_result(None)
            claims = [c for c in claims if not c.answer.done()]
        for claim in claims:
            claim.answer.set_result(found.get(claim.order_id))


def rounds(claims: list[Claim]) -> tuple[list[Claim], list[Claim]]:
    """The first MAX_CLAIMS claims of distinct orders, and the rest (for later rounds)."""
    ahead: list[Claim] = []
    rest: list[Claim] = []
    seen: set[str] = set()
    for claim in claims:
        if claim.order_id in seen or len(ahead) >= MAX_CLAIMS:
            rest.append(claim)
        else:
            seen.add(claim.order_id)
            ahead.append(claim)
    return ahead, rest
