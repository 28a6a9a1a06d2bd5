"""The pieces of the least-privilege run: an emulator with its access log and moto's IAM enforcement on,
one IAM user per role, and processes that each run with their own role's credentials."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import ClientError

from orders.emulator import moto_iam
from orders.emulator.access_log import AccessLog
from orders.emulator.server import AwsEmulator
from orders.harness.processes import ChildProcess, stop_all, wait_ready
from orders.harness.stack import BEAT_READY, WORKER_READY, worker_args
from orders.infra import policies
from orders.infra.access import ROLES, worker_role
from orders.infra.kms import Account
from orders.infra.policy_check import Call
from orders.settings import Settings, child_environment
from orders.topology import QUEUES
from tests.helpers import wait_for

REGION = "us-east-1"
#: moto's account: every ARN the emulator serves is in it.
ACCOUNT = Account("aws", REGION, "123456789012")
#: Short waits and intervals: beat's tasks every 2 s, metrics flushed every second.
FAST = {"ORDERS_WAIT_TIME_SECONDS": "1", "ORDERS_FAILURE_BACKOFF": "0", "ORDERS_DLQ_WATCH_SECONDS": "2",
        "ORDERS_RESERVATION_SWEEP_SECONDS": "2", "ORDERS_METRICS_FLUSH_SECONDS": "1",
        "ORDERS_REVIEW_THRESHOLD": "1000.00", "ORDERS_CONTROL_URL": ""}
#: Who the test itself is (reading state, sending poison): outside every role, its calls left out.
HARNESS = "harness"
#: `orders` commands one after the other in one process (a command's exit status is noted, not fatal).
COMMANDS = """import json, sys
from orders.cli import cli
for args in json.loads(sys.argv[1]):
    try:
        cli.main(args, prog_name="orders", standalone_mode=False)
    except SystemExit as exc:
        print(*args, "exited", exc.code, file=sys.stderr)
"""


@contextmanager
def logged_emulator() -> Iterator[tuple[AwsEmulator, AccessLog]]:
    """moto's server on a thread of this process, its access log in front, enforcement off at the end."""
    emulator = AwsEmulator().start()
    try:
        yield emulator, emulator.access_log
    finally:
        moto_iam.enforce(emulator.endpoint, on=False)
        emulator.stop()


