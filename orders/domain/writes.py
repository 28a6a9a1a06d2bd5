"""Writes that happen together or not at all: made by the adapters, combined by the steps.

A step that changes stock and an order at once (take a hold and mark the order reserved)
asks each adapter for its writes and has them run as one transaction. When the transaction
is refused, the step learns which condition failed from what each write guarded, never from
where the write sat in the list.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class Guard(StrEnum):
    """What a write's condition protects."""

    STOCK = "stock"  # the product still has the units (only taking a hold has this condition)
    HOLD = "hold"  # the hold is in the state the write moves it from (taking it: it does not exist yet)
    ORDER = "order"  # the order is still at the version it was read at
    PAYMENT = "payment"  # the payment gateway has not settled the charge yet (an earlier call did not)


@dataclass(frozen=True)
class Write:
    """One conditional write of a transaction. `request` is the adapter's own (for DynamoDB, one
    TransactWriteItems entry): the steps pass it on and never look inside."""

    guard: Guard
    request: Mapping[str, Any]


@dataclass(frozen=True)
class Refusal:
    """A transaction that did not happen: the guards whose condition failed, and the store's codes."""

    failed: frozenset[Guard]
    codes: tuple[str, ...]
