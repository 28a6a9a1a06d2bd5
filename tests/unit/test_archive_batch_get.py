"""The archive's BatchGetItem loop asks again for the keys DynamoDB leaves unprocessed, a bounded number of
times. A stand-in for the call: the emulator's faults answer errors, never a partial BatchGetItem."""

from __future__ import annotations

from typing import Any

import pytest

from orders.aws.tables import to_item
from orders.domain.errors import RetryableError
from orders.ops.archive import BATCH_GET_CALLS, ArchiveError, ArchiveUnavailable, get_all

TABLE = "t-dlq-archive"


def _key(n: int) -> dict[str, Any]:
    return to_item({"key": f"task-{n}", "item": "failure"})


class PartialBatchGet:
    """Answers the first `served` keys of each call and leaves the rest unprocessed (one more each call
    when `progress`), recording the calls."""

    def __init__(self, served: int, progress: bool):
        self.served, self.progress, self.calls = served, progress, []

    def __call__(self, RequestItems: dict[str, Any]) -> dict[str, Any]:  # noqa: N803 - boto3's name
        keys = RequestItems[TABLE]["Keys"]
        self.calls.append(len(keys))
        served, left = keys[:self.served], keys[self.served:]
        self.served += self.progress
        return {"Responses": {TABLE: served},
                "UnprocessedKeys": {TABLE: {"Keys": left}} if left else {}}


def test_unprocessed_keys_are_asked_for_again_until_every_item_is_read() -> None:
    call, pauses = PartialBatchGet(served=1, progress=True), []
    items = get_all(call, {TABLE: {"Keys": [_key(n) for n in range(6)]}}, TABLE, sleep=pauses.append)
    assert items == [_key(n) for n in range(6)]
    assert call.calls == [6, 5, 3] and len(pauses) == 2  # 1, then 2, then the last 3


def test_a_table_that_keeps_leaving_keys_gives_up_after_a_bounded_number_of_calls() -> None:
    call, pauses = PartialBatchGet(served=0, progress=False), []
    with pytest.raises(ArchiveUnavailable) as raised:
        get_all(call, {TABLE: {"Keys": [_key(n) for n in range(7)]}}, TABLE, sleep=pauses.append)
    assert len(call.calls) == BATCH_GET_CALLS and len(pauses) == BATCH_GET_CALLS - 1
    assert all(0 < p <= 2.0 for p in pauses)
    message = str(raised.value)
    assert "7 key(s) unprocessed" in message and "task-0/failure" in message and ", ..." in message
    # Retryable (a later pass reads it), and an ArchiveError: redrive and purge delete nothing on it.
    assert isinstance(raised.value, RetryableError) and isinstance(raised.value, ArchiveError)
