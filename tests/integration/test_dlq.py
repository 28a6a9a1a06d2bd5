"""Poisoned messages: to the DLQ by the RedrivePolicy, shown with their error, archived, alerted on
`system-health`, redriven once fixed, and never looping: all with a real worker and a real beat."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import tasks.ops  # noqa: F401  (worker hooks: failure records, metrics)
from orders.aws import clients
from orders.aws.sns import topic_arn, topic_arns
from orders.aws.store import OrderStore
from orders.aws.tables import to_item
from orders.celery import app
from orders.domain.errors import RetryableError
from orders.emulator.faults import clear_faults, fault_report, start_outage
from orders.ops import archive, dead_letters
from orders.runtime.queue_urls import queue_url
from orders.settings import Settings, get_settings
from orders.topology import QUEUES_BY_NAME, QueueSpec
from tests.helpers import invoke, wait_for, worker

ORDERS = QUEUES_BY_NAME["orders"]
#: A queue's counts once every message has left it.
EMPTY = {"ApproximateNumberOfMessages": 0, "ApproximateNumberOfMessagesNotVisible": 0}
fixed = threading.Event()
runs: list[str] = []


@app.task(name="ops.test_flaky_step")
def flaky_step(order_id: str) -> None:
    """Fails until the test 'deploys the fix'."""
    if not fixed.is_set():
        raise RuntimeError(f"boom on {order_id}")
    runs.append(order_id)


@app.task(name="ops.test_buggy_step")
def buggy_step(order_id: str) -> None:
    """A bug no redrive fixes."""
    raise ZeroDivisionError(f"division by zero for {order_id}")



def attrs(settings: Settings, url: str) -> dict[str, int]:
    got = clients.client("sqs", settings).get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])
    return {k: int(v) for k, v in got["Attributes"].items()}


def in_dlq(settings: Settings) -> int:
    return sum(dead_letters.depth(settings, ORDERS))


def alerts_queue(settings: Settings) -> str:
    """A queue subscribed to system-health with the same filter as the SMS and email alerts."""
    sqs, sns = clients.client("sqs", settings), clients.client("sns", settings)
    url = sqs.create_queue(QueueName=f"{settings.prefix}test-alerts")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic_arns(settings)["system-health"], Protocol="sqs", Endpoint=arn,
                  Attributes={"RawMessageDelivery": "true", "FilterPolicy": '{"severity": ["critical"]}'},
                  ReturnSubscriptionArn=True)
    return str(url)


def read_alerts(settings: Settings, url: str, want: int) -> list[dict]:
    got: list[dict] = []

    def more() -> bool:
        answer = clients.client("sqs", settings).receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1, MessageAttributeNames=["All"])
        for m in answer.get("Messages", []):
            assert m["MessageAttributes"]["severity"]["StringValue"] == "critical"
            got.append(json.loads(m["Body"]))
        return len(got) >= want

    wait_for(more, timeout=60)
    return got


@pytest.fixture
def poison_ready(infra: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """The namespace with one redrive allowed, and a 2 s visibility timeout on `orders`, so that
    a message failing every time reaches the DLQ (maxReceiveCount 3) in seconds, not 15 minutes."""
    monkeypatch.setenv("ORDERS_DLQ_MAX_REDRIVES", "1")
    get_settings.cache_clear()
    settings = get_settings()
    clients.client("sqs", settings).set_queue_attributes(
        QueueUrl=queue_url(settings, "orders"), Attributes={"VisibilityTimeout": "2"})
    fixed.clear()
    runs.clear()
    yield settings


@pytest.fixture
def beat(poison_ready: Settings, tmp_path) -> Iterator[subprocess.Popen[str]]:
    """`celery -A orders beat`, sending ops.watch_dlqs every second."""
    env = {**os.environ, "ORDERS_DLQ_WATCH_SECONDS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "celery", "-A", "orders", "beat", "--loglevel", "WARNING",
                             "-s", str(tmp_path / "beat-schedule")], env=env, text=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    yield proc
    if proc.poll() is None:
        proc.terminate()
        proc.wait(timeout=30)


def test_poisoned_message_is_shown_archived_alerted_and_redriven_once_fixed(poison_ready, beat):
    settings = poison_ready
    alerts_url = alerts_queue(settings)
    dlq_url = dead_letters.dlq_url(settings, ORDERS)
    with worker(["orders"]):
        flaky_step.delay("ord-flaky")
        buggy_step.delay("ord-bug")
        wait_for(lambda: in_dlq(settings) == 2, timeout=60)

        # Beat runs the watcher: one critical alert per dead-lettered message.
        alerts = {a["order_id"]: a for a in read_alerts(settings, alerts_url, want=2)}
        beat.terminate()
        beat.wait(timeout=30)
        assert alerts["ord-flaky"]["classification"] == "bug"
        assert alerts["ord-flaky"]["error"] == "RuntimeError: boom on ord-flaky"
        assert alerts["ord-bug"]["task"] == "ops.test_buggy_step" and alerts["ord-bug"]["queue"] == "orders"

        code, output = invoke("dlq", "show", "orders", "--json")
        assert code == 0, output
        shown = {d["order_id"]: d for d in map(json.loads, output.splitlines())}
        flaky = shown["ord-flaky"]
        assert flaky["task"] == "ops.test_flaky_step" and flaky["args"] == ["ord-flaky"]
        assert flaky["error"] == "RuntimeError: boom on ord-flaky" and flaky["failures"] == 3
        assert flaky["receive_count"] >= 3 and flaky["first_failure"] < flaky["last_failure"]
        assert flaky["archived_at"] and flaky["redrives"] == 0
        assert "ZeroDivisionError: division by zero for ord-bug" in invoke("dlq", "show", "orders")[1]

        # The archive holds the exact message, and the order is marked failed.
        copies = [i for i in archive.history(settings, flaky["id"]) if i["item"].startswith("arrival#")]
        kept = {"MessageId": "-", "ReceiptHandle": "-", "Body": archive.archived_body(copies[0])}
        assert len(copies) == 1 and dead_letters.decode(ORDERS, kept).task_id == flaky["id"]
        order = OrderStore(settings).get("ord-flaky")
        assert order["status"] == "failed" and order["reason"].startswith("dead-lettered on orders (bug)")

        # Fixed and redriven: it runs exactly once and leaves both queues. The bug fails again.
        fixed.set()
        code, output = invoke("dlq", "redrive", "orders", "--all")
        assert code == 0, output
        wait_for(lambda: runs == ["ord-flaky"] and in_dlq(settings) == 1, timeout=60)
        wait_for(lambda: attrs(settings, queue_url(settings, "orders")) == EMPTY, timeout=10)  # acked
        assert runs == ["ord-flaky"]

        # Back in the DLQ, it is archived and alerted on again, then refused a second redrive.
        tasks.ops.watch_dlqs.delay()
        again = read_alerts(settings, alerts_url, want=1)
        assert [a["order_id"] for a in again] == ["ord-bug"]
    code, output = invoke("dlq", "redrive", "orders", "--all")
    assert code == 1 and "refused" in output and "redriven 1 time(s) already" in output
    assert attrs(settings, dlq_url)["ApproximateNumberOfMessages"] == 1

    # Purge asks first, and deletes only archived messages.
    assert invoke("dlq", "purge", "orders", stdin="n\n")[0] == 1
    assert attrs(settings, dlq_url)["ApproximateNumberOfMessages"] == 1
    code, output = invoke("dlq", "purge", "orders", "--yes")
    assert code == 0 and "Deleted 1 archived message(s)" in output
    assert in_dlq(settings) == 0
    statuses = {i["status"] for i in archive.history(settings, shown["ord-bug"]["id"]) if "status" in i}
    assert statuses == {"redriven", "purged"}


def test_undecodable_message_is_classified_as_invalid_input(infra):
    sqs = clients.client("sqs", infra)
    sqs.send_message(QueueUrl=dead_letters.dlq_url(infra, ORDERS), MessageBody="<order>not json</order>")
    code, output = invoke("dlq", "show", "orders-dlq")
    assert code == 0 and "classification: invalid-input" in output and "not a Celery message" in output
    code, output = invoke("dlq", "list", "--json")
    rows = {r["queue"]: r for r in map(json.loads, output.splitlines())}
    assert rows["orders"]["visible"] == 1 and rows["orders"]["oldest_age_seconds"] is not None
    assert rows["payments"]["visible"] == 0


def test_a_redrive_interrupted_between_send_and_delete_resumes_without_a_second_copy(infra):
    """On a FIFO queue the resumed attempt reuses its deduplication id, so SQS keeps one copy."""
    from orders.ops import redrive

    inventory = QUEUES_BY_NAME["inventory.fifo"]
    sqs = clients.client("sqs", infra)
    payload = base64.b64encode(json.dumps([["ord-crash"], {}, {}]).encode()).decode()
    envelope = json.dumps({"body": payload, "content-type": "application/json", "properties": {},
                           "headers": {"task": "inventory.reserve", "id": "task-crash-1"}})
    sqs.send_message(QueueUrl=dead_letters.dlq_url(infra, inventory), MessageBody=envelope,
                     MessageGroupId="sku-1", MessageDeduplicationId="d1")
    # The first redrive counts its attempt and sends, then "crashes" before deleting.
    [letter] = dead_letters.scan(infra, inventory)
    redrive.ensure_archived(infra, [letter])
    attempt = archive.begin_redrive(infra, letter, bound=3)
    sqs.send_message_batch(QueueUrl=queue_url(infra, "inventory.fifo"),
                           Entries=[redrive._entry("0", letter, attempt, inventory)])
    dead_letters.release(infra, [letter])

    code, output = invoke("dlq", "redrive", "inventory.fifo", "--all")
    assert code == 0 and "redriven  task-crash-1" in output and "attempt 1" in output
    assert attrs(infra, queue_url(infra, "inventory.fifo"))["ApproximateNumberOfMessages"] == 1
    assert in_dlq(infra) == 0 and sum(dead_letters.depth(infra, inventory)) == 0
    ledger = next(i for i in archive.history(infra, "task-crash-1") if i["item"] == "redrive")
    assert ledger["redrives"] == 1 and "moving" not in ledger


def test_redrive_takes_a_fifo_group_longer_than_one_receive_in_rounds(infra):
    """SQS shows at most ten messages of a FIFO group at a time; a redrive moves them all."""
    inventory = QUEUES_BY_NAME["inventory.fifo"]
    sqs = clients.client("sqs", infra)
    for i in range(12):
        payload = base64.b64encode(json.dumps([[f"ord-{i}"], {}, {}]).encode()).decode()
        envelope = json.dumps({"body": payload, "headers": {"task": "inventory.reserve", "id": f"t-{i}"}})
        sqs.send_message(QueueUrl=dead_letters.dlq_url(infra, inventory), MessageBody=envelope,
                         MessageGroupId="sku-9", MessageDeduplicationId=f"d-{i}")
    code, output = invoke("dlq", "redrive", "inventory.fifo", "--all")
    assert code == 0 and "12 of 12 message(s) back" in output, output
    assert attrs(infra, queue_url(infra, "inventory.fifo"))["ApproximateNumberOfMessages"] == 12
    assert sum(dead_letters.depth(infra, inventory)) == 0


def backdate(settings: Settings, letter: dead_letters.DeadLetter, **times: str) -> None:
    """Set times on an archived copy, as an older pass (or an older version) would have written them."""
    clients.client("dynamodb", settings).update_item(
        TableName=archive.table_name(settings), Key=to_item({"key": letter.key, "item": letter.arrival}),
        UpdateExpression="SET " + ", ".join(f"{name} = :{name}" for name in times),
        ExpressionAttributeValues=to_item({f":{name}": at for name, at in times.items()}))


def test_a_late_alert_is_claimed_once_whatever_format_its_times_were_written_in(infra):
    """The archive wrote milliseconds and +00:00 before it wrote now_iso's format: both still compare."""
    letter = dead_letters.decode(ORDERS, {"MessageId": "m-late", "ReceiptHandle": "-", "Body": "<x/>"})
    assert archive.archive(infra, letter, "invalid-input", "not a Celery message")

    def copy() -> dict:
        return archive.archived(infra, [letter])["m-late"]

    assert copy()["archived_at"].endswith("Z")
    assert not archive.claim_late_alert(infra, letter, copy())  # its archiving pass may still alert
    two_minutes_ago = (datetime.now(UTC) - timedelta(minutes=2)).isoformat(timespec="milliseconds")
    backdate(infra, letter, archived_at=two_minutes_ago)
    seen = copy()
    assert archive.claim_late_alert(infra, letter, seen)
    assert not archive.claim_late_alert(infra, letter, seen)  # a concurrent pass that read the same copy
    assert not archive.claim_late_alert(infra, letter, copy())  # claimed a moment ago
    backdate(infra, letter, late_claim=two_minutes_ago)
    assert archive.claim_late_alert(infra, letter, copy())  # the claiming pass died long ago
    archive.mark_alerted(infra, letter)
    backdate(infra, letter, late_claim=two_minutes_ago)
    assert not archive.claim_late_alert(infra, letter, copy())


