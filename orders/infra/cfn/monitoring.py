"""The CloudWatch alarms, their anomaly models and the dashboard, from the same specs `orders infra up` puts.

An alarm's properties are its PutMetricAlarm request (CloudFormation uses the same names), with
the `system-health` topic as its action. The dashboard body is the converger's, with the account,
partition and region left to CloudFormation.
"""

from __future__ import annotations

import dataclasses
import json

from orders.infra import dashboard
from orders.infra.alarms import alarm_specs
from orders.infra.cfn.intrinsics import Resources, logical_id, ref, replace, sub, tag_list
from orders.infra.cfn.messaging import topic_id
from orders.settings import Settings

ALARM_TOPIC = "system-health"
TOPIC_ARN = "<alarm-topic-arn>"


def alarms(settings: Settings) -> Resources:
    """Every declared alarm, notifying `system-health`, and the anomaly model of each band alarm's band."""
    topic = {TOPIC_ARN: ref(topic_id(ALARM_TOPIC))}
    found: Resources = {}
    for spec in alarm_specs(settings):
        alarm_id = logical_id(f"{spec.queue}-{spec.kind}", "Alarm")
        found[alarm_id] = {"Type": "AWS::CloudWatch::Alarm",
                           "Properties": {**replace(spec.request(settings, TOPIC_ARN), topic),
                                          "Tags": tag_list(settings, spec.queue)}}
        detector = spec.anomaly_detector()
        if detector is not None:
            model_id = logical_id(f"{spec.queue}-{spec.kind}", "Model")
            found[model_id] = {"Type": "AWS::CloudWatch::AnomalyDetector",
                               "Properties": {"SingleMetricAnomalyDetector": detector}}
            found[alarm_id]["DependsOn"] = model_id
    return found


def dashboards(settings: Settings) -> Resources:
    """The dashboard; its alarm widget needs full ARNs, which CloudFormation fills in."""
    in_stack = dataclasses.replace(settings, region="${AWS::Region}")
    body = dashboard.body(in_stack, "${AWS::AccountId}", "${AWS::Partition}")
    return {"Dashboard": {"Type": "AWS::CloudWatch::Dashboard", "Properties": {
        "DashboardName": dashboard.dashboard_name(settings),
        "DashboardBody": sub(json.dumps(body, sort_keys=True))}}}
