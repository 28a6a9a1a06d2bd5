"""What following the orders costs a run (its reads of the orders, and their CPU) is counted apart, so that
the benchmark's figures per order are the pipeline's: counted against the emulator's own count."""

from __future__ import annotations

import threading
import uuid

import pytest

from orders.aws import clients
from orders.aws.store import OrderStore
from orders.emulator.server import call_counts
from orders.harness.runner import Following, OrderReader

pytestmark = pytest.mark.integration


def test_the_follower_counts_its_own_requests_as_the_emulator_does_and_no_other_threads(infra):
    ddb = clients.client("dynamodb", infra)
    reader, store = OrderReader(infra), OrderStore(infra)
    ids = [f"follow-{uuid.uuid4().hex[:8]}-{n}" for n in range(150)]  # 100 keys a BatchGetItem: two calls
    following = Following()
    before = call_counts(str(infra.endpoint_url))
    others = threading.Thread(target=lambda: [store.load(i) for i in ids[:3]])  # a placer's reads, meanwhile
    with following.watching(ddb):
        with following.counting():
            others.start()
            assert reader.get_many(ids) == {}
            others.join()
        store.load(ids[0])  # this thread, outside counting(): not the follower's
    with following.counting():
        reader.get_many(ids[:1])  # no longer watching the client: not counted
    after = call_counts(str(infra.endpoint_url))

    def made(key: str) -> int:
        return after.get(key, 0) - before.get(key, 0)

    assert dict(following.calls) == {"dynamodb:BatchGetItem": 2}
    assert (made("dynamodb:BatchGetItem"), made("dynamodb:GetItem")) == (3, 4)
    assert following.cpu_seconds > 0
