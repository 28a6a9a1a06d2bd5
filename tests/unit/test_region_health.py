"""orders.ops.region_health.Watch: consecutive failures per region and the failover they call for."""

from __future__ import annotations

from orders.ops.region_health import Health, Watch

EAST, WEST, NORTH = "us-east-1", "us-west-2", "ca-central-1"


def _round(watch: Watch, **ok: bool) -> None:
    watch.observe([Health(region.replace("_", "-"), up, 1.0 if up else None, 1.0 if up else None,
                          None if up else "down") for region, up in ok.items()])


def test_a_region_is_unhealthy_only_after_its_failures_in_a_row():
    watch = Watch((EAST, WEST), failures=3)
    _round(watch, us_east_1=False, us_west_2=True)
    _round(watch, us_east_1=False, us_west_2=True)
    assert not watch.unhealthy(EAST) and watch.failover_to(EAST) is None
    _round(watch, us_east_1=True, us_west_2=True)  # a success starts the count again
    for _ in range(2):
        _round(watch, us_east_1=False, us_west_2=True)
    assert watch.failover_to(EAST) is None
    _round(watch, us_east_1=False, us_west_2=True)
    assert watch.unhealthy(EAST) and watch.failover_to(EAST) == WEST


def test_no_failover_to_a_standby_whose_last_probe_failed_or_that_was_never_probed():
    watch = Watch((EAST, WEST, NORTH), failures=1)
    _round(watch, us_east_1=False, us_west_2=False)
    assert watch.unhealthy(EAST) and watch.failover_to(EAST) is None  # ca-central-1 never probed
    _round(watch, us_east_1=False, us_west_2=False, ca_central_1=True)
    assert watch.failover_to(EAST) == NORTH
    assert watch.failover_to(NORTH) is None  # the active region is healthy: nothing to do
