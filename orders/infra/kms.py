"""The environment's customer managed KMS key for `orders infra up/check/down`, and its key policy.

Every queue, DLQ, topic and table of an environment is encrypted at rest with one key
(orders.topology.ENVIRONMENT_KEY), found by its alias. The key policy lets the account administer
the key, so that IAM policies grant each role its use (orders.infra.cfn.roles); it lets SNS use
the key to deliver this environment's topics to the encrypted queues, and CloudWatch to publish
this environment's alarms to the encrypted topic, each on behalf of those sources only.
Rotation is on: KMS makes new key material every year and keeps the old to decrypt.

The same key wraps the data keys of the order's sensitive fields (orders.aws.field_crypto), which
the roles use directly, each for its own fields (orders.infra.access); the account statement is
what lets their IAM policies grant that.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Any

from orders.aws import clients
from orders.infra.alarms import alarm_specs
from orders.infra.converger import Converger
from orders.settings import Settings
from orders.topology import ENVIRONMENT_KEY, TOPICS, TOPICS_BY_NAME, subscriptions, tags

#: What a service needs to encrypt with the key and to decrypt (the actions AWS documents for SNS
#: delivering to an encrypted queue and for CloudWatch publishing to an encrypted topic).
SERVICE_ACTIONS = ["kms:GenerateDataKey*", "kms:Decrypt"]
KEY_TAGS_SERVICE = "platform"
KEY_ID, REUSE = "KmsMasterKeyId", "KmsDataKeyReusePeriodSeconds"


@dataclass(frozen=True)
class Account:
    """Where the key lives, which the ARNs of its policy name (in a template: pseudo parameters)."""

    partition: str
    region: str
    account_id: str

    def arn(self, service: str, resource: str, regional: bool = True) -> str:
        region = self.region if regional else ""
        return f"arn:{self.partition}:{service}:{region}:{self.account_id}:{resource}"


def caller_account(settings: Settings) -> Account:
    """The partition and account of the credentials in use (an emulator's or AWS's)."""
    identity = clients.client("sts", settings).get_caller_identity()
    return Account(identity["Arn"].split(":")[1], settings.region or "", identity["Account"])


def key_policy(settings: Settings, account: Account) -> dict[str, Any]:
    """The key policy: the account administers the key; SNS and CloudWatch use it for this environment."""
    topics = [account.arn("sns", spec.sns_name(settings)) for spec in TOPICS]
    # The other regions' topics that deliver to this region's replica queue (docs/multi-region.md, R7):
    # the regions being declared alike, those this region's topics deliver to in theirs.
    topics += [replace(account, region=sub.region).arn("sns", TOPICS_BY_NAME[sub.topic].sns_name(settings))
               for sub in subscriptions(settings) if sub.region]
    alarms = [account.arn("cloudwatch", f"alarm:{spec.name(settings)}") for spec in alarm_specs(settings)]
    return {"Version": "2012-10-17", "Statement": [
        # AWS's default statement: without it no IAM policy can grant any use of the key, and
        # a key whose policy locks the account out cannot be managed again.
        {"Sid": "AdministerByAccount", "Effect": "Allow",
         "Principal": {"AWS": account.arn("iam", "root", regional=False)},
         "Action": "kms:*", "Resource": "*"},
        service_statement("DeliverTopicsToEncryptedQueues", "sns", account, topics),
        service_statement("PublishAlarmsToEncryptedTopic", "cloudwatch", account, alarms),
    ]}


def service_statement(sid: str, service: str, account: Account, sources: list[str]) -> dict[str, Any]:
    """A service may use the key on behalf of `sources` of this account only (no confused deputy)."""
    return {"Sid": sid, "Effect": "Allow", "Principal": {"Service": f"{service}.amazonaws.com"},
            "Action": SERVICE_ACTIONS, "Resource": "*",
            "Condition": {"StringEquals": {"aws:SourceAccount": account.account_id},
                          "ArnEquals": {"aws:SourceArn": sources}}}


def queue_encryption(key: str) -> dict[str, str]:
    """A queue's SSE-KMS attributes, as CreateQueue/SetQueueAttributes take them."""
    return {KEY_ID: key, REUSE: str(ENVIRONMENT_KEY.data_key_reuse_seconds)}


def table_encryption(key: str) -> dict[str, Any]:
    """A table's SSESpecification, as CreateTable/UpdateTable take it."""
    return {"Enabled": True, "SSEType": "KMS", "KMSMasterKeyId": key}


def names_the_key(value: str | None, key_arn: str | None, alias: str) -> bool:
    """Whether a resource's key setting (key id, key ARN, alias name or alias ARN) names this key."""
    if not value:
        return False
    if value == alias or value.endswith(":" + alias):
        return True
    return key_arn is not None and value in (key_arn, key_arn.rsplit("/", 1)[-1])


def misencrypted(converger: Converger, live: str | None) -> str | None:
    """What is wrong with a resource's key setting; None when it names the environment's key."""
    alias = ENVIRONMENT_KEY.alias_name(converger.settings)
    if names_the_key(live, converger.key_arn, alias):
        return None
    if not live:
        return f"not encrypted with the environment's key {alias}"
    return f"encrypted with {live}, not with the environment's key {alias}"


