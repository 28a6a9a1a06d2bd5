"""Settings: parsed once from the environment; a bad value is one clear ConfigurationError."""

import os
from decimal import Decimal

import pytest

from orders.aws import clients
from orders.settings import NO_ENDPOINT_HELP, ConfigurationError, Settings, child_environment


def test_defaults_without_any_variable():
    s = Settings.from_env({})
    assert (s.env, s.region, s.endpoint_url, s.control_url) == ("dev", None, None, None)
    tuning = (s.wait_time_seconds, s.polling_interval, s.prefetch_multiplier, s.batch_acks)
    assert tuning == (20, 0.05, 10, True)
    assert s.review_threshold == Decimal("5000.00")
    assert s.prefix == "dev-"
    assert not s.has_endpoint


def test_every_variable_is_read():
    s = Settings.from_env({
        "ORDERS_ENV": "prod_eu-1", "AWS_REGION": "eu-west-1",
        "AWS_ENDPOINT_URL_SQS": "http://localhost:4566", "ORDERS_CONTROL_URL": "redis://r:6379/0",
        "ORDERS_REVIEW_THRESHOLD": "250.50", "ORDERS_RESERVATION_TTL": "60",
        "ORDERS_ALERT_EMAIL": "ops@example.com", "ORDERS_ALERT_SMS": "+15555550100",
        "ORDERS_CUSTOMER_EMAIL": "c@example.com",
        "ORDERS_LAMBDA_ARN": "arn:aws:lambda:eu-west-1:1:function:f",
        "ORDERS_WAIT_TIME_SECONDS": "5", "ORDERS_POLLING_INTERVAL": "0.2",
        "ORDERS_PREFETCH_MULTIPLIER": "4", "ORDERS_BATCH_ACKS": "False",
    })
    assert s.prefix == "prod_eu-1-"
    assert s.region == "eu-west-1"
    assert s.has_endpoint and s.sqs_endpoint_url == "http://localhost:4566"
    assert s.control_url == "redis://r:6379/0"
    assert (s.review_threshold, s.reservation_ttl_seconds) == (Decimal("250.50"), 60)
    assert (s.alert_email, s.alert_sms) == ("ops@example.com", "+15555550100")
    assert s.customer_email == "c@example.com"
    assert s.lambda_arn.endswith(":function:f")
    tuning = (s.wait_time_seconds, s.polling_interval, s.prefetch_multiplier, s.batch_acks)
    assert tuning == (5, 0.2, 4, False)


def test_default_region_wins_over_aws_region():
    both = {"AWS_DEFAULT_REGION": "us-west-2", "AWS_REGION": "eu-west-1"}
    assert Settings.from_env(both).region == "us-west-2"


def test_empty_optional_values_count_as_unset():
    s = Settings.from_env({"AWS_ENDPOINT_URL": "", "ORDERS_ALERT_EMAIL": ""})
    assert s.endpoint_url is None and s.alert_email is None


@pytest.mark.parametrize(("name", "value"), [
    ("ORDERS_REVIEW_THRESHOLD", "lots"),
    ("ORDERS_RESERVATION_TTL", "0"),
    ("ORDERS_WAIT_TIME_SECONDS", "21"),
    ("ORDERS_WAIT_TIME_SECONDS", "1.5"),
    ("ORDERS_POLLING_INTERVAL", "fast"),
    ("ORDERS_PREFETCH_MULTIPLIER", "0"),
    ("ORDERS_BATCH_ACKS", "maybe"),
    ("ORDERS_RESERVE_LINGER", "-0.1"),
    ("ORDERS_RESERVE_LINGER", "5"),
    ("ORDERS_ENV", "has space"),
    ("ORDERS_ENV", "x" * 41),
])
def test_bad_values_name_the_variable(name, value):
    with pytest.raises(ConfigurationError, match=name):
        Settings.from_env({name: value})


def test_no_region_is_a_clear_error():
    with pytest.raises(ConfigurationError, match="AWS_DEFAULT_REGION"):
        clients.require_aws(Settings.from_env({"AWS_ENDPOINT_URL": "http://localhost:5000"}))


def test_no_endpoint_and_no_credentials_says_how_to_get_one(monkeypatch, tmp_path):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                 "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                 "AWS_WEB_IDENTITY_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(ConfigurationError) as caught:
        clients.require_aws(Settings.from_env({"AWS_DEFAULT_REGION": "us-east-1"}))
    assert str(caught.value) == NO_ENDPOINT_HELP
    assert "orders emulator" in NO_ENDPOINT_HELP


