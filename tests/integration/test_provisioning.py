"""`provisioning.up/check/down` on the emulator: the issue's exact attributes, idempotence, drift."""

import json
import os

import pytest

from orders.aws import clients
from orders.aws.sns import topic_arns
from orders.infra import provisioning
from orders.infra.topics import list_subscriptions
from orders.settings import Settings
from orders.topology import QUEUES

DAYS_14 = "1209600"
#: The issue's table, written out here rather than read from orders.topology, so that
#: a change to the topology that strays from it fails this test.
#: name -> (visibility, maxReceiveCount, FIFO attributes or None)
EXPECTED = {
    "orders": ("300", 3, None),
    "orders-priority.fifo": ("120", 3, {"ContentBasedDeduplication": "true",
                                        "DeduplicationScope": "messageGroup",
                                        "FifoThroughputLimit": "perMessageGroupId"}),
    "payments": ("600", 5, None),
    "inventory.fifo": ("300", 3, {"ContentBasedDeduplication": "false",
                                  "DeduplicationScope": "messageGroup",
                                  "FifoThroughputLimit": "perMessageGroupId"}),
    "shipping": ("300", 3, None),
    "notifications": ("60", 2, None),
}
SERVICE = {"orders": "orders", "orders-priority.fifo": "orders", "payments": "payments",
           "inventory.fifo": "inventory", "shipping": "shipping", "notifications": "notifications"}
CUSTOMER_EVENTS = ["OrderPlaced", "OrderShipped", "OrderCancelled", "OrderRejected"]


def dlq_of(name: str) -> str:
    return name.removesuffix(".fifo") + "-dlq" + (".fifo" if name.endswith(".fifo") else "")


def queue(settings: Settings, name: str) -> tuple[str, dict[str, str], dict[str, str]]:
    sqs = clients.client("sqs", settings)
    url = sqs.get_queue_url(QueueName=settings.prefix + name)["QueueUrl"]
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    return url, attrs, sqs.list_queue_tags(QueueUrl=url).get("Tags", {})


def test_up_creates_each_queue_and_dlq_with_the_issues_attributes(infra):
    for name, (visibility, max_receives, fifo) in EXPECTED.items():
        _, attrs, tags = queue(infra, name)
        _, dlq_attrs, dlq_tags = queue(infra, dlq_of(name))
        assert attrs["VisibilityTimeout"] == visibility, name
        assert attrs["MessageRetentionPeriod"] == DAYS_14, name
        assert attrs["ReceiveMessageWaitTimeSeconds"] == "20", name
        assert json.loads(attrs["RedrivePolicy"]) == {"deadLetterTargetArn": dlq_attrs["QueueArn"],
                                                      "maxReceiveCount": max_receives}, name
        assert dlq_attrs["MessageRetentionPeriod"] == DAYS_14, name
        if fifo is None:
            assert "FifoQueue" not in attrs and "FifoQueue" not in dlq_attrs, name
        else:
            assert attrs["FifoQueue"] == dlq_attrs["FifoQueue"] == "true", name
            assert {k: attrs[k] for k in fifo} == fifo, name
        expected_tags = {"environment": infra.env, "service": SERVICE[name], "app": "orders"}
        assert tags == dlq_tags == expected_tags, name


def test_up_creates_the_topics_and_the_notifications_subscriptions(infra):
    sns = clients.client("sns", infra)
    arns = topic_arns(infra)
    assert set(arns) == {"order-status", "payment-notifications", "inventory-alerts", "system-health"}
    for arn in arns.values():
        tags = {t["Key"]: t["Value"] for t in sns.list_tags_for_resource(ResourceArn=arn)["Tags"]}
        assert tags == {"environment": infra.env, "service": "events", "app": "orders"}
    _, notifications, _ = queue(infra, "notifications")
    subscribed = {}
    for topic, arn in arns.items():
        for sub in list_subscriptions(sns, arn):
            subscribed[topic] = (sub["Protocol"], sub["Endpoint"],
                                 sns.get_subscription_attributes(SubscriptionArn=sub["SubscriptionArn"])
                                 ["Attributes"])
    assert set(subscribed) == {"order-status"}  # every customer event is an order-status event
    for protocol, endpoint, attrs in subscribed.values():
        assert (protocol, endpoint) == ("sqs", notifications["QueueArn"])
        assert attrs["RawMessageDelivery"] == "true"
        assert attrs["FilterPolicyScope"] == "MessageAttributes"
        assert json.loads(attrs["FilterPolicy"]) == {"event_type": CUSTOMER_EVENTS}
    policy = json.loads(notifications["Policy"])
    assert {s["Condition"]["ArnEquals"]["aws:SourceArn"] for s in policy["Statement"]} == {
        arns["order-status"]}


