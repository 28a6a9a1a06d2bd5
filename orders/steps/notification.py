"""The notify step: tell the customer about each customer event, once.

Customer events (orders.topology.CUSTOMER_EVENTS: the confirmation, the tracking
number, a cancellation with its reason, a rejection) reach the notifications queue
from SNS. Each (order id, event type) is claimed once with a conditional write on the
order (its `notifications` map, the step's idempotency record) before anything is
sent, so a duplicate event notifies nobody twice. Delivery is SIMULATED: the rendered
message is logged (a real service would hand it to SES/SNS SMS here).

The contact is the one field this step opens (orders.domain.sensitive), in memory, where a
real service would hand it to the sender; the log and the task's result (which Flower and
the control plane show) name the channels masked only (`email:a***@example.com`, `sms:***23`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from orders.domain.order import ID_PATTERN
from orders.domain.records import OrderRecord
from orders.domain.sensitive import Field, UnreadableField, mask_email, mask_phone, sealed_value
from orders.steps.ports import Fields, Orders

log = logging.getLogger(__name__)

SMS_EVENTS = ("OrderShipped", "OrderCancelled")


def notify(orders: Orders, fields: Fields, event: Any) -> dict[str, Any]:
    """Send the customer notification for one event envelope (once per order and event type)."""
    if not isinstance(event, dict) or not all(isinstance(event.get(k), str) and ID_PATTERN.match(event[k])
                                              for k in ("orderId", "eventType")):
        # Before its claim: claims are made together (orders.aws.claims), and a hand-made event
        # with an id DynamoDB refuses (over its key length) would fail its neighbours' claims too.
        log.warning("notify: not an order event, dropped: %.200r", event)
        return {"sent": False, "skipped": True}
    order_id, kind = str(event["orderId"]), str(event["eventType"])
    record = orders.claim_notification(order_id, kind)
    if record is None:
        return {"orderId": order_id, "event": kind, "sent": False}
    try:
        contact = contact_of(record, fields)
    except UnreadableField as exc:
        log.warning("notify %s: %s; not sent", order_id, exc)
        return {"orderId": order_id, "event": kind, "sent": False, "reason": UnreadableField.reason}
    message = render(event, record, contact)
    # Simulated delivery: a real service would hand `contact` to SES / SNS SMS here.
    log.info("notify %s: %s via %s", order_id, message["text"], ", ".join(message["channels"]) or "none")
    return {"orderId": order_id, "event": kind, "sent": True, **message}


def contact_of(record: OrderRecord, fields: Fields) -> dict[str, Any]:
    """The order's contact in clear (opened if sealed), {} for a record without one (a rejected order)."""
    raw = (record.content or {}).get("contact")
    sealed = sealed_value(raw)
    if sealed is None:
        return dict(raw) if isinstance(raw, dict) else {}
    found = json.loads(fields.open(record.order_id, Field.CONTACT, sealed.text))
    return found if isinstance(found, dict) else {}


def render(event: Mapping[str, Any], record: OrderRecord | None,
           contact: Mapping[str, Any]) -> dict[str, Any]:
    """The customer's message for an event, and where it goes (email always, SMS for a few), masked."""
    channels = [f"email:{mask_email(str(contact['email']))}"] if contact.get("email") else []
    if contact.get("phone") and event["eventType"] in SMS_EVENTS:
        channels.append(f"sms:{mask_phone(str(contact['phone']))}")
    data = event.get("data") or {}
    detail = data.get("trackingNumber") or data.get("reason") or ""
    if event["eventType"] == "OrderCancelled" and record is not None and record.refund:
        detail += "; your payment has been refunded"  # the one message a refunded customer gets
    text = f"Your order {event['orderId']}: {event['eventType']}" + (f" ({detail})" if detail else "")
    return {"eventId": event.get("eventId"), "text": text, "channels": channels}
