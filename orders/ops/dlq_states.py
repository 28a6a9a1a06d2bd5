"""The DLQ tools' states, in one place: where an archived copy stands, and what a redrive did with a message.

The values are what the archive stores (`status` of an arrival item) and what the
commands print: they never change, whatever the names.
"""

from __future__ import annotations

from enum import StrEnum


class CopyStatus(StrEnum):
    """Where a dead-lettered copy stands: its archive item's `status`."""

    DEAD_LETTERED = "dead-lettered"  # archived, still in its DLQ
    REDRIVEN = "redriven"  # sent back to its queue and deleted from the DLQ
    PURGED = "purged"  # deleted from the DLQ for good (the archive keeps it)


class RedriveResult(StrEnum):
    """What one redrive did with one message (`orders dlq redrive` prints it)."""

    REDRIVEN = "redriven"
    MOVING = "moving"  # handed to SQS's move task, which sends it back
    REFUSED = "refused"  # redriven as often as allowed: it stays in its DLQ
    FAILED = "failed"  # a send or a delete failed: it stays in its DLQ, the next redrive resumes it

    @property
    def moved(self) -> bool:
        """Whether the message is on its way back to its queue."""
        return self in (RedriveResult.REDRIVEN, RedriveResult.MOVING)
