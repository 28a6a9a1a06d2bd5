"""`celery -A orders worker` as production runs it: `-Q` picks the queues; a bad configuration
stops it at start-up with one readable message and a non-zero exit, never a traceback."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from orders.aws import clients
from orders.runtime.queue_urls import queue_url
from tests.helpers import wait_for, worker_process

PROBES = "tests.integration.probe_tasks"
ORDERS = str(Path(sys.executable).with_name("orders"))  # the console script of this environment


def depth(settings, name):
    """(visible, in flight) messages of one queue."""
    attrs = clients.client("sqs", settings).get_queue_attributes(
        QueueUrl=queue_url(settings, name),
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]), int(attrs["ApproximateNumberOfMessagesNotVisible"])


def test_a_worker_with_q_payments_consumes_only_payments(infra, tmp_path):
    from tests.integration import probe_tasks

    ran = tmp_path / "ran.txt"
    probe_tasks.shipping_probe.delay(str(ran), "shipping")
    probe_tasks.payments_probe.delay(str(ran), "payments")
    assert depth(infra, "shipping") == (1, 0) and depth(infra, "payments") == (1, 0)
    log = tmp_path / "worker.log"
    with worker_process(["payments"], log, extra_args=["-I", PROBES, "--pool", "solo"]):
        try:
            wait_for(lambda: ran.exists() and "payments" in ran.read_text(), timeout=60)
            wait_for(lambda: depth(infra, "payments") == (0, 0), timeout=30)
        except AssertionError:
            pytest.fail("the payments task did not run; worker output:\n" + log.read_text())
    assert ran.read_text().split() == ["payments"]
    assert depth(infra, "shipping") == (1, 0)  # never received, not even in flight


def start_worker(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "celery", "-A", "orders", "worker", "--pool", "solo", *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=90)


def refused(result: subprocess.CompletedProcess[str]) -> str:
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "Traceback" not in output, output
    return output


def test_an_undeclared_queue_stops_the_worker(infra):
    out = refused(start_worker(dict(os.environ), "-Q", "payments,nosuch"))
    assert "orders: cannot start the worker" in out
    assert "-Q nosuch: no such queue in the topology" in out


def test_a_time_limit_beyond_the_visibility_timeout_stops_the_worker(infra):
    out = refused(start_worker(dict(os.environ), "-Q", "notifications",
                               "-I", "tests.integration.bad_time_limit_tasks"))
    assert "task 'notifications.probe_too_slow': time limit 300 s is not below the visibility timeout" in out


def test_missing_queues_stop_the_worker_with_the_command_that_makes_them(settings):
    out = refused(start_worker(dict(os.environ), "-Q", "payments"))
    assert f"SQS queues missing: {settings.prefix}orders" in out and "orders infra up" in out


def test_no_region_stops_the_worker(settings):
    env = {k: v for k, v in os.environ.items() if k not in ("AWS_DEFAULT_REGION", "AWS_REGION")}
    out = refused(start_worker(env, "-Q", "payments"))
    assert "No AWS region: set AWS_DEFAULT_REGION" in out


def without_aws(tmp_path) -> dict[str, str]:
    """An environment with a region and no endpoint, credentials or instance role to find."""
    env = {k: v for k, v in os.environ.items()
           if not (k.startswith("AWS_") and k != "AWS_DEFAULT_REGION")}
    return {**env, "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
            "AWS_CONFIG_FILE": str(tmp_path / "none"), "AWS_EC2_METADATA_DISABLED": "true"}


def test_no_endpoint_and_no_credentials_says_how_to_start_the_emulator(settings, tmp_path):
    out = refused(start_worker(without_aws(tmp_path), "-Q", "payments"))
    assert "No AWS endpoint and no AWS credentials" in out and "orders emulator" in out


def test_a_bad_setting_is_one_line_not_a_traceback(settings):
    out = refused(start_worker({**os.environ, "ORDERS_PREFETCH_MULTIPLIER": "lots"}, "-Q", "payments"))
    assert "ORDERS_PREFETCH_MULTIPLIER='lots' is not a whole number" in out


def test_orders_infra_up_without_aws_says_how_to_get_it(settings, tmp_path):
    result = subprocess.run([ORDERS, "infra", "up"], env=without_aws(tmp_path),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.startswith("orders: No AWS endpoint and no AWS credentials")
    assert "Traceback" not in result.stderr
