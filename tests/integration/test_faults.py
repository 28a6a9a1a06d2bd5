"""The emulator's fault injection: errors as AWS answers them, read and retried by botocore as AWS's are.

Faults are global to an emulator, and the session shares one: every test here
clears them when it ends, whatever happened.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from orders.aws.errors import is_retryable_aws_error
from orders.emulator.faults import clear_faults, fault_report, parse_outage, set_faults, start_outage
from orders.emulator.server import CREDENTIALS, call_counts, free_port
from tests.helpers import wait_for

pytestmark = pytest.mark.integration

#: Each injected kind, per service: the code botocore reads from the answer.
EXPECTED = {
    "dynamodb": {"throttle": "ProvisionedThroughputExceededException", "500": "InternalServerError"},
    "sqs": {"throttle": "RequestThrottled", "500": "InternalFailure"},
    "sns": {"throttle": "Throttling", "500": "InternalError"},
    "monitoring": {"throttle": "Throttling", "500": "InternalFailure"},
}
CLIENT_NAMES = {"monitoring": "cloudwatch"}
CHEAP_CALLS = {"dynamodb": "list_tables", "sqs": "list_queues", "sns": "list_topics",
               "monitoring": "list_metrics"}


@pytest.fixture
def endpoint(emulator) -> Iterator[str]:
    """The shared emulator's endpoint, its faults cleared after the test."""
    clear_faults(emulator.endpoint)
    try:
        yield emulator.endpoint
    finally:
        clear_faults(emulator.endpoint)


def client(endpoint: str, service: str, attempts: int = 1):
    """A boto3 client of `service` on the emulator, in botocore's standard retry mode."""
    return boto3.client(CLIENT_NAMES.get(service, service), endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
                        aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
                        config=Config(retries={"mode": "standard", "total_max_attempts": attempts}))


def succeeds(call) -> bool:
    try:
        call()
        return True
    except ClientError:
        return False


def failure(call) -> ClientError:
    with pytest.raises(ClientError) as info:
        call()
    return info.value


@pytest.mark.parametrize("kind", ["throttle", "500", "503"])
@pytest.mark.parametrize("service", sorted(EXPECTED))
def test_each_injected_error_is_one_botocore_retries_and_we_classify_retryable(endpoint, service, kind):
    set_faults(endpoint, error_rate=1.0, services=[service], kinds=[kind])
    aws = client(endpoint, service, attempts=2)
    error = failure(getattr(aws, CHEAP_CALLS[service]))
    expected = EXPECTED[service].get(kind, "ServiceUnavailable")
    assert error.response["Error"]["Code"] == expected
    assert error.response["ResponseMetadata"]["HTTPStatusCode"] == (400 if kind == "throttle" else int(kind))
    # botocore retried it (its standard mode retries only what it deems transient or throttling) ...
    assert error.response["ResponseMetadata"]["RetryAttempts"] == 1
    (key,) = fault_report(endpoint)["injected"]
    assert key.startswith(f"{service}:") and key.endswith(f":{kind}")
    assert fault_report(endpoint)["injected"][key] == 2
    # ... and so do we, once botocore gives up.
    assert is_retryable_aws_error(error)


