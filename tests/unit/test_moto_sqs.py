"""The emulator's clock for moto's SQS reads the same instant as moto's own, on the same epoch."""

from __future__ import annotations

import time
from datetime import datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st
from moto.core.utils import unix_time, unix_time_millis, utcnow

from orders.emulator.moto_sqs import epoch_millis, epoch_seconds


@given(st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1)))
def test_a_given_time_is_the_same_number_of_seconds_as_moto_counts(dt: datetime) -> None:
    assert abs(epoch_seconds(dt) - unix_time(dt)) < 1e-6
    assert abs(epoch_millis(dt) - unix_time_millis(dt)) < 1e-3


def test_now_is_the_same_instant_as_moto_reads() -> None:
    before = unix_time_millis()
    ours = epoch_millis()
    after = unix_time_millis()
    assert before - 1 <= ours <= after + 1  # a millisecond either side: float rounding
    assert abs(epoch_seconds() - unix_time()) < 0.05
    visible_at = unix_time_millis(utcnow() + timedelta(seconds=30))  # moto's own visibility arithmetic
    assert 29_000 < visible_at - epoch_millis() <= 30_000
    assert abs(epoch_seconds() - time.time()) < 0.05
