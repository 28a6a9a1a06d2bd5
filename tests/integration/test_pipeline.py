"""The order pipeline end to end: real emulator over HTTP, real workers, every queue."""

from __future__ import annotations

from orders import place_order
from orders.gateway import Gateway
from orders.inventory import get_stock, set_stock
from tests.integration.pipeline_support import make_order, pipeline, statuses, wait_final


def test_regular_order_completes(infra):
    set_stock(infra, "SKU-1", 10)
    order = make_order(quantity=2)
    place_order.delay(order)
    with pipeline():
        record = wait_final(infra, order["orderId"])
    assert record["status"] == "completed", record
    assert statuses(record) == ["placed", "validated", "reserved", "paid", "shipped", "completed"]
    assert record["shipment"]["trackingNumber"].startswith("1Z")
    assert get_stock(infra, "SKU-1") == {"sku": "SKU-1", "available": 8, "reserved": 0}
    assert Gateway(infra).lookup(f"{order['orderId']}:charge")["captures"] == 1
