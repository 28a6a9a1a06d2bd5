"""Least privilege, proven: the whole pipeline with each process on its own role's credentials.

The administrator provisions and seeds, the API places orders, a worker per queue and beat run
them, poison reaches every DLQ, the DLQ tools show and redrive it, the administrator restocks,
checks and tears down; moto's own IAM enforcement is on throughout (orders.emulator.moto_iam).
The access log (orders.emulator.access_log) records every call; each must be allowed by its
role's policy as `orders infra policies` prints it (orders.infra.policy_check), and every grant
that no call used must say why it stays (orders.infra.access).
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections import Counter
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from orders.aws.store import OrderStore
from orders.domain.events import Event
from orders.domain.sensitive import Field
from orders.domain.states import FINAL_STATES
from orders.emulator import moto_iam
from orders.emulator.access_log import access_records
from orders.infra import provisioning
from orders.infra.access import ROLES
from orders.infra.policies import NEEDS_NO_GRANT
from orders.infra.policy_check import Call, refused, unused
from orders.topology import ENVIRONMENT_KEY, QUEUES, QUEUES_BY_NAME
from tests.helpers import wait_for
from tests.integration.least_privilege_support import (
    RoleRun,
    allowed,
    logged_emulator,
    make_table,
    probe_clients,
)
from tests.integration.pipeline_support import make_order

pytestmark = pytest.mark.timeout(120)

SKUS = {"LP-A": 50, "LP-B": 50, "LP-SCARCE": 1}


def orders_to_place() -> list[dict[str, Any]]:
    """One order down each path: completed, VIP, reviewed (VIP too), declined, refunded, short, retried."""
    return [make_order("LP-A"), make_order("LP-A", tier="vip"), make_order("LP-B", price="1500.00"),
            make_order("LP-B", price="1500.00", tier="vip"),
            make_order("LP-A", token="tok_chargeDeclined"),
            make_order("LP-B", shippingAddress={"line1": "1 Main St", "city": "Nowhere",
                                                "postalCode": "00000", "country": "US"}),
            make_order("LP-SCARCE", quantity=5), make_order("LP-B", token="tok_processingError")]


def place(run: RoleRun, api_key: str) -> list[str]:
    """The orders through the HTTP API, with the API role's credentials; their ids."""
    from orders.api.app import create_app

    api = create_app(run.settings("api")).test_client()
    api.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {api_key}"
    assert api.get("/health?deep=1").status_code == 200
    ids = []
    for n, order in enumerate(orders_to_place()):
        answer = api.post("/orders", json=order, headers={"Idempotency-Key": f"lp-{n}"} if n % 2 else {})
        assert answer.status_code == 202, answer.get_json()
        ids.append(answer.get_json()["orderId"])
    assert api.get(f"/orders/{ids[0]}").status_code == 200
    refused_order = api.post("/orders", json={"items": []}, headers={"Idempotency-Key": "lp-invalid"})
    assert refused_order.status_code == 400  # and its key released
    return ids


def poison_every_queue(run: RoleRun) -> None:
    """A message no worker can run on every queue, and a publishing task for notifications (harness)."""
    sqs = run.client("sqs")
    for spec in QUEUES:
        url = sqs.get_queue_url(QueueName=spec.sqs_name(run.settings()))["QueueUrl"]
        fifo = {"MessageGroupId": "poison", "MessageDeduplicationId": spec.name} if spec.fifo else {}
        sqs.send_message(QueueUrl=url, MessageBody=f"not a task message ({spec.name})", **fifo)
    events = [dataclasses.asdict(Event(t, "ord-lp-publish", "lp", {"n": 1}))
              for t in ("StockLow", "PaymentRefunded", "OrderReviewed")]
    # In a process of its own: this one's producers already carry the API's credentials.
    run.python("harness", "import json, sys\nfrom orders.celery import app\n"
                          "app.send_task('notifications.publish', args=(json.loads(sys.argv[1]),))",
               json.dumps(events))


def archived_arrivals(run: RoleRun) -> list[dict[str, Any]]:
    from orders.ops.archive import table_name

    items = run.client("dynamodb").scan(TableName=table_name(run.settings()))["Items"]
    return [i for i in items if i["item"]["S"].startswith("arrival#")]


def every_dlq_alerted(run: RoleRun, redriven: bool) -> bool:
    """Whether every DLQ's poison message was archived and alerted on (after a redrive, if `redriven`)."""
    alerted = {(i["queue_name"]["S"], i["item"]["S"].rsplit("#r", 1)[-1] != "0")
               for i in archived_arrivals(run) if "alerted_at" in i}
    return all((q.name, redriven) in alerted for q in QUEUES)


