"""The stuck-order sweeper (`ops.sweep_stuck`): an order resting in a state that is not final longer than
its step allows is resumed, once per version of it; when resuming cannot work, it is compensated or failed.

"Stuck" is the ledger audit's rule (orders.ops.audit_bounds, orders.ops.audit_checks):
longer than the step it waits for can keep its message going (36 to 71 minutes with
the defaults), or ORDERS_SWEEP_STUCK_AFTER seconds. Resuming sends that step's task
again, with the rest of the pipeline after it (orders.runtime.pipeline.resume): the
steps are idempotent by order id and step, so a message that was only slow changes
nothing twice. Each order version is resumed at most once (a conditional write of the
version in the DLQ archive's table, item `sweep` of key `sweep#<order id>`, then the send,
then a mark that it was sent: a claim left unsent by a killed pass is taken again after
SEND_GRACE_SECONDS), and an order at most MAX_RESUMES times. An order that has not moved one bound after its
resume, one resumed MAX_RESUMES times, or one waiting for its placement (a `placed`
record: no message can be rebuilt from the store) is ended: a `paid` one, whose
shipment never came, by the pipeline's compensation (`refunding`, then payments.refund:
refund, stock put back, cancelled); any other is failed through the pipeline's own
path (orders.runtime.dependencies.fail_order: `failed` with `failedFrom`, and
OrderFailed), as the DLQ watcher fails an order, and left to a person: a `failed`
order that waited for payment is ended by the expiry sweep (stock back, any capture
refunded); a redrive of any of its messages still resumes it.

One pass acts on at most ORDERS_SWEEP_MAX_ORDERS orders; each action is logged,
counted (StuckOrdersResumed, StuckOrdersCompensated, StuckOrdersFailed) and announced on `system-health`.
ORDERS_SWEEP_STUCK=0 turns it off.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from itertools import islice
from typing import Any

from orders.aws import clients, metrics
from orders.aws.store import InFlightIndexUnreadable, OrderStore
from orders.aws.tables import from_item, to_item
from orders.domain.errors import ConcurrentUpdate
from orders.domain.records import Change, OrderRecord
from orders.domain.states import OrderState, Step
from orders.domain.times import iso, parse_time
from orders.ops import archive
from orders.ops.announce import Notice, tell
from orders.ops.audit import DAMAGED, read_order
from orders.ops.audit_bounds import allowed_seconds, shortest_budget, waiting_for
from orders.ops.audit_checks import stuck_problem
from orders.runtime.dependencies import fail_order
from orders.settings import Settings
from orders.steps.flow import COMPENSATION

log = logging.getLogger(__name__)

#: Resumes of one order, all versions together, before the sweeper fails it instead.
MAX_RESUMES = 3
#: How long a resume claimed but never marked sent waits before another pass may take it again.
SEND_GRACE_SECONDS = 60.0
#: A stuck order: its record, the seconds its state is allowed, why it is stuck.
Stuck = tuple[OrderRecord, float, str]
#: Order records a pass reads with one BatchGetItem, and judges before it reads the next ones.
READ_CHUNK = 100
#: Sends a step's task (and the rest of the pipeline after it) for a recorded order.
Resume = Callable[[OrderRecord, Step], None]


class Claim(StrEnum):
    """What the sweep ledger allows for one stuck order version."""

    RESUME = "resume"  # not resumed at this version yet: resume it
    WAIT = "wait"  # resumed at this version less than a bound ago: give it time
    GIVE_UP = "give-up"  # resumed at this version a bound ago and still there, or resumed MAX_RESUMES times


#: Each action's system-health announcement (event type, severity) and metric.
NOTICES = {"resumed": ("StuckOrderResumed", "info"), "compensated": ("StuckOrderCompensated", "warning"),
           "failed": ("StuckOrderFailed", "critical")}
METRICS = {"resumed": "StuckOrdersResumed", "compensated": "StuckOrdersCompensated",
           "failed": "StuckOrdersFailed"}


@dataclass(frozen=True)
class Swept:
    """What the sweeper did to one order."""

    record: OrderRecord
    action: str  # "resumed", "compensated" or "failed"
    detail: str

    def notice(self, settings: Settings) -> Notice:
        failed = self.action == "failed"
        event_type, severity = NOTICES[self.action]
        body = {"event_type": event_type, "severity": severity, "environment": settings.env,
                "order_id": self.record.order_id, "status": self.record.status.value,
                "version": self.record.version, "detail": self.detail,
                "action": "left for a person: orders status ID; see docs/operations.md#automated-remediation"
                          if failed else ""}
        return Notice(f"[{body['severity']}] stuck order {self.record.order_id} {self.action}", body,
                      {"severity": str(body["severity"]), "event_type": str(body["event_type"])})


def sweep(settings: Settings, resume: Resume, now: datetime | None = None) -> list[Swept]:
    """One pass: resume or fail the stuck orders, the longest stuck first, at most ORDERS_SWEEP_MAX_ORDERS."""
    if not settings.sweep_stuck:
        return []
    now = now or datetime.now(UTC)
    try:
        order_ids = stuck_ids(settings, now)
    except InFlightIndexUnreadable as exc:  # an upgrade under way: not a failure, and no traceback each pass
        log.warning("sweep: the orders table's in-flight index cannot be read yet (%s): this pass looked at "
                    "no order. It is being built after `orders infra up` added it, or `orders infra up` has "
                    "not run since the upgrade; `orders audit` reports stuck orders meanwhile", exc)
        return []
    except Exception:  # DynamoDB down or throttling: failing would dead-letter the task; the next pass reads
        log.exception("sweep: the orders could not be read this pass")
        return []
    done: list[Swept] = []
    try:
        for record, allowed, detail in read_stuck(settings, order_ids, now):
            if len(done) >= settings.sweep_max_orders:
                log.warning("sweep: %d order(s) acted on, the most one pass may; of %d stuck, the rest wait",
                            len(done), len(order_ids))
                break
            try:
                swept = settle(settings, record, allowed, detail, resume, now)
            except Exception:  # the next order still gets its turn; this one comes back next pass
                log.exception("sweep: order %s not settled this pass", record.order_id)
                continue
            if swept is not None:
                done.append(swept)
    except Exception:  # as above: what was done is reported, the rest waits for the next pass
        log.exception("sweep: the stuck orders could not all be read again this pass")
    for swept in done:
        metrics.count(METRICS[swept.action], Status=swept.record.status.value)
    metrics.flush()
    tell(settings, [s.notice(settings) for s in done])
    return done


def stuck_orders(settings: Settings, now: datetime) -> list[Stuck]:
    """(record, seconds allowed, why) of each order the audit would call stuck, the longest stuck first."""
    return list(read_stuck(settings, stuck_ids(settings, now), now))


def stuck_ids(settings: Settings, now: datetime) -> list[str]:
    """The ids of the orders the audit would call stuck, the longest stuck first.

    Only orders not in a final state can be stuck, and only those that have been so (since their first
    record, or since a failed order was taken on again) longer than the shortest time any state is
    allowed: they are read from the orders table's `in-flight` index (a Query a shard, then their
    records 100 a BatchGetItem), never by a scan of the whole table, whose cost grows with every order ever
    placed (at 100 orders/s, 8.6 million a day). Each hundred records is judged as it is read and only
    the stuck ones' ids are kept: in a long outage every order in flight is a candidate, and holding
    all their records at once took a worker's memory at the worst moment (about 5 KB a record as read:
    60,000 orders in flight would be 300 MB, where their ids and times peak at 13 MB).
    """
    after = _after(settings)
    since_before = iso(now - timedelta(seconds=after if after is not None else shortest_budget(settings)))
    store = OrderStore(settings)
    found = [(_last_change(record), record.order_id)
             for chunk in _chunks(store.in_flight(since_before))
             for record, _, _ in _judge(settings, store.items(chunk), after, now)]
    return [order_id for _, order_id in sorted(found)]


def read_stuck(settings: Settings, order_ids: list[str], now: datetime) -> Iterator[Stuck]:
    """(record, seconds allowed, why) of each of `order_ids` still stuck, in their order: read again a
    hundred at a time as the caller goes on (an order may have moved since), and judged again."""
    after, store = _after(settings), OrderStore(settings)
    for chunk in _chunks(iter(order_ids)):
        judged = {stuck[0].order_id: stuck for stuck in _judge(settings, store.items(chunk), after, now)}
        yield from (judged[order_id] for order_id in chunk if order_id in judged)


def _after(settings: Settings) -> float | None:
    return settings.sweep_stuck_after or None


def _chunks(order_ids: Iterator[str]) -> Iterator[list[str]]:
    return iter(lambda: list(islice(order_ids, READ_CHUNK)), [])


def _judge(settings: Settings, items: list[dict[str, Any]], after: float | None,
           now: datetime) -> Iterator[Stuck]:
    for data in items:
        try:
            stuck = _stuck(settings, read_order(data), after, now)
        except DAMAGED as exc:  # a hand-edited item: `orders audit` reports it; the others are swept
            log.warning("sweep: order %s unreadable, skipped: %s: %s", data.get("pk"),
                        type(exc).__name__, exc)
            continue
        if stuck is not None:
            yield stuck


def _last_change(record: OrderRecord) -> str:
    return record.history[-1].at if record.history else ""


def _stuck(settings: Settings, record: OrderRecord, after: float | None,
           now: datetime) -> Stuck | None:
    """The order's (record, seconds allowed, why) if it is stuck, else None."""
    allowed = allowed_seconds(settings, record, after)
    problem = stuck_problem(record, allowed, now)
    if problem is None or allowed is None:
        return None
    return record, allowed, problem.detail


