"""The heartbeat's bookkeeping: what it extends, in which calls, what it drops and what it keeps."""

from __future__ import annotations

import time
from typing import Any

import pytest
from botocore.exceptions import ClientError

from orders.runtime.config import broker_url, celery_settings
from orders.runtime.heartbeat import HOLD_MARGIN_SECONDS, MAX_HOLD_SECONDS, Heartbeat, Held, release
from orders.settings import Settings
from tests.helpers import wait_for


class Sqs:
    """A ChangeCall standing in for SQS: records each call and answers as told."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, str, list[tuple[str, int]]]] = []
        self.refuse: set[str] = set()  # handles SQS no longer knows (the caller's fault)
        self.falter: set[str] = set()  # handles whose change fails on SQS's side
        self.error: Exception | None = None

    def __call__(self, client: Any, queue_url: str, entries: list[dict[str, Any]]) -> dict[str, Any]:
        self.calls.append((client, queue_url, [(e["ReceiptHandle"], e["VisibilityTimeout"])
                                               for e in entries]))
        if self.error is not None:
            raise self.error
        failed = [{"Id": e["Id"], "SenderFault": e["ReceiptHandle"] in self.refuse,
                   "Code": "ReceiptHandleIsInvalid" if e["ReceiptHandle"] in self.refuse else "InternalError"}
                  for e in entries if e["ReceiptHandle"] in self.refuse | self.falter]
        failed_ids = {f["Id"] for f in failed}
        ok = [{"Id": e["Id"]} for e in entries if e["Id"] not in failed_ids]
        return {"Successful": ok, "Failed": failed}

    def handles(self) -> list[str]:
        return [handle for _, _, entries in self.calls for handle, _ in entries]


def holding(sqs: Sqs, names: list[str], client: Any = "client", queue: str = "q") -> Heartbeat:
    """A heartbeat (its thread never beating within a test) holding one message per name."""
    heartbeat = Heartbeat(30, interval=29, call=sqs)
    for name in names:
        heartbeat.hold(name, Held(client, queue, name))
    return heartbeat


def test_a_beat_extends_every_held_message_ten_a_call_per_queue() -> None:
    sqs = Sqs()
    heartbeat = holding(sqs, [f"a{i}" for i in range(23)], queue="qa")
    for i in range(3):
        heartbeat.hold(f"b{i}", Held("client", "qb", f"b{i}"))
    outcome = heartbeat.beat()
    calls = [(url, len(entries)) for _, url, entries in sqs.calls]
    assert calls == [("qa", 10), ("qa", 10), ("qa", 3), ("qb", 3)]
    assert {seconds for _, _, entries in sqs.calls for _, seconds in entries} == {30}
    assert outcome.changed == 26 and heartbeat.holding() == 26
    heartbeat.stop()


def test_messages_of_two_clients_never_share_a_call() -> None:
    sqs = Sqs()
    heartbeat = holding(sqs, ["one"], client="first")
    heartbeat.hold("two", Held("second", "q", "two"))
    heartbeat.beat()
    assert sorted((client, [h for h, _ in entries]) for client, _, entries in sqs.calls) == [
        ("first", ["one"]), ("second", ["two"])]
    heartbeat.stop()


def test_a_message_given_up_is_not_extended_again() -> None:
    sqs = Sqs()
    heartbeat = holding(sqs, ["acked", "rejected", "kept"])
    assert heartbeat.drop("acked") is not None and heartbeat.drop("rejected") is not None
    assert heartbeat.drop("acked") is None  # twice: nothing left to drop
    heartbeat.beat()
    assert sqs.handles() == ["kept"] and "acked" not in heartbeat
    heartbeat.stop()


def test_a_handle_sqs_refuses_is_dropped_and_one_that_failed_is_tried_at_the_next_beat() -> None:
    sqs = Sqs()
    heartbeat = holding(sqs, ["gone", "faltered", "fine"])
    sqs.refuse, sqs.falter = {"gone"}, {"faltered"}
    first = heartbeat.beat()
    assert [h.handle for h, _ in first.refused] == ["gone"]
    assert [h.handle for h, _ in first.failed] == ["faltered"]
    assert "gone" not in heartbeat and "faltered" in heartbeat
    sqs.calls.clear()
    sqs.falter = set()
    heartbeat.beat()
    assert sorted(sqs.handles()) == ["faltered", "fine"]
    assert (heartbeat.stats["refused"], heartbeat.stats["failed"], heartbeat.stats["extended"]) == (1, 1, 3)
    heartbeat.stop()


@pytest.mark.parametrize("error", [
    ClientError({"Error": {"Code": "ThrottlingException", "Message": "slow down"},
                 "ResponseMetadata": {"HTTPStatusCode": 400}}, "ChangeMessageVisibilityBatch"),
    ClientError({"Error": {"Code": "InternalError", "Message": "oops"},
                 "ResponseMetadata": {"HTTPStatusCode": 500}}, "ChangeMessageVisibilityBatch"),
    ConnectionResetError("reset by peer"),
])
def test_a_failed_call_keeps_every_message_for_the_next_beat(error: Exception) -> None:
    sqs = Sqs()
    heartbeat = holding(sqs, [f"m{i}" for i in range(12)])
    sqs.error = error
    outcome = heartbeat.beat()
    assert len(outcome.failed) == 12 and outcome.calls == 2 and heartbeat.holding() == 12
    sqs.error = None
    assert heartbeat.beat().changed == 12
    heartbeat.stop()


def test_near_sqss_12_hour_limit_a_message_gets_what_is_left_then_is_let_go() -> None:
    sqs = Sqs()
    heartbeat = Heartbeat(30, interval=29, call=sqs)
    now = time.monotonic()
    heartbeat.hold("young", Held("client", "q", "young"))
    ten_seconds_left = now - (MAX_HOLD_SECONDS - HOLD_MARGIN_SECONDS - 10)
    heartbeat.hold("old", Held("client", "q", "old", since=ten_seconds_left))
    heartbeat.hold("too-old", Held("client", "q", "too-old", since=now - MAX_HOLD_SECONDS))
    heartbeat.beat()
    (_, _, entries), = sqs.calls
    assert dict(entries)["young"] == 30 and 8 <= dict(entries)["old"] <= 10 and "too-old" not in dict(entries)
    assert "too-old" not in heartbeat and heartbeat.stats["expired"] == 1
    heartbeat.stop()


def test_release_makes_messages_visible_at_once_ten_a_call() -> None:
    sqs = Sqs()
    outcome = release([Held("client", "q", f"m{i}") for i in range(12)], call=sqs)
    assert [len(entries) for _, _, entries in sqs.calls] == [10, 2] and outcome.changed == 12
    assert {seconds for _, _, entries in sqs.calls for _, seconds in entries} == {0}


def test_the_thread_beats_from_the_first_message_held_until_stopped() -> None:
    sqs = Sqs()
    heartbeat = Heartbeat(3, interval=0.02, call=sqs)
    assert heartbeat.interval == 0.02 and Heartbeat(30).interval == 10  # a third of the visibility by default
    heartbeat.beat()
    assert sqs.calls == []  # nothing held: no call
    heartbeat.hold("m", Held("client", "q", "m"))
    wait_for(lambda: len(sqs.calls) >= 3, timeout=5)
    assert [h.handle for h in heartbeat.stop()] == ["m"] and heartbeat.holding() == 0
    beats = len(sqs.calls)
    time.sleep(0.1)
    assert len(sqs.calls) == beats
    heartbeat.hold("after", Held("client", "q", "after"))  # a stopped heartbeat holds nothing more
    time.sleep(0.1)
    assert len(sqs.calls) == beats and heartbeat.holding() == 0


def test_beats_are_an_interval_apart_from_start_to_start_however_long_one_takes() -> None:
    """A beat held up (botocore's backoff on a throttled call) is followed by the next at once, not after a
    whole interval more: the time between two extensions stays the interval."""
    starts: list[float] = []

    def slow(client: Any, queue_url: str, entries: list[dict[str, Any]]) -> dict[str, Any]:
        starts.append(time.monotonic())
        time.sleep(1.0 if len(starts) == 1 else 0)  # the first beat takes two intervals
        return {"Successful": [{"Id": e["Id"]} for e in entries], "Failed": []}

    heartbeat = Heartbeat(3, interval=0.5, call=slow)
    heartbeat.hold("m", Held("client", "q", "m"))
    wait_for(lambda: len(starts) >= 3, timeout=5)
    heartbeat.stop()
    after_the_slow_one = starts[1] - starts[0]
    assert after_the_slow_one < 1.0 + 0.25, f"next beat {after_the_slow_one:.2f} s after the slow one began"


@pytest.mark.parametrize(("visibility", "interval"), [(0, None), (30, 30), (30, 60)])
def test_a_heartbeat_beats_well_within_its_visibility(visibility: int, interval: float | None) -> None:
    with pytest.raises(ValueError):
        Heartbeat(visibility, interval)


def test_our_transport_is_used_batched_or_not_and_the_stock_one_only_when_asked() -> None:
    base = {"ORDERS_ENV": "unit", "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": "http://127.0.0.1:1"}
    batched = Settings.from_env(base)
    unbatched = Settings.from_env({**base, "ORDERS_BATCH_ACKS": "0", "ORDERS_RECEIVE_VISIBILITY": "12"})
    stock = Settings.from_env({**base, "ORDERS_STOCK_TRANSPORT": "1"})
    assert broker_url(batched) == broker_url(unbatched) == "orders-sqs://"
    assert broker_url(stock).startswith("sqs://")
    options = celery_settings(unbatched)["broker_transport_options"]
    assert (options["batch_acks"], options["batch_sends"], options["receive_visibility"]) \
        == (False, False, 12)
    assert celery_settings(batched)["broker_transport_options"]["receive_visibility"] == 30
