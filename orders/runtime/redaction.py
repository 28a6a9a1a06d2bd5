"""What a task message says about itself (`argsrepr`, `kwargsrepr`): a short line, never the order.

Celery writes `repr(args)` into every message's headers, and from there into the
task-sent and task-received events (the control plane, Flower's pages and API), the
worker's `inspect` answers and its failure log. An order's arguments hold its payment
token, contact and shipping address (sealed, or in clear in a hand-made message):
for the pipeline's tasks the line is built here instead, from fields that are safe
to show, each checked before it is shown:

    orders.place          (order ord-123: 3 lines, 59.97 USD, vip)   {'placed_at': '2026-...'}
    payments.charge       ('ord-123',)                               {}
    notifications.notify  (event OrderShipped of ord-123,)           {}
    notifications.publish (2 events: OrderPlaced of ord-1, ...,)     {}

Senders get it from orders.runtime.amqp (every message this app builds), workers from
`RedactedRequest` (a message someone else built: an older release, a hand-made one).
Tasks not named here keep Celery's repr: their arguments are ids and counts.

Operators who need the arguments themselves (`orders dlq show`) get `shown(value)`: sealed
values as "sealed" (a ciphertext tells a reader nothing), and a sensitive field found in
clear (a message of an older release, a hand-made one) masked as orders.domain.sensitive
masks it. `mask_text` masks what looks like an email, a token or a phone number in free text
(an error message): a safety net under the rule that messages quote no sensitive value.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from celery.worker.request import Request

from orders.domain.events import EVENT_TOPICS
from orders.domain.order import CURRENCIES, ID_PATTERN, PAYMENT_METHODS, TIERS
from orders.domain.sensitive import SEALED_KEY, mask_email, mask_phone, mask_token

PLACE_TASK = "orders.place"
NOTIFY_TASK = "notifications.notify"
PUBLISH_TASK = "notifications.publish"
#: Tasks whose one argument is an order id.
ORDER_ID_TASKS = frozenset({"orders.review", "inventory.reserve", "payments.charge", "payments.refund",
                            "shipping.create_shipment"})
#: Tasks whose arguments name one order (its id, the order, its events).
ORDER_TASKS = ORDER_ID_TASKS | {PLACE_TASK, NOTIFY_TASK, PUBLISH_TASK}
#: Keyword arguments shown with their value when it is a timestamp (others by name only).
TIME_KWARGS = frozenset({"placed_at"})
#: How many events of a publishing task's message are named; the rest are counted.
EVENTS_SHOWN = 3
#: What `shown` puts in place of a sealed value.
SEALED = "sealed"
#: Address fields that `shown` keeps: the rest of an address in clear is masked.
ADDRESS_KEPT = frozenset({"country"})
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9.-]{1,253}\.[A-Za-z]{2,63}")
_TOKEN = re.compile(rf"\b(?:{'|'.join(PAYMENT_METHODS.values())})[A-Za-z0-9_-]{{1,128}}")
_PHONE = re.compile(r"\+[0-9][0-9 ()-]{5,19}[0-9]")
_AMOUNT = re.compile(r"\A[0-9]{1,12}(\.[0-9]{1,4})?\Z")
_TIMESTAMP = re.compile(r"\A[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]{2,20}(Z|[+-][0-9]{2}:[0-9]{2})?\Z")


def describe(task: str, args: Any, kwargs: Any) -> tuple[str, str] | None:
    """(argsrepr, kwargsrepr) of a message of `task`; None for a task whose arguments are safe as they are."""
    line = _DESCRIBERS.get(task) or (_order_id_call if task in ORDER_ID_TASKS else None)
    if line is None:
        return None
    positional = list(args) if isinstance(args, list | tuple) else [args]
    try:
        return line(positional), _kwargs(kwargs)
    except Exception:  # any shape at all (a poison message): still a line, never an error while sending
        return f"(<{len(positional)} argument(s)>)", _kwargs(kwargs)


def _place_call(args: list[Any]) -> str:
    order = args[0] if args else None
    more = f", +{len(args) - 1} more argument(s)" if len(args) > 1 else ""
    return f"({order_summary(order)}{more})"


def order_summary(order: Any) -> str:
    """`order ord-123: 3 lines, 59.97 USD, vip`: what an order may show of itself anywhere."""
    if not isinstance(order, Mapping):
        return f"<not an order: {type(order).__name__}>"
    items = order.get("items")
    lines = f"{len(items)} line{'s' if len(items) != 1 else ''}" if isinstance(items, list) else "? lines"
    total = _shown(order.get("totalAmount"), lambda v: bool(_AMOUNT.match(v)))
    currency = _shown(order.get("currency"), lambda v: v in CURRENCIES)
    tier = _shown(order.get("customerTier", "standard"), lambda v: v in TIERS)
    return f"order {order_id(order.get('orderId'))}: {lines}, {total} {currency}, {tier}"


def order_in(args: Any) -> str | None:
    """The order id a task's arguments name, if it is one: an order id, an order's or an event's
    `orderId`, a publishing task's first event's."""
    first = args[0] if isinstance(args, list | tuple) and args else None
    if isinstance(first, list) and first:  # notifications.publish: a list of events
        first = first[0]
    if isinstance(first, Mapping):
        first = first.get("orderId", first.get("order_id"))
    shown = order_id(first)
    return None if shown == "?" else shown


def order_of(task: str, args: Any) -> str | None:
    """The order id of a message of `task`, for the tasks about one order (a restock's first
    argument is a SKU), else None."""
    return order_in(args) if task in ORDER_TASKS else None


def order_id(value: Any) -> str:
    """An order id as it may be shown: itself when it is one, else `?`."""
    return value if isinstance(value, str) and ID_PATTERN.match(value) else "?"


def _shown(value: Any, safe: Callable[[str], bool]) -> str:
    return value if isinstance(value, str) and len(value) <= 32 and safe(value) else "?"


def _order_id_call(args: list[Any]) -> str:
    shown = [repr(a) if isinstance(a, str) and ID_PATTERN.match(a) else "<not an order id>" for a in args]
    return f"({', '.join(shown)}{',' if len(shown) == 1 else ''})"


def event_summary(envelope: Any) -> str:
    """`event OrderShipped of ord-123`: an event's type and order, never its data."""
    if not isinstance(envelope, Mapping):
        return f"<not an event: {type(envelope).__name__}>"
    kind = envelope.get("eventType", envelope.get("type"))
    shown = kind if isinstance(kind, str) and kind in EVENT_TOPICS else "?"
    return f"event {shown} of {order_id(envelope.get('orderId', envelope.get('order_id')))}"


