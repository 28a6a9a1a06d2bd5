"""Who calls what: each role's AWS calls, declared once, as read from the code that makes them.

`orders infra policies` (orders.infra.policies) and the template's roles (orders.infra.cfn.roles)
are both made from these declarations; tests/integration/test_least_privilege.py runs the pipeline
with each process on its own role and checks every call it made against them. A grant names
declared resources (queues, topics, tables by their topology names), never a pattern, except the
administrator's key before it exists (by its tags). A grant that a run of the pipeline may not use
says why it stays (`kept`): an error path, drift, teardown, or a call AWS makes for the role.

Read from: the transport and the queue-URL lookup (orders.runtime), each step and its adapters
(orders.steps, orders.aws), the tasks (tasks/), the DLQ tools (orders.ops), the API (orders.api),
provisioning (orders.infra) and the CLI (orders.cli).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum

from orders.domain.sensitive import Field
from orders.infra.alarms import STATIC_KINDS
from orders.infra.predictive import PREDICTIVE_KINDS
from orders.topology import QUEUES, REPLICA_QUEUE, TABLES, TOPICS


class Kind(StrEnum):
    """What a grant's names are."""

    QUEUE = "queue"  # declared queues, by their Celery names
    DLQ = "dlq"  # the dead-letter queues of declared queues, by the queues' names
    TOPIC = "topic"
    SUBSCRIBED_TOPICS = "subscribed-topics"  # the topics with a subscription in the environment's settings
    SUBSCRIBED_QUEUES = "subscribed-queues"  # the queues subscribed to a topic (their policy lets SNS send)
    TABLE = "table"
    INDEX = "index"  # "table/index"
    KEY = "key"  # the environment's key, by its ARN
    TAGGED_KEY = "tagged-key"  # the key by its tags: `orders infra up` creates it, so no ARN is known before
    ALIAS = "alias"  # the key's alias
    ALARMS = "alarms"  # the declared alarms of the kinds named (depth, age, ...)
    DASHBOARD = "dashboard"
    WORKER_SERVICES = "worker-services"  # the ECS services running the queues' workers
    METRICS = "metrics"  # Resource "*", limited to the pipeline's metric namespace
    REQUESTED_TAGS = "requested-tags"  # Resource "*", limited to requests that tag as the environment's
    ANY = "*"  # Resource "*": actions AWS does not scope to a resource


@dataclass(frozen=True)
class Grant:
    """One statement: actions on declared resources, why the role needs them, why a run may not call them."""

    sid: str
    actions: tuple[str, ...]
    kind: Kind
    names: tuple[str, ...] = ()
    why: str = ""
    kept: str = ""
    via: tuple[str, ...] = ()  # KEY / TAGGED_KEY: the services through which the key may be used
    #: KEY: the sensitive fields (orders.domain.sensitive.Field) whose data keys the grant covers, by
    #: the request's encryption context (kms:EncryptionContext:field); the key used directly.
    fields: tuple[str, ...] = ()


@dataclass(frozen=True)
class Role:
    """One role: what runs with it, and its grants."""

    name: str
    runs: str
    grants: tuple[Grant, ...]
    queue: str | None = None  # the queue whose workers assume it


ALL_QUEUES = tuple(q.name for q in QUEUES)
ALL_TOPICS = tuple(t.name for t in TOPICS)
ALL_TABLES = tuple(t.name for t in TABLES)
CONSUME = ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility")
#: What each service asks KMS for with the caller's credentials (SSE-KMS): SQS and SNS a data key
#: to encrypt what is sent or published and its decryption (on receive too); DynamoDB the
#: decryption of the table's key and the key's description.
KEY_USE = {"sqs": ("kms:GenerateDataKey", "kms:Decrypt"), "sns": ("kms:GenerateDataKey", "kms:Decrypt"),
           "dynamodb": ("kms:Decrypt", "kms:DescribeKey")}
