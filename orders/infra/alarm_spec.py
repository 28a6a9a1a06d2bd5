"""One CloudWatch alarm as data: what `orders infra up` puts, `check` compares and the template declares.

An alarm watches a single metric, or metric math (`metrics`). A predictive alarm has no fixed
threshold: its `band` names the query that computes ANOMALY_DETECTION_BAND, and CloudWatch
compares the watched series with that band (PutMetricAlarm's ThresholdMetricId).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from orders.aws.metrics import NAMESPACE
from orders.settings import Settings
from orders.topology import QueueSpec

PERIOD = 60
RUNBOOK = "docs/operations.md"
#: The kinds that fire on messages waiting. A cross-region queue (QueueSpec.cross_region) holds the other
#: region's events for an hour, unconsumed while its region is passive and drained after a failover:
#: waiting is its normal state, so it has none of these, only the alarms on failures (dlq, error-rate,
#: error-anomaly).
WAITING_KINDS = frozenset({"depth", "age", "rate-drop", "age-anomaly", "backlog-trend"})


@dataclass(frozen=True)
class AlarmSpec:
    """One alarm as PutMetricAlarm takes it, minus the actions (known only once the topic exists)."""

    queue: str
    kind: str  # depth | age | dlq | rate-drop | error-rate, or a predictive kind (orders.infra.predictive)
    severity: str
    summary: str
    threshold: float
    comparison: str
    evaluation_periods: int
    metric: dict[str, Any] = field(default_factory=dict)  # a single metric ...
    metrics: tuple[dict[str, Any], ...] = ()  # ... or metric math
    band: str = ""  # the Id of the ANOMALY_DETECTION_BAND query: the threshold is that band
    runbook: str = RUNBOOK

    def name(self, settings: Settings) -> str:
        return f"{settings.prefix}{self.queue}-{self.kind}"

    def request(self, settings: Settings, topic_arn: str | None) -> dict[str, Any]:
        """The PutMetricAlarm arguments (without Tags, which only apply at creation)."""
        actions = [topic_arn] if topic_arn else []
        req: dict[str, Any] = {
            "AlarmName": self.name(settings),
            "AlarmDescription": (f"[{self.severity}] {self.summary}. "
                                 f"Runbook: {self.runbook}#alarm-{self.kind}"),
            "ActionsEnabled": True, "AlarmActions": actions, "OKActions": actions,
            "EvaluationPeriods": self.evaluation_periods, "DatapointsToAlarm": self.evaluation_periods,
            "ComparisonOperator": self.comparison, "TreatMissingData": "notBreaching",
        }
        if self.band:
            req["ThresholdMetricId"] = self.band
        else:
            req["Threshold"] = float(self.threshold)
        if self.metrics:
            req["Metrics"] = [dict(m) for m in self.metrics]
        else:
            req.update(self.metric, Period=PERIOD)
        return req

    def anomaly_detector(self) -> dict[str, Any] | None:
        """The model the band needs, as PutAnomalyDetector's SingleMetricAnomalyDetector (None: no band)."""
        stat = self.banded_metric()
        return None if stat is None else {**stat["Metric"], "Stat": stat["Stat"]}

    def banded_metric(self) -> dict[str, Any] | None:
        """The metric (MetricStat) whose anomaly band is the threshold; None for a fixed threshold."""
        if not self.band:
            return None
        [expression] = [q["Expression"] for q in self.metrics if q["Id"] == self.band]
        found = re.fullmatch(r"ANOMALY_DETECTION_BAND\((\w+), *[\d.]+\)", expression)
        if found is None:
            raise ValueError(f"{self.kind}: {expression!r} is not ANOMALY_DETECTION_BAND(id, width)")
        [stat] = [q["MetricStat"] for q in self.metrics if q["Id"] == found.group(1)]
        return dict(stat)


def metric_query(namespace: str, name: str, dims: dict[str, str], stat: str, query_id: str,
                 period: int = PERIOD, returned: bool = False) -> dict[str, Any]:
    """One MetricDataQuery on a metric (`returned`: the series the alarm compares)."""
    return {"Id": query_id, "ReturnData": returned, "MetricStat": {
        "Metric": {"Namespace": namespace, "MetricName": name,
                   "Dimensions": [{"Name": k, "Value": v} for k, v in dims.items()]},
        "Period": period, "Stat": stat}}


def sqs_query(name: str, queue_name: str, stat: str, query_id: str, returned: bool = False) -> dict[str, Any]:
    return metric_query("AWS/SQS", name, {"QueueName": queue_name}, stat, query_id, returned=returned)


def task_query(settings: Settings, queue: str, stat: str, query_id: str,
               returned: bool = False) -> dict[str, Any]:
    """`TaskSuccess` of a queue's tasks (orders.runtime.task_metrics): 1 or 0 per finished task."""
    return metric_query(NAMESPACE, "TaskSuccess", {"Environment": settings.env, "Queue": queue}, stat,
                        query_id, returned=returned)


def expression(query_id: str, text: str, label: str, returned: bool = True) -> dict[str, Any]:
    return {"Id": query_id, "Expression": text, "Label": label, "ReturnData": returned}


def single(name: str, queue_name: str) -> dict[str, Any]:
    """A single SQS metric of a queue, at its maximum."""
    return {"Namespace": "AWS/SQS", "MetricName": name, "Statistic": "Maximum",
            "Dimensions": [{"Name": "QueueName", "Value": queue_name}]}


def fitting(spec: QueueSpec, alarms: list[AlarmSpec]) -> list[AlarmSpec]:
    """The alarms that fit the queue: all, or for a cross-region queue those on failures only."""
    return [a for a in alarms if not (spec.cross_region and a.kind in WAITING_KINDS)]
