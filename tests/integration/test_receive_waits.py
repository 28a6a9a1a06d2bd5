"""How long a queue that answered a receive short is left to fill up: the worker's wait on the orders'
path, a longer one on the queues the topology puts off it (the notifications).

A real channel on the emulator (making one resolves the queues' URLs); its event loop is a recorder of
what the channel schedules.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from kombu import Connection

from orders.runtime import transport
from orders.runtime.config import celery_settings
from orders.settings import ConfigurationError, Settings
from orders.topology import QUEUES

pytestmark = pytest.mark.integration


class Hub:
    """Records what the channel schedules, and when (0: at once), instead of running an event loop."""

    def __init__(self) -> None:
        self.later: list[tuple[float, Any, tuple[Any, ...]]] = []

    def call_later(self, delay: float, callback: Any, *args: Any) -> None:
        self.later.append((delay, callback, args))

    def call_soon(self, callback: Any, *args: Any) -> None:
        self.later.append((0.0, callback, args))


def waits_after_a_short_answer(settings: Settings) -> dict[str, float | None]:
    """Each queue's wait before its next receive, after one that brought 3 of the 10 messages asked for."""
    options = celery_settings(settings)["broker_transport_options"]
    found: dict[str, float | None] = {}
    with Connection(f"{transport.SCHEME}://", transport_options=options) as conn:
        channel = conn.default_channel
        for queue in QUEUES:
            channel.hub = Hub()
            channel._requested[queue.name] = 10
            channel._loop1(queue.name, 3)
            later = channel.hub.later
            found[queue.name] = later[0][0] if later and later[0][2] == (queue.name,) else None
    return found


def test_a_queue_off_the_orders_path_waits_its_own_longer_while_the_others_wait_the_workers(infra) -> None:
    waits = waits_after_a_short_answer(infra)
    assert waits == {q.name: 1.0 if q.off_order_path else 0.25 for q in QUEUES}
    assert waits["notifications"] == 1.0 and waits["payments"] == 0.25 and waits["inventory.fifo"] == 0.25


def test_both_waits_are_settings(infra) -> None:
    waits = waits_after_a_short_answer(replace(infra, off_path_receive_wait=3.0, receive_batch_wait=0.1))
    assert waits == {q.name: 3.0 if q.off_order_path else 0.1 for q in QUEUES}


def test_a_wait_of_zero_receives_again_at_once(infra) -> None:
    waits = waits_after_a_short_answer(replace(infra, off_path_receive_wait=0.0, receive_batch_wait=0.0))
    assert set(waits.values()) == {0.0}


def test_a_full_answer_is_followed_at_once_off_the_orders_path_too(infra) -> None:
    options = celery_settings(infra)["broker_transport_options"]
    with Connection(f"{transport.SCHEME}://", transport_options=options) as conn:
        channel = conn.default_channel
        channel.hub = Hub()
        channel._requested["notifications"] = 10
        channel._loop1("notifications", 10)
        assert [(delay, args) for delay, _, args in channel.hub.later] == [(0.0, ("notifications",))]


@pytest.mark.parametrize("variable", ["ORDERS_OFF_PATH_RECEIVE_WAIT", "ORDERS_RECEIVE_BATCH_WAIT"])
@pytest.mark.parametrize("value", ["-1", "21", "soon"])
def test_a_bad_receive_wait_names_its_variable(variable: str, value: str) -> None:
    """A negative wait, or one past SQS's longest poll (a queue left unread that long), is refused."""
    with pytest.raises(ConfigurationError, match=variable):
        Settings.from_env({variable: value})
