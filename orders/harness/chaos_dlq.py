"""Poison sent to the workers' queues with a plain SendMessage, then found again in their DLQs.

A poison message refused by a worker is copied to its queue's DLQ with the
reason (`orders.poison.reason`) and the original message id
(`orders.poison.message-id`) as message attributes (orders.runtime.quarantine):
that id finds it, the reason says it was refused rather than moved by SQS's
receive count, and the copy's SentTimestamp minus the original's sending time is
how long it took.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Sequence

from orders.aws import clients
from orders.harness.chaos_aws import patient
from orders.harness.chaos_figures import PoisonOutcome
from orders.harness.chaos_poison import PoisonMessage
from orders.ops import dead_letters
from orders.runtime import quarantine
from orders.runtime.queue_urls import queue_url
from orders.settings import Settings
from orders.topology import QUEUES_BY_NAME

#: A scan hides what it read for this long; released at once after.
SCAN_HOLD_SECONDS = 10


def send_poison(settings: Settings, queue: str, message: PoisonMessage,
                stop: threading.Event | None = None) -> PoisonOutcome:
    """Send one poison message to `queue` as an attacker would: a plain SendMessage."""
    entry = {"QueueUrl": queue_url(settings, queue), "MessageBody": message.body,
             "MessageAttributes": {"sender": {"DataType": "String", "StringValue": "orders-chaos"}}}
    if QUEUES_BY_NAME[queue].fifo:
        entry.update(MessageGroupId=f"poison-{message.shape}", MessageDeduplicationId=uuid.uuid4().hex)
    sqs = clients.client("sqs", settings)
    sent_at = time.time()
    message_id = patient(lambda: sqs.send_message(**entry), stop=stop)["MessageId"]
    return PoisonOutcome(message.shape, queue, str(message_id), sent_at)


def find_poison(settings: Settings, sent: Sequence[PoisonOutcome], timeout: float = 90.0) -> None:
    """Look for each sent message in its queue's DLQ until all are found or `timeout` passes.

    Sets `in_dlq`, `reason` and `seconds` on each one found. Scans are repeated: the DLQ
    watcher (beat) hides what it reads for a while too.
    """
    deadline = time.monotonic() + timeout
    while True:
        for queue in sorted({p.queue for p in sent if not p.reason}):
            _scan(settings, queue, [p for p in sent if p.queue == queue and not p.reason])
        if all(p.reason for p in sent) or time.monotonic() > deadline:
            return
        time.sleep(2.0)


def _scan(settings: Settings, queue: str, wanted: Sequence[PoisonOutcome]) -> None:
    by_id = {p.message_id: p for p in wanted}
    spec = QUEUES_BY_NAME[queue]
    letters = patient(lambda: dead_letters.scan(settings, spec, limit=1000, hold=SCAN_HOLD_SECONDS), 60)
    try:
        for letter in letters:
            source = letter.message_attributes.get(quarantine.SOURCE_ID, {}).get("StringValue")
            found = by_id.get(source or "") or by_id.get(letter.message_id)
            if found is None:
                continue
            found.in_dlq = True
            if letter.poison:
                found.reason = letter.poison
                found.seconds = (letter.sent_at or found.sent_at) - found.sent_at
    finally:
        if letters:
            patient(lambda: dead_letters.release(settings, letters), 60)
