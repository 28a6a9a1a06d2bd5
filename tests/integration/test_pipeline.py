"""The order pipeline end to end: real emulator over HTTP, real workers, every queue."""

from __future__ import annotations

import time
from decimal import Decimal

from orders import place_order
from orders.aws import clients
from orders.aws.gateway import Gateway
from orders.aws.stock import get_stock, set_stock
from orders.aws.store import OrderStore
from tests.helpers import wait_for
from tests.integration.pipeline_support import (
    drain_events,
    make_order,
    pipeline,
    statuses,
    subscribe_probe,
    wait_final,
)

#: A completed order tells its customer twice: the confirmation and the tracking number.
CUSTOMER_NOTIFICATIONS = {"OrderPlaced", "OrderShipped"}


def test_regular_order_completes_with_its_events_and_notifications(infra):
    set_stock(infra, "SKU-1", 10)
    probe = subscribe_probe(infra)
    order = make_order(quantity=2, price="12.50")
    place_order.delay(order)
    with pipeline():
        record = wait_final(infra, order["orderId"])
        wait_for(lambda: set(OrderStore(infra).get(order["orderId"])["notifications"])
                 >= CUSTOMER_NOTIFICATIONS, timeout=60)
    assert record["status"] == "completed" and record["reason"] is None
    assert statuses(record) == ["placed", "validated", "reserved", "paid", "shipped", "completed"]
    assert record["totalAmount"] == "25.00" and record["payment"]["amount"] == "25.00"
    assert record["shipment"]["trackingNumber"].startswith("1Z")
    assert get_stock(infra, "SKU-1") == {"sku": "SKU-1", "available": 8, "reserved": 0}
    assert Gateway(infra).lookup(f"{order['orderId']}:charge")["attempts"] == 1  # one call to the gateway
    events = drain_events(infra, probe)
    kinds = [e["eventType"] for e in events]
    assert sorted(kinds) == sorted(["OrderPlaced", "StockReserved", "PaymentCaptured", "OrderShipped",
                                    "OrderCompleted"])
    assert all(e["orderId"] == order["orderId"] and e["_attributes"]["event_type"] == e["eventType"]
               for e in events)
    assert len({e["correlationId"] for e in events}) == 1


def test_vip_order_goes_through_the_priority_fifo_queue(infra):
    set_stock(infra, "SKU-V", 3)
    order = make_order(sku="SKU-V", tier="vip", token="wallet_ok")
    place_order.delay(order)
    sqs = clients.client("sqs", infra)
    from orders.runtime.queue_urls import queue_url

    attrs = sqs.get_queue_attributes(QueueUrl=queue_url(infra, "orders-priority.fifo"),
                                     AttributeNames=["ApproximateNumberOfMessages"])["Attributes"]
    assert attrs["ApproximateNumberOfMessages"] == "1"
    place_order.delay(order)  # deduplicated by order id on the FIFO queue
    with pipeline(["orders-priority.fifo", "inventory.fifo", "payments", "shipping"]):
        record = wait_final(infra, order["orderId"])
    assert record["status"] == "completed" and record["customerTier"] == "vip"
    assert get_stock(infra, "SKU-V")["available"] == 2


def test_declined_card_cancels_and_releases_the_stock(infra):
    set_stock(infra, "SKU-D", 4)
    probe = subscribe_probe(infra)
    order = make_order(sku="SKU-D", quantity=3, token="tok_chargeDeclined")
    place_order.delay(order)
    with pipeline():
        record = wait_final(infra, order["orderId"])
        # The customer hears once that the order is cancelled (the reason says why), not
        # once more for PaymentDeclined, which carries no news for them.
        wait_for(lambda: OrderStore(infra).load(order["orderId"]).notifications_sent == 2, timeout=60)
        time.sleep(2)  # a third notification would have been claimed by now
    assert set(OrderStore(infra).load(order["orderId"]).notifications) == {"OrderPlaced", "OrderCancelled"}
    assert OrderStore(infra).load(order["orderId"]).notifications_sent == 2
    assert (record["status"], record["reason"]) == ("cancelled", "payment-declined")
    assert statuses(record) == ["placed", "validated", "reserved", "cancelled"]
    assert record["payment"] == {"status": "declined", "reason": "card declined"}
    assert get_stock(infra, "SKU-D") == {"sku": "SKU-D", "available": 4, "reserved": 0}
    kinds = {e["eventType"]: e for e in drain_events(infra, probe)}
    assert {"PaymentDeclined", "StockReleased", "OrderCancelled"} <= set(kinds)
    assert kinds["OrderCancelled"]["_attributes"]["severity"] == "warning"


def test_out_of_stock_cancels_without_charging(infra):
    set_stock(infra, "SKU-O", 1)
    set_stock(infra, "SKU-P", 9)
    order = make_order(items=[{"sku": "SKU-P", "quantity": 2, "unitPrice": "1.00"},
                              {"sku": "SKU-O", "quantity": 2, "unitPrice": "3.00"}], totalAmount="8.00")
    place_order.delay(order)
    with pipeline():
        record = wait_final(infra, order["orderId"])
    assert (record["status"], record["reason"]) == ("cancelled", "out-of-stock")
    assert Gateway(infra).lookup(f"{order['orderId']}:charge") is None
    assert get_stock(infra, "SKU-P") == {"sku": "SKU-P", "available": 9, "reserved": 0}  # all or nothing
    assert get_stock(infra, "SKU-O")["available"] == 1


def test_processing_error_completes_after_retries(infra):
    set_stock(infra, "SKU-R", 2)
    order = make_order(sku="SKU-R", token="tok_processingError")
    place_order.delay(order)
    with pipeline():
        record = wait_final(infra, order["orderId"])
    assert record["status"] == "completed", record
    charge = Gateway(infra).lookup(f"{order['orderId']}:charge")
    assert (charge["attempts"], charge["captures"], record["payment"]["attempts"]) == (3, 1, 3)


def test_large_orders_pass_the_review_step(infra):
    set_stock(infra, "SKU-L", 10)
    large = make_order(sku="SKU-L", quantity=3, price="2000.00")
    flagged = make_order(sku="SKU-L", quantity=3, price="2000.00", customerId="flagged-1")
    place_order.delay(large)
    place_order.delay(flagged)
    with pipeline():
        approved, declined = wait_final(infra, large["orderId"]), wait_final(infra, flagged["orderId"])
    assert statuses(approved) == ["placed", "validated", "reviewed", "reserved", "paid", "shipped",
                                  "completed"]
    assert (declined["status"], declined["reason"]) == ("cancelled", "review-declined")
    assert get_stock(infra, "SKU-L")["available"] == 7
    assert approved["totalAmount"] == str(Decimal("6000.00"))


def test_a_failure_after_capture_refunds_and_restocks(infra):
    set_stock(infra, "SKU-S", 5)
    order = make_order(sku="SKU-S", quantity=2)
    order["shippingAddress"]["postalCode"] = "00000"  # the simulated carrier refuses it
    place_order.delay(order)
    with pipeline():
        record = wait_final(infra, order["orderId"])
    assert (record["status"], record["reason"]) == ("cancelled", "undeliverable-address")
    assert statuses(record) == ["placed", "validated", "reserved", "paid", "refunding", "cancelled"]
    assert Gateway(infra).lookup(f"{order['orderId']}:refund")["status"] == "refunded"
    assert get_stock(infra, "SKU-S") == {"sku": "SKU-S", "available": 5, "reserved": 0}
