"""The predictive alarms as declared (orders.infra.predictive): each band has its model, the same in
`orders infra up` and the template; the expressions name only queries of their alarm; the administrator
may manage every one of them, in statements that fit a managed policy."""

from __future__ import annotations

import re

import pytest

from orders.infra.access import ROLES
from orders.infra.alarm_spec import WAITING_KINDS, AlarmSpec
from orders.infra.alarms import STATIC_KINDS, alarm_specs
from orders.infra.kms import Account
from orders.infra.policies import MANAGED_POLICY_CHARS, UNSCOPED, policies, size
from orders.infra.predictive import (
    BAND_WIDTH,
    PREDICTIVE_KINDS,
    TREND_HORIZON_MINUTES,
    anomaly_detectors,
    predictive_alarms,
)
from orders.infra.template import template_dict
from orders.settings import Settings
from orders.topology import QUEUES, SERVICE_LEVELS

PROD = Settings(env="prod", region="eu-west-1")


def by_kind(kind: str) -> list[AlarmSpec]:
    return [a for a in predictive_alarms(PROD) if a.kind == kind]


def test_one_order_rate_alarm_and_three_per_queue_all_among_the_declared_alarms():
    assert len(by_kind("order-rate")) == 1
    for kind in ("age-anomaly", "error-anomaly", "backlog-trend"):
        # A cross-region queue waits by design until a failover: no alarm on its waiting messages.
        queues = [q.name for q in QUEUES if not (q.cross_region and kind in WAITING_KINDS)]
        assert [a.queue for a in by_kind(kind)] == queues, kind
    assert set(PREDICTIVE_KINDS) == {a.kind for a in predictive_alarms(PROD)}
    assert not set(PREDICTIVE_KINDS) & set(STATIC_KINDS)
    names = [a.name(PROD) for a in alarm_specs(PROD)]
    assert len(names) == len(set(names)) and {a.name(PROD) for a in predictive_alarms(PROD)} <= set(names)


@pytest.mark.parametrize("kind", ["order-rate", "age-anomaly", "error-anomaly"])
def test_an_anomaly_alarm_compares_its_metric_with_a_band_and_has_no_fixed_threshold(kind):
    for alarm in by_kind(kind):
        request = alarm.request(PROD, "arn:topic")
        assert "Threshold" not in request and request["ThresholdMetricId"] == "band"
        returned = [q for q in request["Metrics"] if q["ReturnData"]]
        [metric] = [q for q in returned if "MetricStat" in q]
        assert [q["Expression"] for q in returned if "Expression" in q] == [
            f"ANOMALY_DETECTION_BAND({metric['Id']}, {BAND_WIDTH})"]


def test_every_band_has_its_model_once_and_the_models_are_this_environment_s():
    models = anomaly_detectors(PROD)
    assert len(models) == len(by_kind("order-rate")) + 2 * len(QUEUES) - sum(q.cross_region for q in QUEUES)
    keys = [(m["Namespace"], m["MetricName"], str(m["Dimensions"]), m["Stat"]) for m in models]
    assert len(keys) == len(set(keys))
    for model in models:
        values = [d["Value"] for d in model["Dimensions"]]
        assert values and all(v == "prod" or v.startswith("prod-") for v in values[:1]), model
    assert {(m["MetricName"], m["Stat"]) for m in models} == {
        ("OrdersPlaced", "Sum"), ("ApproximateAgeOfOldestMessage", "Maximum"), ("TaskSuccess", "Average")}


def test_the_trend_projects_the_backlog_at_its_net_growth_against_the_depth_limit():
    for alarm in by_kind("backlog-trend"):
        ids = {q["Id"]: q for q in alarm.metrics}
        assert alarm.threshold == SERVICE_LEVELS[alarm.queue].backlog_limit
        assert ids["projected"]["Expression"] == (
            f"IF(growth > 0, backlog + {TREND_HORIZON_MINUTES} * growth, 0)")
        assert ids["growth"]["Expression"] == "FILL(sent, 0) - FILL(deleted, 0)"
        stats = {i: (s["Metric"]["MetricName"], s["Stat"], s["Period"])
                 for i, q in ids.items() if (s := q.get("MetricStat"))}
        assert stats == {"backlog": ("ApproximateNumberOfMessagesVisible", "Maximum", 60),
                         "sent": ("NumberOfMessagesSent", "Sum", 60),
                         "deleted": ("NumberOfMessagesDeleted", "Sum", 60)}


def test_expressions_name_only_queries_of_their_alarm():
    for alarm in alarm_specs(PROD):
        ids = {q["Id"] for q in alarm.metrics}
        for query in alarm.metrics:
            assert re.fullmatch(r"[a-z][A-Za-z0-9_]*", query["Id"]), query["Id"]  # CloudWatch's rule
            names = set(re.findall(r"\b([a-z]\w*)\b(?!\()", query.get("Expression", "")))
            assert names <= ids, (alarm.kind, names - ids)
        assert sum(1 for q in alarm.metrics if q["ReturnData"]) in (0, 2 if alarm.band else 1)


def test_the_template_has_each_model_before_the_alarm_that_uses_its_band():
    resources = template_dict(PROD)["Resources"]
    models = {name: r["Properties"]["SingleMetricAnomalyDetector"] for name, r in resources.items()
              if r["Type"] == "AWS::CloudWatch::AnomalyDetector"}
    assert sorted(models.values(), key=str) == sorted(anomaly_detectors(PROD), key=str)
    banded = [r for r in resources.values() if r["Type"] == "AWS::CloudWatch::Alarm"
              and "ThresholdMetricId" in r["Properties"]]
    assert sorted(r["DependsOn"] for r in banded) == sorted(models)


def test_the_administrator_manages_every_alarm_and_the_models_in_statements_that_fit_a_managed_policy():
    admin = policies(PROD, Account("aws", "eu-west-1", "111122223333"), None, ["admin"])["admin"]
    statements = {s["Sid"]: s for s in admin["Statement"]}
    granted = statements["ManageAlarms"]["Resource"] + statements["ManagePredictiveAlarms"]["Resource"]
    assert sorted(granted) == sorted(f"arn:aws:cloudwatch:eu-west-1:111122223333:alarm:{a.name(PROD)}"
                                     for a in alarm_specs(PROD))
    detectors = statements["ManageAnomalyDetectors"]
    assert detectors["Resource"] == "*" and set(detectors["Action"]) <= set(UNSCOPED)
    longest = Settings(env="x" * 40, region="ap-southeast-2")
    long_admin = policies(longest, Account("aws-us-gov", "ap-southeast-2", "123456789012"), None, ["admin"])
    for statement in long_admin["admin"]["Statement"]:
        alone = {"Version": "2012-10-17", "Statement": [statement]}
        assert size(alone) <= MANAGED_POLICY_CHARS, statement["Sid"]
    grant = next(g for g in ROLES["admin"].grants if g.sid == "ManageAnomalyDetectors")
    assert grant.kept  # the emulator has no anomaly-detector API: a run there never calls it