def test_the_watcher_archives_any_message_sqs_accepts_and_keeps_the_original(infra, monkeypatch):
    """Bodies up to SQS's limit (incompressible ones are stored truncated, with their size and digest),
    any shape; one message that cannot be archived stops no other, and is archived on a later pass."""
    import hashlib
    import random

    from orders.ops import watch

    sqs = clients.client("sqs", infra)
    dlq = dead_letters.dlq_url(infra, ORDERS)
    noise = base64.b64encode(random.Random(3).randbytes(760_000)).decode()  # ~1 MB, incompressible
    big_args = base64.b64encode(json.dumps([["ord-big", "y" * 700_000], {}, {}]).encode()).decode()
    bodies = {
        "noise": noise,
        "big-args": json.dumps({"body": big_args, "content-type": "application/json", "properties": {},
                                "headers": {"task": "payments.charge", "id": "task-big"}}),
        "headers-str": json.dumps({"body": "", "properties": {}, "headers": "x"}),
        "deep": "[" * 50_000 + "]" * 50_000,
        "long-id": json.dumps({"body": big_args, "properties": {},
                               "headers": {"task": "t\n" * 1000, "id": "i" * 100_000}}),
        "fine": json.dumps({"body": base64.b64encode(b'[["ord-ok"], {}, {}]').decode(), "properties": {},
                            "headers": {"task": "payments.charge", "id": "task-ok"}}),
    }
    ids = {sqs.send_message(QueueUrl=dlq, MessageBody=body)["MessageId"]: name
           for name, body in bodies.items()}

    real_archive = archive.archive

    def failing_once(settings, letter, category, why):
        if ids[letter.message_id] == "fine" and not failing_once.failed:
            failing_once.failed = True
            raise archive.ArchiveError("DynamoDB said no")
        return real_archive(settings, letter, category, why)

    failing_once.failed = False
    monkeypatch.setattr(archive, "archive", failing_once)
    first = {ids[a.letter.message_id] for a in watch.watch_queue(infra, ORDERS)}
    assert first == set(bodies) - {"fine"}
    second = {ids[a.letter.message_id] for a in watch.watch_queue(infra, ORDERS)}
    assert second == {"fine"}

    letters = {ids[m.message_id]: m for m in dead_letters.scan(infra, ORDERS, hold=2)}
    dead_letters.release(infra, list(letters.values()))
    stored = {name: archive.archived(infra, [m])[m.message_id] for name, m in letters.items()}
    for name, body in bodies.items():
        item = stored[name]
        if name == "noise":
            assert item["body_truncated"] and item["body_bytes"] == len(body)
            assert item["body_sha256"] == hashlib.sha256(body.encode()).hexdigest()
            assert body.startswith(archive.archived_body(item))
        else:
            assert archive.archived_body(item) == body, name
    assert stored["headers-str"]["category"] == "invalid-input"
    assert "nested too deeply" in stored["deep"]["why"]
    assert stored["long-id"]["key"].startswith("md5-") and len(stored["long-id"]["task"]) < 600
    assert stored["big-args"]["order_id"] == "ord-big" and len(stored["big-args"]["args"]) < 9000
    assert in_dlq(infra) == len(bodies), "archiving keeps every original in the DLQ"
    code, output = invoke("dlq", "show", "orders")
    assert code == 0 and output.count("classification:") == len(bodies), output[-2000:]


