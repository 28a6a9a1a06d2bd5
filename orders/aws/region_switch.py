"""The active-region switch (docs/multi-region.md, rule R1): which region of ORDERS_REGIONS writes.

One small DynamoDB table, `<env>-region-switch`, in the switch's own place (ORDERS_SWITCH:
outside every region, as Route 53 ARC's routing controls are on AWS). Its item `current`
says the active region and the epoch, +1 at every flip; each flip is also kept as an item of
its own (`flip#<epoch>`), for the benchmark and the operators. A flip is conditional on the
epoch its caller read: of two operators flipping at once, one wins and the other is told.

Workers and producers ask `is_active`, which reads through a per-process cache of
SWITCH_CACHE_SECONDS and fails closed: a switch that cannot be read makes no region active.
"""

from __future__ import annotations

import math
import os
import threading
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from botocore.config import Config

from orders.aws import clients
from orders.aws.tables import aws_errors, from_item, plain, to_item, transact
from orders.domain.errors import OrderError, PermanentError
from orders.domain.times import now_iso
from orders.settings import ConfigurationError, Settings
from orders.topology import tags

SWITCH_CACHE_SECONDS = 5.0
#: A worker's check of the switch answers within seconds or fails (closed): short timeouts, one retry.
READ_CONFIG = clients.CLIENT_CONFIG.merge(Config(retries={"mode": "standard", "total_max_attempts": 2},
                                                 connect_timeout=2, read_timeout=2))
_PK, _CURRENT, _FLIP = "switch", "current", "flip#"


class SwitchMoved(PermanentError):
    """A flip lost to another: the switch is no longer at the epoch its caller read."""

    reason = "switch-moved"


@dataclass(frozen=True)
class Switch:
    """Where the switch stands: the active region, and the flip that made it so."""

    active: str
    epoch: int  # +1 at every flip; 0 before the first
    at: str | None  # ISO time of the last flip
    reason: str | None
    previous: str | None  # the region active before the last flip


def table_name(settings: Settings) -> str:
    return f"{settings.prefix}region-switch"


def _place(settings: Settings) -> Settings | None:
    """Where the switch lives (ORDERS_SWITCH); None without one."""
    return settings.switch_settings()


def _default(settings: Settings) -> Switch:
    """The switch before any flip, or without a switch: the primary is active."""
    return Switch(settings.primary or settings.region or "", 0, None, None, None)


def read(settings: Settings) -> Switch:
    """The switch as it is now (a strongly consistent read); RetryableError when its place does not answer."""
    place = _place(settings)
    if place is None:
        return _default(settings)
    ddb = clients.client("dynamodb", place, READ_CONFIG)
    with aws_errors():
        try:
            found = ddb.get_item(TableName=table_name(place), ConsistentRead=True,
                                 Key=to_item({"pk": _PK, "sk": _CURRENT})).get("Item")
        except ddb.exceptions.ResourceNotFoundException:
            raise PermanentError(f"the region switch's table {table_name(place)} does not exist in "
                                 f"{place.region}: run `orders infra up` with ORDERS_SWITCH set") from None
    if found is None:
        return _default(settings)
    return _parsed(from_item(found), settings, place)


def _parsed(item: dict[str, Any], settings: Settings, place: Settings) -> Switch:
    """The switch in its stored item; PermanentError for an item no flip wrote (every reader fails closed)."""
    active, epoch = item.get("active"), item.get("epoch")
    where = f"the region switch's item in {table_name(place)} ({place.region})"
    if not isinstance(active, str) or active not in settings.regions:
        raise PermanentError(f"{where} names {active!r} active, not a region of ORDERS_REGIONS "
                             f"({', '.join(settings.regions)}): not one a flip wrote, correct it by hand")
    if not isinstance(epoch, Decimal) or epoch != epoch.to_integral_value() or epoch < 0:
        raise PermanentError(f"{where} has epoch {epoch!r}, not a count of flips")
    text = {name: item.get(name) for name in ("at", "reason", "previous")}
    if not all(value is None or isinstance(value, str) for value in text.values()):
        raise PermanentError(f"{where} has at, reason or previous that is not text")
    return Switch(active, int(epoch), text["at"], text["reason"], text["previous"])


def flip(settings: Settings, to: str, reason: str, expect_epoch: int | None = None) -> Switch:
    """Make `to` the active region; SwitchMoved when the switch is not at `expect_epoch` (by default the
    epoch read here) by the time the write lands."""
    place = _place(settings)
    if place is None:
        raise ConfigurationError("No region switch: set ORDERS_SWITCH=REGION[=URL] to flip the active region")
    if to not in settings.regions:
        raise ConfigurationError(f"{to!r} is not a region of ORDERS_REGIONS ({', '.join(settings.regions)})")
    now = read(settings)
    epoch = now.epoch if expect_epoch is None else expect_epoch
    if now.epoch != epoch:
        raise _moved(now, epoch)
    if now.active == to:
        raise PermanentError(f"{to} is already the active region (epoch {now.epoch}): nothing to flip")
    flipped = Switch(to, epoch + 1, now_iso(), reason, now.active)
    codes = transact(place, [_put_current(place, flipped, epoch), _put_history(place, flipped)])
    if codes is not None and set(codes) <= {"None", "ConditionalCheckFailed"}:
        raise _moved(read(settings), epoch)
    if codes is not None:
        raise PermanentError(f"the switch's table refused the flip: {codes}")
    return flipped


def _moved(now: Switch, expected: int) -> SwitchMoved:
    return SwitchMoved(f"the switch moved: expected epoch {expected}, it is at epoch {now.epoch} with "
                       f"{now.active} active (flipped at {now.at}: {now.reason}); read it again")