def settle(settings: Settings, record: OrderRecord, allowed: float, detail: str, resume: Resume,
           now: datetime) -> Swept | None:
    """Resume one stuck order, or fail it; None when its resume is still under way."""
    step = waiting_for(record)
    claim = (Claim.GIVE_UP if step is None or step is Step.PLACE
             else resume_once(settings, record, step, allowed, resume, now))
    if claim is Claim.WAIT:
        return None
    if claim is Claim.RESUME and step is not None:
        log.warning("sweep: order %s resumed at %s (version %d): %s", record.order_id, step, record.version,
                    detail)
        return Swept(record, "resumed", f"{step} sent again: {detail}")
    reason = f"stuck: {detail}; resuming did not move it"[:500]
    if record.status is OrderState.PAID:
        return compensate(settings, record, reason, resume)
    if not fail_order(settings, record.order_id, reason):
        return None  # it ended meanwhile
    log.error("sweep: order %s failed (left for a person): %s", record.order_id, reason)
    return Swept(record, "failed", reason)


def compensate(settings: Settings, record: OrderRecord, reason: str, resume: Resume) -> Swept | None:
    """A paid order that resuming could not ship: the pipeline's compensation (refund, stock put
    back, cancelled), as an undeliverable shipment takes, rather than `failed` with the money kept."""
    try:
        refunding = OrderStore(settings).transition(record, Change(OrderState.REFUNDING, Step.SHIP, reason))
    except ConcurrentUpdate:
        return None  # it moved meanwhile: the next pass sees where to
    resume(refunding, COMPENSATION)
    log.error("sweep: order %s compensated (refund sent): %s", record.order_id, reason)
    return Swept(record, "compensated", reason)  # announced and counted by the state it was stuck in


