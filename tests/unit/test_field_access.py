"""Which sensitive field each step opens: charge the token, shipping the address, notify the contact,
every other step none (the steps against the in-memory world of tests/unit/test_steps.py)."""

from __future__ import annotations

import json
from dataclasses import replace

from orders.domain.records import OrderRecord
from orders.domain.sensitive import Field, sealed_value
from orders.domain.states import OrderState, Step
from orders.steps import notification
from tests.unit.test_steps import RUN, Fields, World, deps, placed


class Watched(Fields):
    """The stand-in Fields, noting each field opened."""

    def __init__(self) -> None:
        self.opened: list[Field] = []

    def open(self, order_id: str, field: Field, sealed: str) -> str:
        self.opened.append(field)
        return super().open(order_id, field, sealed)


class Claims(World):
    def claim_notification(self, order_id: str, event_type: str) -> OrderRecord | None:
        return self.records.get(order_id)


def test_each_step_opens_only_the_field_it_needs_and_the_record_keeps_them_sealed():
    world, fields = Claims({"A": 5}), Watched()
    d = replace(deps(world), fields=fields)
    order_id = placed(d)  # a place message in clear: the step seals it
    content = world.records[order_id].content or {}
    assert all(sealed_value(v) for v in (content["contact"], content["shippingAddress"],
                                         content["payment"]["token"]))
    opened = {}
    for step in (Step.RESERVE, Step.CHARGE, Step.SHIP):
        fields.opened.clear()
        RUN[step](d, order_id)
        opened[step] = list(fields.opened)
    fields.opened.clear()
    event = {"orderId": order_id, "eventType": "OrderShipped", "eventId": "e1", "data": {}}
    sent = notification.notify(world, fields, event)
    assert opened == {Step.RESERVE: [], Step.CHARGE: [Field.PAYMENT_TOKEN],
                      Step.SHIP: [Field.SHIPPING_ADDRESS]}
    assert fields.opened == [Field.CONTACT] and world.records[order_id].status is OrderState.COMPLETED
    assert sent["channels"] == ["email:p***@example.com"] and "pat@example.com" not in json.dumps(sent)
