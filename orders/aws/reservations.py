"""Reservations that arrive together, taken in one transaction instead of one each.

An inventory worker receives up to ten messages of one product's FIFO message group at a
time (SQS hands out no more of a group while some are in flight) and runs them on its
pool's threads at once. Each reservation is a TransactWriteItems on that product's stock
item: on DynamoDB, transactions on one item at the same moment conflict
(`TransactionConflict`: the losers read again and retry), on the emulator they queue one
behind the other, and either way the group's next ten wait for the slowest. A flash sale
on one product is then one reservation at a time.

Gathered (orders.aws.gathering), the reservations that arrive within `ORDERS_RESERVE_LINGER`
of the first are one transaction: each product's stock line once, for the units of all of
them together (on condition that it has them and the spare that tells no line is left
low), every hold's own item, and every order's own conditional write. One call and one
condition check for the ten, and nothing for them to conflict with. The linger (0.02 s:
the threads of one receive start within a few milliseconds of each other) is on every
reservation's path; 0 turns gathering off.

All or nothing: a refused transaction (a product short of the sum, an order that moved,
a hold already there) or a failed one cannot say whose it was, so each reservation is
then made alone, exactly as it would have been without the others, and its answer is
its own. A reservation made together is the one made alone; the price of a refusal is
one call more. DynamoDB takes one write per item in a transaction, so a second
reservation of an order (its message delivered twice) goes in the next round.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from orders.aws.gathering import Gathering
from orders.aws.tables import refusal
from orders.domain.records import Hold
from orders.domain.writes import Refusal, Write

log = logging.getLogger(__name__)

#: How long a reservation waits for the thread making its batch: longer than botocore's
#: bounded retries of one call, so it gives up only when that thread is gone.
ANSWER_TIMEOUT = 180.0
#: DynamoDB's most writes in one transaction.
MAX_WRITES = 100

#: The writes that take `holds` with `spare` units more on every line (orders.aws.stock.take_writes).
TakeWrites = Callable[[Sequence[Hold], int], "list[Write]"]
#: Runs one transaction: None once committed, else its cancellation codes (orders.aws.tables.transact).
Transact = Callable[[Sequence[dict[str, Any]]], "list[str] | None"]


@dataclass(eq=False)
class Reservation:
    hold: Hold
    write: Write  # the order's own conditional write (to `reserved`)
    answer: Future[Any] = field(default_factory=Future)  # True: made together; False: to make alone


class ReservationBatch:
    """Reservations of one process taken together: the first thread to reserve makes them all."""

    def __init__(self, take_writes: TakeWrites, spare: int, transact: Transact, linger: float):
        self.take_writes, self.spare, self.transact, self.linger = take_writes, spare, transact, linger
        self.gathering: Gathering[Reservation] = Gathering(self._make, linger, ANSWER_TIMEOUT, "reservation")

    def take(self, hold: Hold, write: Write) -> Refusal | None:
        """Take `hold` with the order's `write`: None once done, else what refused it (alone)."""
        if self.linger > 0 and self.gathering.wait(Reservation(hold, write)):
            return None  # made together (a linger of 0: gathering is off, each one is made alone)
        writes = [*self.take_writes([hold], self.spare), write]
        return refusal(writes, self.transact([dict(w.request) for w in writes]))

    def _make(self, batch: list[Reservation]) -> None:
        rest = batch
        while rest:
            ahead, rest = rounds(rest)
            if len(ahead) == 1:
                ahead[0].answer.set_result(False)  # alone: its own thread makes it, as without a batch
                continue
            writes = [*self.take_writes([r.hold for r in ahead], self.spare), *(r.write for r in ahead)]
            try:
                made = self.transact([dict(w.request) for w in writes]) is None
            except Exception as exc:  # whoever it was, each one alone finds out (and raises) for itself
                log.info("%d reservations together failed (%s); each is made alone", len(ahead), exc)
                made = False
            for reservation in ahead:
                reservation.answer.set_result(made)


def rounds(batch: list[Reservation]) -> tuple[list[Reservation], list[Reservation]]:
    """The first reservations of distinct orders that fit one transaction, and the rest (for later
    rounds): a product's line counts once however many of them take it."""
    ahead: list[Reservation] = []
    rest: list[Reservation] = []
    orders: set[str] = set()
    skus: set[str] = set()
    for reservation in batch:
        hold = reservation.hold
        more = skus | {sku for sku, _ in hold.items}
        if hold.order_id in orders or len(more) + 2 * (len(ahead) + 1) > MAX_WRITES:
            rest.append(reservation)
        else:
            orders.add(hold.order_id)
            skus = more
            ahead.append(reservation)
    return ahead, rest
