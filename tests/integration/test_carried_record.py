"""A record carried in a message (orders.runtime.carried) is a guess its step's write checks against the
store: the version and state, and the order and amount it decides on. A forged one is not acted on."""

from __future__ import annotations

import dataclasses
from decimal import Decimal
from types import SimpleNamespace

import pytest

from orders.aws.field_crypto import FieldCrypto
from orders.aws.store import OrderStore
from orders.domain.errors import ConcurrentUpdate
from orders.domain.order import validate
from orders.domain.records import Change, OrderRecord
from orders.domain.states import OrderState, Step
from orders.runtime import carried
from tests.integration.pipeline_support import make_order

CANCEL = Change(OrderState.CANCELLED, Step.RESERVE, "test")


def placed(settings) -> tuple[OrderStore, OrderRecord]:
    store = OrderStore(settings)
    record, _ = store.create(validate(make_order(sku="SKU-CARRIED", quantity=2)), "2026-01-01T00:00:00Z",
                             "corr-1", False)
    return store, record


def test_a_forged_record_with_the_right_version_but_another_amount_or_other_lines_changes_nothing(infra):
    store, record = placed(infra)
    cheaper = dataclasses.replace(record, total_amount=Decimal("0.01"))
    more = dataclasses.replace(record, content={**record.content, "items": [
        {"sku": "SKU-OTHER", "quantity": 50, "unitPrice": "10.00"}]})
    for forged in (cheaper, more):
        carried = OrderRecord.from_carried(forged.carried())
        assert carried is not None and carried.version == record.version and carried.status is record.status
        with pytest.raises(ConcurrentUpdate):
            store.transition(carried, CANCEL)
    assert store.get(record.order_id)["version"] == record.version  # untouched


def test_the_record_as_its_step_carried_it_is_written_at_once(infra):
    store, record = placed(infra)
    carried = OrderRecord.from_carried(record.carried())  # the header's round trip
    assert carried is not None
    assert store.transition(carried, CANCEL).status is OrderState.CANCELLED
    assert store.get(record.order_id)["status"] == "cancelled"


def test_a_message_s_record_is_taken_only_for_its_own_order_with_its_fields_sealed(infra):
    store = OrderStore(infra)
    sealed = validate(make_order(sku="SKU-CARRIED")).sealed(FieldCrypto(infra).seal)
    record, _ = store.create(sealed, "2026-01-01T00:00:00Z", "corr-1", False)
    message = SimpleNamespace(**{carried.HEADER: record.carried()})
    taken = carried.given(message)
    assert taken is not None and taken.version == record.version and taken.content == record.content
    # Another order's record under this one's id, and one whose address is in clear (a forged
    # address would be booked as it is; a sealed one opens only under its own order and field).
    _, clear = placed(infra)
    for forged in (dataclasses.replace(record, content=clear.content),
                   clear):
        assert carried.given(SimpleNamespace(**{carried.HEADER: forged.carried()})) is None
