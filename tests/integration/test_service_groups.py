"""The emulator as two processes (orders.emulator.service_groups): DynamoDB in one of its own, every
other service in the front, and to every client and every one of the emulator's paths, one emulator."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from orders.aws import clients
from orders.emulator.access_log import access_records
from orders.emulator.faults import clear_faults, fault_report, set_faults
from orders.emulator.server import EmulatorProcess, call_counts
from orders.emulator.service_groups import ENDPOINT_VARIABLES
from orders.emulator.wire_log import wire_calls
from orders.settings import Settings

TABLE = {"KeySchema": [{"AttributeName": "k", "KeyType": "HASH"}],
         "AttributeDefinitions": [{"AttributeName": "k", "AttributeType": "S"}],
         "BillingMode": "PAY_PER_REQUEST"}


@pytest.fixture(scope="module")
def split() -> Iterator[EmulatorProcess]:
    emulator = EmulatorProcess(with_redis=False).start()
    yield emulator
    emulator.stop()


def front_only(emulator: EmulatorProcess) -> Settings:
    """Settings that know only AWS_ENDPOINT_URL, as another region's or a user's script's do."""
    settings = Settings.from_env({"AWS_ENDPOINT_URL": emulator.endpoint, "AWS_DEFAULT_REGION": "us-east-1",
                                  "ORDERS_ENV": "g" + uuid.uuid4().hex[:6]})
    return settings.with_credentials("testing", "testing")


def test_dynamodb_has_a_process_of_its_own_and_the_front_passes_its_calls_on(split):
    direct = split.settings({"ORDERS_ENV": "g" + uuid.uuid4().hex[:6]})
    dynamodb_url = split.env["AWS_ENDPOINT_URL_DYNAMODB"]
    assert dynamodb_url != split.endpoint and split.env["AWS_ENDPOINT_URL_DYNAMODB_STREAMS"] == dynamodb_url
    assert clients.endpoint("dynamodb", direct) == dynamodb_url
    call_counts(split.endpoint, reset=True)
    name = direct.prefix + "both"
    clients.new_client("dynamodb", direct).create_table(TableName=name, **TABLE)
    through_front = clients.new_client("dynamodb", front_only(split))
    through_front.put_item(TableName=name, Item={"k": {"S": "one"}})
    assert clients.new_client("dynamodb", direct).get_item(TableName=name, Key={"k": {"S": "one"}})["Item"]
    with pytest.raises(ClientError, match="ResourceNotFoundException"):  # moto's own error, passed back
        through_front.get_item(TableName=direct.prefix + "none", Key={"k": {"S": "x"}})
    clients.new_client("sqs", direct).create_queue(QueueName=direct.prefix + "q")
    # Each call counted once, by the process that served it; the front's count answers for both.
    assert call_counts(split.endpoint) == {"dynamodb:CreateTable": 1, "dynamodb:PutItem": 1,
                                           "dynamodb:GetItem": 2, "sqs:CreateQueue": 1}
    assert call_counts(split.endpoint, reset=True) == {}
    assert call_counts(dynamodb_url) == {}
    # Two processes: the queue is the front's, the table the DynamoDB process's.
    elsewhere = Settings.from_env({"AWS_ENDPOINT_URL": dynamodb_url, "AWS_DEFAULT_REGION": "us-east-1"})
    listed = clients.new_client("sqs", elsewhere.with_credentials("testing", "testing")).list_queues(
        QueueNamePrefix=direct.prefix)
    assert "QueueUrls" not in listed


