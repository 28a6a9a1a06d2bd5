"""The DLQ archive: a DynamoDB table holding, per task, its failures, its dead-lettered copies
and its redrive count.

Why DynamoDB rather than S3: every write here must be conditional. A message is
archived exactly once however many watchers race (`attribute_not_exists`), and
whoever archives it is the one who alerts; the redrive bound is an atomic counter
with a condition; and one Query by task shows its error, every arrival and every
redrive. Any message SQS accepts (up to 1 MiB) is archived: its body as it is
when small, compressed when large, and when even that does not fit in an item
(400 KB), its first part compressed, marked truncated with its full size and
digest (the whole message stays in the DLQ, which is what a redrive sends); the
other fields are clipped. A TTL keeps items 90 days, well past the DLQ's 14.
Items of a task (partition key `key`, the Celery task id, or the body's digest):

- `failure`: the last error a worker recorded for it (written on task failure);
- `arrival#<SQS message id>#r<redrives>`: one dead-lettered copy: body, attributes, classification;
- `redrive`: how many times it was redriven and which copy is being moved.
"""

from __future__ import annotations

import hashlib
import json
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from orders.aws import clients, tables
from orders.aws.tables import from_item, to_item
from orders.domain.errors import FailureCategory, RetryableError
from orders.domain.times import now_iso, parse_time
from orders.ops.dead_letters import DeadLetter, classify
from orders.ops.dlq_states import CopyStatus
from orders.runtime.redaction import shown
from orders.settings import Settings

RETENTION_SECONDS = 90 * 86_400
#: Bodies above this many bytes are stored zlib-compressed.
COMPRESS_ABOVE = 16_000
#: The most a stored body takes (compressed): a DynamoDB item holds 400 KB, and the other
#: fields of an arrival take at most a few tens of KB (FIELD_CHARS each).
MAX_STORED_BODY = 300_000
FIELD_CHARS = 8_000
#: BatchGetItem calls for one request's keys, the first included, while DynamoDB leaves some unprocessed;
#: the pauses between them (equal jitter) add up to 1.5-3.1 s (orders.aws.tables.get_all).
BATCH_GET_CALLS = tables.BATCH_GET_CALLS


class ArchiveError(RuntimeError):
    """A message could not be archived, so nothing may delete it."""


class ArchiveUnavailable(ArchiveError, RetryableError):
    """The archive could not be read in full now (DynamoDB kept throttling): what it holds of a message is
    unknown, so nothing may delete it yet; a later pass or command tries again."""


class RedriveRefused(RuntimeError):
    """The message was redriven as often as allowed; it stays in its DLQ."""


def table_name(settings: Settings) -> str:
    return tables.table_name(settings, "dlq-archive")


def _arrival_key(letter: DeadLetter) -> dict[str, Any]:
    return to_item({"key": letter.key, "item": letter.arrival})


def _ddb(settings: Settings) -> Any:
    return clients.client("dynamodb", settings)


def record_failure(settings: Settings, key: str, task: str, queue: str, error: str,
                   kinds: list[str], category: FailureCategory, trace: str = "") -> None:
    """A worker's failure of task `key`: the last error, its time, and how many failures so far."""
    now = now_iso()
    _ddb(settings).update_item(
        TableName=table_name(settings), Key=to_item({"key": key, "item": "failure"}),
        UpdateExpression=("SET task = :task, queue_name = :queue, #error = :error, kinds = :kinds, "
                          "category = :category, trace = :trace, last_failure_at = :now, "
                          "first_failure_at = if_not_exists(first_failure_at, :now), "
                          "expires_at = :expires ADD failures :one"),
        ExpressionAttributeNames={"#error": "error"},
        ExpressionAttributeValues=to_item({
            ":task": task, ":queue": queue, ":error": error[:2000], ":kinds": kinds,
            ":category": category, ":trace": trace[-4000:], ":now": now, ":one": 1,
            ":expires": int(time.time()) + RETENTION_SECONDS}),
    )