def looked_up(settings: Settings, topic: str) -> str | None:
    """The topic's ARN, looked up by this process (None while SNS fails)."""
    try:
        return topic_arn(settings, topic)
    except RetryableError:
        return None


def test_a_watcher_meeting_an_sns_outage_leaves_its_alerts_to_a_later_pass_and_does_not_fail(infra, emulator):
    """A worker that has not looked up its topics yet runs `ops.watch_dlqs` while SNS is down: the pass
    archives the new message and ends without failing (its own message is not dead-lettered, no failure
    is recorded for it); once SNS is back, a later pass sends the alert."""
    settings, endpoint = infra, emulator.endpoint
    alerts_url = alerts_queue(settings)
    sqs = clients.client("sqs", settings)
    sent = sqs.send_message(QueueUrl=dead_letters.dlq_url(settings, ORDERS), MessageBody="<not json/>")
    try:
        with worker(["orders"]):
            start_outage(endpoint, "sns", 300)
            watching = tasks.ops.watch_dlqs.delay()
            orders_url = queue_url(settings, "orders")
            wait_for(lambda: attrs(settings, orders_url) == EMPTY, timeout=120, interval=0.5)  # acked
            assert fault_report(endpoint)["injected"].get("sns:ListTopics:outage", 0) >= 1
            [letter] = dead_letters.scan(settings, ORDERS, hold=2)
            dead_letters.release(settings, [letter])
            assert letter.message_id == sent["MessageId"], "the watcher's own message was not dead-lettered"
            assert not [i for i in archive.history(settings, watching.id) if i["item"] == "failure"]
            copy = archive.archived(settings, [letter])[letter.message_id]
            assert copy["category"] == "invalid-input" and "alerted_at" not in copy

            clear_faults(endpoint)
            wait_for(lambda: looked_up(settings, "system-health"), timeout=30, interval=0.5)
            backdate(settings, letter, archived_at=(datetime.now(UTC) - timedelta(minutes=2)).isoformat())
            tasks.ops.watch_dlqs.delay()
            [alert] = read_alerts(settings, alerts_url, want=1)
    finally:
        clear_faults(endpoint)
    assert alert["message_id"] == sent["MessageId"] and alert["classification"] == "invalid-input"
    assert "alerted_at" in archive.archived(settings, [letter])[letter.message_id]