def _put_current(place: Settings, switch: Switch, expected: int) -> dict[str, Any]:
    put: dict[str, Any] = {
        "TableName": table_name(place),
        "Item": to_item({"pk": _PK, "sk": _CURRENT, "active": switch.active, "epoch": switch.epoch,
                         "at": switch.at, "reason": switch.reason, "previous": switch.previous}),
    }
    if expected == 0:
        put["ConditionExpression"] = "attribute_not_exists(pk)"
    else:
        put |= {"ConditionExpression": "epoch = :expected",
                "ExpressionAttributeValues": to_item({":expected": expected})}
    return {"Put": put}


def _put_history(place: Settings, switch: Switch) -> dict[str, Any]:
    return {"Put": {
        "TableName": table_name(place), "ConditionExpression": "attribute_not_exists(pk)",
        "Item": to_item({"pk": _PK, "sk": f"{_FLIP}{switch.epoch:010d}", "epoch": switch.epoch,
                         "at": switch.at, "from": switch.previous, "to": switch.active,
                         "reason": switch.reason}),
    }}


def history(settings: Settings) -> list[dict[str, Any]]:
    """Every flip, oldest first: {epoch, at, from, to, reason}; [] without a switch."""
    place = _place(settings)
    if place is None:
        return []
    pages = clients.client("dynamodb", place).get_paginator("query").paginate(
        TableName=table_name(place), ConsistentRead=True,
        KeyConditionExpression="pk = :pk AND begins_with(sk, :flip)",
        ExpressionAttributeValues=to_item({":pk": _PK, ":flip": _FLIP}))
    with aws_errors():
        items = [from_item(item) for page in pages for item in page.get("Items", [])]
    return [{k: plain(v) for k, v in item.items() if k not in ("pk", "sk")} for item in items]


_lock = threading.Lock()
_cache: dict[tuple[str | None, ...], tuple[float, Switch | None]] = {}
#: The read under way of each switch (its end is set when its answer is in _cache).
_reading: dict[tuple[str | None, ...], threading.Event] = {}


def _forget_in_child() -> None:
    global _lock
    _lock = threading.Lock()  # a thread of the parent may have held it at the fork
    _cache.clear()
    _reading.clear()  # the parent's reads are not under way in the child: nothing would end them


os.register_at_fork(after_in_child=_forget_in_child)


def forget() -> None:
    """Drop this process's cached switch (the next `current` reads it)."""
    with _lock:
        _cache.clear()


def current(settings: Settings) -> Switch | None:
    """The switch as this process knows it, read at most every SWITCH_CACHE_SECONDS; None when it cannot
    be read (fail closed: no region is known to be active).

    One caller reads, with no lock held while the switch answers (it may take its timeouts): the
    others meanwhile get the last answer while it is under two cache periods old, else None; they
    wait for the read only when there is no answer yet.
    """
    place = _place(settings)
    if place is None or not settings.multi_region:
        return _default(settings)
    key = (place.region, clients.endpoint("dynamodb", place), place.env)
    with _lock:
        known, reading = _cache.get(key), _reading.get(key)
        age = time.monotonic() - known[0] if known is not None else math.inf
        if known is not None and age < SWITCH_CACHE_SECONDS:
            return known[1]
        if reading is None:
            _reading[key] = threading.Event()
        elif known is not None:
            return known[1] if age < 2 * SWITCH_CACHE_SECONDS else None
    if reading is not None:
        reading.wait()
        with _lock:
            answered = _cache.get(key)
        return answered[1] if answered is not None else None
    return _read_into_cache(settings, key)


def _read_into_cache(settings: Settings, key: tuple[str | None, ...]) -> Switch | None:
    found: Switch | None = None
    try:
        found = read(settings)
    except OrderError:
        pass
    finally:  # whatever happened, the others waiting for this read have an answer (None: closed)
        with _lock:
            _cache[key] = (time.monotonic(), found)
            done = _reading.pop(key)
        done.set()
    return found


def is_active(settings: Settings) -> bool:
    """Whether this process's region may run steps and send orders now (rule R1)."""
    if not settings.multi_region or _place(settings) is None:
        return True
    switch = current(settings)
    return switch is not None and switch.active == settings.region


def exists(settings: Settings) -> bool:
    """Whether the switch's table exists in its place (False without a switch)."""
    return _on_table(settings, "describe_table")


def provision(settings: Settings) -> bool:
    """Create the switch's table in its place if it is absent; True if it was created.

    Encrypted with the AWS managed key of its place: the environment's key is made in the
    regions of ORDERS_REGIONS, and the switch lives outside them.
    """
    place = _place(settings)
    if place is None or exists(settings):
        return False
    ddb = clients.client("dynamodb", place)
    ddb.create_table(
        TableName=table_name(place), BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                              {"AttributeName": "sk", "AttributeType": "S"}],
        SSESpecification={"Enabled": True, "SSEType": "KMS"},
        Tags=[{"Key": k, "Value": v} for k, v in tags(place, "ops").items()])
    ddb.get_waiter("table_exists").wait(TableName=table_name(place), WaiterConfig={"Delay": 1})
    return True


def delete(settings: Settings) -> bool:
    """Delete the switch's table (and its history); True if there was one."""
    return _on_table(settings, "delete_table")


def _on_table(settings: Settings, operation: str) -> bool:
    """DescribeTable or DeleteTable on the switch's table; False when it (or the switch) does not exist."""
    place = _place(settings)
    if place is None:
        return False
    ddb = clients.client("dynamodb", place)
    try:
        getattr(ddb, operation)(TableName=table_name(place))
    except ddb.exceptions.ResourceNotFoundException:
        return False
    return True
