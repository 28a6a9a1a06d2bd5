"""Queues and their dead-letter queues for `orders infra up/check/down`."""

from __future__ import annotations

from orders.aws import clients
from orders.infra import kms
from orders.infra.converger import Converger, same_value
from orders.settings import Settings
from orders.topology import QUEUES, QueueSpec, tags

#: Attributes an emulator may accept and not echo back (moto does not store
#: RedriveAllowPolicy). Against such an endpoint their absence is reported as
#: "not verifiable here", never as drift; against AWS it is drift.
MAY_NOT_ECHO = frozenset({"RedriveAllowPolicy", "FifoThroughputLimit", "DeduplicationScope"})
#: Set once at creation; SQS refuses to change them afterwards.
IMMUTABLE = frozenset({"FifoQueue"})


def converge_queues(converger: Converger) -> None:
    """Every declared queue and its DLQ exist with their attributes and tags."""
    for spec in QUEUES:
        queue_pair(converger, spec)


def queue_pair(converger: Converger, spec: QueueSpec) -> None:
    """A queue and its DLQ: each needs the other's ARN, so the DLQ comes first."""
    dlq_name, src_name = spec.dlq_sqs_name(converger.settings), spec.sqs_name(converger.settings)
    encryption = kms.queue_encryption(converger.key)
    dlq_initial = {**spec.dlq_attributes(""), **encryption}
    dlq_initial.pop("RedriveAllowPolicy")  # needs the source's ARN, known below
    dlq_url = find_or_create(converger, dlq_name, spec.service, dlq_initial)
    dlq_live = live_attributes(dlq_url, converger.settings) if dlq_url else {}

    src_wanted = {**spec.attributes(dlq_live.get("QueueArn", "")), **encryption}
    if not dlq_url:
        src_wanted.pop("RedrivePolicy")  # the missing DLQ is the finding, not its ARN
    src_url = find_or_create(converger, src_name, spec.service, src_wanted)
    if src_url:
        src_live = live_attributes(src_url, converger.settings)
        converge_attributes(converger, src_url, src_name, src_live, src_wanted)
        converge_tags(converger, src_url, src_name, spec.service)
    if dlq_url:
        dlq_wanted = {**spec.dlq_attributes(src_live["QueueArn"] if src_url else ""), **encryption}
        if not src_url:
            dlq_wanted.pop("RedriveAllowPolicy")
        converge_attributes(converger, dlq_url, dlq_name, dlq_live, dlq_wanted)
        converge_tags(converger, dlq_url, dlq_name, spec.service)


def find_or_create(converger: Converger, name: str, service: str, attributes: dict[str, str]) -> str | None:
    """The queue's URL; a missing queue is created (up) or reported (check)."""
    sqs = clients.client("sqs", converger.settings)
    try:
        return str(sqs.get_queue_url(QueueName=name)["QueueUrl"])
    except sqs.exceptions.QueueDoesNotExist:
        converger.report.add(f"queue {name}: {'created' if converger.apply else 'missing'}")
        if not converger.apply:
            return None
    converger.created.add(name)
    return str(sqs.create_queue(QueueName=name, Attributes=attributes,
                                tags=tags(converger.settings, service))["QueueUrl"])


def converge_attributes(converger: Converger, url: str, name: str, live: dict[str, str],
                        wanted: dict[str, str]) -> None:
    """Compare a queue's attributes with the declared ones; set the stale ones (up)."""
    just_created = name in converger.created
    stale = stale_encryption(converger, name, live, wanted)
    for key, value in wanted.items():
        if key in (kms.KEY_ID, kms.REUSE) or same_value(key, live.get(key), value):
            continue
        if key not in live and key in MAY_NOT_ECHO and converger.on_emulator:
            converger.report.note(f"queue {name}: {key} (the endpoint does not echo it)")
            if just_created:
                stale[key] = value  # set it once; it cannot be compared afterwards
            continue
        if not just_created:  # a new queue is reported once, as created
            converger.drift(f"queue {name}: {key} is {live.get(key)!r}, declared {value!r}")
        stale[key] = value
    for key in IMMUTABLE & stale.keys():
        del stale[key]
        converger.report.add(f"queue {name}: {key} cannot change; delete the queue and run up again")
    if stale and converger.apply:
        clients.client("sqs", converger.settings).set_queue_attributes(QueueUrl=url, Attributes=stale)


def stale_encryption(converger: Converger, name: str, live: dict[str, str],
                     wanted: dict[str, str]) -> dict[str, str]:
    """The queue's SSE-KMS attributes when it is not encrypted as declared (said in one line of drift)."""
    reuse = wanted[kms.REUSE]
    problem = kms.misencrypted(converger, live.get(kms.KEY_ID))
    if problem is None and live.get(kms.REUSE) != reuse:
        problem = f"{kms.REUSE} is {live.get(kms.REUSE)!r}, declared {reuse!r}"
    if problem is None:
        return {}
    if name not in converger.created:
        converger.drift(f"queue {name}: {problem}")
    return {kms.KEY_ID: wanted[kms.KEY_ID], kms.REUSE: reuse}


def converge_tags(converger: Converger, url: str, name: str, service: str) -> None:
    """Declared tags present with their values (tags added by others are left alone)."""
    if name in converger.created:
        return  # tagged at creation
    sqs = clients.client("sqs", converger.settings)
    live = sqs.list_queue_tags(QueueUrl=url).get("Tags", {})
    stale = {k: v for k, v in tags(converger.settings, service).items() if live.get(k) != v}
    for key, value in stale.items():
        converger.drift(f"queue {name}: tag {key} is {live.get(key)!r}, declared {value!r}")
    if stale and converger.apply:
        sqs.tag_queue(QueueUrl=url, Tags=stale)


def live_attributes(url: str, settings: Settings) -> dict[str, str]:
    sqs = clients.client("sqs", settings)
    return dict(sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"]).get("Attributes", {}))


def queue_arn(url: str, settings: Settings) -> str:
    sqs = clients.client("sqs", settings)
    return str(sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
               ["Attributes"]["QueueArn"])


def delete_queues(settings: Settings) -> list[str]:
    sqs = clients.client("sqs", settings)
    deleted = []
    for spec in QUEUES:
        for name in (spec.sqs_name(settings), spec.dlq_sqs_name(settings)):
            try:
                url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
            except sqs.exceptions.QueueDoesNotExist:
                continue
            sqs.delete_queue(QueueUrl=url)
            deleted.append(f"queue {name}")
    return deleted