def test_redrive_all_sends_a_poison_message_back_once_though_a_worker_refuses_it_again_at_once(
        infra, monkeypatch):
    """`orders dlq redrive orders --all` with a worker running: the poison message it sends back is
    refused again and back in the DLQ (under a new message id) while the command still runs. The
    command does not send it again: one redrive counted, one copy in the DLQ."""
    from orders.ops import redrive

    settings, task_id = infra, "task-poison-redrive"
    body = base64.b64encode(json.dumps([["ord-p"], {}, {}]).encode()).decode()
    poison = json.dumps({"body": body, "content-encoding": "utf-8", "content-type": "application/json",
                         "properties": {"body_encoding": "base64", "delivery_tag": "t",
                                        "delivery_info": {"exchange": "", "routing_key": "orders"}},
                         "headers": {"task": "nope.never_registered", "id": task_id, "lang": "py"}})
    real_move, waited = redrive._move_batch, []

    def move_then_wait_for_the_worker(settings_, spec, letters, *bound):
        moved = real_move(settings_, spec, letters, *bound)
        if not waited:  # the worst moment: the refused copy is back before the command's next round
            waited.append(wait_for(lambda: dead_letters.depth(settings, ORDERS)[0] == 1, timeout=30))
        return moved

    monkeypatch.setattr(redrive, "_move_batch", move_then_wait_for_the_worker)
    with worker(["orders"]):
        orders_url = queue_url(settings, "orders")
        clients.client("sqs", settings).send_message(QueueUrl=orders_url, MessageBody=poison)
        wait_for(lambda: in_dlq(settings) == 1, timeout=30)  # refused at once, moved to the DLQ
        code, output = invoke("dlq", "redrive", "orders", "--all")
        assert code == 0 and waited, output
        wait_for(lambda: attrs(settings, orders_url) == EMPTY, timeout=30)
    assert output.count("redriven ") == 1 and "1 of 1 message(s) back" in output, output
    ledger = next(i for i in archive.history(settings, task_id) if i["item"] == "redrive")
    assert ledger["redrives"] == 1 and "moving" not in ledger
    assert in_dlq(settings) == 1