def test_configured_endpoints_are_subscribed_too(settings):
    configured = Settings.from_env({**os.environ,
                                    "ORDERS_ALERT_EMAIL": "ops@example.com",
                                    "ORDERS_ALERT_SMS": "+15555550100",
                                    "ORDERS_LAMBDA_ARN": "arn:aws:lambda:us-east-1:123456789012:function:f"})
    provisioning.up(configured)
    sns = clients.client("sns", configured)
    found = {(topic, s["Protocol"], s["Endpoint"])
             for topic, arn in topic_arns(configured).items()
             for s in list_subscriptions(sns, arn) if s["Protocol"] != "sqs"}
    assert found == {
        ("system-health", "email", "ops@example.com"), ("inventory-alerts", "email", "ops@example.com"),
        ("order-status", "sms", "+15555550100"), ("system-health", "sms", "+15555550100"),
        ("order-status", "lambda", "arn:aws:lambda:us-east-1:123456789012:function:f")}
    assert provisioning.up(configured).clean


def test_a_second_up_changes_nothing(infra):
    again = provisioning.up(infra)
    assert again.clean and again.changes == []
    # What moto cannot echo is said, not hidden and not reported as drift.
    queue_notes = [n for n in again.unverifiable if n.startswith("queue ")]
    note = ": RedriveAllowPolicy (the endpoint does not echo it)"
    assert len(queue_notes) == len(QUEUES)
    assert all(n.endswith(("-dlq" + note, "-dlq.fifo" + note)) for n in queue_notes)


def test_check_reports_drift_and_up_repairs_it(infra):
    sqs, sns = clients.client("sqs", infra), clients.client("sns", infra)
    payments, _, _ = queue(infra, "payments")
    sqs.set_queue_attributes(QueueUrl=payments, Attributes={"VisibilityTimeout": "30"})
    shipping_dlq, _, _ = queue(infra, "shipping-dlq")
    sqs.delete_queue(QueueUrl=shipping_dlq)
    order_status = topic_arns(infra)["order-status"]
    sns.unsubscribe(SubscriptionArn=list_subscriptions(sns, order_status)[0]["SubscriptionArn"])

    drift = provisioning.check(infra)
    assert not drift.clean
    assert sorted(drift.changes) == sorted([
        f"queue {infra.prefix}payments: VisibilityTimeout is '30', declared '600'",
        f"queue {infra.prefix}shipping-dlq: missing",
        "subscription order-status -> sqs:notifications: missing",
    ])
    assert not provisioning.up(infra).clean
    assert provisioning.check(infra).clean


def test_check_reports_an_undeclared_subscription(infra):
    sns = clients.client("sns", infra)
    health = topic_arns(infra)["system-health"]
    sns.subscribe(TopicArn=health, Protocol="email", Endpoint="someone@example.com")
    assert provisioning.check(infra).changes == [
        "subscription system-health -> email:someone@example.com: not declared"]


def test_down_removes_everything(infra):
    deleted = provisioning.down(infra)
    assert len([d for d in deleted if d.startswith("queue ")]) == 2 * len(QUEUES)
    assert len([d for d in deleted if d.startswith("topic ")]) == 4
    assert topic_arns(infra) == {}
    missing = [line for line in provisioning.check(infra).changes if line.startswith(("queue ", "topic "))]
    assert len(missing) == 2 * len(QUEUES) + 4 and all(line.endswith(": missing") for line in missing)


def environment_key(settings: Settings) -> dict:
    kms = clients.client("kms", settings)
    return kms.describe_key(KeyId=f"alias/{settings.prefix}orders")["KeyMetadata"]


def every_queue_url(settings: Settings) -> dict[str, str]:
    names = [n for name in EXPECTED for n in (name, dlq_of(name))]
    return {name: queue(settings, name)[0] for name in names}


def topic_key(settings: Settings, arn: str) -> str | None:
    attributes = clients.client("sns", settings).get_topic_attributes(TopicArn=arn)["Attributes"]
    return attributes.get("KmsMasterKeyId")


