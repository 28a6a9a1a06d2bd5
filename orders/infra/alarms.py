"""CloudWatch alarms, derived from the topology: five static per queue and the predictive ones
(orders.infra.predictive), all reporting to `system-health`.

Per processing queue: visible depth above what the queue drains within its latency
target at its peak rate; oldest message older than the target; a DLQ that is not
empty; processing that fell below half of arrivals while a backlog waits; a task
error rate ten times the error budget. Thresholds come from `topology.SERVICE_LEVELS`;
docs/operations.md explains each and what to do when it fires.
`orders infra up` creates them, `orders infra check` reports a missing or changed one.
"""

from __future__ import annotations

from typing import Any

from orders.aws import clients
from orders.aws.sns import topic_arns
from orders.infra import predictive
from orders.infra.alarm_spec import AlarmSpec, expression, fitting, single, sqs_query, task_query
from orders.infra.converger import Converger
from orders.settings import Settings
from orders.topology import QUEUES, SERVICE_LEVELS, SUCCESS_RATE_TARGET, QueueSpec, tags

#: The error-rate alarm fires at this multiple of the error budget (1 - 99.9%): a
#: burn rate that spends a month's budget in three days if it lasts.
ERROR_BUDGET_BURN = 10
#: Fewer finished tasks than this in a minute say nothing about a rate.
ERROR_RATE_MIN_TASKS = 20
#: Processing below this fraction of arrivals, while messages wait, is a drop.
RATE_DROP_FRACTION = 0.5
#: The static alarms' kinds, one of each per processing queue.
STATIC_KINDS = ("depth", "age", "dlq", "rate-drop", "error-rate")


def error_rate_threshold() -> float:
    """Percent of failing tasks that fires the error-rate alarm (1% for 99.9% and 10x)."""
    return round(100 * (1 - SUCCESS_RATE_TARGET) * ERROR_BUDGET_BURN, 6)


def queue_alarms(settings: Settings, spec: QueueSpec) -> list[AlarmSpec]:
    """The five alarms of one processing queue (two for a cross-region one: alarm_spec.fitting)."""
    level = SERVICE_LEVELS[spec.name]
    src, dlq = spec.sqs_name(settings), spec.dlq_sqs_name(settings)
    error_pct = error_rate_threshold()
    return fitting(spec, [
        AlarmSpec(spec.name, "depth", "warning",
                  f"{spec.name}: more than {level.backlog_limit} messages waiting for 3 minutes, "
                  f"more than it drains in {level.p95_seconds:g} s at {level.peak_per_second:g}/s",
                  level.backlog_limit, "GreaterThanThreshold", 3,
                  metric=single("ApproximateNumberOfMessagesVisible", src)),
        AlarmSpec(spec.name, "age", "warning",
                  f"{spec.name}: oldest message older than the {level.p95_seconds:g} s "
                  "latency target for 3 minutes",
                  level.p95_seconds, "GreaterThanThreshold", 3,
                  metric=single("ApproximateAgeOfOldestMessage", src)),
        AlarmSpec(spec.name, "dlq", "critical",
                  f"{spec.dlq_name}: dead-lettered messages are waiting for triage",
                  0, "GreaterThanThreshold", 1,
                  metric=single("ApproximateNumberOfMessagesVisible", dlq)),
        AlarmSpec(spec.name, "rate-drop", "warning",
                  f"{spec.name}: processing below {RATE_DROP_FRACTION:.0%} of arrivals "
                  "while messages wait, for 5 minutes",
                  RATE_DROP_FRACTION, "LessThanThreshold", 5,
                  metrics=(sqs_query("ApproximateNumberOfMessagesVisible", src, "Maximum", "waiting"),
                           sqs_query("NumberOfMessagesSent", src, "Sum", "sent"),
                           sqs_query("NumberOfMessagesDeleted", src, "Sum", "done"),
                           expression("ratio", "IF(waiting > 0, done / (sent + 1), 1)",
                                      "processed / arrived"))),
        AlarmSpec(spec.name, "error-rate", "warning",
                  f"{spec.name}: more than {error_pct:g}% of tasks failing for 5 minutes "
                  f"({ERROR_BUDGET_BURN}x the error budget of a {SUCCESS_RATE_TARGET:.1%} success target)",
                  error_pct, "GreaterThanThreshold", 5,
                  metrics=(task_query(settings, spec.name, "Average", "ok"),
                           task_query(settings, spec.name, "SampleCount", "tasks"),
                           expression("errors", f"IF(tasks >= {ERROR_RATE_MIN_TASKS}, 100 * (1 - ok), 0)",
                                      "error rate (%)"))),
    ])


