"""Restocks: units added once per restock id, in order with the product's reservations."""

from __future__ import annotations

from typing import Any

from orders.domain.events import Event
from orders.steps.ports import Inventory


def restock(stock: Inventory, sku: str, quantity: int, restock_id: str) -> tuple[dict[str, Any], list[Event]]:
    """Add `quantity` of `sku` unless this restock id was seen; the task's result and its events."""
    added = stock.restock(sku, quantity, restock_id)
    level = stock.level(sku)
    events = [Event("StockRestocked", "", restock_id, {**(level or {}), "added": quantity}, key=restock_id)] \
        if added else []
    return {"sku": sku, "added": added, "stock": level}, events
