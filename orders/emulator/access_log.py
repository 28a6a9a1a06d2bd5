"""Who called what: every AWS call the emulator serves, with the IAM authorizations it needs.

A WSGI middleware in front of moto (or of the emulator's own middleware): each request is
recorded as the access key that signed it, its call ('sqs:SendMessageBatch'), and what IAM
authorizes it by: (action, resource ARN) pairs, as AWS documents them (a batch by its single
action, a transaction by each item's action on its table, a create that tags by the tagging
action too), the condition keys the request carries (tags requested, a KMS request's encryption
context as kms:EncryptionContext:<key>), and the answer's status.
`GET /_orders/access` returns the records, `POST /_orders/access/reset` clears them.
tests/integration/test_least_privilege.py checks each record against its role's policy
(orders.infra.policy_check).

To hook it into the emulator: `app = AccessLog(CountingMiddleware(dispatcher, self.latency_ms))`
in orders.emulator.server.AwsEmulator.start.
"""

from __future__ import annotations

import json
import threading
import urllib.request
import zlib
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs

from orders.emulator.routes import credential_scope, request_body

ACCESS_PATH = "/_orders/access"
#: The most a gzipped body is unzipped to for the log (AWS's largest request bodies are 16 MB).
MAX_UNZIPPED = 16 * 1024 * 1024
#: IAM's prefix where it differs from the service's signing name.
IAM_PREFIX = {"monitoring": "cloudwatch"}
#: Calls IAM authorizes by another action (the batch ones by their single action).
IAM_ACTION = {"sqs:SendMessageBatch": "sqs:SendMessage", "sqs:DeleteMessageBatch": "sqs:DeleteMessage",
              "sqs:ChangeMessageVisibilityBatch": "sqs:ChangeMessageVisibility",
              "sns:PublishBatch": "sns:Publish"}
#: Creates that also need the tagging action when the request tags what it creates.
TAG_ON_CREATE = {"sqs:CreateQueue": "sqs:TagQueue", "sns:CreateTopic": "sns:TagResource",
                 "dynamodb:CreateTable": "dynamodb:TagResource",
                 "cloudwatch:PutMetricAlarm": "cloudwatch:TagResource", "kms:CreateKey": "kms:TagResource"}
TRANSACT_ACTIONS = {"Put": "PutItem", "Update": "UpdateItem", "Delete": "DeleteItem",
                    "ConditionCheck": "ConditionCheckItem", "Get": "GetItem"}
Needs = list[tuple[str, str]]


def access_records(endpoint: str, reset: bool = False) -> list[dict[str, Any]]:
    """The records of the access log in front of the emulator at `endpoint` (cleared if `reset`)."""
    url = endpoint.rstrip("/") + ACCESS_PATH + ("/reset" if reset else "")
    request = urllib.request.Request(url, method="POST" if reset else "GET", data=b"" if reset else None)
    with urllib.request.urlopen(request, timeout=10) as response:
        return list(json.loads(response.read()))


class AccessLog:
    """Records each AWS call served by `app` (see the module's docstring)."""

    def __init__(self, app: Callable[..., Any], default_account: str = "123456789012"):
        self.app = app
        self.default_account = default_account
        self.records: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path.startswith(ACCESS_PATH):
            return self._answer(environ, start_response)
        scope = credential_scope(environ)
        if scope is None or path.startswith("/moto-api"):
            return self.app(environ, start_response)
        record = self.describe(environ, readable(environ, request_body(environ)), *scope)
        status: list[int] = []

        def record_status(code: str, headers: Any, *exc: Any) -> Any:
            status.append(int(code.split()[0]))
            return start_response(code, headers, *exc)

        try:
            return list(self.app(environ, record_status))
        finally:  # a request moto fails with an exception is logged too, as the 500 the server answers
            record["status"] = status[0] if status else 500
            with self._lock:
                self.records.append(record)

    def describe(self, environ: dict[str, Any], body: bytes, key: str, region: str,
                 service: str) -> dict[str, Any]:
        """One call: who, what, and the (action, resource) pairs IAM authorizes it by."""
        prefix = IAM_PREFIX.get(service, service)
        try:
            operation, params = operation_of(environ, body)
        except (ValueError, TypeError, LookupError) as exc:  # no protocol reads it: moto answers, not the log
            call = f"{prefix}:?"
            return {"key": key, "call": call, "needs": [(call, "?")], "context": {"unparsed": _why(exc)}}
        call = f"{prefix}:{operation}"
        request = Request(call, params, region, self.default_account)
        try:
            needs, context = request.needs()
        except (KeyError, TypeError, ValueError, IndexError) as exc:  # a malformed request: recorded as such
            needs, context = [(IAM_ACTION.get(call, call), "?")], {"unparsed": _why(exc)}
        return {"key": key, "call": call, "needs": needs, "context": context}

    def _answer(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        with self._lock:
            if environ.get("REQUEST_METHOD") == "POST":
                self.records.clear()
            body = json.dumps(self.records).encode()
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]