def _notify_call(args: list[Any]) -> str:
    return f"({', '.join(event_summary(a) for a in args)}{',' if len(args) == 1 else ''})"


def _publish_call(args: list[Any]) -> str:
    events = args[0] if args else None
    if not isinstance(events, list):
        return f"(<not a list of events: {type(events).__name__}>,)"
    named = ", ".join(event_summary(e) for e in events[:EVENTS_SHOWN])
    rest = f", +{len(events) - EVENTS_SHOWN} more" if len(events) > EVENTS_SHOWN else ""
    return f"({len(events)} event{'s' if len(events) != 1 else ''}: {named}{rest},)"


def _kwargs(kwargs: Any) -> str:
    if not isinstance(kwargs, Mapping) or not kwargs:
        return "{}"
    shown = []
    for name, value in kwargs.items():
        label = name if isinstance(name, str) and ID_PATTERN.match(name) else "?"
        if label in TIME_KWARGS and isinstance(value, str) and _TIMESTAMP.match(value):
            shown.append(f"{label!r}: {value!r}")
        elif value is None:
            shown.append(f"{label!r}: None")
        else:
            shown.append(f"{label!r}: <{type(value).__name__}>")
    return "{" + ", ".join(shown) + "}"


_DESCRIBERS: dict[str, Callable[[list[Any]], str]] = {
    PLACE_TASK: _place_call, NOTIFY_TASK: _notify_call, PUBLISH_TASK: _publish_call}


def shown(value: Any) -> Any:
    """A JSON value (a message's arguments): sealed values as "sealed", sensitive fields in clear masked."""
    if isinstance(value, list | tuple):
        return [shown(v) for v in value]
    if not isinstance(value, Mapping):
        return mask_text(value) if isinstance(value, str) else value
    if set(value) == {SEALED_KEY}:
        return SEALED
    out: dict[str, Any] = {}
    for key, item in value.items():
        if key == "payment" and isinstance(item, Mapping) and isinstance(item.get("token"), str):
            item = {**item, "token": mask_token(item["token"])}
        elif key == "contact" and isinstance(item, Mapping):
            item = {k: (mask_email(v) if k == "email" else mask_phone(v)) if isinstance(v, str) else v
                    for k, v in item.items()}
        elif key == "shippingAddress" and isinstance(item, Mapping):
            item = {k: v if k in ADDRESS_KEPT else "***" for k, v in item.items()}
        out[key] = shown(item)
    return out


def mask_text(text: str) -> str:
    """`text` with anything that looks like an email, a payment token or a phone number masked."""
    text = _EMAIL.sub(lambda m: mask_email(m.group()), text)
    text = _TOKEN.sub(lambda m: mask_token(m.group()), text)
    return _PHONE.sub(lambda m: mask_phone(m.group()), text)


class RedactedRequest(Request):  # type: ignore[misc]
    """Celery's worker request whose argsrepr/kwargsrepr are ours whatever the message says: they go
    into the task-received event, `inspect active|reserved` answers and the failure log."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        described = describe(self.type, self.args, self.kwargs)
        if described is not None:
            self._argsrepr, self._kwargsrepr = described
            # The task's own request (and Celery's failure log) reads the headers' copy.
            self.request_dict["argsrepr"], self.request_dict["kwargsrepr"] = described
