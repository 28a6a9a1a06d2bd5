"""The steps' decisions against in-memory stand-ins of their ports (the real ones run in tests/integration).

The stand-in keeps the conditions the real store keeps (an order's version, a hold's
state, a product's available units), so that a refused transaction is refused for the
same reason it would be on DynamoDB.
"""

from __future__ import annotations

import dataclasses
import json
from decimal import Decimal
from typing import Any

import pytest

from orders.domain.details import Payment, Refund, Shipment
from orders.domain.errors import ConcurrentUpdate, InvalidOrder, PaymentDeclined
from orders.domain.order import MAX_LINES
from orders.domain.records import Change, Hold, OrderRecord
from orders.domain.sensitive import Envelope, Field, UnreadableField, binding
from orders.domain.states import HoldState, OrderState, PaymentStatus, Step
from orders.domain.times import now_iso
from orders.domain.writes import Guard, Refusal, Write
from orders.settings import Settings
from orders.steps import admission, charge, expiry, flow, notification, refund, reservation, review, shipment
from orders.steps.flow import Stage, happy_path, next_step, stages, task_of
from orders.steps.ports import Deps
from orders.steps.state_machine import Outcome


class World:
    """Orders, holds and stock in memory, with the store's conditions (ports Orders and Inventory)."""

    def __init__(self, stock: dict[str, int]):
        self.records: dict[str, OrderRecord] = {}
        self.holds: dict[str, Hold] = {}
        self.available, self.reserved = dict(stock), dict.fromkeys(stock, 0)

    def load(self, order_id: str) -> OrderRecord | None:
        return self.records.get(order_id)

    def create(self, order: Any, placed_at: str, correlation_id: str,
               review: bool) -> tuple[OrderRecord, bool]:
        existing = self.records.get(order.order_id)
        if existing is not None and not existing.unrecorded:  # a stub counts as absent, as in the store
            return existing, False
        record = OrderRecord.placed(order, placed_at, now_iso(), correlation_id, review)
        self.records[record.order_id] = record
        return record, True

    def mark_failed(self, order_id: str, reason: str) -> bool:
        record = self.records.get(order_id)
        if record is None:
            self.records[order_id] = OrderRecord.failed_unrecorded(order_id, reason, now_iso())
            return True
        if record.status.is_final:
            return False
        self.transition(record, Change(OrderState.FAILED, Step.DLQ, reason, failed_from=record.status))
        return True

    def prepare(self, record: OrderRecord, change: Change) -> tuple[Write, OrderRecord]:
        new = record.after(change, now_iso())
        return Write(Guard.ORDER, {"expect": record.version, "new": new}), new

    def transition(self, record: OrderRecord, change: Change) -> OrderRecord:
        write, new = self.prepare(record, change)
        if self.transact([write]) is not None:
            raise ConcurrentUpdate("changed")
        return new

    def transact(self, writes: list[Write]) -> Refusal | None:
        codes = ["None" if self._allowed(w) else "ConditionalCheckFailed" for w in writes]
        if "ConditionalCheckFailed" in codes:
            return Refusal(frozenset(w.guard for w, c in zip(writes, codes, strict=True) if c != "None"),
                           tuple(codes))
        for w in writes:
            self._apply(w.request)
        return None

    def _allowed(self, write: Write) -> bool:
        r = write.request
        if write.guard is Guard.PAYMENT:
            return r["order_id"] not in r["gateway"].settled
        if write.guard is Guard.ORDER:
            return self.records[r["new"].order_id].version == r["expect"]
        if write.guard is Guard.STOCK:
            return self.available[r["sku"]] >= r.get("need", 0)
        held = self.holds.get(r["hold"].order_id)
        return held is None if r["from"] is None else held is not None and held.state is r["from"]

    def _apply(self, r: Any) -> None:
        if "gateway" in r:
            r["gateway"].settle(r["order_id"], r["payment"])
        elif "new" in r:
            self.records[r["new"].order_id] = r["new"]
        elif "sku" in r:
            self.available[r["sku"]] += r["available"]
            self.reserved[r["sku"]] += r["reserved"]
        else:
            self.holds[r["hold"].order_id] = dataclasses.replace(r["hold"], state=r["to"])

    def unknown_skus(self, skus: Any) -> list[str]:
        self.looked_up = list(skus)
        return [s for s in self.looked_up if s not in self.available]

    def levels(self, skus: Any) -> dict[str, Any]:
        return {s: {"sku": s, "available": self.available[s], "reserved": self.reserved[s]}
                for s in skus if s in self.available}

    def load_hold(self, order_id: str) -> Hold | None:
        return self.holds.get(order_id)

    def _lines(self, hold: Hold, available: int, reserved: int, need: bool = False,
               spare: int = 0) -> list[Write]:
        return [Write(Guard.STOCK, {"sku": sku, "available": available * q, "reserved": reserved * q,
                                    "need": q + spare if need else 0}) for sku, q in hold.items]

    def _move(self, hold: Hold, to: HoldState, from_state: HoldState | None) -> Write:
        return Write(Guard.HOLD, {"hold": hold, "to": to, "from": from_state})

    def take(self, hold: Hold, spare: int = 0) -> list[Write]:
        return [*self._lines(hold, -1, 1, need=True, spare=spare), self._move(hold, HoldState.ACTIVE, None)]

    def take_with(self, hold: Hold, write: Write, spare: int = 0) -> Refusal | None:
        return self.transact([*self.take(hold, spare), write])

    def commit(self, hold: Hold) -> list[Write]:
        return [*self._lines(hold, 0, -1), self._move(hold, HoldState.COMMITTED, HoldState.ACTIVE)]

    def release(self, hold: Hold, to: HoldState = HoldState.RELEASED) -> list[Write]:
        return [*self._lines(hold, 1, -1), self._move(hold, to, HoldState.ACTIVE)]

    def put_back(self, hold: Hold) -> list[Write]:
        return [*self._lines(hold, 1, 0), self._move(hold, HoldState.RETURNED, HoldState.COMMITTED)]