def _why(exc: Exception) -> str:
    """What a request that could not be read is recorded with: the error's kind and message, not its
    repr (a UnicodeDecodeError's repr quotes the body it failed on, secrets and all)."""
    return f"{type(exc).__name__}: {exc}"[:200]


def readable(environ: dict[str, Any], body: bytes) -> bytes:
    """The body as the protocols read it: botocore gzips large requests (CloudWatch's PutMetricData
    over 10 KB), and moto unzips them itself, so only the log's copy is unzipped here, to at most
    MAX_UNZIPPED bytes (a small body can unzip to gigabytes). What does not unzip, or unzips to more,
    is returned as sent: described as unparsed, answered by moto."""
    if environ.get("HTTP_CONTENT_ENCODING", "").strip().lower() != "gzip":
        return body
    unzip = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)  # the gzip container
    try:
        unzipped = unzip.decompress(body, MAX_UNZIPPED)
    except zlib.error:
        return body
    return unzipped if unzip.eof and not unzip.unconsumed_tail else body


def operation_of(environ: dict[str, Any], body: bytes) -> tuple[str, dict[str, Any]]:
    """The operation's name and parameters, for the JSON, query and smithy-rpc-v2-cbor protocols."""
    target = environ.get("HTTP_X_AMZ_TARGET")
    if target:
        return target.rsplit(".", 1)[-1], json.loads(body or b"{}")
    path = environ.get("PATH_INFO", "")
    if "/operation/" in path:
        from moto.core import cbor

        return path.rsplit("/", 1)[-1], dict(cbor.loads(body)) if body else {}
    query = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
    if body:
        query.update({k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()})
    return query.pop("Action", "?"), query


