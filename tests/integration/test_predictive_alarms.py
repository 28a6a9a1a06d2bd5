"""Predictive alarms on the emulator: `orders infra up` creates them, `orders infra check` reports them in
step or drifted, and the trend alarm's inputs, published to the emulator, read back as the alarm reads them.

The emulator (moto 5.2) stores alarms with metric math and ThresholdMetricId as given, but has no
anomaly-detector API and evaluates neither alarms nor metric math: `infra up` and `check` say the
detectors were skipped, and the trend's expression is computed here from the series the emulator
returns for the alarm's own queries (what CloudWatch would compute is stated, not observed).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from orders.aws import clients
from orders.aws.sns import topic_arns
from orders.infra import alarms, predictive
from orders.infra.alarm_spec import WAITING_KINDS
from orders.topology import QUEUES, SERVICE_LEVELS
from tests.helpers import invoke

KINDS = ("age-anomaly", "error-anomaly", "backlog-trend")



def test_up_creates_each_predictive_alarm_and_check_finds_them_in_step(infra):
    live = alarms.live_alarms(infra)
    wanted = {f"{infra.prefix}{q.name}-{k}" for q in QUEUES for k in KINDS
              if not (q.cross_region and k in WAITING_KINDS)}
    wanted.add(f"{infra.prefix}orders-order-rate")
    assert wanted <= live.keys()
    topic = topic_arns(infra)["system-health"]
    for name in wanted:
        assert live[name]["AlarmActions"] == [topic], name
    for spec in (q for q in QUEUES if not q.cross_region):
        age = live[f"{infra.prefix}{spec.name}-age-anomaly"]
        assert (age["ThresholdMetricId"], age["ComparisonOperator"]) == ("band", "GreaterThanUpperThreshold")
        assert "Threshold" not in age
        band = {q["Id"]: q.get("Expression") for q in age["Metrics"]}["band"]
        assert band == "ANOMALY_DETECTION_BAND(age, 2)"
        errors = live[f"{infra.prefix}{spec.name}-error-anomaly"]
        assert errors["ComparisonOperator"] == "LessThanLowerThreshold"  # success rate below its band
        trend = live[f"{infra.prefix}{spec.name}-backlog-trend"]
        assert trend["Threshold"] == SERVICE_LEVELS[spec.name].backlog_limit
        assert [q["Id"] for q in trend["Metrics"] if q["ReturnData"]] == ["projected"]
    rate = live[f"{infra.prefix}orders-order-rate"]
    assert rate["ComparisonOperator"] == "LessThanLowerOrGreaterThanUpperThreshold"
    assert rate["Metrics"][0]["MetricStat"]["Metric"]["MetricName"] == "OrdersPlaced"

    code, output = invoke("infra", "check")
    assert code == 0 and "No drift" in output
    # Not silently skipped: the output says the detectors could not be created or checked here.
    declared = len(predictive.anomaly_detectors(infra))
    assert (f"anomaly detectors ({declared} declared): skipped, an emulator endpoint has no anomaly-detector"
            in output)
    assert "moto: PutAnomalyDetector, DescribeAnomalyDetectors not implemented" in output


def test_check_reports_a_deleted_or_changed_predictive_alarm_and_up_repairs_it(infra):
    cloudwatch = clients.client("cloudwatch", infra)
    topic = topic_arns(infra)["system-health"]
    specs = {a.name(infra): a for a in predictive.predictive_alarms(infra)}
    trend, age, rate = (f"{infra.prefix}{n}" for n in ("payments-backlog-trend", "shipping-age-anomaly",
                                                        "orders-order-rate"))
    cloudwatch.delete_alarms(AlarmNames=[trend])
    widened = specs[age].request(infra, topic)
    widened["Metrics"][1]["Expression"] = "ANOMALY_DETECTION_BAND(age, 4)"
    cloudwatch.put_metric_alarm(**widened)
    fixed = specs[rate].request(infra, topic)
    del fixed["ThresholdMetricId"]
    cloudwatch.put_metric_alarm(**fixed, Threshold=10.0)  # a static threshold instead of the band

    code, output = invoke("infra", "check")
    assert code == 1
    assert f"alarm {trend}: missing" in output
    assert f"alarm {age}: Metrics is" in output and "ANOMALY_DETECTION_BAND(age, 4)" in output
    assert f"alarm {rate}: ThresholdMetricId is None, declared 'band'" in output

    code, output = invoke("infra", "up")
    assert code == 0 and f"alarm {trend}: created" in output and f"alarm {age}: Metrics is" in output
    code, output = invoke("infra", "check")
    assert code == 0 and "No drift" in output


def projected(series: dict[str, dict[datetime, float]]) -> dict[datetime, float]:
    """The trend alarm's expression, as CloudWatch computes it at each timestamp of `backlog`:
    growth = FILL(sent, 0) - FILL(deleted, 0); IF(growth > 0, backlog + horizon * growth, 0)."""
    found = {}
    for at, backlog in series["backlog"].items():
        growth = series["sent"].get(at, 0.0) - series["deleted"].get(at, 0.0)
        found[at] = backlog + predictive.TREND_HORIZON_MINUTES * growth if growth > 0 else 0.0
    return found


def publish_minutes(cloudwatch: Any, queue_name: str, start: datetime,
                    minutes: list[tuple[float, float, float]]) -> None:
    """One minute's (visible backlog, sent, deleted) per entry, as SQS would report them."""
    data = []
    for n, (backlog, sent, deleted) in enumerate(minutes):
        at = start + timedelta(minutes=n, seconds=30)
        for name, value in (("ApproximateNumberOfMessagesVisible", backlog),
                            ("NumberOfMessagesSent", sent), ("NumberOfMessagesDeleted", deleted)):
            data.append({"MetricName": name, "Value": value, "Timestamp": at,
                         "Dimensions": [{"Name": "QueueName", "Value": queue_name}]})
    cloudwatch.put_metric_data(Namespace="AWS/SQS", MetricData=data)


