"""`orders infra up|check|down` and `orders emulator`, as an operator runs them."""

import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from orders.aws import clients
from orders.aws.sns import topic_arns
from orders.cli import cli
from orders.emulator.server import free_port
from orders.emulator.service_groups import ENDPOINT_VARIABLES
from orders.runtime.queue_urls import queue_url


def orders(*args: str, stdin: str | None = None):
    return CliRunner().invoke(cli, list(args), input=stdin, catch_exceptions=False)


def test_up_twice_then_check_then_down(settings):
    first = orders("infra", "up")
    assert first.exit_code == 0, first.output
    assert f"queue {settings.prefix}payments: created" in first.output
    assert "Not verifiable on this endpoint" in first.output

    second = orders("infra", "up")
    assert second.exit_code == 0, second.output
    assert "Nothing to change" in second.output and "created" not in second.output

    check = orders("infra", "check")
    assert check.exit_code == 0 and "No drift" in check.output

    clients.client("sqs", settings).set_queue_attributes(
        QueueUrl=queue_url(settings, "notifications"), Attributes={"MessageRetentionPeriod": "3600"})
    drift = orders("infra", "check")
    assert drift.exit_code == 1
    assert (f"queue {settings.prefix}notifications: MessageRetentionPeriod is '3600', "
            "declared '1209600'") in drift.output

    refused = orders("infra", "down", stdin="n\n")
    assert refused.exit_code == 1 and "Aborted" in refused.output
    assert orders("infra", "check").exit_code == 1  # still there, still drifted

    down = orders("infra", "down", "--yes")
    assert down.exit_code == 0 and f"queue {settings.prefix}payments" in down.output
    missing = orders("infra", "check")
    assert missing.exit_code == 1 and f"queue {settings.prefix}payments: missing" in missing.output


def test_check_shows_a_topic_without_the_environment_key_and_up_encrypts_it(settings):
    assert orders("infra", "up").exit_code == 0
    [arn] = [a for a in topic_arns(settings).values() if a.endswith(":" + settings.prefix + "system-health")]
    clients.client("sns", settings).set_topic_attributes(TopicArn=arn, AttributeName="KmsMasterKeyId",
                                                         AttributeValue="")
    line = (f"topic {settings.prefix}system-health: not encrypted with the environment's key "
            f"alias/{settings.prefix}orders")
    drift = orders("infra", "check")
    assert drift.exit_code == 1 and line in drift.output
    fixed = orders("infra", "up")
    assert fixed.exit_code == 0 and line + "; fixed" in fixed.output
    assert orders("infra", "check").exit_code == 0
    down = orders("infra", "down", "--yes")
    assert f"key alias/{settings.prefix}orders (KMS deletes it in 30 days" in down.output


def test_the_emulator_command_prints_what_to_export(tmp_path):
    port = free_port()
    cmd = [str(Path(sys.executable).with_name("orders")), "emulator", "--port", str(port), "--no-redis"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    try:
        lines = [proc.stdout.readline() for _ in range(4)]
    finally:
        proc.terminate()
        proc.wait(timeout=15)
    assert f"AWS emulator (moto) on http://127.0.0.1:{port}" in lines[0]
    assert f"  export AWS_ENDPOINT_URL=http://127.0.0.1:{port}\n" in lines
    assert proc.returncode == 0


def test_commands_that_call_aws_say_in_one_line_that_it_cannot_be_reached(settings, monkeypatch):
    from orders.settings import get_settings

    closed = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("AWS_ENDPOINT_URL", closed)
    for name in ENDPOINT_VARIABLES:  # the session emulator's DynamoDB process would still answer
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()
    for args in (["infra", "check"], ["infra", "down", "--yes"], ["infra", "policies", "--role", "api"],
                 ["api-key", "create", "someone"], ["api-key", "list"], ["api-key", "revoke", "someone"]):
        result = orders(*args)
        assert result.exit_code == 1, (args, result.output)
        said = f'Error: AWS call failed: Could not connect to the endpoint URL: "{closed}'
        assert said in result.output, (args, result.output)
    assert "on " + closed in orders("infra", "up").output  # the environment and endpoint, announced