AWS_SIDE = "called by AWS for the role (encryption at rest); the emulator encrypts nothing: no run shows it"
ON_POISON = "only when a message no worker can run arrives (orders.runtime.quarantine)"
ON_FAILURE = "only when a task fails (Celery's task_failure: orders.ops.watch.on_task_failure)"
ON_RETRY = "only when a step retries (throttling, a lost race, a transient gateway error)"
ON_REMEDY = ("only when automated remediation acts: a transient dead letter due for its redrive "
             "(orders.ops.remediation), or an order stuck past its step's bound (orders.ops.sweeper)")
SENSITIVE = tuple(f.value for f in Field)
#: The orders workers seal what arrives in clear; the door (the API, `place_order.delay()`) sealed the rest.
SEAL_IN_CLEAR = Grant("SealFieldsInClear", ("kms:GenerateDataKey",), Kind.KEY, fields=SENSITIVE,
                      why="a place message with a field in clear is sealed before it is recorded "
                          "(orders.steps.admission.place)",
                      kept="only when a place message arrives in clear (sent with send_task, past the door)")


def open_field(sid: str, field: Field, step: str) -> Grant:
    """The one field a step's role may open: Decrypt of that field's data keys only."""
    return Grant(sid, ("kms:Decrypt",), Kind.KEY, fields=(field.value,),
                 why=f"the {step} step opens the {field.value} field, in memory (orders.aws.field_crypto)")


def key_use(*services: str, kind: Kind = Kind.KEY) -> tuple[Grant, ...]:
    """The environment's key through each of `services`, never directly (kms:ViaService)."""
    return tuple(Grant(f"UseKeyThrough{s.capitalize()}", KEY_USE[s], kind, via=(s,),
                       why=f"{s} encrypts and decrypts with the key for the caller", kept=AWS_SIDE)
                 for s in services)


def worker(queue: str, sends: tuple[str, ...], topics: tuple[str, ...], *grants: Grant) -> Role:
    """The role of one queue's workers: what every worker does, then `grants`, its steps' own."""
    return Role(f"worker-{queue}", f"the workers of the {queue} queue", (
        Grant("ConsumeOwnQueue", ("sqs:ReceiveMessage", "sqs:DeleteMessage"), Kind.QUEUE, (queue,),
              "receive and acknowledge (orders.runtime.transport)"),
        Grant("HoldMessages", ("sqs:ChangeMessageVisibility",), Kind.QUEUE, (queue,),
              "a heartbeat holds what a task still runs on; shutdown gives prefetched messages back",
              kept="only while a task outlasts its receive's visibility, when a worker stops with messages "
                   "prefetched, or when a failed message backs off"),
        Grant("LookUpQueues", ("sqs:GetQueueUrl",), Kind.QUEUE, ALL_QUEUES,
              "every process resolves every queue's URL once (orders.runtime.queue_urls)"),
        *((Grant("HandOff", ("sqs:SendMessage",), Kind.QUEUE, sends,
                 "the next step of the chain, or a branch off it (orders.runtime.step_tasks)"),)
          if sends else ()),
        Grant("RetryOnOwnQueue", ("sqs:SendMessage",), Kind.QUEUE, (queue,),
              "a retry goes back to the queue it came from", kept=ON_RETRY),
        Grant("QuarantinePoison", ("sqs:GetQueueUrl", "sqs:SendMessage"), Kind.DLQ, (queue,),
              "a message no worker can run goes to the DLQ at once", kept=ON_POISON),
        *((Grant("PublishEvents", ("sns:Publish",), Kind.TOPIC, topics, "its steps' events"),
           Grant("FindTopics", ("sns:ListTopics",), Kind.ANY, (),
                 "topic ARNs are discovered, never built (orders.aws.sns.topic_arns)")) if topics else ()),
        *grants,
        Grant("RecordFailures", ("dynamodb:UpdateItem",), Kind.TABLE, ("dlq-archive",),
              "a failed task's error, for the DLQ tools", kept=ON_FAILURE),
        Grant("PutMetrics", ("cloudwatch:PutMetricData",), Kind.METRICS, (),
              "task and business metrics (orders.aws.metrics)"),
        *key_use("sqs", *(("sns",) if topics else ()), "dynamodb"),
    ), queue)