def key_tags(run: RoleRun) -> dict[str, dict[str, str]]:
    """The environment key's tags, by its ARN (the admin's key grants are conditioned on them)."""
    kms = run.client("kms")
    meta = kms.describe_key(KeyId=ENVIRONMENT_KEY.alias_name(run.settings()))["KeyMetadata"]
    tags = kms.list_resource_tags(KeyId=meta["KeyId"])["Tags"]
    return {meta["Arn"]: {t["TagKey"]: t["TagValue"] for t in tags}}


def moto_refuses_what_a_role_lacks(run: RoleRun) -> None:
    """With enforcement on, moto itself refuses the shipping workers' key a queue and an action it lacks."""
    sqs, ddb = run.client("sqs", "worker-shipping"), run.client("dynamodb", "worker-shipping")
    shipping, inventory = (QUEUES_BY_NAME[q].sqs_name(run.settings()) for q in ("shipping", "inventory.fifo"))
    own = sqs.get_queue_url(QueueName=shipping)["QueueUrl"]
    sqs.send_message(QueueUrl=own, MessageBody="{}")  # its own queue: allowed (a retry's send)
    for attempt in (lambda: sqs.send_message(QueueUrl=own.replace(shipping, inventory), MessageBody="{}",
                                             MessageGroupId="g", MessageDeduplicationId="d"),
                    lambda: ddb.delete_table(TableName=f"{run.settings().prefix}orders")):
        with pytest.raises(ClientError) as refused_call:
            attempt()
        assert refused_call.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def another_field_is_refused(run: RoleRun, documents: dict[str, Any], endpoint: str,
                             tags: dict[str, dict[str, str]]) -> None:
    """The payments workers' credentials open a contact: moto serves it (it enforces no condition), the
    access log records the request's field, and the payments policy refuses it; its own field it allows."""
    from orders.aws.field_crypto import FieldCrypto

    door, payments = FieldCrypto(run.settings("api")), FieldCrypto(run.settings("worker-payments"))
    access_records(endpoint, reset=True)
    for field in (Field.CONTACT, Field.PAYMENT_TOKEN):
        assert payments.open("ord-lp-x", field, door.seal("ord-lp-x", field, "{}")) == "{}"
    opened = [c for c in run.calls(access_records(endpoint), tags) if c.action == "kms:Decrypt"]
    assert [c.context["kms:EncryptionContext:field"] for c in refused(documents, opened)] == ["contact"]
    assert len(opened) == 2


def provision(run: RoleRun) -> tuple[str, dict[str, Any]]:
    """The administrator provisions, seeds and prints the policies: (API key, policies)"""
    from orders.aws.api_keys import ApiKeys
    from orders.aws.stock import set_stock

    admin = run.settings("admin")
    provisioning.up(admin)
    api_key, _ = ApiKeys(admin).create("shop")
    for sku, quantity in SKUS.items():
        set_stock(admin, sku, quantity)
    documents = json.loads(run.orders("admin", ["infra", "policies", "--json"]))
    assert set(documents) == set(ROLES)
    run.grant(documents)
    return api_key, documents


def operate(run: RoleRun, api_key: str) -> None:
    """Orders through the API, poison everywhere, the DLQ tools and the administrator's commands, each
    waited for."""
    ids = place(run, api_key)
    poison_every_queue(run)
    store = OrderStore(run.settings("harness"))
    wait_for(lambda: all((store.get(i) or {}).get("status") in FINAL_STATES for i in ids), timeout=60)
    wait_for(lambda: every_dlq_alerted(run, redriven=False), timeout=30)
    with run.beat_paused():  # the watcher holds what it reads: the DLQ tools would miss it meanwhile
        run.orders("dlq-tools", ["dlq", "list"], ["dlq", "show", "payments"],
                   *[["dlq", "redrive", q.name, "--all"] for q in QUEUES])
    run.orders("admin", ["inventory", "restock", "LP-A", "3", "--id", "lp-restock"],
               ["inventory", "show", "LP-A"], ["status", ids[0]], ["audit"], ["api-key", "create", "old"],
               ["api-key", "revoke", "old"], ["api-key", "list"], ["infra", "check"])
    wait_for(lambda: every_dlq_alerted(run, redriven=True), timeout=30)
    stock = {"TableName": f"{run.settings().prefix}stock", "Key": {"sku": {"S": "LP-A"}}}
    wait_for(lambda: run.client("dynamodb").get_item(**stock)["Item"].get("restocked", {}).get("N") == "3")


