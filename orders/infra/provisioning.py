"""`orders infra up`, `check` and `down`: every resource kind of the topology, listed here.

With several regions (ORDERS_REGIONS), `in_every_region` runs one of them in each region,
every region complete (docs/multi-region.md).

Each kind converges its resources onto their declarations (orders.infra.converger)
and knows how to delete them. Adding a kind of resource is adding it to KINDS.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from orders.aws import region_switch
from orders.infra import alarms, anomaly, dashboard, kms, queues, tables, topics
from orders.infra.converger import Converger, Report
from orders.settings import Settings


@dataclass(frozen=True)
class ResourceKind:
    """One kind of resource: how `up`/`check` converge it and how `down` deletes it."""

    name: str
    converge: Callable[[Converger], None]
    delete: Callable[[Settings], list[str]] | None


#: In creation order: the key before everything it encrypts, topics after the queues they deliver
#: to, the anomaly models before the alarms whose bands they draw, alarms after the topic they
#: notify, the dashboard after the alarms it shows. `down` deletes
#: in the reverse order.
KINDS: tuple[ResourceKind, ...] = (
    ResourceKind("key", kms.converge_key, kms.delete_key),
    ResourceKind("queues", queues.converge_queues, queues.delete_queues),
    ResourceKind("topics", topics.converge_topics, topics.delete_topics),
    ResourceKind("subscriptions", topics.converge_subscriptions, None),  # deleted with their topics
    ResourceKind("tables", tables.converge_tables, tables.delete_tables),
    ResourceKind("anomaly-detectors", anomaly.converge_detectors, anomaly.delete_detectors),
    ResourceKind("alarms", alarms.converge_alarms, alarms.delete_alarms),
    ResourceKind("dashboard", dashboard.converge_dashboard, dashboard.delete_dashboard),
)


def run(settings: Settings, apply: bool) -> Report:
    converger = Converger(settings, apply=apply)
    for kind in KINDS:
        kind.converge(converger)
    if settings.region == settings.primary:  # the tables outside the regions: once, with the primary's
        _converge_switch(converger)
        tables.converge_processor_table(converger)
    return converger.report


def _converge_switch(converger: Converger) -> None:
    """The active-region switch's table (ORDERS_SWITCH) exists in its own place: made once, reported
    with the primary's resources (it belongs to no region of ORDERS_REGIONS)."""
    settings = converger.settings
    place = settings.switch_settings()
    if place is None:
        return
    # provision looks before it creates: one DescribeTable in `up` as in `check`, not two.
    absent = region_switch.provision(settings) if converger.apply else not region_switch.exists(settings)
    if absent:
        converger.report.add(f"table {region_switch.table_name(place)} (the region switch, in "
                             f"{place.region}): " + ("created" if converger.apply else "missing"))


def up(settings: Settings) -> Report:
    """Create or converge every declared resource."""
    return run(settings, apply=True)


def check(settings: Settings) -> Report:
    """Compare the live configuration with the declarations; change nothing."""
    return run(settings, apply=False)


def down(settings: Settings) -> list[str]:
    """Delete every declared resource of this environment; returns what was deleted."""
    deleted = [line for kind in reversed(KINDS) if kind.delete for line in kind.delete(settings)]
    if settings.region != settings.primary:  # the tables outside the regions go with the primary's
        return deleted
    place = settings.switch_settings()
    if place is not None and region_switch.delete(settings):
        deleted.append(f"table {region_switch.table_name(place)} (the region switch, in {place.region})")
    return deleted + tables.delete_processor_table(settings)


T = TypeVar("T")


def in_every_region(settings: Settings, action: Callable[[Settings], T]) -> list[tuple[str | None, T]]:
    """`action` (up, check or down) in each region of `settings`, the primary first, with its result.

    After `up` in several regions, each region's topics are subscribed again: a region's pass cannot
    subscribe the replica queues of the regions provisioned after it (they did not exist yet).
    """
    each = [settings.for_region(name) for name in settings.regions] or [settings]
    results = [(regional.region, action(regional)) for regional in each]
    if action is up and len(each) > 1:
        for regional, (_, report) in zip(each[:-1], results[:-1], strict=True):
            if isinstance(report, Report):
                topics.converge_subscriptions(Converger(regional, apply=True, report=report))
    return results
