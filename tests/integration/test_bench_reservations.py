"""The inventory-alone benchmark runs: every order of the flash sale reserved, and the receives'
reservations made together (fewer transactions than reservations).

Correctness of the run only; its speed is what `python -m benchmarks.reservations` prints.
"""

from benchmarks.reservations import CONFIGURATIONS, measure


def test_one_inventory_worker_reserves_every_order_of_one_group_in_fewer_transactions():
    row = measure(20, latency_ms=0.0, concurrency=10, env=CONFIGURATIONS["together"])

    assert row["reserved"] == 20
    # Two receives of ten: their threads meet within the linger, so fewer calls than reservations;
    # each reservation alone would make one (ORDERS_RESERVE_LINGER=0, the `alone` configuration).
    assert 0 < row["transactions"] < 1
    assert row["run"].n == 20
