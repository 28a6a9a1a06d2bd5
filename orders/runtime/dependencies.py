"""The steps' dependencies made of the AWS adapters, and the DLQ watcher's way to fail an order."""

from __future__ import annotations

from orders.aws import metrics
from orders.aws.carrier import SimulatedCarrier
from orders.aws.field_crypto import FieldCrypto
from orders.aws.gateway import Gateway
from orders.aws.stock import Stock
from orders.aws.store import OrderStore
from orders.runtime import publishing
from orders.settings import Settings
from orders.steps import failure
from orders.steps.ports import Deps


def dependencies(settings: Settings) -> Deps:
    """What the steps use for the environment of `settings` (clients are made lazily, once per process)."""
    return Deps(settings, OrderStore(settings), Stock(settings), Gateway(settings), SimulatedCarrier(),
                metrics, FieldCrypto(settings))


def fail_order(settings: Settings, order_id: str, reason: str) -> bool:
    """Mark an order failed (its message reached a DLQ) and publish OrderFailed; False if it was final."""
    outcome = failure.fail_order(OrderStore(settings), order_id, reason)
    if outcome is None:
        return False
    if outcome.events:
        publishing.publish(settings, outcome.events)
    return True