def _batch_get(settings: Settings, keys: list[tuple[str, str]]) -> dict[tuple[str, str], dict[str, Any]]:
    found: dict[tuple[str, str], dict[str, Any]] = {}
    unique, table = list(dict.fromkeys(keys)), table_name(settings)
    for start in range(0, len(unique), 100):
        request = {table: {"Keys": [to_item({"key": k, "item": i}) for k, i in unique[start:start + 100]]}}
        for raw in get_all(_ddb(settings).batch_get_item, request, table):
            item = from_item(raw)
            found[(item["key"], item["item"])] = item
    return found


def get_all(batch_get_item: Callable[..., Any], request: dict[str, Any], table: str,
            sleep: Callable[[float], None] = time.sleep) -> list[dict[str, Any]]:
    """The items of one BatchGetItem request, asking again for the keys DynamoDB leaves unprocessed
    (it does when throttled): BATCH_GET_CALLS calls at most, with backoff, then ArchiveUnavailable."""
    try:
        return tables.get_all(batch_get_item, request, table, sleep)
    except tables.Unprocessed as exc:
        left = exc.keys
        shown = ", ".join(f"{k.get('key')}/{k.get('item')}" for k in left[:5])
        more = ", ..." if len(left) > 5 else ""
        raise ArchiveUnavailable(f"{table}: DynamoDB left {len(left)} key(s) unprocessed after "
                                 f"{BATCH_GET_CALLS} BatchGetItem calls ({shown}{more}): "
                                 "try again later") from exc


def failures(settings: Settings, letters: list[DeadLetter]) -> dict[str, dict[str, Any]]:
    """The recorded failure of each message's task, by key (absent when none was recorded)."""
    got = _batch_get(settings, [(m.key, "failure") for m in letters])
    return {key: item for (key, _), item in got.items()}


def annotate(settings: Settings, letters: list[DeadLetter]) -> None:
    """Set on each message how many redrives of its task came before it arrived."""
    got = _batch_get(settings, [(m.key, "redrive") for m in letters])
    ledgers = {key: item for (key, _), item in got.items()}
    for letter in letters:
        ledger = ledgers.get(letter.key, {})
        # A copy being moved by an interrupted redrive arrived before that redrive was counted.
        being_moved = ledger.get("moving") == letter.message_id
        letter.redrives = int(ledger.get("redrives", 0)) - (1 if being_moved else 0)


def archived(settings: Settings, letters: list[DeadLetter]) -> dict[str, dict[str, Any]]:
    """The archived copies among the given messages, by SQS message id."""
    got = _batch_get(settings, [(m.key, m.arrival) for m in letters])
    return {item["message_id"]: item for item in got.values()}


@dataclass(frozen=True)
class Found:
    """What the archive holds of some messages of a DLQ: their archived copies, and the others."""

    copies: dict[str, dict[str, Any]]  # the archived copies among them, by SQS message id
    new: list[DeadLetter]  # the messages not archived yet
    failures: dict[str, dict[str, Any]]  # the failures recorded for the new ones' tasks, by key

    def classify(self, letter: DeadLetter) -> tuple[str, str]:
        """(category, why) of a new message, from its task's recorded failure if any."""
        return classify(letter, self.failures.get(letter.key))


def look_up(settings: Settings, letters: list[DeadLetter]) -> Found:
    """What the archive holds of these messages (each told its redrives first: its copy's key counts them)."""
    annotate(settings, letters)
    copies = archived(settings, letters)
    new = [m for m in letters if m.message_id not in copies]
    return Found(copies, new, failures(settings, new))


