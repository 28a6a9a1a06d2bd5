"""The declared topology: the exercise's values, SQS's rules, and the start-up checks over them."""

import json
from dataclasses import replace
from types import SimpleNamespace

import pytest

from orders.runtime.routing import TimeLimitsFromTopology, route_task, time_limit_problems, unknown_queues
from orders.settings import Settings
from orders.topology import (
    QUEUES,
    QUEUES_BY_NAME,
    SERVICE_QUEUES,
    TOPICS,
    QueueSpec,
    queue_for_task,
    subscriptions,
    tags,
    topology_problems,
)

NAMES = ["orders", "orders-priority.fifo", "payments", "inventory.fifo", "shipping", "notifications",
         "notifications-replica"]


def test_the_declared_topology_has_no_problem():
    assert topology_problems() == []


def test_queue_and_topic_names_are_the_contract():
    assert [q.name for q in QUEUES] == NAMES
    assert [t.name for t in TOPICS] == ["order-status", "payment-notifications",
                                        "inventory-alerts", "system-health"]


@pytest.mark.parametrize("spec", QUEUES, ids=lambda q: q.name)
def test_every_queue_has_a_dlq_of_the_same_kind(spec):
    assert spec.dlq_name.endswith(".fifo") == spec.fifo == spec.name.endswith(".fifo")
    assert spec.dlq_name.removesuffix(".fifo") == spec.name.removesuffix(".fifo") + "-dlq"
    dlq = spec.dlq_attributes("arn:aws:sqs:us-east-1:1:src")
    assert (dlq.get("FifoQueue") == "true") == spec.fifo
    assert json.loads(dlq["RedriveAllowPolicy"]) == {"redrivePermission": "byQueue",
                                                     "sourceQueueArns": ["arn:aws:sqs:us-east-1:1:src"]}
    redrive = json.loads(spec.attributes("arn:dlq")["RedrivePolicy"])
    assert redrive == {"deadLetterTargetArn": "arn:dlq", "maxReceiveCount": spec.max_receive_count}


@pytest.mark.parametrize("spec", QUEUES, ids=lambda q: q.name)
def test_task_time_limits_sit_inside_the_visibility_timeout(spec):
    assert 0 < spec.task_time_limit - 10 < spec.task_time_limit < spec.visibility_timeout


def test_names_with_a_prefix_fit_sqs_limits():
    s = Settings.from_env({"ORDERS_ENV": "e" * 40})
    for spec in QUEUES:
        for name in (spec.sqs_name(s), spec.dlq_sqs_name(s)):
            assert len(name) <= 80 and name.startswith("e" * 40 + "-")


def test_a_fifo_name_mismatch_is_found_both_ways():
    bad = (QueueSpec("audit.fifo", "ops", 60, 3, fifo=False), QueueSpec("audit", "ops", 60, 3, fifo=True))
    problems = topology_problems(bad, service_queues={})
    assert len(problems) == 2 and all("'.fifo'" in p for p in problems)


def test_a_visibility_too_short_for_time_limits_and_a_route_to_nowhere_are_found():
    tiny = (replace(QUEUES_BY_NAME["orders"], visibility_timeout=20),)
    problems = topology_problems(tiny, service_queues={"orders": "orders", "refunds": "refunds"})
    assert any("no usable time limit" in p for p in problems)
    assert any("'refunds'" in p and "not a declared queue" in p for p in problems)


def test_every_service_routes_to_a_declared_queue():
    assert set(SERVICE_QUEUES.values()) <= set(QUEUES_BY_NAME)
    assert route_task("payments.charge", (), {}, {}) == {"queue": "payments"}
    assert route_task("inventory.reserve", (), {}, {}) == {"queue": "inventory.fifo"}
    assert route_task("notifications.notify", (), {}, {}) == {"queue": "notifications"}
    assert route_task("events.publish", (), {}, {}) is None  # no such service
    assert route_task("orders.place", (), {}, {"queue": "orders-priority.fifo"}) is None
    assert queue_for_task("ops.anything").name == "orders"
    assert unknown_queues(["payments", "nosuch"]) == ["nosuch"]


