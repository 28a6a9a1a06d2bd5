"""Each order version is resumed once (orders.ops.sweeper.resume_once), by the stuck-order sweeper and
by the adoption after a flip alike, and a claimer killed between its claim and its send does not
strand the order: the claim is taken again once SEND_GRACE_SECONDS have passed without a send."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from orders.domain.records import OrderRecord
from orders.domain.states import OrderState, Step
from orders.ops.sweeper import SEND_GRACE_SECONDS, Claim, claim_resume, resume_once

BOUND = 3600.0  # the step's bound: far longer than anything here


def test_a_claim_whose_send_never_came_is_taken_again_after_the_grace(infra):
    record = OrderRecord("claim-1", OrderState.RESERVED, 3)
    start = datetime.now(UTC)
    # A claimer that claims, then is SIGKILLed before its send: nothing marks the send.
    assert claim_resume(infra, record, BOUND, start) is Claim.RESUME
    assert claim_resume(infra, record, BOUND, start + timedelta(seconds=10)) is Claim.WAIT  # maybe sending
    later = start + timedelta(seconds=SEND_GRACE_SECONDS + 1)
    sent: list[tuple[str, Step]] = []
    claim = resume_once(infra, record, Step.CHARGE, BOUND, lambda r, s: sent.append((r.order_id, s)), later)
    assert claim is Claim.RESUME and sent == [("claim-1", Step.CHARGE)]
    # Sent and marked: this version is not resumed again, however long after.
    much_later = later + timedelta(seconds=SEND_GRACE_SECONDS * 5)
    assert resume_once(infra, record, Step.CHARGE, BOUND, lambda r, s: sent.append((r.order_id, s)),
                       much_later) is Claim.WAIT
    assert len(sent) == 1


def test_a_new_version_is_resumed_at_once(infra):
    record = OrderRecord("claim-2", OrderState.RESERVED, 3)
    now = datetime.now(UTC)
    assert resume_once(infra, record, Step.CHARGE, BOUND, lambda r, s: None, now) is Claim.RESUME
    moved = OrderRecord("claim-2", OrderState.PAID, 4)
    assert claim_resume(infra, moved, BOUND, now + timedelta(seconds=1)) is Claim.RESUME