def claim_late_alert(settings: Settings, letter: DeadLetter, item: dict[str, Any],
                     after_seconds: int = 60) -> bool:
    """Whether this pass may send an alert that the pass which archived the copy did not send.

    Only a copy archived (and last claimed) over `after_seconds` ago qualifies. Its times
    are parsed, not compared as text: copies archived before the archive wrote `now_iso`'s
    format carry milliseconds and +00:00. The claim is conditional on the copy being as this
    pass read it (`item`), so concurrent passes never both send it.
    """
    cutoff = datetime.now(UTC) - timedelta(seconds=after_seconds)
    last_claim = item.get("late_claim")
    if "alerted_at" in item or parse_time(item["archived_at"]) > cutoff or \
            (last_claim is not None and parse_time(last_claim) > cutoff):
        return False
    as_read = "late_claim = :last" if last_claim is not None else "attribute_not_exists(late_claim)"
    condition = f"attribute_exists(archived_at) AND attribute_not_exists(alerted_at) AND {as_read}"
    ddb = _ddb(settings)
    try:
        ddb.update_item(
            TableName=table_name(settings), Key=_arrival_key(letter),
            UpdateExpression="SET late_claim = :now",
            ConditionExpression=condition,
            ExpressionAttributeValues=to_item({":now": now_iso(), ":last": last_claim}))
    except ddb.exceptions.ConditionalCheckFailedException:
        return False
    return True


def mark_alerted(settings: Settings, letter: DeadLetter) -> None:
    """The critical alert for this copy went out (until then, each watcher pass retries it)."""
    _ddb(settings).update_item(
        TableName=table_name(settings), Key=_arrival_key(letter),
        UpdateExpression="SET alerted_at = :now", ExpressionAttributeValues=to_item({":now": now_iso()}))


def mark_once(settings: Settings, letter: DeadLetter, attribute: str) -> bool:
    """Set `attribute` to now on this archived copy unless it is set: True for the one call that set it."""
    ddb = _ddb(settings)
    try:
        ddb.update_item(
            TableName=table_name(settings), Key=_arrival_key(letter), UpdateExpression="SET #a = :now",
            ConditionExpression="attribute_exists(archived_at) AND attribute_not_exists(#a)",
            ExpressionAttributeNames={"#a": attribute},
            ExpressionAttributeValues=to_item({":now": now_iso()}))
    except ddb.exceptions.ConditionalCheckFailedException:
        return False
    return True


def archive(settings: Settings, letter: DeadLetter, category: str, why: str) -> bool:
    """Store this copy of the message durably; True if this call archived it (False: already was)."""
    values = {
        "key": letter.key, "item": letter.arrival, "message_id": letter.message_id,
        "queue_name": letter.queue.name, "task": clip(letter.task, 500), "order_id": letter.order_id,
        "args": clip_json(shown(letter.args)), "kwargs": clip_json(shown(letter.kwargs)),
        "attributes": clip_json(letter.attributes),
        "message_attributes": clip_json(letter.message_attributes),
        "category": category, "why": clip(why, 2000), "decode_error": clip(letter.decode_error, 2000),
        "status": CopyStatus.DEAD_LETTERED, "archived_at": now_iso(),
        "expires_at": int(time.time()) + RETENTION_SECONDS, **stored_body(letter.body),
    }
    ddb = _ddb(settings)
    try:
        ddb.put_item(TableName=table_name(settings), Item=to_item(values),
                     ConditionExpression="attribute_not_exists(#k)", ExpressionAttributeNames={"#k": "key"})
    except ddb.exceptions.ConditionalCheckFailedException:
        return False
    except Exception as exc:
        raise ArchiveError(f"could not archive message {letter.message_id}: {exc}") from exc
    return True