class Gateway:
    """Approves everything (or declines, or runs `meanwhile` as the money is taken); idempotent per
    order, like the simulator: `captured` and `refunded` are its ledger."""

    def __init__(self, decline: str | None = None, meanwhile: Any = None, at_once: bool = False):
        self.decline, self.meanwhile, self.charges, self.at_once = decline, meanwhile, 0, at_once
        self.captured: dict[str, Payment] = {}
        self.refunded: dict[str, Refund] = {}
        self.settled: dict[str, Payment] = {}

    def quote(self, order_id: str, amount: Decimal, currency: str,
              token: str) -> tuple[Write, Payment] | None:
        """With `at_once`, the charge as a write of the order's transaction (like the simulator's)."""
        if not self.at_once:
            return None
        payment = Payment.declined(self.decline) if self.decline else \
            Payment.captured(f"pay_{order_id}", amount, currency, 1)
        return Write(Guard.PAYMENT, {"gateway": self, "order_id": order_id, "payment": payment}), payment

    def settle(self, order_id: str, payment: Payment) -> None:
        self.charges += 1
        self.settled[order_id] = payment
        if payment.status is PaymentStatus.CAPTURED:
            self.captured[order_id] = payment

    def charge(self, order_id: str, amount: Decimal, currency: str, token: str) -> Payment:
        if order_id in self.settled:  # a replay: the first outcome
            if self.settled[order_id].status is not PaymentStatus.CAPTURED:
                raise PaymentDeclined(str(self.settled[order_id].reason))
            return self.settled[order_id]
        if self.decline:
            raise PaymentDeclined(self.decline)
        self.charges += 1
        if self.meanwhile:
            self.meanwhile()
        return self.captured.setdefault(order_id, Payment.captured(f"pay_{order_id}", amount, currency, 1))

    def refund(self, order_id: str, payment_id: str, amount: Decimal, currency: str) -> Refund:
        return self.refunded.setdefault(order_id, Refund(f"re_{order_id}", payment_id, amount, currency))

    def capture_of(self, order_id: str) -> Payment | None:
        return self.captured.get(order_id)

    def net(self, order_id: str) -> Decimal:
        """Captured minus refunded for the order."""
        taken, back = self.captured.get(order_id), self.refunded.get(order_id)
        return (taken.amount if taken and taken.amount else Decimal(0)) - \
            (back.amount if back else Decimal(0))


