"""run_orders' placing, polling and settling logic, against an in-memory stand-in pipeline.

The stand-in replaces the Celery pipeline only to exercise the runner's own
bookkeeping (lost, unfinished, refused, send errors, progress); the real
pipeline runs in tests/integration/test_demo.py.
"""

import copy
import threading
import time

from orders.domain.errors import InvalidOrder
from orders.harness.order_mix import OrderMix
from orders.harness.runner import run_orders
from orders.harness.summary import summarize

DECLINING = {"tok_chargeDeclined", "tok_insufficientFunds", "wallet_declined"}


class StandIn:
    """Accepts orders like place_order.delay and finishes them shortly after, on a timer thread."""

    def __init__(self, stuck=(), dropped=(), broken=(), backlog=0.0):
        self.records, self.lock = {}, threading.Lock()
        self.stuck, self.dropped, self.broken = set(stuck), set(dropped), set(broken)
        self.backlog, self.accepted = backlog, 0  # each accepted order waits `backlog` s more

    def send(self, order):
        order_id = order["orderId"]
        if order_id in self.broken:
            raise ConnectionError("endpoint unreachable")
        if "customerId" not in order or order.get("currency") != "USD" or any(
                not isinstance(i["quantity"], int) or i["quantity"] <= 0 for i in order["items"]):
            raise InvalidOrder(["customerId, currency or quantities are wrong"])
        if order_id in self.dropped:
            return
        self._write(order_id, "received")
        if order_id not in self.stuck:
            final = "cancelled" if order.get("payment", {}).get("token") in DECLINING else "completed"
            self.accepted += 1
            delay = 0.05 + self.backlog * self.accepted
            threading.Timer(delay, self._write, [order_id, final]).start()

    def _write(self, order_id, status):
        with self.lock:
            record = self.records.setdefault(order_id, {"orderId": order_id, "history": []})
            record["status"] = status
            record["history"].append({"status": status, "at": time.time()})

    def get(self, order_id):
        with self.lock:
            return copy.deepcopy(self.records.get(order_id))


def _run(standin, planned, timeout=10.0, progress=None):
    return run_orders(None, planned, rate=200, timeout=timeout, poll_interval=0.05,
                      progress=progress, send=standin.send, store=standin)


def test_every_order_is_followed_to_its_final_state():
    planned = OrderMix(seed=1).orders(30)
    seen = []
    result = _run(StandIn(), planned, progress=seen.append)
    summary = summarize(result.outcomes)
    assert summary.ok and not result.timed_out
    invalid = sum(1 for p in planned if p.kind == "invalid")
    declined = sum(1 for p in planned if p.kind == "declined")
    assert summary.refused == invalid
    assert summary.by_state.get("cancelled") == declined
    assert sum(summary.by_state.values()) == 30
    assert seen[-1].placed == 30 and seen[-1].in_flight == 0
    assert all(o.placed_at is not None for o in result.outcomes)


def test_unfinished_lost_and_unsent_orders_are_named():
    planned = [p for p in OrderMix(seed=1).orders(30) if p.kind != "invalid"][:6]
    ids = [p.order_id for p in planned]
    standin = StandIn(stuck=[ids[0]], dropped=[ids[1]], broken=[ids[2]])
    result = _run(standin, planned, timeout=0.5)
    summary = summarize(result.outcomes)
    assert result.timed_out and not summary.ok
    assert summary.unfinished == [ids[0]]
    assert summary.lost == [ids[1]]
    assert summary.send_failed == [ids[2]] and "endpoint unreachable" in result.errors[0]
    assert summary.by_state["completed"] == 3


def test_a_slow_pipeline_that_keeps_finishing_orders_is_waited_for():
    planned = [p for p in OrderMix(seed=1).orders(40) if p.kind != "invalid"][:20]
    result = _run(StandIn(backlog=0.1), planned, timeout=0.6)  # the last one ends ~2 s in
    assert not result.timed_out
    assert summarize(result.outcomes).ok