def held_by_another_reader(settings: Settings) -> tuple[QueueSpec, Any, str, list[dict]]:
    """An undecodable message in the orders DLQ, received for 2 s by another reader (beat's watcher):
    (spec, SQS client, DLQ URL, what the other reader holds)."""
    spec = dead_letters.queue_spec("orders")
    sqs, url = clients.client("sqs", settings), dead_letters.dlq_url(settings, spec)
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"not": "a task"}))
    held = sqs.receive_message(QueueUrl=url, VisibilityTimeout=2, WaitTimeSeconds=1)["Messages"]
    assert len(held) == 1 and dead_letters.depth(settings, spec) == (0, 1)
    return spec, sqs, url, held


def test_a_scan_while_another_reader_holds_every_message_waits_for_them(infra):
    """`orders dlq show` at the moment beat's watcher reads the DLQ once saw it empty (every message in
    flight) and printed nothing: a busy DLQ is not an empty one, so a person's read waits for the release."""
    spec, sqs, url, held = held_by_another_reader(infra)
    code, output = invoke("dlq", "show", "orders", "--json")
    assert code == 0, output
    assert [json.loads(line)["message_id"] for line in output.splitlines()] == [held[0]["MessageId"]]
    # Beat's passes do not wait: the busy DLQ is the next pass's (two passes must not both act on it).
    assert len(sqs.receive_message(QueueUrl=url, VisibilityTimeout=30, WaitTimeSeconds=1)["Messages"]) == 1
    assert dead_letters.scan(infra, spec) == []


def test_a_redrive_while_another_reader_holds_every_message_waits_for_them(infra):
    """`orders dlq redrive --all` at the moment beat's watcher read the DLQ moved nothing, said `0 of 0`
    and exited 0 (a clean-clone CI run): a person's redrive waits for the release, as `show` does."""
    _, sqs, _, _ = held_by_another_reader(infra)
    code, output = invoke("dlq", "redrive", "orders", "--all")
    assert code == 0 and "1 of 1 message(s) back" in output, output
    back = sqs.receive_message(QueueUrl=queue_url(infra, "orders"), WaitTimeSeconds=1)["Messages"]
    assert [m["Body"] for m in back] == [json.dumps({"not": "a task"})] and in_dlq(infra) == 0
    assert "(undecodable)" in output, output