class Carrier:
    def book(self, order: Any, address: dict[str, Any]) -> Shipment:
        if address.get("postalCode") == "00000":  # the simulator's undeliverable code
            return Shipment.refusal("undeliverable")
        return Shipment.booked("SIM", "1Z" + order.order_id, now_iso())


class Metrics:
    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: None


class Fields:
    """Sealing without cryptography: an envelope of the plaintext, opened only for its order and field."""

    def seal(self, order_id: str, field: Field, plaintext: str) -> str:
        return Envelope(b"key", binding(order_id, field), plaintext.encode()).text()

    def open(self, order_id: str, field: Field, sealed: str) -> str:
        envelope = Envelope.parse(sealed)
        if envelope.nonce != binding(order_id, field):
            raise UnreadableField("another order's or field's")
        return envelope.ciphertext.decode()


def make_order(sku: str = "A", quantity: int = 2, **overrides: Any) -> dict[str, Any]:
    """A valid order for one product at 10.00 each."""
    return {"orderId": "ord-1", "customerId": "cust-1", "customerTier": "standard",
            "items": [{"sku": sku, "quantity": quantity, "unitPrice": "10.00"}],
            "totalAmount": str(10 * quantity), "currency": "USD",
            "payment": {"method": "card", "token": "tok_visa"},
            "shippingAddress": {"line1": "1 Main St", "city": "Springfield", "postalCode": "12345",
                                "country": "US"},
            "contact": {"email": "pat@example.com"}, **overrides}


def deps(world: World, gateway: Gateway | None = None) -> Deps:
    settings = Settings(env="unit")
    return Deps(settings, world, world, gateway or Gateway(), Carrier(), Metrics(),  # type: ignore[arg-type]
                Fields())


def placed(d: Deps, **overrides: Any) -> str:
    order = make_order(sku="A", quantity=2, **overrides)
    outcome = admission.place(d, order, now_iso(), "corr")
    assert outcome.record is not None and outcome.then is Step.RESERVE
    return str(order["orderId"])


def kinds(outcome: Any) -> list[str]:
    return [e.type for e in outcome.events]


def test_the_flow_is_defined_once_and_reviews_only_large_orders():
    assert happy_path(review=True) == [Step.PLACE, Step.REVIEW, Step.RESERVE, Step.CHARGE, Step.SHIP]
    assert happy_path(review=False) == [Step.PLACE, Step.RESERVE, Step.CHARGE, Step.SHIP]
    record = OrderRecord("o", OrderState.VALIDATED, 1, needs_review=True)
    assert next_step(record, Step.PLACE) is Step.REVIEW and next_step(record, Step.SHIP) is None


def test_the_pipeline_s_stages_name_their_tasks_and_a_check_is_no_step_of_the_state_machine(monkeypatch):
    assert [s.task for s in stages(review=False)] == ["orders.place", "inventory.reserve", "payments.charge",
                                                      "shipping.create_shipment"]
    assert [s.task for s in stages(review=True, start=Step.CHARGE)] == ["payments.charge",
                                                                        "shipping.create_shipment"]
    assert stages(review=True, start=Step.REFUND) == [Stage("payments.refund", Step.REFUND)]  # a branch
    assert stages(review=False, start=Step.EXPIRE) == []  # a hand outside the pipeline
    assert task_of(Step.REVIEW) == "orders.review" and task_of(Step.REFUND) == "payments.refund"
    check = Stage("orders.fraud_check")
    monkeypatch.setattr(flow, "PIPELINE", (*flow.PIPELINE[:2], check, *flow.PIPELINE[2:]))
    assert [s.task for s in stages(review=True)][1:4] == ["orders.review", "orders.fraud_check",
                                                          "inventory.reserve"]
    assert flow.following(Step.REVIEW, review=True) is Step.RESERVE  # the check records no state
    assert happy_path(review=False) == [Step.PLACE, Step.RESERVE, Step.CHARGE, Step.SHIP]


