"""The states of an order: one enum, the only place their names are spelled."""

from __future__ import annotations

from enum import StrEnum


class OrderState(StrEnum):
    """Where an order is. Stored, logged and shown by its value ("paid")."""

    PLACED = "placed"
    VALIDATED = "validated"
    REVIEWED = "reviewed"
    RESERVED = "reserved"
    PAID = "paid"
    SHIPPED = "shipped"
    COMPLETED = "completed"
    REFUNDING = "refunding"
    CANCELLED = "cancelled"
    REJECTED = "rejected"
    FAILED = "failed"

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATES


#: No step moves an order out of these (a redrive of a failed step is the operator's choice).
FINAL_STATES: frozenset[OrderState] = frozenset(
    {OrderState.COMPLETED, OrderState.CANCELLED, OrderState.REJECTED, OrderState.FAILED})
#: The stages an order passes through on the happy path, in order (history entries carry these names).
STAGES: tuple[OrderState, ...] = (OrderState.PLACED, OrderState.VALIDATED, OrderState.REVIEWED,
                                  OrderState.RESERVED, OrderState.PAID, OrderState.SHIPPED,
                                  OrderState.COMPLETED)
