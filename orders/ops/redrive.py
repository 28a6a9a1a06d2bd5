"""Redrive and purge: a message leaves its DLQ only once archived, and is redriven a bounded number of times.

Redrive uses SQS's own StartMessageMoveTask where the endpoint has it (AWS), and
otherwise moves each message itself: count the redrive in the archive (the bound
is checked atomically there), send the body back to the source queue, then delete
it from the DLQ. A crash between the send and the delete leaves the copy in the
DLQ marked as moving; the next redrive resumes that same attempt (same attempt
number, same FIFO deduplication id) instead of counting a new one, and any
duplicate that a standard queue lets through is absorbed by the tasks, which are
idempotent by order id and step. A message that fails again comes back to the
DLQ, is archived and alerted on again, and past `ORDERS_DLQ_MAX_REDRIVES` it stays
there: never lost, never looping.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from orders.aws import clients
from orders.aws.batching import MAX_ENTRIES
from orders.ops import archive
from orders.ops.archive import RedriveRefused
from orders.ops.dead_letters import DeadLetter, batches, dlq_url, release, scan
from orders.ops.dlq_states import CopyStatus, RedriveResult
from orders.runtime import quarantine
from orders.runtime.queue_urls import queue_url
from orders.settings import Settings
from orders.topology import QueueSpec

log = logging.getLogger(__name__)

#: How long a redrive or purge keeps the DLQ's messages hidden while it works (seconds).
WORK_HOLD_SECONDS = 300
MAX_MESSAGES = 1000
NATIVE_UNSUPPORTED = frozenset({"UnsupportedOperation", "InvalidAction", "NotImplemented"})
#: What orders.runtime.quarantine adds to a poison message's DLQ copy.
POISON_ATTRIBUTES = frozenset({quarantine.REASON, quarantine.SOURCE, quarantine.SOURCE_ID})
_no_native_move: set[str | None] = set()


@dataclass
class Outcome:
    """What happened to one message."""

    letter: DeadLetter
    result: RedriveResult
    detail: str = ""


def ensure_archived(settings: Settings, letters: list[DeadLetter]) -> int:
    """Archive whichever of these messages is not archived yet (raises ArchiveError if one cannot be)."""
    found = archive.look_up(settings, letters)
    for letter in found.new:
        archive.archive(settings, letter, *found.classify(letter))
    return len(found.new)


def redrive(settings: Settings, spec: QueueSpec, ids: list[str] | None = None,
            bound: int | None = None, settle: float = 0.0) -> list[Outcome]:
    """Send the DLQ's messages (all, or those whose key or message id is in `ids`) back to the source,
    each while its task was redriven fewer than `bound` times (default ORDERS_DLQ_MAX_REDRIVES).
    A DLQ whose every message another reader holds (beat's watcher) is waited for up to `settle` s:
    a person's redrive waits, beat's passes do not (dead_letters.SETTLE_SECONDS says why).

    Works in rounds: a FIFO DLQ shows at most ten messages of a message group at a
    time, and the next ones only once those left. Messages it does not move stay
    hidden until the end, so no round sees them twice. Each task (by its archive key)
    is sent back once per call: a copy back in the DLQ before the call ends (a poison
    message a worker refused again at once, under a new message id) stays there.
    """
    outcomes: list[Outcome] = []
    held: list[DeadLetter] = []
    try:
        for round_ in range(MAX_MESSAGES // MAX_ENTRIES):  # a FIFO group shows MAX_ENTRIES at a time
            seen = {m.message_id for m in held} | {o.letter.message_id for o in outcomes}
            wait = settle if round_ == 0 else 0.0  # later rounds: what is in flight is ours
            letters = [m for m in scan(settings, spec, MAX_MESSAGES, hold=WORK_HOLD_SECONDS, settle=wait)
                       if m.message_id not in seen]
            if not letters:
                break
            done = {o.letter.key for o in outcomes}
            chosen = [m for m in letters if m.key not in done and _asked_for(m, ids)]
            held += [m for m in letters if m not in chosen]
            try:
                ensure_archived(settings, chosen)
            except archive.ArchiveError:
                held += chosen
                raise
            if ids is None and round_ == 0:
                native = _native_move(settings, spec, chosen)
                if native is not None:
                    return native
            for part in batches(chosen):
                moved = _move_batch(settings, spec, part, bound)
                outcomes += moved
                held += [o.letter for o in moved if not o.result.moved]
    finally:
        if held:
            release(settings, held)
    return outcomes


def _asked_for(letter: DeadLetter, ids: list[str] | None) -> bool:
    """Whether `ids` (None: every message) names the message, by its key or its message id."""
    return ids is None or bool({letter.key, letter.message_id} & set(ids))


def _begin(settings: Settings, letters: list[DeadLetter],
           bound: int | None = None) -> tuple[dict[str, int], list[Outcome]]:
    """Count a redrive of each message; the attempt numbers of those allowed, outcomes of the others."""
    attempts, refused = {}, []
    bound = settings.dlq_max_redrives if bound is None else bound
    for letter in letters:
        try:
            attempts[letter.message_id] = archive.begin_redrive(settings, letter, bound)
        except RedriveRefused as exc:
            refused.append(Outcome(letter, RedriveResult.REFUSED, str(exc)))
    return attempts, refused


def _move_batch(settings: Settings, spec: QueueSpec, letters: list[DeadLetter],
                bound: int | None = None) -> list[Outcome]:
    """One batch of messages: counted, sent to the source in one call, then deleted from the DLQ."""
    attempts, outcomes = _begin(settings, letters, bound)
    moving = [m for m in letters if m.message_id in attempts]
    if not moving:
        return outcomes
    sqs = clients.client("sqs", settings)
    sent = sqs.send_message_batch(QueueUrl=queue_url(settings, spec.name), Entries=[
        _entry(str(i), m, attempts[m.message_id], spec) for i, m in enumerate(moving)])
    for failure in sent.get("Failed", []):
        outcomes.append(Outcome(moving[int(failure["Id"])], RedriveResult.FAILED,
                                f"not sent ({failure.get('Message')}); redrive again to resume"))
    done = [moving[int(ok["Id"])] for ok in sent.get("Successful", [])]
    deleted = sqs.delete_message_batch(QueueUrl=dlq_url(settings, spec), Entries=[
        {"Id": str(i), "ReceiptHandle": m.receipt_handle} for i, m in enumerate(done)]) if done else {}
    for failure in deleted.get("Failed", []):
        # Sent but still in the DLQ: left marked as moving, so the next redrive resumes
        # this attempt (same deduplication id) instead of sending a new one.
        outcomes.append(Outcome(done[int(failure["Id"])], RedriveResult.FAILED,
                                f"sent, not deleted from the DLQ ({failure.get('Message')}); "
                                "redrive again to finish"))
    for ok in deleted.get("Successful", []):
        letter = done[int(ok["Id"])]
        archive.end_redrive(settings, letter)
        outcomes.append(Outcome(letter, RedriveResult.REDRIVEN, f"attempt {attempts[letter.message_id]}"))
    return outcomes


def _entry(entry_id: str, letter: DeadLetter, attempt: int, spec: QueueSpec) -> dict[str, Any]:
    # The message goes back as it was sent: without the reason a worker refused it for (a poison
    # copy's attributes), so that it is judged afresh and, failing again, marks its order failed.
    attributes = {name: {k: v for k, v in value.items() if k in ("DataType", "StringValue", "BinaryValue")}
                  for name, value in letter.message_attributes.items() if name not in POISON_ATTRIBUTES}
    attributes["orders_redrive"] = {"DataType": "String", "StringValue": f"{letter.key}:{attempt}"}
    entry: dict[str, Any] = {"Id": entry_id, "MessageBody": letter.body, "MessageAttributes": attributes}
    if spec.fifo:
        # The same attempt always carries the same deduplication id: a resumed move is dropped by SQS.
        entry["MessageGroupId"] = letter.group_id or "default"
        entry["MessageDeduplicationId"] = hashlib.sha256(f"{letter.key}:{attempt}".encode()).hexdigest()
    return entry


def _native_move(settings: Settings, spec: QueueSpec, letters: list[DeadLetter]) -> list[Outcome] | None:
    """Everything at once with StartMessageMoveTask; None where the endpoint lacks it, a message is
    past its bound (the move task cannot leave one behind) or carries a poison reason."""
    if settings.endpoint_url in _no_native_move:
        return None
    if any(m.redrives >= settings.dlq_max_redrives for m in letters):  # counted by ensure_archived
        return None
    if any(POISON_ATTRIBUTES & set(m.message_attributes) for m in letters):
        return None  # the move task would keep the poison reason on the message (see _entry)
    attempts, refused = _begin(settings, letters)
    if refused:
        return None  # raced with another redrive: the per-message path sorts it out
    release(settings, letters)
    sqs = clients.client("sqs", settings)
    try:
        task = sqs.start_message_move_task(SourceArn=_arn(settings, dlq_url(settings, spec)),
                                           DestinationArn=_arn(settings, queue_url(settings, spec.name)))
    except ClientError as exc:
        if not _unsupported(settings, exc):
            raise
        _no_native_move.add(settings.endpoint_url)
        log.info("this endpoint has no StartMessageMoveTask: moving messages one batch at a time")
        return None
    for letter in letters:
        archive.end_redrive(settings, letter)
    handle = task.get("TaskHandle", "")
    return [Outcome(m, RedriveResult.MOVING, f"attempt {attempts[m.message_id]}, SQS move task {handle}")
            for m in letters]


def _unsupported(settings: Settings, exc: ClientError) -> bool:
    code = exc.response.get("Error", {}).get("Code", "")
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    return code in NATIVE_UNSUPPORTED or (settings.has_endpoint and status >= 500)


def _arn(settings: Settings, url: str) -> str:
    return str(clients.client("sqs", settings).get_queue_attributes(
        QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"])


def prepare_purge(settings: Settings, spec: QueueSpec) -> list[DeadLetter]:
    """The DLQ's messages, archived and held (then `purge` them, or `release` them to cancel)."""
    letters = scan(settings, spec, MAX_MESSAGES, hold=WORK_HOLD_SECONDS)
    try:
        ensure_archived(settings, letters)
    except archive.ArchiveError:
        release(settings, letters)
        raise
    return letters


def purge(settings: Settings, spec: QueueSpec, letters: list[DeadLetter]) -> int:
    """Delete exactly these archived messages (not PurgeQueue: a message arrived since is kept)."""
    sqs, deleted = clients.client("sqs", settings), 0
    for part in batches(letters):
        answer = sqs.delete_message_batch(QueueUrl=dlq_url(settings, spec), Entries=[
            {"Id": str(i), "ReceiptHandle": m.receipt_handle} for i, m in enumerate(part)])
        for ok in answer.get("Successful", []):
            archive.set_status(settings, part[int(ok["Id"])], CopyStatus.PURGED)
            deleted += 1
    return deleted