def test_an_order_goes_through_every_step_with_its_events():
    world = World({"A": 5})
    d = deps(world)
    order_id = placed(d)
    reserved = reservation.reserve(d, order_id)
    assert (reserved.then, kinds(reserved)) == (Step.CHARGE, ["StockReserved", "StockLow"])
    assert (world.available["A"], world.reserved["A"]) == (3, 2)
    paid = charge.charge(d, order_id)
    assert (paid.then, kinds(paid)) == (Step.SHIP, ["PaymentCaptured"])
    assert world.holds[order_id].state is HoldState.COMMITTED and world.reserved["A"] == 0
    shipped = shipment.ship(d, order_id)
    assert shipped.then is None and kinds(shipped) == ["OrderShipped", "OrderCompleted"]
    assert [e.status for e in world.records[order_id].history][-2:] == [OrderState.SHIPPED,
                                                                        OrderState.COMPLETED]


def test_a_step_that_runs_again_announces_again_and_changes_nothing():
    world = World({"A": 50})
    d = deps(world)
    order_id = placed(d)
    first = reservation.reserve(d, order_id)
    again = reservation.reserve(d, order_id)
    assert kinds(again) == ["StockReserved"] and again.then is Step.CHARGE and not again.skipped
    assert again.record == first.record and world.available["A"] == 48
    later = admission.place(d, make_order(orderId=order_id, sku="A", quantity=2), now_iso(), "corr")
    assert later.skipped and not later.events  # placed again, already past placement


def test_an_order_reviewed_though_small_is_still_reserved():
    """A door with a lower review threshold than the workers' sent it through review."""
    world = World({"A": 5})
    d = deps(world)
    order_id = placed(d)
    world.transition(world.records[order_id], Change(OrderState.REVIEWED, Step.REVIEW))
    assert reservation.reserve(d, order_id).then is Step.CHARGE
    assert world.records[order_id].status is OrderState.RESERVED


def test_a_short_line_cancels_the_order_naming_every_shortage():
    world = World({"A": 1})
    d = deps(world)
    order_id = placed(d)
    outcome = reservation.reserve(d, order_id)
    record = world.records[order_id]
    assert (record.status, record.reason) == (OrderState.CANCELLED, "out-of-stock")
    assert [s.to_data() for s in record.shortages] == [{"sku": "A", "requested": 2, "available": 1}]
    assert kinds(outcome) == ["OrderCancelled", "OutOfStock"] and world.available["A"] == 1


def test_a_hold_that_runs_out_while_the_money_is_taken_sends_the_order_to_refund():
    world = World({"A": 5})
    d = deps(world)
    order_id = placed(d)
    reservation.reserve(d, order_id)

    def sweep() -> None:  # the expiry sweep releases the hold between the charge's check and its commit
        hold = world.holds[order_id]
        world.transact(world.release(hold, HoldState.EXPIRED))

    outcome = charge.charge(dataclasses.replace(d, gateway=Gateway(meanwhile=sweep)), order_id)
    record = world.records[order_id]
    assert (record.status, record.reason) == (OrderState.REFUNDING, "reservation-expired")
    assert record.payment is not None and outcome.then is Step.REFUND
    assert kinds(outcome) == ["PaymentCaptured"]


def test_a_declined_card_releases_the_hold_and_cancels():
    world = World({"A": 5})
    d = deps(world)
    order_id = placed(d)
    reservation.reserve(d, order_id)
    outcome = charge.charge(dataclasses.replace(d, gateway=Gateway(decline="card declined")), order_id)
    record = world.records[order_id]
    assert (record.status, record.reason) == (OrderState.CANCELLED, "payment-declined")
    assert record.payment == Payment.declined("card declined")
    assert kinds(outcome) == ["PaymentDeclined", "OrderCancelled", "StockReleased"] and outcome.then is None
    assert (world.available["A"], world.holds[order_id].state) == (5, HoldState.RELEASED)


def never() -> None:
    pytest.fail("the gateway was called on its own: the charge was to be one transaction")


def test_a_charge_is_one_transaction_with_the_gateway_s_record():
    world, gateway = World({"A": 5}), Gateway(at_once=True, meanwhile=never)
    d = deps(world, gateway)
    order_id = placed(d)
    reservation.reserve(d, order_id)
    outcome = charge.charge(d, order_id)
    record = world.records[order_id]
    assert record.status is OrderState.PAID and record.payment == gateway.captured[order_id]
    assert kinds(outcome) == ["PaymentCaptured"] and outcome.then is Step.SHIP
    assert (world.reserved["A"], world.holds[order_id].state, gateway.charges) == (0, HoldState.COMMITTED, 1)


