"""Task messages describe their arguments in a short line that never holds the order's sensitive fields."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kombu.message import Message

from orders.celery import app
from orders.runtime.redaction import RedactedRequest, describe, mask_text, shown

SECRETS = ("tok_visa4242", "pat@example.com", "+15555550100", "1 Main St")


def order(**overrides: Any) -> dict[str, Any]:
    return {"orderId": "ord-123", "customerId": "cust-1", "customerTier": "vip", "currency": "USD",
            "items": [{"sku": "A", "quantity": 1, "unitPrice": "19.99"}] * 3, "totalAmount": "59.97",
            "payment": {"method": "card", "token": "tok_visa4242"},
            "shippingAddress": {"line1": "1 Main St", "city": "Springfield", "postalCode": "12345",
                                "country": "US"},
            "contact": {"email": "pat@example.com", "phone": "+15555550100"}, **overrides}


def headers(name: str, args: Any, kwargs: Any = None, **options: Any) -> dict[str, Any]:
    """The headers of the message the app builds (what a send, a hand-off or a retry puts on SQS)."""
    return dict(app.amqp.as_task_v2("tid-1", name, args, kwargs, **options).headers)


def test_a_placement_shows_the_order_s_id_size_total_and_tier_only() -> None:
    sent = headers("orders.place", (order(),), {"placed_at": "2026-01-01T00:00:00.000000Z"})
    assert sent["argsrepr"] == "(order ord-123: 3 lines, 59.97 USD, vip)"
    assert sent["kwargsrepr"] == "{'placed_at': '2026-01-01T00:00:00.000000Z'}"


def test_a_retry_s_message_is_described_too() -> None:
    """Celery's retry builds its message without an argsrepr: the app describes it all the same."""
    sent = headers("orders.place", [order()], {"placed_at": "2026-01-01T00:00:00Z"}, retries=3,
                   argsrepr=None, kwargsrepr=None)
    assert sent["argsrepr"] == "(order ord-123: 3 lines, 59.97 USD, vip)" and sent["retries"] == 3


@pytest.mark.parametrize("bad", [
    {"orderId": "pat@example.com", "totalAmount": "+15555550100", "currency": "1 Main St",
     "customerTier": "tok_visa4242", "items": "x"},
    "pat@example.com tok_visa4242", [order()], None,
])
def test_whatever_a_message_holds_its_line_quotes_no_field_but_the_safe_ones(bad: Any) -> None:
    argsrepr, kwargsrepr = describe("orders.place", (bad, "tok_visa4242"), {"pat@example.com": "+15555550100",
                                                                              "placed_at": "1 Main St"})
    assert not any(secret in argsrepr + kwargsrepr for secret in SECRETS), (argsrepr, kwargsrepr)


def test_step_events_and_publishing_messages_show_ids_and_event_types() -> None:
    assert headers("payments.charge", ("ord-123",))["argsrepr"] == "('ord-123',)"
    assert headers("payments.charge", ("pat@example.com",))["argsrepr"] == "(<not an order id>,)"
    event = {"eventType": "OrderShipped", "orderId": "ord-123", "data": {"contact": SECRETS[1]}}
    assert headers("notifications.notify", (event,))["argsrepr"] == "(event OrderShipped of ord-123,)"
    events = [{"type": "OrderPlaced", "order_id": f"ord-{n}", "data": {"x": SECRETS[0]}} for n in range(5)]
    assert headers("notifications.publish", (events,))["argsrepr"] == (
        "(5 events: event OrderPlaced of ord-0, event OrderPlaced of ord-1, event OrderPlaced of ord-2, "
        "+2 more,)")


def test_other_tasks_keep_celery_s_repr() -> None:
    assert describe("inventory.restock", ("A", 3, "restock-1"), {}) is None
    assert headers("inventory.restock", ("A", 3, "restock-1"))["argsrepr"] == "('A', 3, 'restock-1')"


def test_a_worker_describes_a_message_whatever_its_sender_wrote() -> None:
    """A message from an older release or a hand-made one: the task-received event shows our line."""
    import tasks.orders  # noqa: F401 (registers orders.place)

    sent = {"lang": "py", "task": "orders.place", "id": "tid-2", "argsrepr": repr(order()),
            "kwargsrepr": "{'placed_at': 'pat@example.com'}", "root_id": "tid-2", "parent_id": None}
    body = json.dumps([[order()], {"placed_at": "pat@example.com"}, {}])
    message = Message(body=body, headers=sent, content_type="application/json", content_encoding="utf-8",
                      delivery_info={"exchange": "", "routing_key": "orders"}, properties={})
    request = RedactedRequest(message, app=app, task=app.tasks["orders.place"])
    assert request.argsrepr == "(order ord-123: 3 lines, 59.97 USD, vip)"
    assert request.kwargsrepr == "{'placed_at': <str>}"
    assert request.request_dict["argsrepr"] == request.argsrepr


def test_an_operator_sees_sealed_values_as_sealed_and_fields_in_clear_masked() -> None:
    sealed = {"sealed": "ofe1.AAAA.BBBB.CCCC"}
    opened = shown([order(payment={"method": "card", "token": sealed}, contact=sealed,
                          shippingAddress=sealed)])
    assert (opened[0]["payment"], opened[0]["contact"]) == ({"method": "card", "token": "sealed"}, "sealed")
    clear = shown([order()])[0]
    assert (clear["payment"]["token"], clear["contact"], clear["shippingAddress"]) == (
        "tok_…4242", {"email": "p***@example.com", "phone": "***00"},
        {"line1": "***", "city": "***", "postalCode": "***", "country": "US"})
    assert shown({"note": "call +1 555 555 0100"}) == {"note": "call ***00"}


def test_free_text_is_masked_where_it_looks_like_an_email_token_or_phone() -> None:
    text = "tok_visa4242 declined for pat@example.com (+15555550100) at 2026-01-01T00:00:00Z, 59.97 USD"
    assert mask_text(text) == ("tok_…4242 declined for p***@example.com (***00) at 2026-01-01T00:00:00Z, "
                               "59.97 USD")