def alarm_specs(settings: Settings) -> list[AlarmSpec]:
    """Every declared alarm of this environment: the static ones, then the predictive ones."""
    return [*(alarm for spec in QUEUES for alarm in queue_alarms(settings, spec)),
            *predictive.predictive_alarms(settings)]


def live_alarms(settings: Settings) -> dict[str, dict[str, Any]]:
    """This environment's metric alarms by name."""
    cloudwatch = clients.client("cloudwatch", settings)
    pages = cloudwatch.get_paginator("describe_alarms").paginate(
        AlarmNamePrefix=settings.prefix, AlarmTypes=["MetricAlarm"])
    return {a["AlarmName"]: a for page in pages for a in page.get("MetricAlarms", [])}


def _normal(key: str, value: Any) -> Any:
    """A value in a form that compares equal whatever way the endpoint echoes it."""
    if key == "Threshold" and value is not None:
        return float(value)
    if key == "Dimensions":
        return sorted((d["Name"], d["Value"]) for d in value or [])
    if key == "Metrics":
        return [_normal_query(q) for q in value or []]
    return value


def _normal_query(query: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in query.items() if k in ("Id", "Expression", "ReturnData", "Label")}
    if "MetricStat" in query:
        stat = query["MetricStat"]
        out["MetricStat"] = (stat["Metric"]["Namespace"], stat["Metric"]["MetricName"],
                             _normal("Dimensions", stat["Metric"].get("Dimensions")),
                             stat["Period"], stat["Stat"])
    return out


def differences(wanted: dict[str, Any], live: dict[str, Any], compare_actions: bool = True) -> list[str]:
    """Each declared setting of an alarm that the live alarm does not have."""
    diffs = []
    for key, value in wanted.items():
        if key.endswith("Actions") and not compare_actions:
            continue
        if _normal(key, live.get(key)) != _normal(key, value):
            diffs.append(f"{key} is {live.get(key)!r}, declared {value!r}")
    return diffs


def converge_alarms(converger: Converger) -> None:
    """Provisioning step: every declared alarm exists with its declared settings."""
    settings = converger.settings
    cloudwatch = clients.client("cloudwatch", settings)
    topic = topic_arns(settings).get("system-health")
    live = live_alarms(settings)
    for spec in alarm_specs(settings):
        wanted = spec.request(settings, topic)
        name = wanted["AlarmName"]
        have = live.get(name)
        if have is None:
            converger.report.add(f"alarm {name}: {'created' if converger.apply else 'missing'}")
        else:
            diffs = differences(wanted, have, compare_actions=topic is not None)
            for diff in diffs:
                converger.drift(f"alarm {name}: {diff}")
            if not diffs:
                continue
        if converger.apply:
            tag_list = [{"Key": k, "Value": v} for k, v in tags(settings, spec.queue).items()]
            cloudwatch.put_metric_alarm(**wanted, Tags=tag_list)


def delete_alarms(settings: Settings) -> list[str]:
    """Teardown step: delete this environment's declared alarms."""
    declared = {spec.name(settings) for spec in alarm_specs(settings)}
    names = sorted(declared & live_alarms(settings).keys())
    cloudwatch = clients.client("cloudwatch", settings)
    for start in range(0, len(names), 100):
        cloudwatch.delete_alarms(AlarmNames=names[start:start + 100])
    return [f"alarm {name}" for name in names]