def test_a_decline_made_at_once_releases_the_hold_and_records_it_with_the_gateway():
    world, gateway = World({"A": 5}), Gateway(decline="card declined", at_once=True)
    d = deps(world, gateway)
    order_id = placed(d)
    reservation.reserve(d, order_id)
    outcome = charge.charge(d, order_id)
    record = world.records[order_id]
    assert (record.status, record.reason) == (OrderState.CANCELLED, "payment-declined")
    assert gateway.settled[order_id] == record.payment == Payment.declined("card declined")
    assert kinds(outcome) == ["PaymentDeclined", "OrderCancelled", "StockReleased"]
    assert (world.available["A"], world.holds[order_id].state) == (5, HoldState.RELEASED)


def test_a_charge_the_gateway_settled_before_records_that_first_outcome():
    """An earlier call (an older release's, a retried token's) settled the key: the transaction
    is refused on the gateway's condition and the charge replays the call instead."""
    world, gateway = World({"A": 5}), Gateway(at_once=True)
    d = deps(world, gateway)
    order_id = placed(d)
    reservation.reserve(d, order_id)
    first = Payment.captured("pay_first", Decimal(20), "USD", 2)
    gateway.settled[order_id] = gateway.captured[order_id] = first
    charge.charge(d, order_id)
    assert world.records[order_id].status is OrderState.PAID and world.records[order_id].payment == first


def test_a_hold_gone_when_the_charge_commits_takes_no_money_and_cancels():
    world, gateway = World({"A": 5}), Gateway(at_once=True)
    d = deps(world, gateway)
    order_id = placed(d)
    reservation.reserve(d, order_id)
    world.holds[order_id] = dataclasses.replace(world.holds[order_id], state=HoldState.EXPIRED)
    charge.charge(d, order_id)
    record = world.records[order_id]
    assert (record.status, record.reason) == (OrderState.CANCELLED, "reservation-expired")
    assert record.payment is None
    assert order_id not in gateway.captured and order_id not in gateway.settled


def test_a_message_for_an_unknown_or_finished_order_is_skipped():
    world = World({"A": 5})
    d = deps(world)
    assert charge.charge(d, "no-such-order").skipped
    assert charge.charge(d, None).skipped
    order_id = placed(d)
    assert shipment.ship(d, order_id).skipped  # not paid yet


def test_notifications_go_by_email_and_sms_and_mention_a_refund():
    contact = {"email": "a@b.c", "phone": "+1"}
    record = OrderRecord("o1", OrderState.CANCELLED, 3, content={"contact": contact},
                         refund=Refund("re", "pay", Decimal(1), "USD"))
    event = {"orderId": "o1", "eventType": "OrderCancelled", "eventId": "e1", "data": {"reason": "x"}}
    message = notification.render(event, record, contact)
    assert message["channels"] == ["email:a***@b.c", "sms:***1"]  # masked: the result reaches Flower
    assert message["text"] == "Your order o1: OrderCancelled (x; your payment has been refunded)"
    assert notification.notify(World({}), Fields(), "not an event") == {"sent": False, "skipped": True}


def test_a_hand_made_event_is_dropped_before_its_claim():
    class NoClaims(World):
        def claim_notification(self, order_id: str, event_type: str) -> None:
            raise AssertionError(f"claimed {order_id!r}")  # it would share a transaction with others

    for event in ({"orderId": "o" * 3000, "eventType": "OrderPlaced"}, {"orderId": "o1", "eventType": 7},
                  {"orderId": "o1\n", "eventType": "OrderPlaced"}, {"orderId": "o1", "eventType": "a b"}):
        assert notification.notify(NoClaims({}), Fields(), event) == {"sent": False, "skipped": True}


#: Each step of the pipeline, as its task runs it (placement aside: it takes the order, not its id).
RUN = {Step.REVIEW: review.review, Step.RESERVE: reservation.reserve, Step.CHARGE: charge.charge,
       Step.SHIP: shipment.ship, Step.REFUND: refund.refund}


