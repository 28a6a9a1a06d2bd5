"""How the metrics buffer packs values into PutMetricData requests (pure code: no AWS)."""

from __future__ import annotations

from datetime import UTC, datetime

from orders.aws.metrics import MAX_DATA_PER_CALL, MAX_VALUES_PER_DATUM, Series, _chunks, _data
from orders.topology import SERVICE_LEVELS

AT = datetime(2026, 1, 1, tzinfo=UTC)


def test_timings_become_values_and_counts_and_amounts_exact_statistic_sets():
    timing, revenue = Series(), Series()
    for seconds in (0.1234, 0.1234, 2.0):
        timing.values[float(f"{seconds:.3g}")] += 1
    for amount in (10.5, 20.25):
        revenue.add_amount(amount)
    data = [datum for _, datum in _data({("Latency", "Seconds", (("Environment", "e"),)): timing,
                                         ("Revenue", "None", (("Currency", "USD"),)): revenue}, AT)]
    assert data[0]["Values"] == [0.123, 2.0] and data[0]["Counts"] == [2.0, 1.0]
    assert data[1]["StatisticValues"] == {"SampleCount": 2, "Sum": 30.75, "Minimum": 10.5, "Maximum": 20.25}


def test_a_series_with_many_distinct_values_is_split_at_150_per_datum():
    series = Series()
    for i in range(400):
        series.values[float(i)] += 1
    data = [datum for _, datum in _data({("T", "Seconds", ()): series}, AT)]
    assert [len(d["Values"]) for d in data] == [MAX_VALUES_PER_DATUM, MAX_VALUES_PER_DATUM, 100]


def test_requests_hold_at_most_1000_data():
    data = [(("m", "Count", ()), {"MetricName": f"m{i}"}) for i in range(2500)]
    assert [len(c) for c in _chunks(data)] == [MAX_DATA_PER_CALL, MAX_DATA_PER_CALL, 500]


def test_backlog_limits_follow_littles_law():
    assert SERVICE_LEVELS["payments"].backlog_limit == 500  # 10 s x 50/s
    assert SERVICE_LEVELS["inventory.fifo"].backlog_limit == 400  # 2 s x 200/s
    assert SERVICE_LEVELS["notifications"].backlog_limit == 500  # 1 s x 500/s