def resume_once(settings: Settings, record: OrderRecord, step: Step, allowed: float, resume: Resume,
                now: datetime) -> Claim:
    """Resume this order version at `step` unless it was (claimed, sent, then marked sent); the claim."""
    claim = claim_resume(settings, record, allowed, now)
    if claim is Claim.RESUME:
        resume(record, step)
        _mark_sent(settings, record)
    return claim


def _ledger_key(record: OrderRecord) -> dict[str, Any]:
    return to_item({"key": f"sweep#{record.order_id}", "item": "sweep"})


def claim_resume(settings: Settings, record: OrderRecord, allowed: float, now: datetime) -> Claim:
    """Record a resume of this order version unless one was (conditional write; module docstring).

    A claim whose send was never marked (its claimer killed between the two) may be taken again
    SEND_GRACE_SECONDS after it was made: otherwise the order would wait out its bound and be failed.
    """
    ddb, table = clients.client("dynamodb", settings), archive.table_name(settings)
    try:
        ddb.update_item(
            TableName=table, Key=_ledger_key(record),
            UpdateExpression=("SET resumed_version = :v, resumed_at = :now, expires_at = :expires "
                              "ADD resumes :one"),
            ConditionExpression=("(attribute_not_exists(resumed_version) OR resumed_version <> :v "
                                 " OR ((attribute_not_exists(sent_version) OR sent_version <> :v)"
                                 "     AND resumed_at < :unsent)) "
                                 "AND (attribute_not_exists(resumes) OR resumes < :most)"),
            ExpressionAttributeValues=to_item({
                ":v": record.version, ":now": iso(now), ":one": 1, ":most": MAX_RESUMES,
                ":unsent": iso(now - timedelta(seconds=SEND_GRACE_SECONDS)),
                ":expires": int(time.time()) + archive.RETENTION_SECONDS}))
        return Claim.RESUME
    except ddb.exceptions.ConditionalCheckFailedException:
        found = ddb.get_item(TableName=table, Key=_ledger_key(record), ConsistentRead=True)
        ledger = from_item(found["Item"])
    if int(ledger["resumed_version"]) != record.version:  # moved since, but resumed MAX_RESUMES times
        return Claim.GIVE_UP
    waited = (now - parse_time(str(ledger["resumed_at"]))).total_seconds()
    return Claim.GIVE_UP if waited > allowed else Claim.WAIT


def _mark_sent(settings: Settings, record: OrderRecord) -> None:
    """Record that this version's resume was sent (a claim without it is taken again: `claim_resume`).

    A mark that fails is logged, not raised: the resume is out, and the worst it costs is one
    more (idempotent) resume of this version after SEND_GRACE_SECONDS."""
    try:
        clients.client("dynamodb", settings).update_item(
            TableName=archive.table_name(settings), Key=_ledger_key(record),
            UpdateExpression="SET sent_version = :v",
            ExpressionAttributeValues=to_item({":v": record.version}))
    except Exception as exc:  # noqa: BLE001 - see the docstring
        log.warning("order %s: resume of version %d sent, but not marked sent (%s): it may be sent "
                    "again in %.0f s", record.order_id, record.version, exc, SEND_GRACE_SECONDS)