def large_order(**overrides: Any) -> dict[str, Any]:
    """An order above the review threshold (2 x 3,000.00), for one product `A`."""
    return make_order(items=[{"sku": "A", "quantity": 2, "unitPrice": "3000.00"}], totalAmount="6000.00",
                      **overrides)


def run(d: Deps, step: Step, order: dict[str, Any]) -> Outcome:
    """What the message of `step` does to the order (a redrive of it included)."""
    if step is Step.PLACE:
        return admission.place(d, order, now_iso(), "corr")
    return RUN[step](d, order["orderId"])


def until(d: Deps, order: dict[str, Any], stop: Step | None) -> Outcome | None:
    """Run the order's steps, each as the last one's outcome says, up to `stop` (not run); the last
    outcome (None if `stop` is placement)."""
    step: Step | None = Step.PLACE
    outcome = None
    while step is not None and step is not stop:
        outcome = run(d, step, order)
        step = outcome.then
    return outcome


def final(d: Deps, order: dict[str, Any], first: Step) -> OrderRecord:
    """Run `first` (a redriven message), then every step it leads to; the order's record at the end."""
    until_end = run(d, first, order)
    while until_end.then is not None:
        until_end = run(d, until_end.then, order)
    record = d.orders.load(order["orderId"])
    assert record is not None
    return record


REFUSED = {"shippingAddress": {"line1": "1 Main St", "city": "Springfield", "postalCode": "00000",
                               "country": "US"}}
PATHS = {  # name: (order, the steps its messages run, how it ends)
    "reviewed": (large_order(), [Step.PLACE, Step.REVIEW, Step.RESERVE, Step.CHARGE, Step.SHIP],
                 OrderState.COMPLETED),
    "refused": (make_order(**REFUSED), [Step.PLACE, Step.RESERVE, Step.CHARGE, Step.SHIP, Step.REFUND],
                OrderState.CANCELLED),
}


@pytest.mark.parametrize("point", ["before its write", "after its write"])
@pytest.mark.parametrize(("order", "step", "end"), [
    pytest.param(order, step, end, id=f"{name}-{step}")
    for name, (order, steps, end) in PATHS.items() for step in steps])
def test_a_failed_order_s_redriven_message_resumes_it_whenever_its_step_failed(order, step, end, point):
    """The DLQ watcher marks the order failed where it stands: before the step's change or after it.
    The step's message, redriven, takes it from there to the end, charged once or refunded."""
    world, gateway = World({"A": 10}), Gateway()
    d = deps(world, gateway)
    until(d, order, step)
    if point == "after its write":
        run(d, step, order)
    before = world.records.get(order["orderId"])
    marked = world.mark_failed(order["orderId"], "dead-lettered")
    assert marked is not (before is not None and before.status.is_final)  # a final order stays as it is
    record = final(d, order, step)
    assert record.status is end and record.failed_from is None
    assert record.reason == (None if end is OrderState.COMPLETED else "undeliverable-address")
    units = 2
    assert (world.available["A"], world.reserved["A"]) == ((10 - units, 0) if end is OrderState.COMPLETED
                                                           else (10, 0))
    total = Decimal(order["totalAmount"])
    assert gateway.net(order["orderId"]) == (total if end is OrderState.COMPLETED else 0)
    # The failure stays in the history, but for a placement's stub, which the placement replaced.
    assert (OrderState.FAILED in [e.status for e in record.history]) is (marked and before is not None)


def test_a_step_that_failed_after_its_write_announces_its_change_again_from_the_failed_order():
    """The charge recorded `paid`, then could not publish until its message was dead-lettered."""
    world = World({"A": 5})
    d = deps(world)
    order_id = placed(d)
    reservation.reserve(d, order_id)
    charge.charge(d, order_id)
    assert world.mark_failed(order_id, "dead-lettered on payments")
    failed = world.records[order_id]
    assert (failed.status, failed.failed_from, failed.last_step) == (OrderState.FAILED, OrderState.PAID,
                                                                     Step.CHARGE)
    assert failed.standing().status is OrderState.PAID and failed.standing().reason is None
    again = charge.charge(d, order_id)
    assert (kinds(again), again.then, again.skipped) == (["PaymentCaptured"], Step.SHIP, False)
    assert reservation.reserve(d, order_id).skipped  # an earlier step's message: nothing to do
    shipped = shipment.ship(d, order_id)
    record = world.records[order_id]
    assert kinds(shipped) == ["OrderShipped", "OrderCompleted"]
    assert [e.status for e in record.history][-4:] == [OrderState.PAID, OrderState.FAILED,
                                                       OrderState.SHIPPED, OrderState.COMPLETED]
    assert (record.reason, record.failed_from) == (None, None)  # the failure no longer describes it