def test_an_endpoint_needs_no_credential_lookup():
    clients.require_aws(Settings.from_env({"AWS_DEFAULT_REGION": "us-east-1",
                                       "AWS_ENDPOINT_URL": "http://localhost:5000"}))


def test_every_service_endpoint_variable_is_read_and_the_general_one_is_the_fallback():
    s = Settings.from_env({"AWS_ENDPOINT_URL": "http://general:1", "AWS_ENDPOINT_URL_SQS": "http://sqs:2",
                           "AWS_ENDPOINT_URL_DYNAMODB_STREAMS": "http://streams:3",
                           "AWS_ENDPOINT_URL_SNS": ""})
    assert s.service_endpoint_urls == (("DYNAMODB_STREAMS", "http://streams:3"), ("SQS", "http://sqs:2"))
    assert clients.endpoint("sqs", s) == "http://sqs:2"
    assert clients.endpoint("dynamodbstreams", s) == "http://streams:3"
    assert clients.endpoint("sns", s) == clients.endpoint("dynamodb", s) == "http://general:1"
    assert clients.endpoint("sqs", Settings.from_env({})) is None  # AWS's own


def test_endpoint_variables_are_named_as_the_sdk_names_them():
    names = {service: clients.endpoint_name(service)
             for service in ("sqs", "sns", "dynamodb", "cloudwatch", "dynamodbstreams", "logs")}
    assert names == {"sqs": "SQS", "sns": "SNS", "dynamodb": "DYNAMODB", "cloudwatch": "CLOUDWATCH",
                     "dynamodbstreams": "DYNAMODB_STREAMS", "logs": "CLOUDWATCH_LOGS"}


def test_credentials_are_never_read_from_the_environment_and_never_shown():
    env = {"AWS_ACCESS_KEY_ID": "AKIAEXAMPLE", "AWS_SECRET_ACCESS_KEY": "s3cret"}
    assert Settings.from_env(env).access_key_id is None  # AWS's credential chain reads them
    given = Settings.from_env({}).with_credentials("AKIAEXAMPLE", "s3cret")
    assert (given.access_key_id, given.secret_access_key) == ("AKIAEXAMPLE", "s3cret")
    assert "s3cret" not in repr(given) and "AKIAEXAMPLE" not in repr(given)


def test_static_credentials_need_no_credential_lookup(monkeypatch, tmp_path):
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    clients.require_aws(Settings.from_env({"AWS_DEFAULT_REGION": "us-east-1"}).with_credentials("k", "s"))


def test_clients_follow_the_settings_passed_not_the_process_environment(monkeypatch):
    # The process names one endpoint; the settings another: the settings win, and other
    # settings are another client (made without any network call).
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://process-env:9")
    one = Settings.from_env({"AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": "http://one:1"})
    two = Settings.from_env({"AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL_SQS": "http://two:2"})
    aws = Settings.from_env({"AWS_DEFAULT_REGION": "eu-west-1"}).with_credentials("k", "s")
    assert clients.client("sqs", one).meta.endpoint_url == "http://one:1"
    assert clients.client("sqs", two).meta.endpoint_url == "http://two:2"
    assert clients.client("sqs", aws).meta.endpoint_url == "https://sqs.eu-west-1.amazonaws.com"
    assert clients.client("sqs", one) is clients.client("sqs", one)
    assert clients.client("sqs", one) is not clients.client("sqs", one.with_credentials("k", "s"))


def test_a_child_environment_adds_to_this_one_and_changes_nothing(monkeypatch):
    monkeypatch.setenv("ORDERS_ENV", "mine")
    monkeypatch.delenv("MOTO_ALLOW_NONEXISTENT_REGION", raising=False)
    before = dict(os.environ)
    defaults = {"MOTO_ALLOW_NONEXISTENT_REGION": "true", "ORDERS_ENV": "default"}
    env = child_environment({"ORDERS_ENV": "child"}, defaults=defaults)
    assert env["ORDERS_ENV"] == "child" and env["MOTO_ALLOW_NONEXISTENT_REGION"] == "true"
    assert child_environment(defaults={"ORDERS_ENV": "default"})["ORDERS_ENV"] == "mine"
    assert dict(os.environ) == before
