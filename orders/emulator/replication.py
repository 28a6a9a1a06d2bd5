"""Global tables for the embedded emulator: moto does not replicate, so this does, as AWS would.

Each region is one emulator (its own process and endpoint). The replicator reads every
replicated table's DynamoDB stream in every region (TableSpec.replicated; NEW_AND_OLD_IMAGES)
and writes each change into the other regions `delay` seconds after it was made, with the
semantics of DynamoDB global tables (docs/multi-region.md):

- asynchronous: a write is visible in its own region at once, elsewhere after the delay;
- last writer wins per item: every version carries a stamp (the write time the stream
  record carries, in microseconds, then the region's name to break ties, the same order in
  every region), and a region keeps the version with the higher stamp, deletes included
  (a tombstone's stamp beats an older put arriving late);
- conditions are local: a conditional write is checked against its own region's copy only,
  so two regions can each accept a write that the other's copy would refuse; the merge then
  keeps one of them and silently drops the other (what the conflict tests show).

The stamps live here, not in the items: global tables keep theirs hidden, and an attribute
of our own (`_rts`) would go stale on every application write that does not set it (the
2017 version of global tables stamped `aws:rep:updatetime` on every write, service-side,
which no outside replicator can do). A region's copy is known from its own stream: the
replicator reads it right before writing there, and writes on condition that the item is
still exactly that copy, so an application write that lands meanwhile makes the condition
fail and the decision is taken again (a write that only adds an attribute slips through:
the one known gap). A replicated write shows up in the target's stream too; it is
recognised as the replicator's own (its image is the next one expected for that item) and
never sent back: no echo loop. Nothing in production imports this module.
"""

from __future__ import annotations

import heapq
import itertools
import json
import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from orders.aws.errors import is_retryable_aws_error
from orders.emulator.streams import Image, StreamReader, client, same, unchanged
from orders.settings import Settings
from orders.topology import TABLES, TABLES_BY_NAME

log = logging.getLogger(__name__)

#: The tables global tables replicate (orders, stock, the API's): see TableSpec.replicated.
REPLICATED_TABLES = tuple(spec.name for spec in TABLES if spec.replicated)
#: How long a change waits before it is tried again when its region does not answer, or its item kept
#: changing under APPLY_ATTEMPTS conditional writes in one pass.
RETRY_PAUSE = 1.0
APPLY_ATTEMPTS = 3
ItemId = tuple[str, str]  # (declared table name, the item's key as canonical JSON)


@dataclass(frozen=True, order=True)
class Stamp:
    """When and where a version was written: the higher stamp wins, in every region alike."""

    micros: int
    region: str


@dataclass(frozen=True)
class Version:
    stamp: Stamp
    image: Image


@dataclass(order=True)
class Change:
    """A version written in one region, due in `target` at `due` (epoch seconds)."""

    due: float
    seq: int
    target: str = field(compare=False)
    table: str = field(compare=False)
    key: dict[str, Any] = field(compare=False)
    version: Version = field(compare=False)


class Region:
    """One region's emulator as the replicator knows it: each item's current version, and the
    images of its own writes there that its stream has not shown yet."""

    def __init__(self, settings: Settings, tables: Iterable[str]):
        self.name = str(settings.region)
        self.settings = settings
        self.readers = {table: StreamReader(settings, table) for table in tables}
        self.versions: dict[ItemId, Version] = {}
        self.echoes: dict[ItemId, deque[Image]] = {}