class Request:
    """One call's parameters, read for the resources IAM authorizes it on."""

    def __init__(self, call: str, params: dict[str, Any], region: str, account: str):
        self.call, self.params, self.region, self.account = call, params, region, account
        self.service, self.operation = call.split(":", 1)

    def arn(self, service: str, resource: str, regional: bool = True) -> str:
        return f"arn:aws:{service}:{self.region if regional else ''}:{self.account}:{resource}"

    def needs(self) -> tuple[Needs, dict[str, str]]:
        """(action, resource) pairs, and the request's condition keys."""
        reader = getattr(self, "_" + self.service, None)
        resources, context = reader() if reader else (["*"], {})
        action = IAM_ACTION.get(self.call, self.call)
        needs = [pair for resource in resources
                 for pair in (resource if isinstance(resource, tuple) else [(action, resource)])]
        tagging = TAG_ON_CREATE.get(self.call)
        if tagging and _tags(self.params):
            needs += [(tagging, needs[0][1])]
        return needs, context

    def _sqs(self) -> tuple[list[Any], dict[str, str]]:
        p = self.params
        if self.operation == "StartMessageMoveTask":
            source, destination = p["SourceArn"], p.get("DestinationArn", "*")
            return [tuple([("sqs:StartMessageMoveTask", source), ("sqs:ReceiveMessage", source),
                           ("sqs:DeleteMessage", source), ("sqs:GetQueueAttributes", source),
                           ("sqs:SendMessage", destination)])], {}
        if "QueueUrl" in p:
            parts = p["QueueUrl"].rstrip("/").split("/")
            account = parts[-2] if len(parts) > 1 and parts[-2].isdigit() else self.account
            return [f"arn:aws:sqs:{self.region}:{account}:{parts[-1]}"], {}
        if "QueueName" in p:
            owner = p.get("QueueOwnerAWSAccountId", self.account)
            return [f"arn:aws:sqs:{self.region}:{owner}:{p['QueueName']}"], {}
        return ["*"], {}

    def _sns(self) -> tuple[list[Any], dict[str, str]]:
        p = self.params
        for name in ("TopicArn", "SubscriptionArn", "ResourceArn"):
            if name in p:
                return [p[name]], {}
        if self.operation == "CreateTopic":
            return [self.arn("sns", p["Name"])], {}
        return ["*"], {}

    def _dynamodb(self) -> tuple[list[Any], dict[str, str]]:
        p = self.params
        if "TransactItems" in p:
            return [tuple((f"dynamodb:{TRANSACT_ACTIONS[kind]}", self._table(op["TableName"]))
                          for item in p["TransactItems"] for kind, op in item.items())], {}
        if "RequestItems" in p:
            return [self._table(name) for name in p["RequestItems"]], {}
        if "ResourceArn" in p:
            return [p["ResourceArn"]], {}
        if "TableName" in p:
            table = self._table(p["TableName"])
            return [f"{table}/index/{p['IndexName']}" if p.get("IndexName") else table], {}
        return ["*"], {}

    def _table(self, name: str) -> str:
        return name if name.startswith("arn:") else self.arn("dynamodb", f"table/{name}")

    def _cloudwatch(self) -> tuple[list[Any], dict[str, str]]:
        p = self.params
        if self.operation == "PutMetricData":
            return ["*"], {"cloudwatch:namespace": str(p.get("Namespace"))}
        if "AlarmName" in p or "AlarmNames" in p:
            names = [p["AlarmName"]] if "AlarmName" in p else _members(p, "AlarmNames")
            return [self.arn("cloudwatch", f"alarm:{n}") for n in names], {}
        if "DashboardName" in p or "DashboardNames" in p:
            names = [p["DashboardName"]] if "DashboardName" in p else _members(p, "DashboardNames")
            return [self.arn("cloudwatch", f"dashboard/{n}", regional=False) for n in names], {}
        return ["*"], {}

    def _kms(self) -> tuple[list[Any], dict[str, str]]:
        p = self.params
        context = {f"aws:RequestTag/{t['TagKey']}": t["TagValue"] for t in p.get("Tags") or []}
        # What a kms:EncryptionContext:<key> condition reads (GenerateDataKey, Decrypt, Encrypt...).
        given = p.get("EncryptionContext") or {}
        context.update({f"kms:EncryptionContext:{k}": str(v) for k, v in given.items()})
        if self.operation in ("CreateAlias", "DeleteAlias"):
            alias = self.arn("kms", p["AliasName"])
            return [alias, self.key_arn(p.get("TargetKeyId") or p["AliasName"])], context
        return ([self.key_arn(p["KeyId"])] if "KeyId" in p else ["*"]), context

    def key_arn(self, key: str) -> str:
        """A key's ARN from its id, ARN, alias or alias ARN (an unknown alias stays an alias ARN)."""
        name = key.split(":", 5)[-1] if key.startswith("arn:") else key
        if name.startswith("alias/"):
            from moto.kms.models import kms_backends

            found = kms_backends[self.account][self.region].get_key_id_from_alias(name)
            return self.arn("kms", f"key/{found}") if found else self.arn("kms", name)
        return key if key.startswith("arn:") else self.arn("kms", f"key/{key}")

    def _ecs(self) -> tuple[list[Any], dict[str, str]]:
        p = self.params
        if self.operation == "DescribeServices":
            cluster = str(p.get("cluster", "default")).rsplit("/", 1)[-1]
            return [s if s.startswith("arn:") else self.arn("ecs", f"service/{cluster}/{s}")
                    for s in p.get("services", [])], {}
        return ["*"], {}


def _tags(params: dict[str, Any]) -> bool:
    """Whether a create request tags what it creates (JSON `tags`/`Tags`, query `Tag.N`/`Tags.member.N`)."""
    given = params.get("tags") or params.get("Tags")
    return bool(given) or any(k.startswith(("Tag.", "Tags.")) for k in params)


def _members(params: dict[str, Any], name: str) -> list[str]:
    """A list parameter, from JSON/CBOR (a list) or the query protocol (`Name.member.N`)."""
    if isinstance(params.get(name), list):
        return [str(v) for v in params[name]]
    return [str(v) for k, v in sorted(params.items()) if k.startswith(f"{name}.member.")]
