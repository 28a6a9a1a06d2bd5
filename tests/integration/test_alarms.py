"""`orders infra up` creates the CloudWatch alarms and dashboard; `infra check` reports drift in them."""

from __future__ import annotations

import json

from orders.aws import clients
from orders.aws.sns import topic_arns
from orders.infra import alarms, dashboard, predictive, provisioning
from orders.infra.alarm_spec import WAITING_KINDS
from orders.ops import archive
from orders.topology import QUEUES, REPLICA_QUEUE
from tests.helpers import invoke

#: The exercise's targets, written out here (not read from the topology) so that a
#: threshold that strays from them fails this test: queue -> (P95 s, backlog limit).
TARGETS = {"orders": (5, 500), "orders-priority.fifo": (5, 500), "payments": (10, 500),
           "inventory.fifo": (2, 400), "shipping": (5, 500), "notifications": (1, 500)}
KINDS = ("depth", "age", "dlq", "rate-drop", "error-rate")



def test_up_creates_every_alarm_with_thresholds_from_the_targets(infra):
    live = alarms.live_alarms(infra)
    static = {f"{infra.prefix}{q}-{kind}" for q in TARGETS for kind in KINDS}
    # A cross-region queue waits by design until a failover: only its failure alarms.
    static |= {f"{infra.prefix}{REPLICA_QUEUE}-{kind}" for kind in KINDS if kind not in WAITING_KINDS}
    predicted = {a.name(infra) for a in predictive.predictive_alarms(infra)}  # test_predictive_alarms.py
    assert set(live) == static | predicted
    topic = topic_arns(infra)["system-health"]
    for name, alarm in live.items():
        assert alarm["AlarmActions"] == [topic] and alarm["OKActions"] == [topic], name
    for queue, (p95, backlog) in TARGETS.items():
        spec = next(q for q in QUEUES if q.name == queue)
        depth, age, dlq = (live[f"{infra.prefix}{queue}-{k}"] for k in ("depth", "age", "dlq"))
        assert (depth["MetricName"], depth["Threshold"]) == ("ApproximateNumberOfMessagesVisible", backlog)
        assert (age["MetricName"], age["Threshold"]) == ("ApproximateAgeOfOldestMessage", p95)
        assert dlq["Dimensions"] == [{"Name": "QueueName", "Value": spec.dlq_sqs_name(infra)}]
        assert (dlq["Threshold"], dlq["ComparisonOperator"]) == (0, "GreaterThanThreshold")
        assert "[critical]" in dlq["AlarmDescription"]
        errors = live[f"{infra.prefix}{queue}-error-rate"]
        assert errors["Threshold"] == 1.0  # 10x the 0.1% error budget of a 99.9% success target
        assert any("100 * (1 - ok)" in q.get("Expression", "") for q in errors["Metrics"])
        drop = live[f"{infra.prefix}{queue}-rate-drop"]
        assert any(q.get("Expression") == "IF(waiting > 0, done / (sent + 1), 1)" for q in drop["Metrics"])


def test_up_creates_the_dashboard_over_every_queue_and_alarm(infra):
    body = dashboard.live_body(infra)
    assert body is not None
    titles = [w["properties"].get("title", "") for w in body["widgets"]]
    for title in ("Health overview", "Queue depth", "Age of oldest message", "Dead-letter queues",
                  "Throughput per service", "Error rate per queue", "Orders by outcome",
                  "End-to-end latency"):
        assert any(t.startswith(title) for t in titles), title
    health = next(w for w in body["widgets"] if w["type"] == "alarm")
    arns = sorted(a["AlarmArn"] for a in alarms.live_alarms(infra).values())
    assert sorted(health["properties"]["alarms"]) == arns
    text = json.dumps(body)
    for spec in QUEUES:
        assert f'"{spec.sqs_name(infra)}"' in text and f'"{spec.dlq_sqs_name(infra)}"' in text


def test_check_reports_a_deleted_or_changed_alarm_and_up_repairs_it(infra):
    assert invoke("infra", "check")[0] == 0
    cloudwatch = clients.client("cloudwatch", infra)
    cloudwatch.delete_alarms(AlarmNames=[f"{infra.prefix}orders-depth"])
    changed = next(a for a in alarms.alarm_specs(infra) if a.name(infra) == f"{infra.prefix}payments-age")
    request = changed.request(infra, topic_arns(infra)["system-health"])
    cloudwatch.put_metric_alarm(**{**request, "Threshold": 99.0})
    cloudwatch.delete_dashboards(DashboardNames=[dashboard.dashboard_name(infra)])

    code, output = invoke("infra", "check")
    assert code == 1
    assert f"alarm {infra.prefix}orders-depth: missing" in output
    assert f"alarm {infra.prefix}payments-age: Threshold is 99.0, declared 10.0" in output
    assert f"dashboard {dashboard.dashboard_name(infra)}: missing" in output

    code, output = invoke("infra", "up")
    assert code == 0 and f"alarm {infra.prefix}orders-depth: created" in output
    code, output = invoke("infra", "check")
    assert code == 0 and "No drift" in output


def test_down_removes_alarms_dashboard_and_archive(infra):
    deleted = provisioning.down(infra)
    assert f"dashboard {dashboard.dashboard_name(infra)}" in deleted
    assert f"table {archive.table_name(infra)}" in deleted
    assert alarms.live_alarms(infra) == {} and dashboard.live_body(infra) is None
