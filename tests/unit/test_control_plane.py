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


class FlakyMailbox:
    """A mailbox whose first `fails` replies raise as a connection gone stale would (kombu's memory transport
    stands in for Redis: what is tested is what Replies does about a failure)."""

    serializer = "json"

    def __init__(self, fails: int):
        self.fails = fails
        self.sent: list[tuple[object, object]] = []

    def _publish_reply(self, data: object, exchange: str, routing_key: str, ticket: str, channel: object,
                       serializer: str) -> None:
        if self.fails:
            self.fails -= 1
            raise ConnectionError("Connection closed by server.")
        self.sent.append((data, channel))


def test_a_reply_that_fails_on_a_stale_connection_goes_on_a_new_one() -> None:
    from kombu import Connection

    from orders.runtime.control_plane_worker import Replies

    replies, mailbox = Replies(Connection("memory://")), FlakyMailbox(fails=1)
    first = replies.connection
    try:
        replies.put(mailbox, ({"ok": "pong"}, "reply.celery.pidbox", "key", "ticket-1"))
        replies._batcher.flush(5)
        assert [data for data, _ in mailbox.sent] == [{"ok": "pong"}]
        assert replies.connection is not first  # the stale one was let go
    finally:
        replies.close()


def test_a_reply_that_cannot_be_sent_is_dropped_and_the_next_one_still_goes(
        caplog: pytest.LogCaptureFixture) -> None:
    from kombu import Connection

    from orders.runtime.control_plane_worker import Replies

    caplog.set_level(logging.WARNING, logger="orders.runtime.control_plane")
    replies, mailbox = Replies(Connection("memory://")), FlakyMailbox(fails=2)
    try:
        replies.put(mailbox, ({"ok": "lost"}, "reply.celery.pidbox", "key", "ticket-1"))
        replies._batcher.flush(5)
        replies.put(mailbox, ({"ok": "pong"}, "reply.celery.pidbox", "key", "ticket-2"))
        replies._batcher.flush(5)
        assert [data for data, _ in mailbox.sent] == [{"ok": "pong"}]
        assert any("monitoring degraded" in r.getMessage() for r in caplog.records)
    finally:
        replies.close()