#: A step reads its order only when its message did not carry it as the previous step left it.
ON_STALE_RECORD = ("only when a step's message carries no record of its order, or an out-of-date one "
                   "(redelivered, redriven: orders.runtime.carried)")


def table(sid: str, name: str, actions: tuple[str, ...], why: str, kept: str = "") -> Grant:
    return Grant(sid, tuple(f"dynamodb:{a}" for a in actions), Kind.TABLE, (name,), why, kept)


PLACE = (table("RecordPlacedOrders", "orders", ("PutItem",),
               "the order recorded once per id (orders.aws.store.OrderStore.create)"),
         table("ReadPlacedOrders", "orders", ("GetItem",), "the record of an order placed before",
               kept="only when an order's placement arrives twice (FIFO deduplication drops most)"))
CHECK_SKUS = table("CheckSkus", "stock", ("BatchGetItem",),
                   "unknown SKUs are refused at the door and again here")

AFTER_FAILOVER = "only in a multi-region deployment, on the other region's events after a failover"
#: The notify step's own grants, on whichever queue its events arrive.
NOTIFY = (table("ClaimNotifications", "orders", ("UpdateItem",),
                "one notification per order and event (orders.aws.store.OrderStore.claim_notification)"),
          table("ReadClaimedOrders", "orders", ("BatchGetItem",),
                "claims made together: one transaction, then one read of their orders (orders.aws.claims)",
                kept="only when a worker's threads claim at once (a receive of several customer events)"),
          open_field("OpenContacts", Field.CONTACT, "notify"))

