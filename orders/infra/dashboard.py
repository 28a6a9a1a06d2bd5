"""The CloudWatch dashboard of an environment, derived from the topology and the alarms.

Rows, top to bottom: health overview (every alarm's state), the KPI row (orders, share
completed, revenue, cancellations by reason, end-to-end P95), queue depths and ages
against their targets, throughput per service, error-rate trends, retries and
dead-lettered messages, business figures, latency percentiles, the order rate against its
anomaly band. `orders infra up` creates it; `orders infra check` reports a missing or changed one.
"""

from __future__ import annotations

import json
from typing import Any

from orders.aws import clients
from orders.aws.metrics import NAMESPACE
from orders.infra.alarms import alarm_specs, error_rate_threshold
from orders.infra.converger import Converger
from orders.infra.predictive import ORDER_RATE_PERIOD, band
from orders.settings import Settings
from orders.topology import QUEUES, SERVICE_LEVELS

PERIOD = 60
WIDTH = 8  # three graphs per row of the 24-column grid
HEIGHT = 6
KPI_WIDTH = 4  # four single values and a graph twice as wide fill a row
#: Every metric an order's final state publishes (orders.aws.metrics): their sum is orders per minute.
FINAL_STATES = ("OrdersCompleted", "OrdersCancelled", "OrdersRejected", "OrdersFailed")


def dashboard_name(settings: Settings) -> str:
    return f"{settings.prefix}orders"


def _graph(settings: Settings, title: str, metrics: list[list[Any]], stat: str = "Sum",
           annotations: list[dict[str, Any]] | None = None, stacked: bool = False) -> dict[str, Any]:
    props: dict[str, Any] = {"title": title, "region": settings.region, "view": "timeSeries",
                             "stacked": stacked, "period": PERIOD, "stat": stat, "metrics": metrics}
    if annotations:
        props["annotations"] = {"horizontal": annotations}
    return {"type": "metric", "width": WIDTH, "height": HEIGHT, "properties": props}


def _sqs(settings: Settings, metric: str, dlq: bool = False) -> list[list[Any]]:
    return [["AWS/SQS", metric, "QueueName",
             q.dlq_sqs_name(settings) if dlq else q.sqs_name(settings), {"label": q.name}]
            for q in QUEUES]


def _ours(settings: Settings, metric: str, dim: str | None = None, value: str = "",
          **options: Any) -> list[Any]:
    row: list[Any] = [NAMESPACE, metric, "Environment", settings.env]
    if dim:
        row += [dim, value]
    return row + [options] if options else row


def _search(settings: Settings, metric: str, dims: str, stat: str, query_id: str) -> list[Any]:
    expression = (f"SEARCH('{{{NAMESPACE},Environment,{dims}}} MetricName=\"{metric}\" "
                  f"Environment=\"{settings.env}\"', '{stat}', {PERIOD})")
    return [{"expression": expression, "id": query_id}]


def _final(settings: Settings, stat: str = "Sum") -> str:
    """Every final-state metric of the environment, whatever its dimensions (Reason, none)."""
    names = " OR ".join(f'MetricName="{name}"' for name in FINAL_STATES)
    return f"SEARCH('Namespace=\"{NAMESPACE}\" Environment=\"{settings.env}\" ({names})', '{stat}', {PERIOD})"


def _kpi(settings: Settings, title: str, metrics: list[list[Any]], stat: str = "Sum") -> dict[str, Any]:
    """A single value: the last minute's figure (the period is a minute)."""
    return {"type": "metric", "width": KPI_WIDTH, "height": HEIGHT, "properties": {
        "title": title, "region": settings.region, "view": "singleValue", "period": PERIOD,
        "stat": stat, "metrics": metrics}}


