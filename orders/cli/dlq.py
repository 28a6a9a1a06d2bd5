"""`orders dlq list|show|redrive|purge`: the dead-letter queues, for the engineer on call.

`show` prints a message's arguments as orders.runtime.redaction shows them: sealed values
as "sealed", a sensitive field in clear masked, and its errors with what looks like an email,
a token or a phone number masked.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

import click
from botocore.exceptions import BotoCoreError, ClientError

from orders.aws import clients
from orders.ops import archive, redrive
from orders.ops.dead_letters import SETTLE_SECONDS, DeadLetter, classify, depth, queue_spec, release, scan
from orders.runtime.redaction import mask_text, shown
from orders.settings import Settings, get_settings
from orders.topology import QUEUES, QueueSpec

T = TypeVar("T")


@click.group("dlq")
def dlq_group() -> None:
    """Dead-letter queues: depth and age, messages with their errors, redrive, purge."""


@contextmanager
def _aws_errors() -> Iterator[None]:
    try:
        yield
    except (BotoCoreError, ClientError, archive.ArchiveError) as exc:
        raise click.ClickException(str(exc)) from None


def _settings() -> Settings:
    settings = get_settings()
    clients.require_aws(settings)
    return settings


def _spec(name: str) -> QueueSpec:
    try:
        return queue_spec(name)
    except KeyError as exc:
        raise click.BadParameter(str(exc.args[0]), param_hint="QUEUE") from None


def _when(epoch: float | None) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds") if epoch else "-"


def _peek(settings: Settings, spec: QueueSpec, limit: int, hold: int,
          use: Callable[[list[DeadLetter]], T]) -> T:
    # A person's read: waits out the watcher's, rather than show a busy DLQ as empty.
    letters = scan(settings, spec, limit, hold=hold, settle=SETTLE_SECONDS)
    try:
        return use(letters)
    finally:
        if letters:
            release(settings, letters)


def _sent_times(letters: list[DeadLetter]) -> list[float]:
    return [m.sent_at for m in letters if m.sent_at]


@dlq_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per DLQ.")
def list_cmd(as_json: bool) -> None:
    """Depth and age of the oldest message of every DLQ."""
    settings = _settings()
    rows = []
    with _aws_errors():
        for spec in QUEUES:
            visible, in_flight = depth(settings, spec)
            sent = _peek(settings, spec, 10, 5, _sent_times) if visible else []
            age = round(time.time() - min(sent)) if sent else None
            rows.append({"queue": spec.name, "dlq": spec.dlq_sqs_name(settings), "visible": visible,
                         "in_flight": in_flight, "oldest_age_seconds": age})
    if as_json:
        click.echo("\n".join(json.dumps(r) for r in rows))
        return
    click.echo(f"{'QUEUE':22} {'DLQ':36} {'DEPTH':>6} {'IN FLIGHT':>9}  OLDEST (sampled)")
    for r in rows:
        oldest = "-" if r["oldest_age_seconds"] is None else f"{r['oldest_age_seconds']} s"
        click.echo(f"{r['queue']:22} {r['dlq']:36} {r['visible']:>6} {r['in_flight']:>9}  {oldest}")


def _described(settings: Settings, letters: list[DeadLetter]) -> list[dict[str, Any]]:
    recorded = archive.failures(settings, letters)
    archive.annotate(settings, letters)
    known = archive.archived(settings, letters)
    out = []
    for m in letters:
        failure = recorded.get(m.key) or {}
        category, why = classify(m, recorded.get(m.key))
        archived = known.get(m.message_id, {})
        out.append({
            "id": m.key, "message_id": m.message_id, "task": m.task, "order_id": m.order_id,
            "args": shown(m.args), "kwargs": shown(m.kwargs), "receive_count": m.receive_count,
            "failures": int(failure.get("failures", 0)), "first_failure": failure.get("first_failure_at"),
            "last_failure": failure.get("last_failure_at"),
            "error": _masked(failure.get("error") or m.decode_error),
            "classification": category, "why": _masked(why), "sent_at": _when(m.sent_at),
            "archived_at": archived.get("archived_at"), "redrives": m.redrives,
            "redrive_limit": settings.dlq_max_redrives,
        })
    return out


def _masked(text: str | None) -> str | None:
    return mask_text(text) if text else text


def _print_message(d: dict[str, Any]) -> None:
    click.echo(f"{d['id']}  task={d['task'] or '?'}  order={d['order_id'] or '-'}")
    lines = [
        ("message id", d["message_id"]),
        ("arguments", f"{json.dumps(d['args'], default=str)} {json.dumps(d['kwargs'], default=str)}"),
        ("received", f"{d['receive_count']} time(s); {d['failures']} failure(s) recorded"),
        ("first failure", d["first_failure"] or "-"), ("last failure", d["last_failure"] or "-"),
        ("error", d["error"] or "(none recorded: worker lost or visibility timeout expired)"),
        ("classification", d["classification"]),
        ("archived", d["archived_at"] or "not yet (the watcher or a redrive/purge archives it)"),
        ("redrives", f"{d['redrives']} of {d['redrive_limit']}"),
    ]
    click.echo("".join(f"  {label + ':':16}{value}\n" for label, value in lines))


@dlq_group.command("show")
@click.argument("queue")
@click.option("--limit", type=int, default=50, show_default=True, help="At most this many messages.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per message.")
def show_cmd(queue: str, limit: int, as_json: bool) -> None:
    """Every message of QUEUE's DLQ, decoded: task, order, arguments, failures, error, classification."""
    settings, spec = _settings(), _spec(queue)
    with _aws_errors():
        described = _peek(settings, spec, limit, 15, lambda ls: _described(settings, ls))
    if as_json:
        click.echo("\n".join(json.dumps(d, default=str) for d in described))
        return
    click.echo(f"{spec.dlq_sqs_name(settings)}: {len(described)} message(s)\n")
    for d in described:
        _print_message(d)


