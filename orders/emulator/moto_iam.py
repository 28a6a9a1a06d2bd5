"""moto's own IAM enforcement (INITIAL_NO_AUTH_ACTION_COUNT), and what of our policies it can enforce.

Over HTTP, with enforcement on (`enforce`), moto checks every call's signature against the
access keys of its IAM users, and each call against the user's policies:

- SQS: the action and the queue's ARN, for calls that name a queue by its URL; GetQueueUrl and
  CreateQueue are checked against Resource "*" (no queue named yet). Batch calls are checked
  under their own names (sqs:SendMessageBatch), which IAM does not have: IAM authorizes them by
  the single action (sqs:SendMessage).
- SNS, DynamoDB, KMS, CloudWatch: the action only; the resource is always "*", so a statement
  scoped to an ARN never matches (moto refuses the call). PublishBatch and TransactWriteItems
  are checked under their own names; CloudWatch under its signing name (monitoring:PutMetricData).
- Conditions: a key the request does not carry is treated as satisfied; STS GetCallerIdentity
  is always allowed.

`moto_view` turns one of our policies into what moto can enforce of it: SQS statements as they
are (plus moto's batch names), every other statement on Resource "*" with moto's action names,
no conditions. Our own check (orders.infra.policy_check, on the access log) covers the rest.
"""

from __future__ import annotations

import json
import urllib.request
from typing import Any

from orders.emulator.access_log import IAM_ACTION, IAM_PREFIX

#: The names moto checks calls under, by the IAM action that authorizes them on AWS.
MOTO_NAMES: dict[str, list[str]] = {}
for _call, _action in IAM_ACTION.items():
    MOTO_NAMES.setdefault(_action, []).append(_call)
for _item in ("PutItem", "UpdateItem", "DeleteItem", "ConditionCheckItem"):
    MOTO_NAMES.setdefault(f"dynamodb:{_item}", []).append("dynamodb:TransactWriteItems")
MOTO_NAMES.setdefault("dynamodb:GetItem", []).append("dynamodb:TransactGetItems")
#: SQS calls moto checks against Resource "*" (it finds no queue URL in them).
SQS_UNSCOPED = ("sqs:GetQueueUrl", "sqs:CreateQueue", "sqs:ListQueues")
SIGNING_NAME = {iam: signing for signing, iam in IAM_PREFIX.items()}


def moto_names(action: str) -> list[str]:
    """An IAM action, and the names moto checks the calls it authorizes under."""
    if ":" not in action:
        return [action]
    service, name = action.split(":", 1)
    renamed = f"{SIGNING_NAME.get(service, service)}:{name}"
    return [renamed, *MOTO_NAMES.get(action, [])]


def moto_view(policy: dict[str, Any]) -> dict[str, Any]:
    """What moto can enforce of a policy (see the module's docstring)."""
    statements = []
    for s in policy["Statement"]:
        actions = [name for action in s["Action"] for name in moto_names(action)]
        scoped = [a for a in actions if a.startswith("sqs:") and a not in SQS_UNSCOPED]
        unscoped = [a for a in actions if a not in scoped]
        if scoped:
            statements.append({"Effect": s["Effect"], "Action": scoped, "Resource": s["Resource"]})
        if unscoped:
            statements.append({"Effect": s["Effect"], "Action": unscoped, "Resource": "*"})
    return {"Version": "2012-10-17", "Statement": statements}


def enforce(endpoint: str, on: bool = True) -> None:
    """Turn moto's IAM enforcement on for every call from now on (or off)."""
    request = urllib.request.Request(endpoint.rstrip("/") + "/moto-api/reset-auth",
                                     data=b"0" if on else b"inf", method="POST",
                                     headers={"Content-Type": "text/plain"})
    with urllib.request.urlopen(request, timeout=10) as response:
        response.read()


def user(iam: Any, name: str, policy: dict[str, Any] | None = None) -> tuple[str, str]:
    """An IAM user with `policy` (as moto can enforce it) and a new access key: (key id, secret)."""
    iam.create_user(UserName=name)
    if policy is not None:
        attach(iam, name, policy)
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return str(key["AccessKeyId"]), str(key["SecretAccessKey"])


def attach(iam: Any, name: str, policy: dict[str, Any]) -> None:
    """Give a user `policy`, as moto can enforce it."""
    iam.put_user_policy(UserName=name, PolicyName="orders", PolicyDocument=json.dumps(moto_view(policy)))
