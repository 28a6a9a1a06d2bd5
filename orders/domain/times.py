"""Time as the platform writes it: ISO 8601 UTC with microseconds and a Z, one format everywhere."""

from __future__ import annotations

from datetime import UTC, datetime


def now_iso() -> str:
    """The current time as the store, events and the archive write it."""
    return iso(datetime.now(UTC))


def iso(moment: datetime) -> str:
    """`moment` as the platform writes times (it must be aware)."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def parse_time(value: str) -> datetime:
    """A time written by `now_iso` (or any ISO 8601 text with an offset or Z) as an aware UTC datetime."""
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)
