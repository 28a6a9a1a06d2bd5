"""The reservation batch's rounds and its fall-back to one transaction each (orders.aws.reservations).

The transaction itself is the emulator's (tests/integration/test_reservations_together.py);
here a recording stand-in answers it, so that a failure can be made on purpose.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from orders.aws.reservations import MAX_WRITES, Reservation, ReservationBatch, rounds
from orders.domain.records import Hold
from orders.domain.states import HoldState
from orders.domain.writes import Guard, Write


def hold(order_id: str, *skus: str) -> Hold:
    return Hold(order_id, tuple((sku, 1) for sku in skus), 0, HoldState.ACTIVE)


def writes_of(holds: Sequence[Hold], spare: int) -> list[Write]:
    units: dict[str, int] = {}
    for h in holds:
        for sku, q in h.items:
            units[sku] = units.get(sku, 0) + q
    return [*(Write(Guard.STOCK, {"sku": sku, "units": q}) for sku, q in units.items()),
            *(Write(Guard.HOLD, {"hold": h.order_id}) for h in holds)]


def order_write(order_id: str) -> Write:
    return Write(Guard.ORDER, {"order": order_id})


def test_rounds_keep_one_reservation_of_an_order_and_stay_within_a_transaction():
    many = [Reservation(hold(f"o{n}", *(f"s{n}-{k}" for k in range(8))), order_write(f"o{n}"))
            for n in range(12)]
    ahead, rest = rounds([many[0], many[0], *many[1:]])
    writes = len({sku for r in ahead for sku, _ in r.hold.items}) + 2 * len(ahead)
    assert writes <= MAX_WRITES and len(ahead) == 10  # ten orders of eight products: 100 writes
    assert rest[0] is many[0] and len(rest) == 3


class Store:
    """Records each transaction; `fail` makes one of them fail as DynamoDB would (an exception)."""

    def __init__(self, fail: int | None = None):
        self.made: list[list[dict[str, Any]]] = []
        self.fail, self.lock = fail, threading.Lock()

    def transact(self, items: Sequence[dict[str, Any]]) -> list[str] | None:
        with self.lock:
            self.made.append(list(items))
            if self.fail is not None and len(self.made) == self.fail:
                raise RuntimeError("the service failed")
        return None


def reserve_together(batch: ReservationBatch, n: int) -> list[Any]:
    gate = threading.Barrier(n)

    def one(k: int) -> Any:
        gate.wait()
        return batch.take(hold(f"o{k}", "hot"), order_write(f"o{k}"))

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(one, range(n)))


def test_reservations_at_once_are_one_transaction_with_the_product_once():
    store = Store()
    answers = reserve_together(ReservationBatch(writes_of, 3, store.transact, linger=0.3), 5)
    assert answers == [None] * 5
    assert len(store.made) == 1
    assert store.made[0][0] == {"sku": "hot", "units": 5} and len(store.made[0]) == 11


def test_a_batch_that_fails_is_made_alone_by_each_reservation():
    store = Store(fail=1)
    answers = reserve_together(ReservationBatch(writes_of, 3, store.transact, linger=0.3), 4)
    assert answers == [None] * 4  # each one's own transaction went through
    assert len(store.made) == 5 and all(len(items) == 3 for items in store.made[1:])


def test_a_linger_of_zero_makes_each_reservation_alone():
    store = Store()
    answers = reserve_together(ReservationBatch(writes_of, 3, store.transact, linger=0), 4)
    assert answers == [None] * 4
    assert len(store.made) == 4 and all(len(items) == 3 for items in store.made)
