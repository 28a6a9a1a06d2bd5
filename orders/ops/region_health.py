"""Each region's health, probed from outside it (docs/multi-region.md, "Failover and failback").

A probe is one SQS call and two DynamoDB calls in the region, each timed, with short timeouts
and no retry (a region that answers only on a retry is not one to fail over to):
- SQS: GetQueueUrl and GetQueueAttributes (ApproximateNumberOfMessages) of its `orders` queue;
- DynamoDB: PutItem then a strongly consistent GetItem of a `health` item in the region's
  `<env>-dlq-archive` table, which is regional: a probe must never write a replicated item (the
  standby's writes would replicate into the active region).

`Watch` turns probes into decisions: a region is unhealthy after FAILURES consecutive failed
probes, and the failover goes to the first standby whose last probe succeeded.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from orders.aws import clients
from orders.aws.tables import table_name, to_item
from orders.domain.times import now_iso
from orders.settings import Settings
from orders.topology import QUEUES_BY_NAME

#: Seconds between two probes of every region, and how many failed probes in a row make a region
#: unhealthy (about 30 s to detect an outage: the RTO's first term).
PROBE_INTERVAL_SECONDS = 10.0
FAILURES = 3
#: One attempt, bounded at 2 s: a probe of a region that is gone answers soon, with its failure.
PROBE_CONFIG = clients.OTHER_REGION_CONFIG
_HEALTH_KEY = {"key": "health", "item": "probe"}


@dataclass(frozen=True)
class Health:
    """One probe of one region: ok, or the first error; how long each service took (None: not reached)."""

    region: str
    ok: bool
    sqs_ms: float | None
    dynamodb_ms: float | None
    error: str | None

    def to_json(self) -> dict[str, Any]:
        return {"region": self.region, "ok": self.ok, "sqs_ms": self.sqs_ms,
                "dynamodb_ms": self.dynamodb_ms, "error": self.error}


def probe(settings: Settings) -> Health:
    """Probe the region of `settings` (its SQS, then its DynamoDB); never raises for the region's failure."""
    region = str(settings.region)
    timings: list[float] = []
    for check in (_sqs, _dynamodb):
        started = time.perf_counter()
        try:
            check(settings)
        except Exception as exc:  # noqa: BLE001  # any failure of the region's services is its ill health
            return Health(region, False, *_padded(timings), error=f"{check.__name__[1:]}: {exc}")
        timings.append(round((time.perf_counter() - started) * 1000, 1))
    return Health(region, True, *_padded(timings), error=None)


def _padded(timings: list[float]) -> tuple[float | None, float | None]:
    sqs, dynamodb = (timings + [None, None])[:2]
    return sqs, dynamodb


def _sqs(settings: Settings) -> None:
    sqs = clients.client("sqs", settings, PROBE_CONFIG)
    url = sqs.get_queue_url(QueueName=QUEUES_BY_NAME["orders"].sqs_name(settings))["QueueUrl"]
    sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])


def _dynamodb(settings: Settings) -> None:
    ddb, table = clients.client("dynamodb", settings, PROBE_CONFIG), table_name(settings, "dlq-archive")
    mark = uuid.uuid4().hex  # this probe's own write, so an older probe's item does not pass for it
    ddb.put_item(TableName=table, Item=to_item({**_HEALTH_KEY, "mark": mark, "at": now_iso()}))
    found = ddb.get_item(TableName=table, Key=to_item(_HEALTH_KEY), ConsistentRead=True).get("Item") or {}
    if found.get("mark", {}).get("S") != mark:
        raise RuntimeError(f"{table}: a strongly consistent read did not return the item just written")


def probe_all(settings: Settings, probe_one: Callable[[Settings], Health] = probe) -> list[Health]:
    """Every region of `settings` probed at once (a region that hangs delays no other), in their order."""
    regions = [settings.for_region(name) for name in settings.regions] or [settings]
    with ThreadPoolExecutor(len(regions)) as probing:
        return list(probing.map(probe_one, regions))


@dataclass
class Watch:
    """Consecutive failed probes per region, and what they call for."""

    regions: tuple[str, ...]
    failures: int = FAILURES
    streaks: dict[str, int] = field(default_factory=dict)
    seen: set[str] = field(default_factory=set)

    def observe(self, results: Iterable[Health]) -> None:
        """Count each region's probe: a success resets its streak of failures."""
        for health in results:
            self.seen.add(health.region)
            self.streaks[health.region] = 0 if health.ok else self.streaks.get(health.region, 0) + 1

    def unhealthy(self, region: str) -> bool:
        return self.streaks.get(region, 0) >= self.failures

    def healthy(self, region: str) -> bool:
        """Its last probe succeeded."""
        return region in self.seen and self.streaks.get(region, 0) == 0

    def failover_to(self, active: str) -> str | None:
        """Where to flip: None while `active` is not unhealthy or no standby is healthy."""
        if not self.unhealthy(active):
            return None
        return next((r for r in self.regions if r != active and self.healthy(r)), None)