WORKERS: tuple[Role, ...] = (
    worker("orders", ("orders", "inventory.fifo"), ("order-status", "system-health"),
           CHECK_SKUS, table("RecordOrders", "orders", ("GetItem", "PutItem", "UpdateItem"),
                             "placement, review, and a dead-lettered order marked failed"),
           # ops.* run here (orders.topology.SERVICE_QUEUES): the DLQ watcher and its automated redrive, the
           # stuck-order sweeper, the queue sampler.
           Grant("WatchDeadLetterQueues", ("sqs:GetQueueUrl", "sqs:GetQueueAttributes", "sqs:ReceiveMessage",
                                           "sqs:ChangeMessageVisibility"), Kind.DLQ, ALL_QUEUES,
                 "ops.watch_dlqs reads every DLQ and leaves the messages there (orders.ops.watch)"),
           table("ArchiveDeadLetters", "dlq-archive", ("BatchGetItem", "PutItem", "UpdateItem"),
                 "each dead letter archived once, then alerted on"),
           Grant("RedriveTransientDeadLetters", ("sqs:DeleteMessage",), Kind.DLQ, ALL_QUEUES,
                 "a transient dead letter sent back leaves its DLQ (orders.ops.remediation)", kept=ON_REMEDY),
           Grant("SendBackAndResume", ("sqs:SendMessage",), Kind.QUEUE, ALL_QUEUES,
                 "a transient dead letter back to its queue; a stuck order's step again (orders.ops.sweeper)",
                 kept=ON_REMEDY),
           table("ReadRemedyLedgers", "dlq-archive", ("GetItem",),
                 "the redrive count a concurrent redrive left; the resumes of a stuck order", kept=ON_REMEDY),
           Grant("FindStuckOrders", ("dynamodb:Query",), Kind.INDEX, ("orders/in-flight",),
                 "ops.sweep_stuck finds the orders not yet final (orders.ops.sweeper)",
                 kept="every ORDERS_SWEEP_STUCK_SECONDS (300 s): a run shorter than that never sweeps"),
           table("ReadStuckOrders", "orders", ("BatchGetItem",),
                 "ops.sweep_stuck reads the orders it found in flight longer than any state may rest",
                 kept="only when the sweeper finds orders in flight that long"),
           Grant("SampleQueues", ("sqs:GetQueueAttributes",), Kind.QUEUE, ALL_QUEUES,
                 "ops.sample_queues: each queue's backlog (orders.ops.sampling)"),
           Grant("CountWorkers", ("ecs:DescribeServices",), Kind.WORKER_SERVICES, ALL_QUEUES,
                 "running tasks per worker service, for BacklogPerTask (orders.aws.ecs)"),
           SEAL_IN_CLEAR),
    worker("orders-priority.fifo", ("orders", "inventory.fifo"), ("order-status",), CHECK_SKUS, *PLACE,
           SEAL_IN_CLEAR),
    worker("inventory.fifo", ("payments",), ("inventory-alerts", "order-status"),
           table("HoldStock", "orders", ("PutItem", "UpdateItem"),
                 "holds beside their orders, written in one transaction with the order and the stock"),
           table("ReadHeldOrders", "orders", ("GetItem",), "an order and its hold, read before a change",
                 kept=ON_STALE_RECORD + ", and by the expiry sweep"),
           Grant("FindExpiredHolds", ("dynamodb:Query",), Kind.INDEX, ("orders/active-holds",),
                 "inventory.release_expired's sweep (orders.aws.stock.expired_holds)"),
           table("TakeStock", "stock", ("GetItem", "BatchGetItem", "UpdateItem"),
                 "levels, reservations, restocks (orders.aws.stock)"),
           table("FindLateCaptures", "gateway", ("GetItem",),
                 "an expired hold's order may have been charged (orders.steps.charge.end_unpaid)",
                 kept="only when a reservation expires before its order is paid")),
    worker("payments", ("shipping", "payments"),
           ("payment-notifications", "order-status", "inventory-alerts"),
           table("ChargeOrders", "orders", ("GetItem", "UpdateItem"),
                 "the charge and refund steps' state changes"),
           table("SellStock", "stock", ("UpdateItem",), "held units sold, released or put back, in the same "
                                                        "transaction as the order"),
           table("UseGateway", "gateway", ("GetItem", "UpdateItem"),
                 "the simulated gateway's idempotent captures and refunds (orders.aws.gateway)"),
           open_field("OpenPaymentTokens", Field.PAYMENT_TOKEN, "charge")),
    worker("shipping", ("payments",), ("order-status",),
           table("ShipOrders", "orders", ("UpdateItem",), "the shipping step's state change"),
           table("ReadShippedOrders", "orders", ("GetItem",), "the order, read before its change",
                 kept=ON_STALE_RECORD),
           open_field("OpenShippingAddresses", Field.SHIPPING_ADDRESS, "shipping")),
    worker("notifications", (), ("order-status", "payment-notifications", "inventory-alerts"), *NOTIFY),
    # The other region's customer events, notified after a failover (docs/multi-region.md, R7).
    worker(REPLICA_QUEUE, (), (), *(replace(g, kept=g.kept or AFTER_FAILOVER) for g in NOTIFY)),
)

BEAT = Role("beat", "celery beat: the periodic tasks' messages (orders.runtime.config.beat_schedule)", (
    Grant("LookUpQueues", ("sqs:GetQueueUrl",), Kind.QUEUE, ALL_QUEUES,
          "every process resolves every queue's URL once (orders.runtime.queue_urls)"),
    Grant("SendPeriodicTasks", ("sqs:SendMessage",), Kind.QUEUE, ("orders", "inventory.fifo"),
          "ops.watch_dlqs, ops.sample_queues and ops.sweep_stuck to the ops host, inventory.release_expired "
          "to inventory"),
    *key_use("sqs"),
))

