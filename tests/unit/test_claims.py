"""Notification claims made together (orders.aws.claims): one read, then one transaction, for the claims
of one moment, refused ones named by the cancellation reasons, a second claim of an order in a later
round. The store's calls are stood in for by functions that keep the claims made in a set."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import pytest

from orders.aws import claims
from orders.aws.claims import Claim, ClaimBatch, rounds
from orders.domain.errors import RetryableError


class Store:
    """Claims as a DynamoDB table of orders would make them; counts the calls."""

    def __init__(self, orders: set[str], made: set[tuple[str, str]] | None = None):
        self.orders, self.made, self.calls = orders, set(made or ()), []  # type: ignore[var-annotated]

    def _allowed(self, c: Claim) -> bool:
        return c.order_id in self.orders and (c.order_id, c.event_type) not in self.made

    def one(self, c: Claim) -> dict[str, Any] | None:
        self.calls.append("UpdateItem")
        if not self._allowed(c):
            return None
        self.made.add((c.order_id, c.event_type))
        return {"pk": c.order_id}

    def many(self, claims: Sequence[Claim]) -> list[str] | None:
        self.calls.append("TransactWriteItems")
        assert len({c.order_id for c in claims}) == len(claims), "two writes to one item"
        codes = ["None" if self._allowed(c) else "ConditionalCheckFailed" for c in claims]
        if "ConditionalCheckFailed" in codes:
            return codes
        self.made.update((c.order_id, c.event_type) for c in claims)
        return None

    def read(self, order_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        self.calls.append("BatchGetItem")
        return {i: {"pk": i} for i in order_ids if i in self.orders}


def claim_together(batch: ClaimBatch, claims: list[tuple[str, str]]) -> list[Any]:
    """Every claim from its own thread, at once (as a worker's pool runs one receive's events)."""
    answers: list[Any] = [None] * len(claims)
    start = threading.Barrier(len(claims))

    def run(n: int) -> None:
        start.wait()
        try:
            answers[n] = batch.claim(*claims[n])
        except RuntimeError as exc:
            answers[n] = exc

    threads = [threading.Thread(target=run, args=(n,)) for n in range(len(claims))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return answers


def test_claims_that_arrive_together_are_one_transaction_and_one_read():
    store = Store({"o1", "o2", "o3", "o4"})
    batch = ClaimBatch(store.one, store.many, store.read, linger=0.2)
    claims = [(f"o{n}", "OrderPlaced") for n in range(1, 5)]
    assert claim_together(batch, claims) == [{"pk": f"o{n}"} for n in range(1, 5)]
    assert store.calls == ["BatchGetItem", "TransactWriteItems"]  # read first: see the next test


def test_a_read_that_fails_claims_nothing_so_the_retried_tasks_still_notify():
    def unreadable(order_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        raise RuntimeError("DynamoDB unavailable")

    store = Store({"o1", "o2"})
    batch = ClaimBatch(store.one, store.many, unreadable, linger=0.2)
    answers = claim_together(batch, [("o1", "OrderShipped"), ("o2", "OrderShipped")])
    assert [type(a) for a in answers] == [RuntimeError, RuntimeError] and not store.made
    # The tasks' retries, DynamoDB back: each claim made once, each order returned.
    batch = ClaimBatch(store.one, store.many, store.read, linger=0.2)
    shipped = [("o1", "OrderShipped"), ("o2", "OrderShipped")]
    assert claim_together(batch, shipped) == [{"pk": "o1"}, {"pk": "o2"}]


def test_a_claim_made_before_is_refused_and_the_others_are_made_without_it():
    store = Store({"o1", "o2", "o3"}, made={("o2", "OrderPlaced")})
    batch = ClaimBatch(store.one, store.many, store.read, linger=0.2)
    answers = claim_together(batch, [("o1", "OrderPlaced"), ("o2", "OrderPlaced"), ("o3", "OrderPlaced"),
                                     ("no-such-order", "OrderPlaced")])
    assert answers == [{"pk": "o1"}, None, {"pk": "o3"}, None]
    assert store.calls == ["BatchGetItem", "TransactWriteItems", "TransactWriteItems"]
    # Claimed again (the event delivered twice): nobody is notified twice.
    assert claim_together(batch, [("o1", "OrderPlaced"), ("o3", "OrderPlaced")]) == [None, None]


def test_two_claims_of_one_order_go_in_two_rounds_and_one_claim_alone_is_one_call():
    store = Store({"o1"})
    batch = ClaimBatch(store.one, store.many, store.read, linger=0.2)
    answers = claim_together(batch, [("o1", "OrderPlaced"), ("o1", "OrderPlaced"), ("o1", "OrderShipped")])
    assert sorted(map(bool, answers)) == [False, True, True]  # the duplicate refused, each kind once
    assert store.made == {("o1", "OrderPlaced"), ("o1", "OrderShipped")}
    store.calls.clear()
    assert batch.claim("o1", "OrderCancelled") == {"pk": "o1"} and store.calls == ["UpdateItem"]


def test_a_failed_transaction_is_the_error_of_every_claim_it_left_unmade():
    def broken(claims: Sequence[Claim]) -> list[str] | None:
        raise RuntimeError("throttled")

    store = Store({"o1", "o2"})
    batch = ClaimBatch(store.one, broken, store.read, linger=0.2)
    answers = claim_together(batch, [("o1", "OrderShipped"), ("o2", "OrderShipped")])
    assert [type(a) for a in answers] == [RuntimeError, RuntimeError] and not store.made


def test_rounds_take_distinct_orders_first():
    claims = [Claim("a", "x"), Claim("a", "y"), Claim("b", "x")]
    ahead, rest = rounds(claims)
    assert [c.order_id for c in ahead] == ["a", "b"] and [c.event_type for c in rest] == ["y"]


def test_a_claim_whose_batch_is_never_made_gives_up_retryably(monkeypatch):
    monkeypatch.setattr(claims, "ANSWER_TIMEOUT", 0.3)
    store = Store({"o1"})
    batch = ClaimBatch(store.one, store.many, store.read, linger=0.05)
    # A first claim whose thread died before making it:
    batch.gathering._waiting.append(Claim("o0", "OrderPlaced"))
    with pytest.raises(RetryableError):
        batch.claim("o1", "OrderPlaced")  # its task retries, rather than wait for ever
    assert not store.made and store.calls == []