def test_each_call_of_the_pipeline_is_allowed_by_its_role_and_each_grant_is_used_or_kept(tmp_path):
    started = time.monotonic()
    with logged_emulator() as (emulator, _log):
        run = RoleRun(emulator.endpoint, tmp_path)
        moto_iam.enforce(emulator.endpoint)
        api_key, documents = provision(run)
        try:
            run.start()
            operate(run, api_key)
            tags = key_tags(run)
            records = access_records(emulator.endpoint)
            moto_refuses_what_a_role_lacks(run)
            another_field_is_refused(run, documents, emulator.endpoint, tags)
        finally:
            killed = run.stop()
        access_records(emulator.endpoint, reset=True)
        provisioning.down(run.settings("admin"))
        records += access_records(emulator.endpoint)
    calls = [c for c in run.calls(records, tags) if c.action not in NEEDS_NO_GRANT]
    report(run, records, calls, documents, time.monotonic() - started)
    assert not killed, f"processes that needed SIGKILL: {killed}"


def report(run: RoleRun, records: list[dict[str, Any]], calls: list[Call],
           documents: dict[str, Any], seconds: float) -> None:
    """Print each role's calls and its grants no call used; fail on a refused call or an unexplained grant."""
    roles = {key: name for name, (key, _) in run.keys.items()}
    print(f"\nleast privilege: {len(records)} calls in {seconds:.0f} s, by role:")
    for role, n in sorted(Counter(roles.get(r["key"], "(set-up)") for r in records).items()):
        print(f"  {role:30} {n}")
    denied = [r for r in records if r["status"] == 403 and roles.get(r["key"]) not in (None, "harness")]
    assert not denied, f"moto refused calls of a role: {denied[:5]}"
    not_allowed = refused(documents, calls)
    assert not not_allowed, "calls their role's policy does not allow:\n" + "\n".join(
        sorted({f"  {c.role}: {c.action} on {c.resource} ({c.call})" for c in not_allowed}))
    kept = {(role.name, g.sid): g.kept for role in ROLES.values() for g in role.grants}
    spare = unused(documents, calls)
    print("grants no call used (role/statement: action x resource pairs, why it stays):")
    for (role, sid), n in Counter((u.role, u.sid) for u in spare).items():
        print(f"  {role}/{sid}: {n}: {kept[(role, sid)] or 'UNEXPLAINED'}")
    unexplained = sorted(f"{u.role}/{u.sid}: {u.action} on {u.resource}" for u in spare
                         if not kept[(u.role, u.sid)])
    assert not unexplained, f"grants neither used nor explained (orders.infra.access): {unexplained}"


def test_the_access_log_records_what_iam_authorizes_each_call_by():
    with logged_emulator() as (emulator, _log):
        c = probe_clients(emulator.endpoint)
        url = c["sqs"].create_queue(QueueName="al-q", tags={"app": "orders"})["QueueUrl"]
        queue = "arn:aws:sqs:us-east-1:123456789012:al-q"
        c["sqs"].send_message_batch(QueueUrl=url, Entries=[{"Id": "1", "MessageBody": "x"}])
        one, two = make_table(c["dynamodb"], "al-one"), make_table(c["dynamodb"], "al-two")
        c["dynamodb"].transact_write_items(TransactItems=[
            {"Put": {"TableName": "al-one", "Item": {"k": {"S": "a"}}}},
            {"Update": {"TableName": "al-two", "Key": {"k": {"S": "a"}}, "UpdateExpression": "SET v = :v",
                        "ExpressionAttributeValues": {":v": {"S": "1"}}}}])
        topic = c["sns"].create_topic(Name="al-t")["TopicArn"]
        c["sns"].publish_batch(TopicArn=topic, PublishBatchRequestEntries=[{"Id": "1", "Message": "x"}])
        c["cloudwatch"].put_metric_data(Namespace="Orders", MetricData=[{"MetricName": "m", "Value": 1}])
        key = c["kms"].create_key(Tags=[{"TagKey": "app", "TagValue": "orders"}])["KeyMetadata"]
        c["kms"].create_alias(AliasName="alias/al", TargetKeyId=key["KeyId"])
        c["kms"].describe_key(KeyId="alias/al")
        c["kms"].generate_data_key(KeyId="alias/al", KeySpec="AES_256",
                                   EncryptionContext={"field": "contact"})
        seen = [(r["call"], [tuple(n) for n in r["needs"]], r["context"])
                for r in access_records(emulator.endpoint)]
    assert seen == [
        ("sqs:CreateQueue", [("sqs:CreateQueue", queue), ("sqs:TagQueue", queue)], {}),
        ("sqs:SendMessageBatch", [("sqs:SendMessage", queue)], {}),
        ("dynamodb:CreateTable", [("dynamodb:CreateTable", one), ("dynamodb:TagResource", one)], {}),
        ("dynamodb:CreateTable", [("dynamodb:CreateTable", two), ("dynamodb:TagResource", two)], {}),
        ("dynamodb:TransactWriteItems", [("dynamodb:PutItem", one), ("dynamodb:UpdateItem", two)], {}),
        ("sns:CreateTopic", [("sns:CreateTopic", topic)], {}),
        ("sns:PublishBatch", [("sns:Publish", topic)], {}),
        ("cloudwatch:PutMetricData", [("cloudwatch:PutMetricData", "*")], {"cloudwatch:namespace": "Orders"}),
        ("kms:CreateKey", [("kms:CreateKey", "*"), ("kms:TagResource", "*")],
         {"aws:RequestTag/app": "orders"}),
        ("kms:CreateAlias", [("kms:CreateAlias", "arn:aws:kms:us-east-1:123456789012:alias/al"),
                             ("kms:CreateAlias", key["Arn"])], {}),
        ("kms:DescribeKey", [("kms:DescribeKey", key["Arn"])], {}),
        ("kms:GenerateDataKey", [("kms:GenerateDataKey", key["Arn"])],
         {"kms:EncryptionContext:field": "contact"}),
    ]