def kpi_row(settings: Settings) -> list[dict[str, Any]]:
    """Orders per minute, share completed, revenue per minute, cancellations by reason, P95.

    Orders per minute shows those admitted (`OrdersPlaced`) beside those that reached a final
    state (completed, cancelled, rejected, failed); the share completed is of the latter.
    """
    return [
        _kpi(settings, "Orders / min (placed, finished)", [
            _ours(settings, "OrdersPlaced", label="placed"),
            [{"expression": f"SUM({_final(settings)})", "label": "finished", "id": "orders"}]]),
        _kpi(settings, "Share completed (%)", [
            [{"expression": f"SUM({_final(settings)})", "id": "all", "visible": False}],
            _ours(settings, "OrdersCompleted", id="done", visible=False),
            [{"expression": "100 * FILL(done, 0) / all", "label": "completed", "id": "share"}]]),
        _kpi(settings, "Revenue / min", [_search(settings, "Revenue", "Currency", "Sum", "revenue")]),
        _kpi(settings, "End-to-end P95 (s), 5 s target",
             [_ours(settings, "EndToEndLatency", label="p95")], stat="p95"),
        {"type": "metric", "width": 2 * KPI_WIDTH, "height": HEIGHT, "properties": {
            "title": "Cancellations by reason (over the range)", "region": settings.region,
            "view": "bar", "period": PERIOD, "stat": "Sum", "setPeriodToTimeRange": True,
            "metrics": [_search(settings, "OrdersCancelled", "Reason", "Sum", "cancelled")]}},
    ]


def _error_rates(settings: Settings) -> list[list[Any]]:
    rows: list[list[Any]] = []
    for i, q in enumerate(QUEUES):
        rows.append(_ours(settings, "TaskSuccess", "Queue", q.name, id=f"ok{i}", visible=False,
                          stat="Average"))
        rows.append([{"expression": f"100 * (1 - ok{i})", "label": q.name, "id": f"err{i}"}])
    return rows


def _health(settings: Settings, account: str, partition: str) -> dict[str, Any]:
    arns = [f"arn:{partition}:cloudwatch:{settings.region}:{account}:alarm:{a.name(settings)}"
            for a in alarm_specs(settings)]
    return {"type": "alarm", "width": 24, "height": 4,
            "properties": {"title": f"Health overview: {settings.env}", "alarms": arns,
                           "sortBy": "stateUpdatedTimestamp"}}


def widgets(settings: Settings, account: str, partition: str = "aws") -> list[dict[str, Any]]:
    """Every widget, in reading order (CloudWatch lays them out left to right)."""
    targets = sorted({level.p95_seconds for level in SERVICE_LEVELS.values()})
    error_line = error_rate_threshold()
    return [
        {"type": "text", "width": 24, "height": 2, "properties": {"markdown": (
            f"# Orders: {settings.env}\nQueues, services and business figures. What to do when "
            "an alarm fires, and how to triage the DLQs: docs/operations.md.")}},
        _health(settings, account, partition),
        *kpi_row(settings),
        _graph(settings, "Queue depth (messages waiting)",
               _sqs(settings, "ApproximateNumberOfMessagesVisible"), stat="Maximum"),
        _graph(settings, "Age of oldest message (s) vs latency targets",
               _sqs(settings, "ApproximateAgeOfOldestMessage"), stat="Maximum",
               annotations=[{"value": t, "label": f"{t:g} s target"} for t in targets]),
        _graph(settings, "Dead-letter queues (messages)",
               _sqs(settings, "ApproximateNumberOfMessagesVisible", dlq=True), stat="Maximum",
               annotations=[{"value": 0.5, "label": "not empty"}]),
        _graph(settings, "Throughput per service (messages processed / min)",
               _sqs(settings, "NumberOfMessagesDeleted"), stacked=True),
        _graph(settings, "Tasks finished per queue / min",
               [_ours(settings, "TaskSuccess", "Queue", q.name, label=q.name) for q in QUEUES],
               stat="SampleCount", stacked=True),
        _graph(settings, "Error rate per queue (%)", _error_rates(settings),
               annotations=[{"value": error_line, "label": "alarm"}]),
        _graph(settings, "Retries per queue / min",
               [_ours(settings, "TaskRetries", "Queue", q.name, label=q.name) for q in QUEUES]),
        _graph(settings, "Dead-lettered messages by classification",
               [_search(settings, "DLQArrivals", "Queue,Classification", "Sum", "dlq")]),
        _graph(settings, "Queue utilisation (% of the backlog limit)",
               [_search(settings, "QueueUtilisation", "Queue", "Maximum", "util")],
               annotations=[{"value": 100, "label": "depth alarm"}]),
        _graph(settings, "Orders by outcome / min", [
            _ours(settings, "OrdersCompleted", label="completed"),
            _search(settings, "OrdersCancelled", "Reason", "Sum", "cancelled"),
            _ours(settings, "OrdersRejected", label="rejected"),
            _search(settings, "OrdersFailed", "Reason", "Sum", "failed")]),
        _graph(settings, "Revenue / min", [_search(settings, "Revenue", "Currency", "Sum", "revenue")]),
        _graph(settings, "End-to-end latency (s)", [
            _ours(settings, "EndToEndLatency", stat=s, label=s) for s in ("p50", "p95", "p99")],
            annotations=[{"value": 5, "label": "5 s P95 target"}]),
        _graph(settings, "Task duration p95 by task (s)",
               [_search(settings, "TaskDuration", "Task", "p95", "tasks")], stat="p95"),
        _graph(settings, "Stage latency p95 (s)",
               [_search(settings, "StageLatency", "Stage", "p95", "stages")], stat="p95"),
        _order_rate_band(settings),
    ]


