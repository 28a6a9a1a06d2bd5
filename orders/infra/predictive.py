"""Predictive alarms: anomaly bands learnt from each metric's own history, and a backlog trend.

- `order-rate` (environment): orders admitted per 5 minutes (`OrdersPlaced`) outside the band
  CloudWatch's anomaly model expects for this time of day and week, either way: a surge, or
  the drop that a broken door or a broken client causes.
- `age-anomaly` (per queue): the oldest message older than the band's upper bound.
- `error-anomaly` (per queue): the success rate (`TaskSuccess` average, orders.runtime.task_metrics)
  below the band's lower bound: an error rate above what this queue normally shows, well before
  the static error-rate alarm's 1%.
- `backlog-trend` (per queue): arrivals outpace deletions, and at the current net growth the
  visible backlog would pass the depth alarm's limit within TREND_HORIZON_MINUTES.

Each band is ANOMALY_DETECTION_BAND(metric, BAND_WIDTH) and needs an anomaly detector (the model)
on that metric: `anomaly_detectors` lists them, derived from the alarms so that the two cannot
disagree. docs/monitoring.md ("Predictive alarms") explains each and what to do when it fires.
"""

from __future__ import annotations

from typing import Any

from orders.aws.metrics import NAMESPACE
from orders.infra.alarm_spec import AlarmSpec, expression, fitting, metric_query, sqs_query, task_query
from orders.settings import Settings
from orders.topology import QUEUES, SERVICE_LEVELS, QueueSpec

#: The band's width, in standard deviations of the model (CloudWatch's default is 2).
BAND_WIDTH = 2
#: Orders are counted per 5 minutes: per minute, a quiet hour's count is mostly noise.
ORDER_RATE_PERIOD = 300
#: How far ahead the trend alarm projects the backlog.
TREND_HORIZON_MINUTES = 10
#: Consecutive periods a predictive alarm needs before it fires.
QUEUE_PERIODS = 5
ORDER_RATE_PERIODS = 3
TREND_PERIODS = 3
RUNBOOK = "docs/monitoring.md"
#: The visible backlog TREND_HORIZON_MINUTES ahead at this minute's net growth; 0 while it does not grow.
TREND = f"IF(growth > 0, backlog + {TREND_HORIZON_MINUTES} * growth, 0)"
PREDICTIVE_KINDS = ("order-rate", "age-anomaly", "error-anomaly", "backlog-trend")


def band(query_id: str) -> dict[str, Any]:
    return expression("band", f"ANOMALY_DETECTION_BAND({query_id}, {BAND_WIDTH})", "expected range")


def order_rate_alarm(settings: Settings) -> AlarmSpec:
    """Orders admitted per 5 minutes, outside the expected band for 15 minutes."""
    placed = metric_query(NAMESPACE, "OrdersPlaced", {"Environment": settings.env}, "Sum", "placed",
                          period=ORDER_RATE_PERIOD, returned=True)
    return AlarmSpec("orders", "order-rate", "warning",
                     f"orders admitted per {ORDER_RATE_PERIOD // 60} minutes outside the expected range "
                     f"(anomaly band, {BAND_WIDTH} standard deviations) for "
                     f"{ORDER_RATE_PERIODS * ORDER_RATE_PERIOD // 60} minutes",
                     0, "LessThanLowerOrGreaterThanUpperThreshold", ORDER_RATE_PERIODS,
                     metrics=(placed, band("placed")), band="band", runbook=RUNBOOK)


def queue_predictive_alarms(settings: Settings, spec: QueueSpec) -> list[AlarmSpec]:
    """The predictive alarms of one processing queue (of a cross-region one, on failures only)."""
    src = spec.sqs_name(settings)
    limit, minutes = SERVICE_LEVELS[spec.name].backlog_limit, QUEUE_PERIODS
    return fitting(spec, [
        AlarmSpec(spec.name, "age-anomaly", "warning",
                  f"{spec.name}: oldest message older than expected (anomaly band) for {minutes} minutes",
                  0, "GreaterThanUpperThreshold", QUEUE_PERIODS,
                  metrics=(sqs_query("ApproximateAgeOfOldestMessage", src, "Maximum", "age", returned=True),
                           band("age")), band="band", runbook=RUNBOOK),
        AlarmSpec(spec.name, "error-anomaly", "warning",
                  f"{spec.name}: task success rate below its expected range (anomaly band) "
                  f"for {minutes} minutes",
                  0, "LessThanLowerThreshold", QUEUE_PERIODS,
                  metrics=(task_query(settings, spec.name, "Average", "ok", returned=True), band("ok")),
                  band="band", runbook=RUNBOOK),
        AlarmSpec(spec.name, "backlog-trend", "warning",
                  f"{spec.name}: arrivals outpace deletions and the backlog would pass {limit} "
                  f"within {TREND_HORIZON_MINUTES} minutes, for {TREND_PERIODS} minutes",
                  limit, "GreaterThanThreshold", TREND_PERIODS,
                  metrics=(sqs_query("ApproximateNumberOfMessagesVisible", src, "Maximum", "backlog"),
                           sqs_query("NumberOfMessagesSent", src, "Sum", "sent"),
                           sqs_query("NumberOfMessagesDeleted", src, "Sum", "deleted"),
                           expression("growth", "FILL(sent, 0) - FILL(deleted, 0)", "net growth / min",
                                      returned=False),
                           expression("projected", TREND,
                                      f"backlog in {TREND_HORIZON_MINUTES} min at this growth")),
                  runbook=RUNBOOK),
    ])


def predictive_alarms(settings: Settings) -> list[AlarmSpec]:
    """Every predictive alarm of this environment."""
    return [order_rate_alarm(settings),
            *(alarm for spec in QUEUES for alarm in queue_predictive_alarms(settings, spec))]


def anomaly_detectors(settings: Settings) -> list[dict[str, Any]]:
    """The anomaly models the alarms' bands need, as PutAnomalyDetector's SingleMetricAnomalyDetector."""
    return [d for alarm in predictive_alarms(settings) if (d := alarm.anomaly_detector()) is not None]