def test_moto_enforces_queue_arns_and_other_services_actions_only():
    """What moto's INITIAL_NO_AUTH_ACTION_COUNT enforces over HTTP (docs/security.md says so too)."""
    with logged_emulator() as (emulator, _log):
        c = probe_clients(emulator.endpoint)
        urls = [c["sqs"].create_queue(QueueName=n)["QueueUrl"] for n in ("me-own", "me-other")]
        topic = c["sns"].create_topic(Name="me-t")["TopicArn"]
        table = make_table(c["dynamodb"], "me-table")
        key = c["kms"].create_key()["KeyMetadata"]
        iam = boto3.client("iam", endpoint_url=emulator.endpoint, region_name="us-east-1",
                           aws_access_key_id="probe", aws_secret_access_key="probe")

        def user(name: str, resource: Any) -> dict[str, Any]:
            statements = [{"Effect": "Allow", "Action": a, "Resource": r} for a, r in (
                ("sqs:SendMessage", "arn:aws:sqs:us-east-1:123456789012:me-own"),
                ("sns:Publish", resource(topic)),
                ("dynamodb:PutItem", resource(table)), ("kms:Encrypt", resource(key["Arn"])),
                ("cloudwatch:PutMetricData", "*"))]
            iam.create_user(UserName=name)
            iam.put_user_policy(UserName=name, PolicyName="p",
                                PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": statements}))
            made = iam.create_access_key(UserName=name)["AccessKey"]
            return probe_clients(emulator.endpoint, made["AccessKeyId"], made["SecretAccessKey"])

        scoped, anywhere = user("me-scoped", lambda arn: arn), user("me-anywhere", lambda arn: "*")
        moto_iam.enforce(emulator.endpoint)
        calls = {
            "sqs own queue": lambda u: u["sqs"].send_message(QueueUrl=urls[0], MessageBody="x"),
            "sqs other queue": lambda u: u["sqs"].send_message(QueueUrl=urls[1], MessageBody="x"),
            "sqs batch (IAM: sqs:SendMessage)": lambda u: u["sqs"].send_message_batch(
                QueueUrl=urls[0], Entries=[{"Id": "1", "MessageBody": "x"}]),
            "sns": lambda u: u["sns"].publish(TopicArn=topic, Message="x"),
            "dynamodb": lambda u: u["dynamodb"].put_item(TableName="me-table", Item={"k": {"S": "1"}}),
            "kms": lambda u: u["kms"].encrypt(KeyId=key["KeyId"], Plaintext=b"x"),
            "cloudwatch (moto: monitoring:)": lambda u: u["cloudwatch"].put_metric_data(
                Namespace="Orders", MetricData=[{"MetricName": "m", "Value": 1}]),
        }
        found = {(name, who): allowed(call, u)
                 for name, call in calls.items() for who, u in (("scoped", scoped), ("anywhere", anywhere))}
    print("\nmoto's enforcement (allowed?):",
          json.dumps({f"{n} / {w}": ok for (n, w), ok in found.items()}, indent=1))
    assert found == {
        ("sqs own queue", "scoped"): True, ("sqs own queue", "anywhere"): True,
        ("sqs other queue", "scoped"): False, ("sqs other queue", "anywhere"): False,
        **{("sqs batch (IAM: sqs:SendMessage)", who): False for who in ("scoped", "anywhere")},
        **{(s, "scoped"): False for s in ("sns", "dynamodb", "kms")},  # scoped to the right ARN, yet refused
        **{(s, "anywhere"): True for s in ("sns", "dynamodb", "kms")},
        **{("cloudwatch (moto: monitoring:)", who): False for who in ("scoped", "anywhere")},
    }
