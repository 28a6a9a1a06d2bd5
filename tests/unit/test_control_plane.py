"""The control plane's pure parts: event coalescing, JSON-safe replies, one warning per outage."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping

import pytest

from orders.runtime.control_plane import Health
from orders.runtime.control_plane_worker import coalesce, jsonable


def test_runs_of_one_group_become_one_multi_message() -> None:
    queued = [({"type": "task-received"}, "task.received"), ({"type": "task-started"}, "task.started"),
              ([{"type": "task-succeeded"}, {"type": "task-failed"}], "task.multi"),
              ({"type": "worker-heartbeat"}, "worker.heartbeat"), ({"type": "task-sent"}, "task.sent")]
    assert coalesce(queued) == [
        ("task.multi", [{"type": "task-received"}, {"type": "task-started"},
                        {"type": "task-succeeded"}, {"type": "task-failed"}]),
        ("worker.heartbeat", {"type": "worker-heartbeat"}),
        ("task.sent", {"type": "task-sent"}),
    ]


def test_a_lone_event_keeps_its_routing_key() -> None:
    assert coalesce([({"type": "task-sent"}, "task.sent")]) == [("task.sent", {"type": "task-sent"})]


class LazyUrls(Mapping[str, dict[str, str]]):
    """Like orders.runtime.queue_urls.QueueUrls: a Mapping JSON cannot serialise as such."""

    def __getitem__(self, key: str) -> dict[str, str]:
        return {"url": f"https://sqs/{key}"}

    def __iter__(self) -> Iterator[str]:
        return iter(["orders"])

    def __len__(self) -> int:
        return 1


def test_replies_become_plain_json() -> None:
    reply = {"w@h": {"broker": {"transport_options": {"predefined_queues": LazyUrls()}}, "when": object}}
    plain = jsonable(reply)
    assert plain["w@h"]["broker"]["transport_options"]["predefined_queues"] == {
        "orders": {"url": "https://sqs/orders"}}
    assert plain["w@h"]["when"].startswith("<class")


def test_one_warning_per_outage(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="orders.runtime.control_plane")
    health = Health("redis://plane:6379/0")
    for _ in range(5):
        health.failed(ConnectionError("refused"))
        health.drop()
    health.ok()
    health.ok()
    health.failed(ConnectionError("refused again"))
    messages = [r.getMessage() for r in caplog.records]
    assert [m.split(":")[1].strip() for m in messages] == [
        "monitoring degraded", "monitoring restored", "monitoring degraded"]
    assert "5 events were dropped" in messages[1]
    assert "Tasks keep flowing on SQS" in messages[0]
