"""The states of an order and of a stock hold, and the names of the steps: the only place they are spelled."""

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


#: No step moves an order out of these, but `failed`: a step takes a failed order on from the state it
#: failed from (its message redriven, or a later step's still on its way; orders.steps.state_machine).
FINAL_STATES: frozenset[OrderState] = frozenset(
    {OrderState.COMPLETED, OrderState.CANCELLED, OrderState.REJECTED, OrderState.FAILED})
#: The stages an order passes through on the happy path, in order (history entries carry these names).
STAGES: tuple[OrderState, ...] = (OrderState.PLACED, OrderState.VALIDATED, OrderState.REVIEWED,
                                  OrderState.RESERVED, OrderState.PAID, OrderState.SHIPPED,
                                  OrderState.COMPLETED)


class Step(StrEnum):
    """Who changed an order: the pipeline's steps and two hands outside it (history entries carry these)."""

    PLACE = "place"
    REVIEW = "review"
    RESERVE = "reserve"
    CHARGE = "charge"
    SHIP = "ship"
    REFUND = "refund"
    EXPIRE = "expire"  # the periodic sweep of expired reservations
    DLQ = "dlq"  # the DLQ watcher, when an order's message is dead-lettered


class PaymentStatus(StrEnum):
    """What became of an order's charge."""

    CAPTURED = "captured"
    DECLINED = "declined"


class HoldState(StrEnum):
    """Where a stock reservation is: taken (active), then sold, given back, run out, or returned (refund)."""

    ACTIVE = "active"
    COMMITTED = "committed"
    RELEASED = "released"
    EXPIRED = "expired"
    RETURNED = "returned"