def _order_rate_band(settings: Settings) -> dict[str, Any]:
    """Orders placed against the range the order-rate alarm's model expects (orders.infra.predictive)."""
    widget = _graph(settings, f"Orders placed / {ORDER_RATE_PERIOD // 60} min vs expected range", [
        _ours(settings, "OrdersPlaced", id="placed", label="placed"),
        [{"expression": band("placed")["Expression"], "label": "expected range", "id": "band"}]])
    widget["properties"]["period"] = ORDER_RATE_PERIOD
    return widget


def body(settings: Settings, account: str, partition: str = "aws") -> dict[str, Any]:
    return {"widgets": widgets(settings, account, partition)}


def _caller(settings: Settings) -> tuple[str, str]:
    """Account id and partition: the alarm widget needs full ARNs."""
    identity = clients.client("sts", settings).get_caller_identity()
    return str(identity["Account"]), str(identity["Arn"]).split(":")[1]


def live_body(settings: Settings) -> dict[str, Any] | None:
    cloudwatch = clients.client("cloudwatch", settings)
    try:
        found = cloudwatch.get_dashboard(DashboardName=dashboard_name(settings))
    except cloudwatch.exceptions.ResourceNotFound:
        return None
    return dict(json.loads(found["DashboardBody"]))


def converge_dashboard(converger: Converger) -> None:
    """Provisioning step: the dashboard exists with exactly the declared widgets."""
    settings = converger.settings
    name = dashboard_name(settings)
    wanted = body(settings, *_caller(settings))
    live = live_body(settings)
    if live == wanted:
        return
    if live is None:
        converger.report.add(f"dashboard {name}: {'created' if converger.apply else 'missing'}")
    else:
        changed = sum(1 for a, b in zip(live.get("widgets", []), wanted["widgets"], strict=False) if a != b)
        converger.drift(f"dashboard {name}: {changed} widget(s) differ "
                        f"({len(live.get('widgets', []))} live, {len(wanted['widgets'])} declared)")
    if converger.apply:
        clients.client("cloudwatch", settings).put_dashboard(
            DashboardName=name, DashboardBody=json.dumps(wanted, sort_keys=True))


def delete_dashboard(settings: Settings) -> list[str]:
    """Teardown step."""
    if live_body(settings) is None:
        return []
    clients.client("cloudwatch", settings).delete_dashboards(DashboardNames=[dashboard_name(settings)])
    return [f"dashboard {dashboard_name(settings)}"]