API = Role("api", "the HTTP API (orders.api), the door of `place_order.delay()`", (
    Grant("LookUpQueues", ("sqs:GetQueueUrl",), Kind.QUEUE, ALL_QUEUES,
          "the producer's queue URLs, and GET /health?deep=1"),
    Grant("PlaceOrders", ("sqs:SendMessage",), Kind.QUEUE, ("orders", "orders-priority.fifo"),
          "each valid order's first message (VIP orders on the FIFO queue)"),
    table("CheckSkus", "stock", ("BatchGetItem",), "unknown SKUs are refused at the door"),
    table("ReadOrders", "orders", ("GetItem",), "GET /orders/<id>, and an id in use before the API saw it"),
    table("CheckApiKeys", "api-keys", ("GetItem",), "each request's key, by its digest (never created here)"),
    table("RecordOrderOwners", "api-orders", ("GetItem", "PutItem"),
          "a client reads only the orders it placed"),
    table("ClaimIdempotencyKeys", "idempotency", ("GetItem", "PutItem", "UpdateItem", "DeleteItem"),
          "claimed, answered, released on a refused order (orders.api.idempotency)"),
    Grant("SealFields", ("kms:GenerateDataKey",), Kind.KEY, fields=SENSITIVE,
          why="the door seals the payment token, the contact and the address (orders.aws.field_crypto)"),
    *key_use("sqs", "dynamodb"),
))

DLQ_TOOLS = Role("dlq-tools", "the engineer on call: `orders dlq list|show|redrive|purge`", (
    Grant("LookUpQueues", ("sqs:GetQueueUrl",), Kind.QUEUE, ALL_QUEUES,
          "a redrive's destination, resolved with every queue's URL"),
    Grant("ReadDeadLetters", ("sqs:GetQueueUrl", "sqs:GetQueueAttributes", *CONSUME), Kind.DLQ, ALL_QUEUES,
          "depth, messages held while shown, deleted once redriven or purged (orders.ops.dead_letters)"),
    Grant("SendBack", ("sqs:SendMessage",), Kind.QUEUE, ALL_QUEUES, "a redrive sends each message back"),
    Grant("MoveWithSqs", ("sqs:StartMessageMoveTask",), Kind.DLQ, ALL_QUEUES,
          "SQS's own redrive, for messages that carry no poison reason",
          kept="AWS only: the emulator has no StartMessageMoveTask, and a poison copy never uses it"),
    Grant("FindQueueArns", ("sqs:GetQueueAttributes",), Kind.QUEUE, ALL_QUEUES,
          "a move task names its destination by ARN", kept="with StartMessageMoveTask only"),
    table("ArchiveDeadLetters", "dlq-archive", ("BatchGetItem", "UpdateItem"),
          "what the archive holds of each message; redrives counted and bounded (orders.ops.archive)"),
    table("ArchiveUnwatched", "dlq-archive", ("PutItem",),
          "a message is archived before it leaves the DLQ, by the tool if beat's watcher has not yet",
          kept="only when a redrive or purge meets a message the watcher's last pass did not see"),
    table("ReadRedriveCount", "dlq-archive", ("GetItem",), "the count another redrive of the message left",
          kept="only when two redrives of one message race"),
    *key_use("sqs", "dynamodb"),
))

ON_DOWN = "`orders infra down` only"
ON_DRIFT = "only when a live resource has drifted from its declaration"
ALARM_ADMIN = ("cloudwatch:PutMetricAlarm", "cloudwatch:TagResource", "cloudwatch:DeleteAlarms")
QUEUE_ADMIN = ("sqs:CreateQueue", "sqs:TagQueue", "sqs:GetQueueUrl", "sqs:GetQueueAttributes",
               "sqs:ListQueueTags")
TTL_TABLES = tuple(t.name for t in TABLES if t.ttl)

