"""The environment's customer managed KMS key and its alias, with the key policy `orders infra up` puts.

The key is retained when the stack is deleted or replaced: the order data's tables are retained
too, and nothing in them can be read without their key. The policy names the topics and alarms
by built ARNs (not Ref), since the topics themselves name the key.
"""

from __future__ import annotations

from typing import Any

from orders.infra import kms
from orders.infra.cfn.intrinsics import Resources, get_att, ref, subbed, tag_list
from orders.settings import Settings
from orders.topology import ENVIRONMENT_KEY

KEY_ID = "EnvironmentKey"
#: The key's ARN in the stack, as a placeholder for the attribute builders of `orders infra up`.
KEY_PLACEHOLDER = "<environment-key-arn>"
#: The stack's own account, as CloudFormation's pseudo parameters.
STACK_ACCOUNT = kms.Account("${AWS::Partition}", "${AWS::Region}", "${AWS::AccountId}")


def key_arn() -> dict[str, Any]:
    return get_att(KEY_ID, "Arn")


def keys(settings: Settings) -> Resources:
    """The key, rotating yearly, and its alias."""
    return {
        KEY_ID: {"Type": "AWS::KMS::Key", "DeletionPolicy": "Retain", "UpdateReplacePolicy": "Retain",
                 "Properties": {
                     "Description": kms.description(settings), "KeySpec": "SYMMETRIC_DEFAULT",
                     "KeyUsage": "ENCRYPT_DECRYPT", "EnableKeyRotation": True,
                     "PendingWindowInDays": ENVIRONMENT_KEY.deletion_window_days,
                     "KeyPolicy": subbed(kms.key_policy(settings, STACK_ACCOUNT)),
                     "Tags": tag_list(settings, kms.KEY_TAGS_SERVICE)}},
        KEY_ID + "Alias": {"Type": "AWS::KMS::Alias", "Properties": {
            "AliasName": ENVIRONMENT_KEY.alias_name(settings), "TargetKeyId": ref(KEY_ID)}},
    }


def table_encryption() -> dict[str, Any]:
    """A table's SSESpecification as CloudFormation names it (SSEEnabled where the API says Enabled)."""
    api = kms.table_encryption(KEY_PLACEHOLDER)
    return {"SSEEnabled": api["Enabled"], "SSEType": api["SSEType"], "KMSMasterKeyId": key_arn()}