def test_an_outage_answers_503_to_its_target_only_until_it_ends(endpoint):
    sqs, sns = client(endpoint, "sqs"), client(endpoint, "sns")
    url = sqs.create_queue(QueueName="faults-outage")["QueueUrl"]
    start_outage(endpoint, "sqs-send", 2)
    sent = failure(lambda: sqs.send_message(QueueUrl=url, MessageBody="m"))
    assert (sent.response["Error"]["Code"], sent.response["ResponseMetadata"]["HTTPStatusCode"]) == \
        ("ServiceUnavailable", 503)
    failure(lambda: sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": "1", "MessageBody": "m"}]))
    sqs.receive_message(QueueUrl=url)  # not a send: served
    sns.list_topics()
    (outage,) = fault_report(endpoint)["outages"]
    assert outage["target"] == "sqs-send" and outage["active"] and outage["ends"] - outage["started"] == 2
    assert fault_report(endpoint)["injected"] == {"sqs:SendMessage:outage": 1,
                                                  "sqs:SendMessageBatch:outage": 1}
    wait_for(lambda: succeeds(lambda: sqs.send_message(QueueUrl=url, MessageBody="after")), timeout=10,
             interval=0.2)
    assert not fault_report(endpoint)["outages"][0]["active"]


def test_a_whole_service_outage_and_a_delayed_one(endpoint):
    sqs, ddb = client(endpoint, "sqs"), client(endpoint, "dynamodb")
    set_faults(endpoint, outages=[{"target": "sqs", "seconds": 60}, ("dynamodb", 60, 30)])
    failure(sqs.list_queues)
    ddb.list_tables()  # its outage starts in 30 s
    report = fault_report(endpoint)
    assert [(o["target"], o["active"]) for o in report["outages"]] == [("sqs", True), ("dynamodb", False)]
    assert report["outages"][1]["started"] - report["outages"][0]["started"] == pytest.approx(30, abs=1)
    set_faults(endpoint, error_rate=0.0)  # setting the rate leaves the outages under way
    failure(sqs.list_queues)
    clear_faults(endpoint)
    sqs.list_queues()
    assert fault_report(endpoint) == {"plan": {"error_rate": 0.0, "services": [], "seed": None,
                                                "kinds": ["throttle", "500", "503"]},
                                       "injected": {}, "outages": []}


def outcomes(endpoint: str, calls: int = 40) -> list[str]:
    ddb = client(endpoint, "dynamodb")
    seen = []
    for _ in range(calls):
        try:
            ddb.list_tables()
            seen.append("ok")
        except ClientError as exc:
            seen.append(exc.response["Error"]["Code"])
    return seen


def test_a_seed_makes_the_faults_reproducible_and_the_rate_is_a_rate(endpoint):
    set_faults(endpoint, error_rate=0.5, services=["dynamodb"], seed=7)
    first = outcomes(endpoint)
    set_faults(endpoint, error_rate=0.5, services=["dynamodb"], seed=7)
    assert outcomes(endpoint) == first
    assert 5 <= first.count("ok") <= 35 and len(set(first)) > 2  # some of each
    set_faults(endpoint, error_rate=1.0, services=["sns"])
    client(endpoint, "dynamodb").list_tables()  # not a listed service


def test_the_emulator_s_own_paths_are_never_faulted(endpoint):
    set_faults(endpoint, error_rate=1.0, outages=[("sqs", 60), ("sns", 60), ("dynamodb", 60)])
    assert isinstance(call_counts(endpoint), dict)
    assert fault_report(endpoint)["plan"]["error_rate"] == 1.0
    with urllib.request.urlopen(endpoint + "/moto-api/data.json", timeout=10) as response:
        assert response.status == 200


def test_a_bad_plan_is_refused_whole_and_changes_nothing(endpoint):
    set_faults(endpoint, error_rate=0.25)
    for plan in [{"error_rate": 2}, {"services": ["s3"]}, {"outages": [{"target": "sqs", "seconds": -1}]},
                 {"kinds": ["teapot"]}, {"seed": "x"}, {"error_rate": 0.9, "outages": [{"target": "nope"}]}]:
        request = urllib.request.Request(endpoint + "/_orders/faults", data=json.dumps(plan).encode(),
                                         method="POST")
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(request, timeout=10)
        assert info.value.code == 400 and json.loads(info.value.read())["error"]
    assert fault_report(endpoint)["plan"]["error_rate"] == 0.25 and fault_report(endpoint)["outages"] == []


def test_the_command_line_form_of_an_outage():
    assert parse_outage("sns:180") == {"target": "sns", "seconds": 180.0, "delay": 0.0}
    assert parse_outage("sqs-send:60@30") == {"target": "sqs-send", "seconds": 60.0, "delay": 30.0}
    for bad in ["sns", "sns:0", "sns:ten", "s3:10", "sns:10@-1"]:
        with pytest.raises(ValueError, match="TARGET:SECONDS"):
            parse_outage(bad)


def test_orders_emulator_starts_with_the_faults_its_options_ask_for(tmp_path):
    port = free_port()
    orders = os.path.join(os.path.dirname(sys.executable), "orders")  # the installed command
    cmd = [orders, "emulator", "--no-redis", "--port", str(port), "--fault-rate", "0.5",
           "--fault-services", "sqs,cloudwatch", "--fault-seed", "3",
           "--outage", "sns:120", "--outage", "sqs-send:60@30"]
    log = tmp_path / "emulator.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        endpoint = f"http://127.0.0.1:{port}"
        report = wait_for(lambda: _report_or_none(endpoint), timeout=60, interval=0.2)
        assert report["plan"] == {"error_rate": 0.5, "services": ["sqs", "monitoring"], "seed": 3,
                                  "kinds": ["throttle", "500", "503"]}
        assert [(o["target"], o["seconds"], o["active"]) for o in report["outages"]] == \
            [("sns", 120.0, True), ("sqs-send", 60.0, False)]
        failure(client(endpoint, "sns").list_topics)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    assert "faults" in log.read_text()


def _report_or_none(endpoint: str) -> dict | None:
    try:
        return fault_report(endpoint)
    except OSError:
        return None