def stored_body(body: str) -> dict[str, Any]:
    """How a body is stored: as text when small, else compressed, else its first part compressed."""
    try:
        data = body.encode()
    except UnicodeEncodeError:  # lone surrogates: not a DynamoDB string, but kept byte for byte
        data = body.encode("utf-8", "surrogatepass")
    else:
        if len(data) <= COMPRESS_ABOVE:
            return {"body": body}
    packed = zlib.compress(data, 9)
    if len(packed) <= MAX_STORED_BODY:
        return {"body_z": packed}
    kept = len(data)
    while len(packed) > MAX_STORED_BODY:  # incompressible (random bytes, base64): keep what fits
        kept = kept * MAX_STORED_BODY // len(packed) - 1024
        packed = zlib.compress(data[:kept], 9)
    return {"body_z": packed, "body_truncated": True, "body_bytes": len(data),
            "body_sha256": hashlib.sha256(data).hexdigest()}


def clip(text: str | None, limit: int = FIELD_CHARS) -> str | None:
    """`text` cut to `limit` characters, saying how long it was."""
    if text is None or len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text)} characters)"


def clip_json(value: Any) -> str:
    """`value` as JSON, clipped (the message's own copy is in the DLQ)."""
    try:
        text = json.dumps(value, default=str)
    except (ValueError, TypeError, RecursionError) as exc:
        text = f"(not JSON: {type(exc).__name__})"
    return str(clip(text))


def set_status(settings: Settings, letter: DeadLetter, status: CopyStatus) -> None:
    """Mark an archived copy redriven or purged (after it left its DLQ)."""
    _ddb(settings).update_item(
        TableName=table_name(settings), Key=_arrival_key(letter),
        UpdateExpression="SET #s = :s, status_at = :now", ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues=to_item({":s": status, ":now": now_iso()}))


def begin_redrive(settings: Settings, letter: DeadLetter, bound: int) -> int:
    """Count one redrive of this copy before it moves; the attempt number (a crashed one resumes)."""
    ddb = _ddb(settings)
    key = to_item({"key": letter.key, "item": "redrive"})
    try:
        answer = ddb.update_item(
            TableName=table_name(settings), Key=key,
            UpdateExpression="ADD redrives :one SET moving = :mid, last_redrive_at = :now",
            ConditionExpression=("(attribute_not_exists(redrives) OR redrives < :bound) "
                                 "AND (attribute_not_exists(moving) OR moving <> :mid)"),
            ExpressionAttributeValues=to_item({":one": 1, ":mid": letter.message_id, ":now": now_iso(),
                                             ":bound": bound}),
            ReturnValues="ALL_NEW")
        return int(from_item(answer["Attributes"])["redrives"])
    except ddb.exceptions.ConditionalCheckFailedException:
        found = from_item(ddb.get_item(TableName=table_name(settings), Key=key, ConsistentRead=True)["Item"])
    if found.get("moving") == letter.message_id:
        return int(found["redrives"])  # a move of this very copy was interrupted: finish it
    raise RedriveRefused(f"{letter.key}: redriven {int(found['redrives'])} time(s) already "
                         f"(limit {bound}); fix the cause, then purge it or raise ORDERS_DLQ_MAX_REDRIVES")


def end_redrive(settings: Settings, letter: DeadLetter) -> None:
    _ddb(settings).update_item(
        TableName=table_name(settings), Key=to_item({"key": letter.key, "item": "redrive"}),
        UpdateExpression="REMOVE moving")
    set_status(settings, letter, CopyStatus.REDRIVEN)


def history(settings: Settings, key: str) -> list[dict[str, Any]]:
    """Everything archived about one task: its failure, its copies, its redrives."""
    answer = _ddb(settings).query(
        TableName=table_name(settings), KeyConditionExpression="#k = :k",
        ExpressionAttributeNames={"#k": "key"}, ExpressionAttributeValues=to_item({":k": key}))
    return [from_item(item) for item in answer.get("Items", [])]


def archived_body(item: dict[str, Any]) -> str:
    """The archived body (its first part only when `body_truncated` is set)."""
    if "body_z" in item:
        data = zlib.decompress(bytes(item["body_z"]))
        try:
            return data.decode("utf-8", "surrogatepass")
        except UnicodeDecodeError:  # truncated inside a character
            return data.decode("utf-8", "replace")
    return str(item["body"])