def test_a_placement_redriven_over_the_watcher_s_stub_records_the_order():
    world = World({"A": 5})
    d = deps(world)
    order = make_order()
    assert world.mark_failed(order["orderId"], "dead-lettered on orders")  # nothing recorded yet: a stub
    assert world.records[order["orderId"]].unrecorded
    outcome = admission.place(d, order, now_iso(), "corr")
    assert not outcome.conflict and kinds(outcome) == ["OrderPlaced"] and outcome.then is Step.RESERVE
    assert world.records[order["orderId"]].status is OrderState.VALIDATED


def reserved(captured: bool) -> tuple[World, Gateway, Deps, str]:
    """A reserved order (2 of 5 units of `A`) whose charge took the money, if `captured`, and never
    recorded it."""
    world, gateway = World({"A": 5}), Gateway()
    d = deps(world, gateway)
    order_id = placed(d)
    reservation.reserve(d, order_id)
    if captured:
        gateway.charge(order_id, Decimal(20), "USD", "tok_visa")
    return world, gateway, d, order_id


def test_the_sweep_refunds_a_failed_order_whose_payment_was_captured():
    """The charge captured, then failed before recording it: its order failed waiting for payment."""
    world, gateway, d, order_id = reserved(captured=True)
    world.mark_failed(order_id, "dead-lettered on payments")
    later = world.holds[order_id].expires_at + 1
    outcome = expiry.expire(d, order_id, now=later)
    assert outcome is not None and outcome.then is Step.REFUND and kinds(outcome) == ["StockReleased"]
    assert world.records[order_id].status is OrderState.REFUNDING and world.available["A"] == 5
    refund.refund(d, order_id)
    record = world.records[order_id]
    assert (record.status, record.reason) == (OrderState.CANCELLED, "reservation-expired")
    assert gateway.net(order_id) == 0 and (world.available["A"], world.reserved["A"]) == (5, 0)


def test_the_sweep_cancels_a_failed_order_that_was_never_charged():
    world, _, d, order_id = reserved(captured=False)
    world.mark_failed(order_id, "dead-lettered on inventory.fifo")
    outcome = expiry.expire(d, order_id, now=world.holds[order_id].expires_at + 1)
    assert outcome is not None and outcome.then is None
    assert kinds(outcome) == ["StockReleased", "OrderCancelled"]
    assert world.records[order_id].status is OrderState.CANCELLED and world.available["A"] == 5
    assert charge.charge(d, order_id).skipped  # its redriven charge finds it ended, and no capture


def test_a_charge_message_sends_the_refund_a_sweep_died_before_sending():
    world, gateway, d, order_id = reserved(captured=True)
    expiry.expire(d, order_id, now=world.holds[order_id].expires_at + 1)  # its refund never sent
    assert world.records[order_id].status is OrderState.REFUNDING
    outcome = charge.charge(d, order_id)
    assert outcome.skipped and outcome.then is Step.REFUND and not outcome.events
    refund.refund(d, order_id)
    assert world.records[order_id].status is OrderState.CANCELLED and gateway.net(order_id) == 0


def test_the_door_looks_up_no_more_skus_than_an_order_may_have_lines():
    world = World({"A": 5})
    lines = [{"sku": f"S-{n}", "quantity": 1, "unitPrice": "1.00"} for n in range(5000)]
    with pytest.raises(InvalidOrder):
        admission.check(world, make_order(items=lines, totalAmount="5000.00"))
    assert world.looked_up == [f"S-{n}" for n in range(MAX_LINES)]


