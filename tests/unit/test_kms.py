"""The environment key's policy and how a resource's key setting is recognised (orders.infra.kms)."""

from __future__ import annotations

import json

from orders.infra.alarms import alarm_specs
from orders.infra.kms import Account, key_policy, names_the_key
from orders.settings import Settings
from orders.topology import ENVIRONMENT_KEY, TOPICS

PROD = Settings(env="prod", region="eu-west-1")
ACCOUNT = Account("aws", "eu-west-1", "111122223333")
KEY_ARN = "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"


def statements() -> dict[str, dict]:
    return {s["Sid"]: s for s in key_policy(PROD, ACCOUNT)["Statement"]}


def test_the_account_administers_the_key_so_that_iam_policies_grant_its_use():
    admin = statements()["AdministerByAccount"]
    assert admin["Principal"] == {"AWS": "arn:aws:iam::111122223333:root"}
    assert (admin["Effect"], admin["Action"], admin["Resource"]) == ("Allow", "kms:*", "*")
    assert "Condition" not in admin


def test_sns_uses_the_key_for_this_environments_topics_only():
    sns = statements()["DeliverTopicsToEncryptedQueues"]
    assert sns["Principal"] == {"Service": "sns.amazonaws.com"}
    assert sns["Action"] == ["kms:GenerateDataKey*", "kms:Decrypt"]
    assert sns["Condition"]["StringEquals"] == {"aws:SourceAccount": "111122223333"}
    assert sns["Condition"]["ArnEquals"]["aws:SourceArn"] == [
        f"arn:aws:sns:eu-west-1:111122223333:prod-{t.name}" for t in TOPICS]


def test_cloudwatch_uses_the_key_for_this_environments_alarms_only():
    alarms = statements()["PublishAlarmsToEncryptedTopic"]
    assert alarms["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
    assert alarms["Action"] == ["kms:GenerateDataKey*", "kms:Decrypt"]
    assert alarms["Condition"]["StringEquals"] == {"aws:SourceAccount": "111122223333"}
    sources = alarms["Condition"]["ArnEquals"]["aws:SourceArn"]
    assert sources == [f"arn:aws:cloudwatch:eu-west-1:111122223333:alarm:{a.name(PROD)}"
                       for a in alarm_specs(PROD)]
    assert all(":alarm:prod-" in arn for arn in sources)


def test_no_other_principal_and_no_other_environment_is_named():
    policy = key_policy(PROD, ACCOUNT)
    assert [s["Effect"] for s in policy["Statement"]] == ["Allow"] * 3
    text = json.dumps(policy)
    assert '"AWS": "*"' not in text and "staging-" not in text
    other = json.dumps(key_policy(Settings(env="staging", region="eu-west-1"), ACCOUNT))
    assert "prod-" not in other
    assert len(text) < 32_768  # KMS's limit for a key policy


def test_a_key_setting_names_the_key_by_arn_id_alias_or_alias_arn():
    alias = ENVIRONMENT_KEY.alias_name(PROD)
    assert alias == "alias/prod-orders"
    for value in (KEY_ARN, "1234abcd-12ab-34cd-56ef-1234567890ab", alias,
                  "arn:aws:kms:eu-west-1:111122223333:alias/prod-orders"):
        assert names_the_key(value, KEY_ARN, alias), value
    for value in (None, "", "alias/aws/sqs", "alias/prod-orders-old", "alias/staging-orders",
                  "arn:aws:kms:eu-west-1:111122223333:key/another"):
        assert not names_the_key(value, KEY_ARN, alias), value
    assert names_the_key(alias, None, alias)  # before the key exists, only its alias names it
    assert not names_the_key(KEY_ARN, None, alias)
