"""Every queue, dead-letter queue, topic and subscription, declared once as data.

Provisioning, the Celery configuration, the drift check, the DLQ tools and the
docs all read these declarations; nothing else names a queue's attributes.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from orders.settings import Settings

DAY = 86_400
HOUR = 3_600
RETENTION_14_DAYS = 14 * DAY
LONG_POLL_SECONDS = 20
#: Task time limits sit this far below the queue's visibility timeout, so a
#: task that is killed for running too long is never also redelivered to a
#: second worker while the first still runs it.
VISIBILITY_MARGIN_SECONDS = 30
#: A task that failed with an unexpected error is tried again after 5 s, 15 s,
#: 45 s, then every 60 s (ORDERS_FAILURE_BACKOFF sets the first step), until SQS
#: moves it to the DLQ after maxReceiveCount.
FAILURE_BACKOFF_CAP_SECONDS = 60


@dataclass(frozen=True)
class QueueSpec:
    """One processing queue and the policy of its dead-letter queue."""

    name: str  # the Celery name, what `-Q` takes
    service: str
    visibility_timeout: int
    max_receive_count: int
    fifo: bool = False
    content_based_dedup: bool = False
    high_throughput_fifo: bool = False
    retention: int = RETENTION_14_DAYS
    wait_time: int = LONG_POLL_SECONDS
    #: Holds another region's events (docs/multi-region.md, R7): consumed only after a failover, so a
    #: deep or old backlog there is its normal state, not a finding (orders.infra.alarms).
    cross_region: bool = False
    #: Its messages are on no order's way to a final state (customer notifications): a worker may
    #: let it fill up longer between receives (ORDERS_OFF_PATH_RECEIVE_WAIT), for fuller receives
    #: and fewer calls at low rates.
    off_order_path: bool = False
    purpose: str = ""

    @property
    def dlq_name(self) -> str:
        if self.fifo:
            return self.name.removesuffix(".fifo") + "-dlq.fifo"
        return self.name + "-dlq"

    @property
    def task_time_limit(self) -> int:
        """Hard limit for a task of this queue: always inside the visibility timeout."""
        return max(self.visibility_timeout - VISIBILITY_MARGIN_SECONDS,
                   self.visibility_timeout // 2)

    def failure_backoff(self, first: int = 5) -> dict[int, int]:
        """Seconds a failed message stays hidden, by its receive count (kombu's backoff_policy).

        Without it a failed message waits out the whole visibility timeout
        before each new attempt, so a poison message took visibility x
        maxReceiveCount to reach its DLQ (50 minutes on payments); with it,
        a few minutes at most.
        """
        return {n: min(FAILURE_BACKOFF_CAP_SECONDS, first * 3 ** (n - 1),
                       self.visibility_timeout)
                for n in range(1, self.max_receive_count + 1)}

    def sqs_name(self, settings: Settings) -> str:
        return settings.prefix + self.name

    def dlq_sqs_name(self, settings: Settings) -> str:
        return settings.prefix + self.dlq_name

    def attributes(self, dlq_arn: str) -> dict[str, str]:
        """SQS attributes of the queue itself, as CreateQueue/SetQueueAttributes take them."""
        attrs = {
            "VisibilityTimeout": str(self.visibility_timeout),
            "MessageRetentionPeriod": str(self.retention),
            "ReceiveMessageWaitTimeSeconds": str(self.wait_time),
            "RedrivePolicy": json.dumps(
                {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": self.max_receive_count},
                separators=(",", ":"),
            ),
        }
        attrs.update(self._fifo_attributes())
        return attrs

    def dlq_attributes(self, source_arn: str) -> dict[str, str]:
        """SQS attributes of the dead-letter queue: long retention, redrive only from its source."""
        attrs = {
            "MessageRetentionPeriod": str(RETENTION_14_DAYS),
            "VisibilityTimeout": str(self.visibility_timeout),
            "RedriveAllowPolicy": json.dumps(
                {"redrivePermission": "byQueue", "sourceQueueArns": [source_arn]},
                separators=(",", ":"),
            ),
        }
        if self.fifo:
            attrs["FifoQueue"] = "true"
        return attrs

    def _fifo_attributes(self) -> dict[str, str]:
        if not self.fifo:
            return {}
        attrs = {
            "FifoQueue": "true",
            "ContentBasedDeduplication": "true" if self.content_based_dedup else "false",
        }
        if self.high_throughput_fifo:
            attrs["DeduplicationScope"] = "messageGroup"
            attrs["FifoThroughputLimit"] = "perMessageGroupId"
        return attrs


#: The queue each region subscribes to the other region's customer events (docs/multi-region.md, R7).
REPLICA_QUEUE = "notifications-replica"

QUEUES: tuple[QueueSpec, ...] = (
    QueueSpec("orders", "orders", visibility_timeout=300, max_receive_count=3,
              purpose="regular orders: validation and routing into the chain"),
    QueueSpec("orders-priority.fifo", "orders", visibility_timeout=120, max_receive_count=3,
              fifo=True, content_based_dedup=True, high_throughput_fifo=True,
              purpose="VIP orders: one message group per customer, dedup by order id"),
    QueueSpec("payments", "payments", visibility_timeout=600, max_receive_count=5,
              purpose="charges and refunds through the payment gateway"),
    QueueSpec("inventory.fifo", "inventory", visibility_timeout=300, max_receive_count=3,
              fifo=True, content_based_dedup=False, high_throughput_fifo=True,
              purpose="stock reservations and restocks, one message group per product"),
    QueueSpec("shipping", "shipping", visibility_timeout=300, max_receive_count=3,
              purpose="shipment creation and tracking numbers"),
    QueueSpec("notifications", "notifications", visibility_timeout=60, max_receive_count=2,
              off_order_path=True,
              purpose="customer and internal notifications; SNS events land here"),
    # Declared in every deployment (each queue has its workers, role and URL everywhere), subscribed
    # only with several regions: with one it stays empty. An hour of retention is how far back a
    # failover needs the lost region's events (the replication delay and the failover, with margin).
    QueueSpec(REPLICA_QUEUE, "notifications", visibility_timeout=60, max_receive_count=2,
              retention=HOUR, cross_region=True, off_order_path=True,
              purpose="the other region's customer events (multi-region): notified after a failover"),
)

QUEUES_BY_NAME: dict[str, QueueSpec] = {q.name: q for q in QUEUES}


@dataclass(frozen=True)
class TopicSpec:
    """One SNS topic: which events it carries."""

    name: str
    purpose: str

    def sns_name(self, settings: Settings) -> str:
        return settings.prefix + self.name


TOPICS: tuple[TopicSpec, ...] = (
    TopicSpec("order-status", "order lifecycle events: placed, shipped, cancelled, ..."),
    TopicSpec("payment-notifications", "payment captured, declined, refunded"),
    TopicSpec("inventory-alerts", "low stock, out of stock, restocked"),
    TopicSpec("system-health", "alarms, dead-lettered messages, operational alerts"),
)

TOPICS_BY_NAME: dict[str, TopicSpec] = {t.name: t for t in TOPICS}


@dataclass(frozen=True)
class KeySpec:
    """The environment's customer managed KMS key: every queue, DLQ, topic and table is encrypted with it."""

    name: str
    purpose: str
    #: How long SQS reuses a data key before calling KMS again (AWS's default, 5 minutes).
    data_key_reuse_seconds: int = 300
    #: The wait between `orders infra down` scheduling the key's deletion and KMS deleting it
    #: (the longest KMS allows): until then `aws kms cancel-key-deletion` brings it back.
    deletion_window_days: int = 30

    def alias_name(self, settings: Settings) -> str:
        return f"alias/{settings.prefix}{self.name}"


#: One key per environment, rotation on; `orders infra up` creates it (orders.infra.kms).
ENVIRONMENT_KEY = KeySpec("orders", "encryption at rest of the environment's queues, DLQs, topics and tables")

#: The events customers are told about; the notifications queue subscribes to these only.
#: One message per thing the customer needs to know, never two in the same second:
#: OrderCompleted comes with OrderShipped (same step), PaymentDeclined and PaymentRefunded
#: with the OrderCancelled that names the reason, and the confirmation (OrderPlaced) states
#: the amount a PaymentCaptured would repeat. All of them are on `order-status`.
CUSTOMER_EVENTS = ("OrderPlaced", "OrderShipped", "OrderCancelled", "OrderRejected")
CRITICAL_SEVERITIES = ("critical",)


@dataclass(frozen=True)
class SubscriptionSpec:
    """One subscription; `endpoint` is a queue name for protocol 'sqs', else the address."""

    topic: str
    protocol: str  # sqs | email | sms | lambda
    endpoint: str
    filter_policy: dict[str, list[str]] = field(default_factory=dict)
    raw_delivery: bool = False
    #: For 'sqs': the queue's region when it is not the topic's (a cross-region subscription).
    region: str | None = None

    def key(self) -> tuple[str, str, str]:
        where = f"{self.region}:" if self.region else ""
        return (self.topic, self.protocol, where + self.endpoint)

    @property
    def label(self) -> str:
        where = f" in {self.region}" if self.region else ""
        return f"subscription {self.topic} -> {self.protocol}:{self.endpoint}{where}"


def subscriptions(settings: Settings) -> tuple[SubscriptionSpec, ...]:
    """The subscriptions of this environment: the queue always, endpoints where configured."""
    subs = [SubscriptionSpec("order-status", "sqs", "notifications",
                             filter_policy={"event_type": list(CUSTOMER_EVENTS)}, raw_delivery=True)]
    # The same events, to the other regions' replica queues: the region that takes over notifies
    # what this one published and had not notified (docs/multi-region.md, R7).
    subs += [SubscriptionSpec("order-status", "sqs", REPLICA_QUEUE, raw_delivery=True, region=other,
                              filter_policy={"event_type": list(CUSTOMER_EVENTS)})
             for other in settings.other_regions]
    if settings.customer_email:
        subs.append(SubscriptionSpec("order-status", "email", settings.customer_email,
                                     filter_policy={"event_type": list(CUSTOMER_EVENTS)}))
    # system-health carries only what should page someone (CloudWatch alarms, dead-lettered
    # messages), and alarm notifications carry no message attributes to filter on: unfiltered.
    for protocol, address in (("email", settings.alert_email), ("sms", settings.alert_sms)):
        if address:
            subs.append(SubscriptionSpec("system-health", protocol, address))
    if settings.alert_email:
        subs.append(SubscriptionSpec("inventory-alerts", "email", settings.alert_email,
                                     filter_policy={"severity": list(CRITICAL_SEVERITIES)}))
    if settings.alert_sms:
        subs.append(SubscriptionSpec("order-status", "sms", settings.alert_sms,
                                     filter_policy={"severity": list(CRITICAL_SEVERITIES)}))
    if settings.lambda_arn:
        subs.append(SubscriptionSpec("order-status", "lambda", settings.lambda_arn))
    return tuple(subs)


def tags(settings: Settings, service: str) -> dict[str, str]:
    """The tags every resource carries."""
    return {"environment": settings.env, "service": service, "app": "orders"}


def aws_name(name: str) -> str:
    """A declared name in the alphabet ECS, Lambda and IAM names allow (no '.')."""
    return re.sub(r"[^A-Za-z0-9_-]", "-", name)


def cluster_name(settings: Settings) -> str:
    """The ECS cluster of the environment's services (`orders infra template`)."""
    return f"{settings.prefix}orders"


def worker_name(settings: Settings, queue: str) -> str:
    """The name of a queue's workers on AWS: its ECS service (which `ops.sample_queues` describes
    for BacklogPerTask), or its Lambda function when the queue runs on Lambda."""
    return f"{settings.prefix}worker-{aws_name(queue)}"


#: Where each service's tasks run, keyed by the first part of the task name
#: (`payments.charge` runs on `payments`). VIP orders' `orders.place` is sent to
#: `orders-priority.fifo` explicitly (ALSO_SENT_TO).
SERVICE_QUEUES: dict[str, str] = {
    "orders": "orders",
    "inventory": "inventory.fifo",
    "payments": "payments",
    "shipping": "shipping",
    "notifications": "notifications",
    "ops": "orders",
}


#: Queues a task also arrives on, besides its service's: its time limit must fit every one of them
#: (a VIP placement runs under the priority queue's 120 s visibility).
ALSO_SENT_TO: dict[str, tuple[str, ...]] = {"orders.place": ("orders-priority.fifo",),
                                             # delivered there by SNS, from the other region's topic
                                             "notifications.notify": (REPLICA_QUEUE,)}


def queue_for_task(task_name: str) -> QueueSpec:
    """The declared queue that a task name routes to (KeyError if none does)."""
    return QUEUES_BY_NAME[SERVICE_QUEUES[task_name.split(".", 1)[0]]]


def queues_for_task(task_name: str) -> list[QueueSpec]:
    """Every declared queue a task may run on: its service's and those it is also sent to."""
    return [queue_for_task(task_name), *(QUEUES_BY_NAME[q] for q in ALSO_SENT_TO.get(task_name, ()))]


def topology_problems(queues: tuple[QueueSpec, ...] = QUEUES,
                      service_queues: dict[str, str] | None = None) -> list[str]:
    """Every declaration that cannot work on SQS; empty when the topology is sound."""
    service_queues = SERVICE_QUEUES if service_queues is None else service_queues
    problems = []
    for spec in queues:
        if spec.name.endswith(".fifo") != spec.fifo:
            problems.append(f"queue {spec.name!r}: SQS requires a FIFO queue's name to end in "
                            f"'.fifo' and only a FIFO queue's (fifo={spec.fifo})")
        if not spec.fifo and (spec.content_based_dedup or spec.high_throughput_fifo):
            problems.append(f"queue {spec.name!r}: deduplication settings on a standard queue")
        if spec.task_time_limit >= spec.visibility_timeout:
            problems.append(f"queue {spec.name!r}: task time limit {spec.task_time_limit} s "
                            f"is not below the visibility timeout ({spec.visibility_timeout} s)")
        elif spec.task_time_limit <= 10:  # the soft limit comes 10 s before the hard one
            problems.append(f"queue {spec.name!r}: a visibility timeout of {spec.visibility_timeout} s "
                            "leaves tasks no usable time limit (give it 22 s or more)")
        if not 0 <= spec.wait_time <= 20:
            problems.append(f"queue {spec.name!r}: long poll {spec.wait_time} s is outside 0-20 s")
    declared = {spec.name for spec in queues}
    problems += [f"service {service!r} routes to {queue!r}, which is not a declared queue"
                 for service, queue in service_queues.items() if queue not in declared]
    return problems


@dataclass(frozen=True)
class ServiceLevel:
    """A queue's targets from the exercise: P95 latency of its stage and its peak rate."""

    p95_seconds: float
    peak_per_second: float

    @property
    def backlog_limit(self) -> int:
        """The deepest backlog the queue drains within its latency target at its peak rate.

        Little's law: a message that arrives behind N others waits about N / rate
        seconds, so a backlog above rate x target means new messages miss the target.
        """
        return int(self.p95_seconds * self.peak_per_second)


#: Per-queue targets, from the exercise's "Performance Targets". Shipping has no
#: target of its own there; it inherits the order-processing one. The alarms and
#: the dashboard (orders.infra.alarms, orders.infra.dashboard) derive their thresholds from these.
SERVICE_LEVELS: dict[str, ServiceLevel] = {
    "orders": ServiceLevel(p95_seconds=5, peak_per_second=100),
    "orders-priority.fifo": ServiceLevel(p95_seconds=5, peak_per_second=100),
    "payments": ServiceLevel(p95_seconds=10, peak_per_second=50),
    "inventory.fifo": ServiceLevel(p95_seconds=2, peak_per_second=200),
    "shipping": ServiceLevel(p95_seconds=5, peak_per_second=100),
    "notifications": ServiceLevel(p95_seconds=1, peak_per_second=500),
    # After a failover it drains up to an hour of the lost region's events at notifications' pace.
    REPLICA_QUEUE: ServiceLevel(p95_seconds=1, peak_per_second=500),
}
#: The exercise's reliability target: 99.9% of messages delivered successfully.
SUCCESS_RATE_TARGET = 0.999


@dataclass(frozen=True)
class TableSpec:
    """One DynamoDB table of the pipeline (on-demand capacity): its keys and secondary indexes.

    `keys` and each index are (hash key, range key or None); every key attribute is a
    string except those listed in `numeric`.
    """

    name: str
    service: str
    keys: tuple[str, str | None]
    indexes: dict[str, tuple[str, str | None]] = field(default_factory=dict)
    #: Indexes that project the keys only (the others project every attribute).
    keys_only: tuple[str, ...] = ()
    numeric: tuple[str, ...] = ()
    #: The attribute DynamoDB's time to live reads (epoch seconds), if items expire.
    ttl: str | None = None
    #: A global table in a multi-region deployment (docs/multi-region.md): its stream carries every
    #: write (NEW_AND_OLD_IMAGES), which is what global tables and the emulator's replicator read.
    replicated: bool = False
    purpose: str = ""

    def table_name(self, settings: Settings) -> str:
        return settings.prefix + self.name


TABLES: tuple[TableSpec, ...] = (
    TableSpec("orders", "orders", replicated=True, keys=("pk", "sk"),
              indexes={"active-holds": ("holdState", "expiresAt"),
                       "in-flight": ("inFlight", "inFlightSince")},
              keys_only=("in-flight",), numeric=("expiresAt",),
              purpose="order state and history (its version makes each step idempotent), "
                      "stock reservations (the sparse index finds expired holds); "
                      "the orders not yet final (the sparse index the stuck-order sweeper reads)"),
    TableSpec("stock", "inventory", replicated=True, keys=("sku", None),
              purpose="available and reserved quantity per product"),
    TableSpec("gateway", "payments", keys=("key", None),
              purpose="the simulated payment gateway's captures, refunds and attempt counts"),
    TableSpec("dlq-archive", "ops", keys=("key", "item"),
              indexes={"by-queue": ("queue_name", "archived_at")}, ttl="expires_at",
              purpose="dead-lettered messages, their failures and redrives (kept 90 days)"),
    TableSpec("idempotency", "api", replicated=True, keys=("key", None), ttl="expiresAt",
              purpose="Idempotency-Key claims of POST /orders and their answers (kept 24 hours)"),
    TableSpec("api-keys", "api", replicated=True, keys=("keyHash", None),
              purpose="the API's keys: SHA-256 of each key, its client, created, revoked"),
    TableSpec("api-orders", "api", replicated=True, keys=("orderId", None),
              purpose="which API client placed each order (a client reads only its own)"),
)

TABLES_BY_NAME: dict[str, TableSpec] = {t.name: t for t in TABLES}
