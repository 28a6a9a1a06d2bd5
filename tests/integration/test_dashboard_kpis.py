"""The dashboard's KPI row reads the business metrics a finished order publishes, as published.

The emulator stores metrics and the dashboard but draws nothing and evaluates no SEARCH or
metric math: what is tested is that every metric and dimension the row names is one the
pipeline's own code (orders.aws.metrics) puts, and that `orders infra up` shows the row.
"""

from __future__ import annotations

import json
import re
import time
from decimal import Decimal

from orders.aws import clients, metrics
from orders.aws.metrics import NAMESPACE
from orders.infra import dashboard


def published(settings) -> set[tuple[str, tuple[str, ...]]]:
    """(metric name, dimension names) of every metric of this environment in the emulator."""
    pages = clients.client("cloudwatch", settings).get_paginator("list_metrics").paginate(
        Namespace=NAMESPACE, Dimensions=[{"Name": "Environment", "Value": settings.env}])
    return {(m["MetricName"], tuple(sorted(d["Name"] for d in m["Dimensions"])))
            for page in pages for m in page["Metrics"]}


def named(row: list[dict]) -> set[tuple[str, tuple[str, ...]]]:
    """(metric name, dimension names) of every metric the row's widgets name or search for."""
    found = set()
    for widget in row:
        for line in widget["properties"]["metrics"]:
            if isinstance(line[0], str):  # [namespace, name, dim, value, ..., {options}]
                plain = [part for part in line if isinstance(part, str)]
                found.add((plain[1], tuple(sorted(plain[2::2]))))
                continue
            expression = line[0]["expression"]
            schema = re.search(r"\{Orders,([\w,]+)\}", expression)
            for name in re.findall(r'MetricName="(\w+)"', expression):
                dims = schema.group(1).split(",") if schema else None
                found.add((name, tuple(sorted(dims)) if dims else ("*",)))
    return found


def test_the_kpi_row_names_only_what_finished_orders_publish_and_infra_up_shows_it(infra):
    metrics.bind(infra)
    metrics.order_placed()
    metrics.order_completed(Decimal("12.50"), "EUR", placed_at=time.time() - 2)
    metrics.order_cancelled("payment-declined")
    metrics.order_rejected()
    metrics.order_failed("transient")
    metrics.flush()
    have = published(infra)
    row = dashboard.kpi_row(infra)
    for name, dims in named(row):
        if dims == ("*",):  # a free-text search: any dimensions of that metric
            assert any(n == name for n, _ in have), name
        else:
            assert (name, dims) in have, (name, dims)
    titles = " ".join(w["properties"]["title"] for w in row)
    kpis = ("Orders / min", "Share completed", "Revenue / min", "End-to-end P95", "Cancellations by reason")
    for kpi in kpis:
        assert kpi in titles, kpi
    assert sum(w["width"] for w in row) == 24  # one full row of the grid
    body = dashboard.live_body(infra)
    assert body is not None and body["widgets"][2:2 + len(row)] == json.loads(json.dumps(row))