def test_a_fault_plan_set_at_the_front_holds_in_both_and_a_bad_one_in_neither(split):
    direct = split.settings({"ORDERS_ENV": "g" + uuid.uuid4().hex[:6]})
    dynamodb_url = split.env["AWS_ENDPOINT_URL_DYNAMODB"]
    try:
        set_faults(split.endpoint, error_rate=1.0, services=["dynamodb"], kinds=["500"])
        assert fault_report(dynamodb_url)["plan"]["error_rate"] == 1.0
        with pytest.raises(ClientError, match="InternalServerError"):
            clients.new_client("dynamodb", direct).list_tables()
        injected = fault_report(split.endpoint)["injected"]  # by the DynamoDB process, seen at the front
        assert injected.get("dynamodb:ListTables:500", 0) >= 1
        bad = urllib.request.Request(split.endpoint + "/_orders/faults", data=b'{"error_rate": 2}',
                                     method="POST")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(bad, timeout=10)
        assert refused.value.code == 400
        assert fault_report(dynamodb_url)["plan"]["error_rate"] == 1.0
    finally:
        clear_faults(split.endpoint)
    assert fault_report(dynamodb_url)["plan"]["error_rate"] == 0.0


def test_the_wire_log_records_what_either_process_served(split):
    direct = split.settings({"ORDERS_ENV": "g" + uuid.uuid4().hex[:6]})
    wire_calls(split.endpoint, "start")
    clients.new_client("dynamodb", direct).list_tables()
    clients.new_client("sqs", direct).list_queues(QueueNamePrefix=direct.prefix)
    log = wire_calls(split.endpoint, "stop")
    assert {call["call"] for call in log["calls"]} >= {"dynamodb:ListTables", "sqs:ListQueues"}
    assert wire_calls(split.env["AWS_ENDPOINT_URL_DYNAMODB"])["recording"] is False


def test_the_access_log_lists_what_either_process_served(split):
    direct = split.settings({"ORDERS_ENV": "g" + uuid.uuid4().hex[:6]})
    assert access_records(split.endpoint, reset=True) == []
    clients.new_client("dynamodb", direct).list_tables()
    clients.new_client("sqs", direct).list_queues(QueueNamePrefix=direct.prefix)
    assert [record["call"] for record in access_records(split.endpoint)] == ["sqs:ListQueues",
                                                                            "dynamodb:ListTables"]
    assert access_records(split.endpoint, reset=True) == []
    assert access_records(split.env["AWS_ENDPOINT_URL_DYNAMODB"]) == []