def read_back(cloudwatch: Any, spec: Any, start: datetime, minutes: int) -> dict[str, dict[datetime, float]]:
    """The series of each of the alarm's metric queries, asked of the emulator exactly as declared."""
    queries = [{**q, "ReturnData": True} for q in spec.metrics if "MetricStat" in q]
    answer = cloudwatch.get_metric_data(MetricDataQueries=queries, StartTime=start,
                                        EndTime=start + timedelta(minutes=minutes))
    return {r["Id"]: {t.astimezone(UTC): v for t, v in zip(r["Timestamps"], r["Values"], strict=True)}
            for r in answer["MetricDataResults"]}


def longest_run(flags: list[bool]) -> int:
    best = run = 0
    for flag in flags:
        run = run + 1 if flag else 0
        best = max(best, run)
    return best


def test_the_trend_alarm_reads_what_sqs_reports_and_its_projection_crosses_only_when_growing(settings):
    """Growing: 200 -> 320 waiting, 60 sent and 30 deleted a minute: from 230 + 10 x 30 = 530 on, the
    projection is above the 500 limit, four minutes running. Draining from 600 (30 sent, 60 deleted)
    projects nothing, however deep the backlog: that is the depth alarm's business."""
    cloudwatch = clients.client("cloudwatch", settings)
    spec = next(a for a in predictive.predictive_alarms(settings) if a.kind == "backlog-trend")
    queue_name = spec.metrics[0]["MetricStat"]["Metric"]["Dimensions"][0]["Value"]
    assert queue_name == QUEUES[0].sqs_name(settings)
    growing = [(200 + 30 * n, 60, 30) for n in range(5)]
    draining = [(600 - 30 * n, 30, 60) for n in range(5)]
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=30)
    publish_minutes(cloudwatch, queue_name, start, growing + draining)

    series = read_back(cloudwatch, spec, start, 10)
    assert [v for _, v in sorted(series["backlog"].items())] == [float(b) for b, _, _ in growing + draining]
    values = [v for _, v in sorted(projected(series).items())]
    print(f"\nbacklog-trend of {queue_name}, minute by minute (the backlog projected "
          f"{predictive.TREND_HORIZON_MINUTES} min ahead; fires above {spec.threshold:g} for "
          f"{spec.evaluation_periods} minutes): {values}")
    assert values == [500.0, 530.0, 560.0, 590.0, 620.0] + [0.0] * 5
    breaching = [v > spec.threshold for v in values]
    assert longest_run(breaching[:5]) == 4 >= spec.evaluation_periods  # it would fire while growing
    assert not any(breaching[5:])