def task(name, time_limit=None, queue=None):
    return SimpleNamespace(name=name, time_limit=time_limit, queue=queue)


def test_time_limit_check_finds_each_kind_of_problem():
    problems = time_limit_problems({
        "payments.ok": task("payments.ok", 570),
        "notifications.slow": task("notifications.slow", 60),
        "payments.none": task("payments.none"),
        "billing.x": task("billing.x", 10),
        "ops.elsewhere": task("ops.elsewhere", 10, queue="nosuch"),
        "celery.chord_unlock": task("celery.chord_unlock"),
    })
    assert len(problems) == 4
    assert "notifications.slow" in problems[0] and "60 s" in problems[0]
    assert "payments.none" in problems[1]
    assert "billing.x" in problems[2] and "no known service" in problems[2]
    assert "'nosuch'" in problems[3]


def test_time_limits_come_from_the_queue_unless_the_task_sets_its_own():
    annotate = TimeLimitsFromTopology().annotate
    assert annotate(task("payments.charge")) == {"time_limit": 570, "soft_time_limit": 560}
    assert annotate(task("ops.x", queue="notifications")) == {"time_limit": 30, "soft_time_limit": 20}
    assert annotate(task("payments.quick", time_limit=20)) is None
    assert annotate(task("billing.x")) is None


def test_only_the_notifications_queue_is_subscribed_by_default():
    subs = subscriptions(Settings.from_env({}))
    assert {(s.topic, s.protocol, s.endpoint) for s in subs} == {("order-status", "sqs", "notifications")}
    assert all(s.raw_delivery and "OrderPlaced" in s.filter_policy["event_type"] for s in subs)
    assert all("StockReserved" not in s.filter_policy["event_type"] for s in subs)


def test_email_sms_and_lambda_subscriptions_only_when_configured():
    subs = subscriptions(Settings.from_env({
        "ORDERS_CUSTOMER_EMAIL": "c@example.com", "ORDERS_ALERT_EMAIL": "ops@example.com",
        "ORDERS_ALERT_SMS": "+15555550100", "ORDERS_LAMBDA_ARN": "arn:aws:lambda:us-east-1:1:function:f"}))
    by_protocol = {p: {(s.topic, s.endpoint) for s in subs if s.protocol == p}
                   for p in ("email", "sms", "lambda")}
    assert by_protocol["email"] == {("order-status", "c@example.com"), ("system-health", "ops@example.com"),
                                    ("inventory-alerts", "ops@example.com")}
    assert by_protocol["sms"] == {("order-status", "+15555550100"), ("system-health", "+15555550100")}
    assert by_protocol["lambda"] == {("order-status", "arn:aws:lambda:us-east-1:1:function:f")}
    # system-health pages unfiltered: CloudWatch alarm notifications carry no attributes.
    paging = [s for s in subs if s.topic == "system-health"]
    assert len(paging) == 2 and all(s.filter_policy == {} for s in paging)
    critical = [s for s in subs if s.protocol in ("sms", "email") and s.topic in ("order-status",
                                                                                   "inventory-alerts")
                and s.endpoint != "c@example.com"]
    assert len(critical) == 2 and all(s.filter_policy == {"severity": ["critical"]} for s in critical)


def test_tags_name_environment_and_service():
    assert tags(Settings.from_env({"ORDERS_ENV": "prod"}), "payments") == {
        "environment": "prod", "service": "payments", "app": "orders"}


def test_a_task_sent_to_several_queues_fits_the_shortest_visibility():
    from orders.celery import app

    app.loader.import_default_modules()
    place = app.tasks["orders.place"]
    # VIP placements run on orders-priority.fifo (120 s visibility), not only on orders (300 s).
    assert place.time_limit < QUEUES_BY_NAME["orders-priority.fifo"].visibility_timeout
    assert time_limit_problems(dict(app.tasks)) == []
    assert time_limit_problems({"orders.place": type("T", (), {"time_limit": 200})()})