class Counting(World):
    """A World that counts the reads a step makes."""

    def __init__(self, stock: dict[str, int]):
        super().__init__(stock)
        self.loads = self.level_reads = 0

    def load(self, order_id: str) -> OrderRecord | None:
        self.loads += 1
        return super().load(order_id)

    def levels(self, skus: Any) -> dict[str, Any]:
        self.level_reads += 1
        return super().levels(skus)


def carried(record: OrderRecord | None) -> OrderRecord | None:
    """The record as the next message carries it (through JSON, as a message header does)."""
    assert record is not None
    return OrderRecord.from_carried(json.loads(json.dumps(record.carried())))


def test_a_step_given_its_order_by_its_message_writes_first_and_reads_nothing():
    world = Counting({"A": 50})
    d = deps(world, Gateway(at_once=True))  # the simulator's: the charge is a write of the transaction
    outcome = admission.place(d, make_order(sku="A", quantity=2), now_iso(), "corr")
    for step in (reservation.reserve, charge.charge, shipment.ship):
        outcome = step(dataclasses.replace(d, given=carried(outcome.record)), "ord-1")
        assert not outcome.skipped
    assert world.records["ord-1"].status is OrderState.COMPLETED and world.records["ord-1"].version == 4
    assert (world.loads, world.level_reads) == (0, 0)  # 50 units: none left low, no level read
    assert outcome.record == world.records["ord-1"]


def test_money_moved_outside_the_transaction_is_never_moved_on_a_carried_record_alone():
    world = Counting({"A": 50})
    d = deps(world)  # a processor called before the write (a real one, outside the account)
    reserved = reservation.reserve(d, placed(d)).record
    assert reserved is not None and world.loads == 1
    forged_lines = [{"sku": "A", "quantity": 1, "unitPrice": "0.01"}]  # a valid order of its own
    cheaper = dataclasses.replace(reserved, content={**reserved.content, "items": forged_lines,
                                                     "totalAmount": "0.01"},
                                  total_amount=Decimal("0.01"))  # forged: the right version and state
    outcome = charge.charge(dataclasses.replace(d, given=carried(cheaper)), "ord-1")
    assert outcome.then is Step.SHIP and world.loads == 2  # the order read from the store first
    assert d.gateway.captured["ord-1"].amount == reserved.total_amount  # never the forged amount


def test_a_step_given_an_out_of_date_order_reads_it_and_decides_again():
    world = Counting({"A": 50})
    d = deps(world)
    placed_record = admission.place(d, make_order(sku="A", quantity=2), now_iso(), "corr").record
    first = reservation.reserve(dataclasses.replace(d, given=carried(placed_record)), "ord-1")
    again = reservation.reserve(dataclasses.replace(d, given=carried(placed_record)), "ord-1")
    assert kinds(again) == ["StockReserved"] and again.then is Step.CHARGE and world.loads == 1
    assert again.record == first.record and world.available["A"] == 48  # reserved once
    other = dataclasses.replace(placed_record, order_id="ord-2")  # another order's record is not taken
    assert charge.charge(dataclasses.replace(d, given=other), "ord-1").then is Step.SHIP
    assert world.loads == 2 and world.records["ord-1"].status is OrderState.PAID


def test_a_record_survives_the_trip_in_a_message_and_anything_else_is_no_record():
    world = World({"A": 50})
    d = deps(world)
    record = reservation.reserve(d, placed(d)).record
    assert record is not None and carried(record) == record
    money = carried(dataclasses.replace(record, total_amount=Decimal("20.00")))
    assert money is not None and money.total_amount == Decimal("20.00")  # decimal text kept
    for junk in (None, "ord-1", [], {"orderId": "ord-1"}, {**record.carried(), "status": "lost"}):
        assert OrderRecord.from_carried(junk) is None


def test_a_reservation_that_leaves_a_product_low_reads_its_level_to_say_so():
    world = Counting({"A": 8})
    d = deps(world)
    outcome = reservation.reserve(d, placed(d))  # 8 - 2 leaves 6: above the threshold (5)
    assert kinds(outcome) == ["StockReserved"] and world.level_reads == 0
    second = reservation.reserve(d, placed(d, orderId="ord-2"))  # 6 - 2 leaves 4
    assert kinds(second) == ["StockReserved", "StockLow"] and world.level_reads == 1
    assert second.events[1].data == {"sku": "A", "available": 4, "reserved": 4}