class RoleRun:
    """One namespace on the emulator, one IAM user per role (and one for the harness)."""

    def __init__(self, endpoint: str, log_dir: Path):
        self.endpoint, self.log_dir = endpoint, log_dir
        self.namespace = f"lp{uuid.uuid4().hex[:8]}"
        self.base = {"AWS_ENDPOINT_URL": endpoint, "AWS_DEFAULT_REGION": REGION, "ORDERS_ENV": self.namespace,
                     **FAST}
        self.keys: dict[str, tuple[str, str]] = {}
        self.children: list[ChildProcess] = []
        bootstrap = boto3.client("iam", endpoint_url=endpoint, region_name=REGION,
                                 aws_access_key_id="bootstrap", aws_secret_access_key="bootstrap")
        self.keys[HARNESS] = moto_iam.user(bootstrap, f"{self.namespace}-{HARNESS}", {"Statement": [
            {"Effect": "Allow", "Action": ["*"], "Resource": "*"}]})
        admin = policies.policies(self.settings(), ACCOUNT, None, ["admin"])["admin"]
        for name in ROLES:
            self.keys[name] = moto_iam.user(bootstrap, self.user(name), admin if name == "admin" else None)

    def user(self, role: str) -> str:
        return f"{self.namespace}-{role}"

    def env(self, role: str) -> dict[str, str]:
        key, secret = self.keys[role]
        return {**self.base, "AWS_ACCESS_KEY_ID": key, "AWS_SECRET_ACCESS_KEY": secret}

    def settings(self, role: str | None = None) -> Settings:
        settings = Settings.from_env(self.base)
        return settings.with_credentials(*self.keys[role]) if role else settings

    def client(self, service: str, role: str = HARNESS) -> Any:
        key, secret = self.keys[role]
        return boto3.client(service, endpoint_url=self.endpoint, region_name=REGION,
                            aws_access_key_id=key, aws_secret_access_key=secret)

    def grant(self, documents: dict[str, dict[str, Any]]) -> None:
        """Give every role its policy (as moto can enforce it)."""
        iam = self.client("iam")
        for name, document in documents.items():
            moto_iam.attach(iam, self.user(name), document)

    def python(self, role: str, code: str, *args: str) -> str:
        """`python -c CODE ARGS` with `role`'s credentials (a process of its own); its output."""
        done = subprocess.run([sys.executable, "-c", code, *args], env=child_environment(self.env(role)),
                              capture_output=True, text=True, timeout=90)
        if done.returncode:
            raise AssertionError(f"{code.splitlines()[-1]} exited {done.returncode}:\n{done.stderr[-3000:]}")
        return done.stdout

    def orders(self, role: str, *commands: list[str]) -> str:
        """`orders` commands, one after the other in one process, with `role`'s credentials; their output."""
        return self.python(role, COMMANDS, json.dumps(commands))

    def start(self) -> None:
        """A worker per queue and beat, each with its role's credentials; returns once all are ready."""
        for spec in QUEUES:
            cmd = [sys.executable, "-m", "celery", "-A", "orders", "worker", "-Q", spec.name,
                   "-n", f"{spec.name}@%h", "--loglevel", "INFO", *worker_args(4)]
            self.children.append(ChildProcess(f"worker {spec.name}", cmd,
                                              child_environment(self.env(worker_role(spec.name).name)),
                                              self.log_dir / f"worker-{spec.name}.log", WORKER_READY))
        cmd = [sys.executable, "-m", "celery", "-A", "orders", "beat", "--loglevel", "INFO",
               "--schedule", str(self.log_dir / "beat-schedule")]
        self.children.append(ChildProcess("beat", cmd, child_environment(self.env("beat")),
                                          self.log_dir / "beat.log", BEAT_READY))
        for child in self.children:
            child.start()
        wait_ready(self.children, 60)

    def stop(self) -> list[str]:
        return stop_all(self.children)

    @contextmanager
    def beat_paused(self) -> Iterator[None]:
        """Beat stopped meanwhile, once no DLQ message is held by the watcher (so that the DLQ tools see
        every one); started again after."""
        beat = next(c for c in self.children if c.name == "beat")
        stop_all([beat])
        sqs = self.client("sqs")
        urls = [sqs.get_queue_url(QueueName=q.dlq_sqs_name(self.settings()))["QueueUrl"] for q in QUEUES]
        wanted = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]

        def all_visible() -> bool:
            depths = [sqs.get_queue_attributes(QueueUrl=u, AttributeNames=wanted)["Attributes"] for u in urls]
            return all(d[wanted[0]] != "0" and d[wanted[1]] == "0" for d in depths)

        wait_for(all_visible, timeout=30)
        try:
            yield
        finally:
            beat.start()

    def calls(self, records: list[dict[str, Any]], tags: dict[str, dict[str, str]]) -> list[Call]:
        """The authorizations the roles' recorded calls needed (the harness's left out), with the
        tags of the resources they name as aws:ResourceTag/* condition keys."""
        roles = {key: name for name, (key, _) in self.keys.items() if name != HARNESS}
        found = []
        for record in records:
            role = roles.get(record["key"])
            if role is None:
                continue
            for action, resource in record["needs"]:
                if record["status"] >= 400 and ":alias/" in resource and "Alias" not in action:
                    continue  # a key looked up by an alias that does not exist: answered NotFound
                labels = {f"aws:ResourceTag/{k}": v for k, v in tags.get(resource, {}).items()}
                context = {**record["context"], **labels}
                found.append(Call(role, action, resource, context, f"{record['call']} -> {record['status']}"))
        return found


def probe_clients(endpoint: str, key: str = "probe", secret: str = "probe") -> dict[str, Any]:
    return {s: boto3.client(s, endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id=key,
                            aws_secret_access_key=secret)
            for s in ("sqs", "sns", "dynamodb", "kms", "cloudwatch")}


def make_table(ddb: Any, name: str) -> str:
    ddb.create_table(TableName=name, KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}],
                     AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}],
                     BillingMode="PAY_PER_REQUEST", Tags=[{"Key": "app", "Value": "orders"}])
    return f"arn:aws:dynamodb:us-east-1:123456789012:table/{name}"


def allowed(call: Any, clients: dict[str, Any]) -> bool:
    """Whether moto lets `call(clients)` through (False: it answered 403)."""
    try:
        call(clients)
    except ClientError as exc:
        assert exc.response["ResponseMetadata"]["HTTPStatusCode"] == 403, exc
        return False
    return True