def find_key(kms: Any, alias: str) -> dict[str, Any] | None:
    """The key's metadata by its alias; None when no key has the alias."""
    try:
        return dict(kms.describe_key(KeyId=alias)["KeyMetadata"])
    except kms.exceptions.NotFoundException:
        return None


def converge_key(converger: Converger) -> None:
    """Provisioning step: the key exists under its alias, enabled, rotating, with its policy and tags."""
    settings = converger.settings
    kms, alias = clients.client("kms", settings), ENVIRONMENT_KEY.alias_name(settings)
    policy = key_policy(settings, caller_account(settings))
    meta = find_key(kms, alias)
    if meta is None:
        converger.report.add(f"key {alias}: {'created' if converger.apply else 'missing'}")
        if converger.apply:
            converger.key_arn = create_key(converger, kms, alias, policy)
        return
    converger.key_arn = meta["Arn"]
    label = f"key {alias}"
    _converge_state(converger, kms, label, meta)
    if not kms.get_key_rotation_status(KeyId=meta["KeyId"])["KeyRotationEnabled"]:
        converger.drift(f"{label}: rotation is off")
        if converger.apply:
            kms.enable_key_rotation(KeyId=meta["KeyId"])
    _converge_policy(converger, kms, label, meta["KeyId"], policy)
    _converge_tags(converger, kms, label, meta["KeyId"])


def create_key(converger: Converger, kms: Any, alias: str, policy: dict[str, Any]) -> str:
    """A new symmetric key with its policy, alias and rotation; returns its ARN."""
    meta = kms.create_key(Policy=json.dumps(policy), KeyUsage="ENCRYPT_DECRYPT", KeySpec="SYMMETRIC_DEFAULT",
                          Description=description(converger.settings), Tags=_kms_tags(converger.settings))
    key_id = meta["KeyMetadata"]["KeyId"]
    kms.create_alias(AliasName=alias, TargetKeyId=key_id)
    kms.enable_key_rotation(KeyId=key_id)
    converger.created.add(alias)
    return str(meta["KeyMetadata"]["Arn"])


def description(settings: Settings) -> str:
    return f"orders {settings.env}: {ENVIRONMENT_KEY.purpose}"


def _converge_state(converger: Converger, kms: Any, label: str, meta: dict[str, Any]) -> None:
    """A disabled key, or one scheduled for deletion, is enabled again: what it encrypted needs it."""
    state = meta.get("KeyState", "Enabled")
    if state == "Enabled":
        return
    if state not in ("Disabled", "PendingDeletion"):
        converger.report.add(f"{label}: state is {state}; `orders infra up` cannot change it")
        return
    converger.drift(f"{label}: state is {state}")
    if converger.apply:
        if state == "PendingDeletion":
            kms.cancel_key_deletion(KeyId=meta["KeyId"])
        kms.enable_key(KeyId=meta["KeyId"])


def _converge_policy(converger: Converger, kms: Any, label: str, key_id: str, wanted: dict[str, Any]) -> None:
    live = json.loads(kms.get_key_policy(KeyId=key_id, PolicyName="default")["Policy"])
    if live == wanted:
        return
    declared = {s.get("Sid"): s for s in wanted["Statement"]}
    found = {s.get("Sid"): s for s in live.get("Statement", [])}
    differing = sorted(str(sid) for sid in declared.keys() | found.keys()
                       if declared.get(sid) != found.get(sid))
    converger.drift(f"{label}: key policy differs from its declaration (statements {', '.join(differing)})")
    if converger.apply:
        kms.put_key_policy(KeyId=key_id, PolicyName="default", Policy=json.dumps(wanted))


def _converge_tags(converger: Converger, kms: Any, label: str, key_id: str) -> None:
    live = {t["TagKey"]: t["TagValue"] for t in kms.list_resource_tags(KeyId=key_id).get("Tags", [])}
    stale = {k: v for k, v in tags(converger.settings, KEY_TAGS_SERVICE).items() if live.get(k) != v}
    for key, value in stale.items():
        converger.drift(f"{label}: tag {key} is {live.get(key)!r}, declared {value!r}")
    if stale and converger.apply:
        kms.tag_resource(KeyId=key_id, Tags=[{"TagKey": k, "TagValue": v} for k, v in stale.items()])


def _kms_tags(settings: Settings) -> list[dict[str, str]]:
    return [{"TagKey": k, "TagValue": v} for k, v in tags(settings, KEY_TAGS_SERVICE).items()]


def delete_key(settings: Settings) -> list[str]:
    """Teardown step: the alias goes, the key is scheduled for deletion (KMS never deletes a key at once)."""
    kms, alias = clients.client("kms", settings), ENVIRONMENT_KEY.alias_name(settings)
    meta = find_key(kms, alias)
    if meta is None:
        return []
    kms.delete_alias(AliasName=alias)
    days = ENVIRONMENT_KEY.deletion_window_days
    if meta.get("KeyState") != "PendingDeletion":
        kms.schedule_key_deletion(KeyId=meta["KeyId"], PendingWindowInDays=days)
    return [f"key {alias} (KMS deletes it in {days} days; "
            f"`aws kms cancel-key-deletion --key-id {meta['KeyId']}` keeps it)"]