ADMIN = Role("admin", "`orders infra up|check|down|policies`, `orders api-key`, `orders inventory`, "
                      "`orders status`, `orders audit`", (
    Grant("ManageQueues", QUEUE_ADMIN, Kind.QUEUE, ALL_QUEUES,
          "each queue created with its attributes and tags, then checked (orders.infra.queues)"),
    Grant("ManageDeadLetterQueues", (*QUEUE_ADMIN, "sqs:SetQueueAttributes"), Kind.DLQ, ALL_QUEUES,
          "each DLQ created and converged (its redrive-allow policy names its source, created after it)"),
    Grant("LetTopicsSend", ("sqs:SetQueueAttributes",), Kind.SUBSCRIBED_QUEUES, (),
          "a subscribed queue's policy lets its topic send (orders.infra.topics.allow_topic_to_send)"),
    Grant("RepairQueues", ("sqs:SetQueueAttributes",), Kind.QUEUE, ALL_QUEUES,
          "a queue's attributes converged to their declaration", kept=ON_DRIFT),
    Grant("DeleteQueues", ("sqs:DeleteQueue",), Kind.QUEUE, ALL_QUEUES, "teardown", kept=ON_DOWN),
    Grant("DeleteDeadLetterQueues", ("sqs:DeleteQueue",), Kind.DLQ, ALL_QUEUES, "teardown", kept=ON_DOWN),
    Grant("SendRestocks", ("sqs:SendMessage",), Kind.QUEUE, ("inventory.fifo",),
          "`orders inventory restock` goes through the inventory queue"),
    Grant("ManageTopics", ("sns:CreateTopic", "sns:TagResource", "sns:GetTopicAttributes",
                           "sns:ListTagsForResource", "sns:ListSubscriptionsByTopic"), Kind.TOPIC, ALL_TOPICS,
          "each topic created encrypted and tagged, and its subscriptions listed (orders.infra.topics)"),
    Grant("RepairTopics", ("sns:SetTopicAttributes",), Kind.TOPIC, ALL_TOPICS,
          "a topic's key converged to the environment's", kept=ON_DRIFT),
    Grant("Subscribe", ("sns:Subscribe",), Kind.SUBSCRIBED_TOPICS, (),
          "the subscriptions this environment declares (orders.topology.subscriptions)"),
    Grant("ManageSubscriptions", ("sns:GetSubscriptionAttributes", "sns:Unsubscribe"), Kind.ANY, (),
          "each subscription's filter policy and raw delivery checked; a stale one removed"),
    Grant("RepairSubscriptions", ("sns:SetSubscriptionAttributes",), Kind.ANY, (),
          "a subscription's filter policy or raw delivery converged", kept=ON_DRIFT),
    Grant("DeleteTopics", ("sns:DeleteTopic",), Kind.TOPIC, ALL_TOPICS, "teardown", kept=ON_DOWN),
    Grant("FindTopics", ("sns:ListTopics",), Kind.ANY, (), "topic ARNs are discovered, never built"),
    Grant("ManageTables", ("dynamodb:CreateTable", "dynamodb:TagResource", "dynamodb:DescribeTable"),
          Kind.TABLE, ALL_TABLES,
          "each table created encrypted and tagged, then checked (orders.infra.tables)"),
    Grant("ExpireItems", ("dynamodb:DescribeTimeToLive", "dynamodb:UpdateTimeToLive"), Kind.TABLE, TTL_TABLES,
          "the tables whose items expire get their time to live"),
    Grant("RepairTables", ("dynamodb:UpdateTable",), Kind.TABLE, ALL_TABLES,
          "a table's encryption converged to the environment's key", kept=ON_DRIFT),
    Grant("DeleteTables", ("dynamodb:DeleteTable",), Kind.TABLE, ALL_TABLES, "teardown", kept=ON_DOWN),
    table("ManageApiKeys", "api-keys", ("PutItem", "Scan", "UpdateItem"),
          "`orders api-key create|list|revoke`"),
    table("SetStock", "stock", ("GetItem", "UpdateItem", "Scan"),
          "`orders inventory set|show`, `orders audit`"),
    table("ReadOrders", "orders", ("GetItem", "Scan"), "`orders status`, `orders audit`"),
    table("IndexInFlightOrders", "orders", ("UpdateItem",),
          "`orders audit --index`: an order in flight from before the `in-flight` index put into it",
          kept="only on `orders audit --index`, once after an upgrade from a release without the index"),
    table("ReadLedger", "gateway", ("GetItem", "Scan"),
          "`orders status` shows, `orders audit` checks the ledger"),
    # Two statements: each names its alarms' ARNs, and one would pass a managed policy's 6,144 characters.
    Grant("ManageAlarms", ALARM_ADMIN, Kind.ALARMS, STATIC_KINDS, "each static alarm (orders.infra.alarms)"),
    Grant("ManagePredictiveAlarms", ALARM_ADMIN, Kind.ALARMS, PREDICTIVE_KINDS,
          "each predictive alarm (orders.infra.predictive)"),
    Grant("ManageAnomalyDetectors", ("cloudwatch:PutAnomalyDetector", "cloudwatch:DescribeAnomalyDetectors",
                                     "cloudwatch:DeleteAnomalyDetector"), Kind.ANY, (),
          "the models behind the predictive alarms' bands (orders.infra.anomaly)",
          kept="AWS only: the emulator has no anomaly-detector API, so `orders infra up` skips it there"),
    Grant("ListAlarms", ("cloudwatch:DescribeAlarms",), Kind.ANY, (),
          "the environment's alarms, listed by name prefix: the request names no alarm"),
    Grant("ManageDashboard", ("cloudwatch:GetDashboard", "cloudwatch:PutDashboard",
                              "cloudwatch:DeleteDashboards"),
          Kind.DASHBOARD, (), "the environment's dashboard (orders.infra.dashboard)"),
    Grant("CreateKey", ("kms:CreateKey", "kms:TagResource"), Kind.REQUESTED_TAGS, (),
          "the environment's key, created tagged as the environment's (no key ARN exists before)"),
    Grant("ManageKey", ("kms:DescribeKey", "kms:GetKeyRotationStatus", "kms:EnableKeyRotation",
                        "kms:GetKeyPolicy", "kms:ListResourceTags", "kms:CreateAlias"),
          Kind.TAGGED_KEY, (), "the key converged: rotation, policy, tags, alias (orders.infra.kms)"),
    Grant("RepairKey", ("kms:PutKeyPolicy", "kms:TagResource", "kms:EnableKey", "kms:CancelKeyDeletion"),
          Kind.TAGGED_KEY, (),
          "a key disabled, scheduled for deletion or untagged is brought back", kept=ON_DRIFT),
    Grant("RetireKey", ("kms:DeleteAlias", "kms:ScheduleKeyDeletion"), Kind.TAGGED_KEY, (), "teardown",
          kept=ON_DOWN),
    Grant("ManageAlias", ("kms:CreateAlias", "kms:DeleteAlias"), Kind.ALIAS, (),
          "the key's alias (an alias operation is authorized on the alias and on the key)"),
    *key_use("sqs", kind=Kind.TAGGED_KEY),
    Grant("UseKeyThroughDynamodb", (*KEY_USE["dynamodb"], "kms:CreateGrant"), Kind.TAGGED_KEY, (),
          "DynamoDB takes a grant on the key when a table is created with it, and decrypts for reads",
          kept=AWS_SIDE, via=("dynamodb",)),
))

#: Every role, by name.
ROLES: dict[str, Role] = {role.name: role for role in (*WORKERS, BEAT, DLQ_TOOLS, API, ADMIN)}


def worker_role(queue: str) -> Role:
    """The role of one queue's workers."""
    return ROLES[f"worker-{queue}"]