def test_up_encrypts_every_queue_topic_and_table_with_the_environments_key(infra):
    kms, sqs, ddb = (clients.client(s, infra) for s in ("kms", "sqs", "dynamodb"))
    key = environment_key(infra)
    assert (key["KeyManager"], key["KeyState"]) == ("CUSTOMER", "Enabled")
    assert key["KeySpec"] == "SYMMETRIC_DEFAULT"
    assert kms.get_key_rotation_status(KeyId=key["KeyId"])["KeyRotationEnabled"] is True
    policy = json.loads(kms.get_key_policy(KeyId=key["KeyId"], PolicyName="default")["Policy"])
    assert [s["Sid"] for s in policy["Statement"]] == [
        "AdministerByAccount", "DeliverTopicsToEncryptedQueues", "PublishAlarmsToEncryptedTopic"]
    for name, url in every_queue_url(infra).items():
        attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        assert attrs.get("KmsMasterKeyId") == key["Arn"], name
        assert attrs.get("KmsDataKeyReusePeriodSeconds") == "300", name
    arns = topic_arns(infra)
    assert len(arns) == 4 and all(topic_key(infra, arn) == key["Arn"] for arn in arns.values())
    # Paginated: a long test session leaves more than one page (100) of other namespaces' tables.
    tables = [t for page in ddb.get_paginator("list_tables").paginate() for t in page["TableNames"]]
    ours = [t for t in tables if t.startswith(infra.prefix)]
    assert len(ours) >= 5
    for table in ours:
        assert ddb.describe_table(TableName=table)["Table"]["SSEDescription"] == {
            "Status": "ENABLED", "SSEType": "KMS", "KMSMasterKeyArn": key["Arn"]}, table


def test_check_reports_encryption_drift_and_up_repairs_it(infra):
    kms, sqs, sns = (clients.client(s, infra) for s in ("kms", "sqs", "sns"))
    key = environment_key(infra)
    other = kms.create_key(Description="someone else's")["KeyMetadata"]["Arn"]
    urls = every_queue_url(infra)
    sqs.set_queue_attributes(QueueUrl=urls["payments"], Attributes={"KmsMasterKeyId": ""})
    sqs.set_queue_attributes(QueueUrl=urls["shipping-dlq"], Attributes={"KmsMasterKeyId": other})
    # Any name of the environment's key is the key: no drift for its alias or its id.
    alias = f"alias/{infra.prefix}orders"
    sqs.set_queue_attributes(QueueUrl=urls["orders"], Attributes={"KmsMasterKeyId": alias})
    sqs.set_queue_attributes(QueueUrl=urls["orders-dlq"], Attributes={"KmsMasterKeyId": key["KeyId"]})
    arns = topic_arns(infra)
    sns.set_topic_attributes(TopicArn=arns["order-status"], AttributeName="KmsMasterKeyId", AttributeValue="")
    kms.disable_key_rotation(KeyId=key["KeyId"])
    anyone = {"Sid": "AdministerByAccount", "Effect": "Allow", "Principal": {"AWS": "*"},
              "Action": "kms:*", "Resource": "*"}
    kms.put_key_policy(KeyId=key["KeyId"], PolicyName="default",
                       Policy=json.dumps({"Version": "2012-10-17", "Statement": [anyone]}))

    drift = provisioning.check(infra)
    assert sorted(drift.changes) == sorted([
        f"key {alias}: rotation is off",
        f"key {alias}: key policy differs from its declaration (statements AdministerByAccount, "
        "DeliverTopicsToEncryptedQueues, PublishAlarmsToEncryptedTopic)",
        f"queue {infra.prefix}payments: not encrypted with the environment's key {alias}",
        f"queue {infra.prefix}shipping-dlq: encrypted with {other}, not with the environment's key {alias}",
        f"topic {infra.prefix}order-status: not encrypted with the environment's key {alias}",
    ])
    assert all(line.endswith("; fixed") for line in provisioning.up(infra).changes)
    assert provisioning.check(infra).clean
    assert kms.get_key_rotation_status(KeyId=key["KeyId"])["KeyRotationEnabled"] is True
    assert sqs.get_queue_attributes(QueueUrl=urls["payments"], AttributeNames=["KmsMasterKeyId"])[
        "Attributes"]["KmsMasterKeyId"] == key["Arn"]
    assert topic_key(infra, arns["order-status"]) == key["Arn"]


def test_a_disabled_key_or_one_scheduled_for_deletion_is_enabled_again(infra):
    kms = clients.client("kms", infra)
    key = environment_key(infra)
    kms.schedule_key_deletion(KeyId=key["KeyId"], PendingWindowInDays=7)
    alias = f"alias/{infra.prefix}orders"
    assert provisioning.check(infra).changes == [f"key {alias}: state is PendingDeletion"]
    provisioning.up(infra)
    assert environment_key(infra)["KeyState"] == "Enabled"
    kms.disable_key(KeyId=key["KeyId"])
    assert provisioning.check(infra).changes == [f"key {alias}: state is Disabled"]
    provisioning.up(infra)
    assert environment_key(infra)["KeyState"] == "Enabled" and provisioning.check(infra).clean