@dlq_group.command("redrive")
@click.argument("queue")
@click.option("--all", "all_", is_flag=True, help="Every message of the DLQ.")
@click.option("--id", "ids", multiple=True, help="An id from `orders dlq show` (repeatable).")
def redrive_cmd(queue: str, all_: bool, ids: tuple[str, ...]) -> None:
    """Send QUEUE's dead-lettered messages back to QUEUE (archived first; ORDERS_DLQ_MAX_REDRIVES each)."""
    if all_ == bool(ids):
        raise click.UsageError("give either --all or one or more --id")
    settings, spec = _settings(), _spec(queue)
    with _aws_errors():
        outcomes = redrive.redrive(settings, spec, None if all_ else list(ids), settle=SETTLE_SECONDS)
    for o in outcomes:
        click.echo(f"{o.result:9} {o.letter.key}  ({o.letter.task or 'undecodable'}) {o.detail}")
    missing = set(ids) - {x for o in outcomes for x in (o.letter.key, o.letter.message_id)}
    for name in sorted(missing):
        click.echo(f"{'not found':9} {name}  (not in the DLQ now)")
    moved = sum(o.result.moved for o in outcomes)
    click.echo(f"{moved} of {len(outcomes)} message(s) back on {spec.sqs_name(settings)}")
    _remaining(settings, spec)
    if moved < len(outcomes) or missing:
        raise SystemExit(1)


@dlq_group.command("purge")
@click.argument("queue")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def purge_cmd(queue: str, yes: bool) -> None:
    """Delete QUEUE's dead-lettered messages, each archived first (asks before deleting)."""
    settings, spec = _settings(), _spec(queue)
    with _aws_errors():
        letters = redrive.prepare_purge(settings, spec)
    if not letters:
        click.echo(f"{spec.dlq_sqs_name(settings)} is empty.")
        return
    prompt = (f"Delete {len(letters)} message(s) from {spec.dlq_sqs_name(settings)}? "
              f"Each is archived in {archive.table_name(settings)}.")
    if not yes and not click.confirm(prompt):
        release(settings, letters)
        raise click.Abort()
    with _aws_errors():
        deleted = redrive.purge(settings, spec, letters)
    click.echo(f"Deleted {deleted} archived message(s) from {spec.dlq_sqs_name(settings)}.")
    _remaining(settings, spec)


def _remaining(settings: Settings, spec: QueueSpec) -> None:
    """Say so when messages are left: refused, arrived meanwhile, or hidden behind a FIFO group."""
    with _aws_errors():
        left = sum(depth(settings, spec))
    if left:
        click.echo(f"{left} message(s) still in {spec.dlq_sqs_name(settings)}: "
                   f"see `orders dlq show {spec.name}`")


commands = [dlq_group]