class Replicator:
    """Replicates the namespace's replicated tables between regions, each `delay` s after its write.

    Give it one Settings per region (each naming its region and its emulator). `start()` runs
    it on a thread; `wait()` returns once everything written before the call has been
    replicated. `counts`: `local` (application writes seen), `applied`, `superseded` (lost to
    a newer version: last writer wins), `unchanged` (the target already had it), `echo` (its
    own writes seen in a stream, not sent back), `retried` (a target changed under a write),
    `unreachable` (a region did not answer).
    """

    def __init__(self, regions: Sequence[Settings], tables: Sequence[str] = REPLICATED_TABLES,
                 delay: float = 1.0, poll: float = 0.1):
        names = [str(s.region) for s in regions]
        if len(set(names)) != len(names) or len(names) < 2:
            raise ValueError(f"a replicator needs two or more distinct regions, not {names}")
        self.regions = {str(s.region): Region(s, tables) for s in regions}
        self.delay, self.poll = delay, poll
        self.counts: Counter[str] = Counter()
        self._pending: list[Change] = []
        self._seq = itertools.count()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._progress = threading.Condition()
        self._started_steps = self._quiet_step = 0
        self._refused: set[tuple[str, str]] = set()  # (region, table) whose stream refused to be read

    def start(self) -> Replicator:
        self._thread = threading.Thread(target=self._run, daemon=True, name="replicator")
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> Replicator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wait(self, timeout: float = 30.0) -> bool:
        """True once a pass that began after this call found nothing new and nothing pending."""
        with self._progress:
            after = self._started_steps
            return self._progress.wait_for(lambda: self._quiet_step > after, timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            if self.step():
                self._stop.wait(self.poll)

    def step(self) -> bool:
        """One pass: read every stream, write what is due. True when it found nothing to do."""
        with self._progress:
            self._started_steps += 1
            number = self._started_steps
        before = self._activity()
        for region in self.regions.values():
            for table in region.readers:
                self._read(region, table)
        self._apply_due()
        quiet = self._activity() == before and not self._pending  # a write made here shows next pass
        if quiet:
            with self._progress:
                self._quiet_step = number
                self._progress.notify_all()
        return quiet

    def _activity(self) -> int:
        return sum(n for name, n in self.counts.items() if name != "unreachable")

    def _read(self, region: Region, table: str) -> None:
        """Take in the region's new records of `table` (none when it does not answer)."""
        try:
            records = region.readers[table].read()
        except (ClientError, BotoCoreError, RuntimeError) as exc:
            self.counts["unreachable"] += 1
            if is_retryable_aws_error(exc) or (region.name, table) in self._refused:
                log.debug("region %s, table %s: %s", region.name, table, exc)
            else:  # not an outage (no stream, no table, an emulator recording none): said once, loud
                self._refused.add((region.name, table))
                log.warning("region %s, table %s: its stream cannot be read, and nothing of it is "
                            "replicated until it can: %s", region.name, table, exc)
            return
        self._refused.discard((region.name, table))  # read again: a later refusal is said again
        for record in records:
            self._observe(region, table, record["dynamodb"])

    def _observe(self, region: Region, table: str, data: dict[str, Any]) -> None:
        item: ItemId = (table, json.dumps(data["Keys"], sort_keys=True))
        image = data.get("NewImage")
        echoes = region.echoes.get(item)
        if echoes and same(echoes[0], image):
            echoes.popleft()
            self.counts["echo"] += 1
            return
        previous = region.versions.get(item)
        micros = int(data["ApproximateCreationDateTime"].timestamp() * 1_000_000)
        if previous is not None:  # a write made after a version was read there follows it
            micros = max(micros, previous.stamp.micros + 1)
        version = Version(Stamp(micros, region.name), image)
        region.versions[item] = version
        self.counts["local"] += 1
        for target in self.regions:
            if target != region.name:
                heapq.heappush(self._pending, Change(micros / 1e6 + self.delay, next(self._seq), target,
                                                     table, data["Keys"], version))

    def _apply_due(self) -> None:
        now, retry = time.time(), []
        while self._pending and self._pending[0].due <= now:
            change = heapq.heappop(self._pending)
            try:
                settled = self._apply(change)
            except (ClientError, BotoCoreError) as exc:
                self.counts["unreachable"] += 1
                log.debug("region %s: %s", change.target, exc)
                settled = False
            if not settled:  # unreachable, or its item kept changing: a later pass decides it
                change.due = now + RETRY_PAUSE
                retry.append(change)
        for change in retry:
            heapq.heappush(self._pending, change)

    def _apply(self, change: Change) -> bool:
        """Write the change in its target unless the target holds a newer version (last writer wins);
        False when the item kept changing under it (a busy item: the change waits for a later pass,
        whose read of the stream then says whether a newer write supersedes it; never dropped, as
        global tables never drop a write but by last-writer-wins)."""
        target = self.regions[change.target]
        item: ItemId = (change.table, json.dumps(change.key, sort_keys=True))
        for attempt in range(APPLY_ATTEMPTS):
            if attempt:  # the pass read every stream just before; after a refused write, read again
                self._read(target, change.table)  # the target's copy as it is now
            current = target.versions.get(item)
            if current is not None and current.stamp >= change.version.stamp:
                self.counts["superseded"] += 1
                return True
            if same(current.image if current else None, change.version.image):
                target.versions[item] = change.version
                self.counts["unchanged"] += 1
                return True
            if self._write(target, change, current.image if current else None):
                target.versions[item] = change.version
                target.echoes.setdefault(item, deque()).append(change.version.image)
                self.counts["applied"] += 1
                return True
            self.counts["retried"] += 1
        self.counts["busy"] += 1
        log.info("region %s: item %s kept changing; its change waits for the next pass", target.name, item)
        return False

    def _write(self, target: Region, change: Change, expected: Image) -> bool:
        """Put (or delete) the change's image if the item is still `expected`; False if it is not."""
        ddb = client("dynamodb", target.settings)
        name = TABLES_BY_NAME[change.table].table_name(target.settings)
        condition = unchanged(expected, next(iter(change.key)))
        try:
            if change.version.image is None:
                ddb.delete_item(TableName=name, Key=change.key, **condition)
            else:
                ddb.put_item(TableName=name, Item=change.version.image, **condition)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            raise
        return True


def region_settings(region: str, endpoint: str, env: str) -> Settings:
    """Settings that reach one region's emulator, in namespace `env`."""
    from orders.emulator.server import CREDENTIALS

    settings = Settings.from_env({"AWS_ENDPOINT_URL": endpoint, "AWS_DEFAULT_REGION": region,
                                  "ORDERS_ENV": env})
    return settings.with_credentials(CREDENTIALS["AWS_ACCESS_KEY_ID"], CREDENTIALS["AWS_SECRET_ACCESS_KEY"])


def main(argv: list[str] | None = None) -> None:
    """`python -m orders.emulator.replication --env dev us-east-1=URL us-west-2=URL`: until Ctrl-C."""
    import argparse
    import signal

    parser = argparse.ArgumentParser(prog="python -m orders.emulator.replication")
    parser.add_argument("regions", nargs="+", metavar="REGION=ENDPOINT", help="one emulator per region")
    parser.add_argument("--env", default="dev", help="the namespace (ORDERS_ENV) whose tables to replicate")
    parser.add_argument("--delay", type=float, default=1.0, help="seconds from a write to its replicas")
    parser.add_argument("--poll", type=float, default=0.1, help="seconds between reads of idle streams")
    args = parser.parse_args(argv)
    pairs = [pair.partition("=") for pair in args.regions]
    if any(not sep or not url for _, sep, url in pairs):
        parser.error("each region is REGION=ENDPOINT, for example us-west-2=http://127.0.0.1:5001")
    replicator = Replicator([region_settings(name, url, args.env) for name, _, url in pairs],
                            delay=args.delay, poll=args.poll)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with replicator:
        print(f"Replicating {', '.join(REPLICATED_TABLES)} of {args.env!r} between "
              f"{', '.join(replicator.regions)}, {args.delay:g} s behind; Ctrl-C stops", flush=True)
        try:
            stop.wait()
        except KeyboardInterrupt:
            pass
    print(dict(replicator.counts), flush=True)


if __name__ == "__main__":
    main()