def test_an_environment_made_before_the_key_is_encrypted_by_up_with_its_data(infra):
    """Every resource as it was before the key: no key, nothing encrypted; one `up` converges it all.

    Needs an endpoint that applies UpdateTable's SSESpecification, as AWS does (the embedded
    emulator's fix to moto, orders.emulator.moto_dynamodb)."""
    from orders.infra.tables import table_definition
    from orders.topology import TABLES

    kms, sqs, sns, ddb = (clients.client(s, infra) for s in ("kms", "sqs", "sns", "dynamodb"))
    alias = f"alias/{infra.prefix}orders"
    kms.delete_alias(AliasName=alias)
    for url in every_queue_url(infra).values():
        sqs.set_queue_attributes(QueueUrl=url, Attributes={"KmsMasterKeyId": ""})
    for arn in topic_arns(infra).values():
        sns.set_topic_attributes(TopicArn=arn, AttributeName="KmsMasterKeyId", AttributeValue="")
    for spec in TABLES:  # as `up` made them before the key: the same table, AWS's default encryption
        name = spec.table_name(infra)
        ddb.delete_table(TableName=name)
        ddb.create_table(**table_definition(spec, name))
    stock = f"{infra.prefix}stock"
    ddb.put_item(TableName=stock, Item={"sku": {"S": "SKU-OLD"}, "available": {"N": "7"}})

    drift = provisioning.check(infra).changes
    assert f"key {alias}: missing" in drift
    not_encrypted = [line for line in drift if "not encrypted with the environment's key" in line]
    assert len(not_encrypted) == 12 + 4 + len(TABLES)
    assert provisioning.up(infra).changes
    report = provisioning.check(infra)
    assert report.clean, report.changes
    assert ddb.get_item(TableName=stock, Key={"sku": {"S": "SKU-OLD"}})["Item"]["available"] == {"N": "7"}
    key = environment_key(infra)
    assert ddb.describe_table(TableName=stock)["Table"]["SSEDescription"]["KMSMasterKeyArn"] == key["Arn"]


def test_down_schedules_the_keys_deletion_and_removes_its_alias(infra):
    kms = clients.client("kms", infra)
    key = environment_key(infra)
    deleted = provisioning.down(infra)
    assert deleted[-1].startswith(f"key alias/{infra.prefix}orders (KMS deletes it in 30 days")
    assert kms.describe_key(KeyId=key["KeyId"])["KeyMetadata"]["KeyState"] == "PendingDeletion"
    assert f"key alias/{infra.prefix}orders: missing" in provisioning.check(infra).changes


def test_up_makes_the_processor_s_table_where_orders_gateway_puts_it_once(settings):
    configured = Settings.from_env({**os.environ, "ORDERS_GATEWAY": "us-east-2"})  # outside the region
    name = f"{configured.prefix}gateway"
    assert f"table {name} in us-east-2 (ORDERS_GATEWAY): missing" in provisioning.check(configured).changes
    assert f"table {name} in us-east-2 (ORDERS_GATEWAY): created" in provisioning.up(configured).changes
    there = configured.gateway_settings()
    ddb = clients.client("dynamodb", there)
    table = ddb.describe_table(TableName=name)["Table"]
    assert table["KeySchema"] == [{"AttributeName": "key", "KeyType": "HASH"}]
    tags = {t["Key"]: t["Value"] for t in ddb.list_tags_of_resource(ResourceArn=table["TableArn"])["Tags"]}
    assert tags == {"environment": configured.env, "service": "payments", "app": "orders"}
    assert provisioning.up(configured).clean


def test_down_deletes_the_processor_s_table_where_orders_gateway_puts_it(settings):
    configured = Settings.from_env({**os.environ, "ORDERS_GATEWAY": "us-east-2"})
    provisioning.up(configured)
    name, there = f"{configured.prefix}gateway", configured.gateway_settings()
    assert f"table {name} in us-east-2 (ORDERS_GATEWAY)" in provisioning.down(configured)
    ddb = clients.client("dynamodb", there)
    with pytest.raises(ddb.exceptions.ResourceNotFoundException):
        ddb.describe_table(TableName=name)