def _server(*args: str) -> subprocess.Popen[str]:
    """`python -m orders.emulator.server` (two processes), in a process group of its own, as a terminal
    runs it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORDERS_EMULATOR_")}
    command = [sys.executable, "-m", "orders.emulator.server", "--port", "0", "--json", "--no-redis", *args]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, env={**env, "MOTO_ALLOW_NONEXISTENT_REGION": "true"})


def _dynamodb_pid(front: subprocess.Popen[str]) -> int:
    children = Path(f"/proc/{front.pid}/task/{front.pid}/children").read_text().split()
    (pid,) = [int(p) for p in children if "--dynamodb-process" in Path(f"/proc/{p}/cmdline").read_text()]
    return pid


def _gone(pid: int, within: float = 10.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
            stat = Path(f"/proc/{pid}/stat").read_text()
            if stat.rsplit(")", 1)[1].split()[0] == "Z":  # a zombie has ended; only its parent's wait is due
                return True
        except (ProcessLookupError, FileNotFoundError):
            return True
        time.sleep(0.1)
    return False


def test_when_the_dynamodb_process_dies_the_emulator_stops_and_says_why():
    """Half an emulator would answer every DynamoDB call with an error: it stops, loudly, instead."""
    front = _server()
    try:
        env = json.loads(front.stdout.readline())
        os.kill(_dynamodb_pid(front), signal.SIGKILL)
        assert front.wait(timeout=15) == 1
        assert "the DynamoDB process exited with -9; the emulator stopped" in front.stderr.read()
        with pytest.raises(OSError):
            call_counts(env["AWS_ENDPOINT_URL"])
    finally:
        if front.poll() is None:
            os.killpg(front.pid, signal.SIGKILL)


@pytest.mark.parametrize(("signum", "group"), [(signal.SIGTERM, False), (signal.SIGTERM, True),
                                               (signal.SIGINT, True), (signal.SIGKILL, False)])
def test_the_dynamodb_process_ends_with_its_front(signum, group):
    """SIGTERM to the front (a supervisor) or to the whole group (the harness's stop), SIGINT to the
    group (Ctrl-C in a terminal) and SIGKILL of the front alone: no DynamoDB process is left behind,
    and only a SIGKILL is an unclean exit (a group's SIGTERM ends both at once: not a death)."""
    front = _server()
    try:
        json.loads(front.stdout.readline())
        dynamodb = _dynamodb_pid(front)
        if group:
            os.killpg(front.pid, signum)
        else:
            os.kill(front.pid, signum)
        code = front.wait(timeout=15)
        assert _gone(dynamodb), "the DynamoDB process outlived its front"
        assert code == (-9 if signum == signal.SIGKILL else 0), front.stderr.read()
        if signum != signal.SIGKILL:
            assert "exited with" not in front.stderr.read()  # its front stopped it: not reported as a death
    finally:
        if front.poll() is None:
            os.killpg(front.pid, signal.SIGKILL)


def test_one_process_serves_everything_when_asked():
    emulator = EmulatorProcess(with_redis=False, one_process=True).start()
    try:
        assert not set(ENDPOINT_VARIABLES) & set(emulator.env)
        settings = emulator.settings({"ORDERS_ENV": "g" + uuid.uuid4().hex[:6]})
        clients.new_client("dynamodb", settings).list_tables()
        assert call_counts(emulator.endpoint) == {"dynamodb:ListTables": 1}
    finally:
        emulator.stop()


def test_a_taken_dynamodb_port_is_said_and_nothing_is_left_running():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        front = _server("--dynamodb-port", str(taken.getsockname()[1]))
        try:
            assert front.wait(timeout=30) == 1
            said = front.stderr.read()
        finally:
            if front.poll() is None:
                os.killpg(front.pid, signal.SIGKILL)
    assert "the emulator could not start" in said and "--dynamodb-port" in said
    assert front.stdout.read() == ""  # no endpoint was printed: nothing serves
    with pytest.raises(ProcessLookupError):
        os.killpg(front.pid, 0)  # the group (the front and its DynamoDB process) is gone


def test_a_chunked_plan_reaches_both_processes(split):
    host, port = split.endpoint.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        connection.request("POST", "/_orders/faults", body=iter([b'{"error_rate": ', b"0.25}"]),
                           encode_chunked=True, headers={"Content-Type": "application/json"})
        answer = connection.getresponse()
        assert answer.status == 200 and json.loads(answer.read())["plan"]["error_rate"] == 0.25
        assert fault_report(split.env["AWS_ENDPOINT_URL_DYNAMODB"])["plan"]["error_rate"] == 0.25
    finally:
        connection.close()
        clear_faults(split.endpoint)


def test_cloudformation_is_refused_a_stack_with_tables_and_not_one_without(split):
    """moto's CloudFormation would make the tables in the front, out of every DynamoDB call's reach."""
    cfn = clients.new_client("cloudformation", split.settings({"ORDERS_ENV": "g" + uuid.uuid4().hex[:6]}))
    table = {"Resources": {"T": {"Type": "AWS::DynamoDB::Table", "Properties": {"TableName": "t", **TABLE}}}}
    with pytest.raises(ClientError, match="--one-process") as refused:
        cfn.create_stack(StackName="tables", TemplateBody=json.dumps(table))
    assert refused.value.response["Error"]["Code"] == "ValidationError"
    queue = {"Resources": {"Q": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": "g-stack-q"}}}}
    cfn.create_stack(StackName="queue", TemplateBody=json.dumps(queue))
    assert cfn.describe_stacks(StackName="queue")["Stacks"][0]["StackStatus"] == "CREATE_COMPLETE"
