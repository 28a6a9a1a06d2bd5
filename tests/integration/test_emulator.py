"""The embedded emulator's own fixes to moto behave as AWS does."""

import gzip
import http.client
import json
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from urllib.parse import urlsplit

import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from orders.aws import clients
from orders.emulator.access_log import access_records
from orders.emulator.routes import MAX_REQUEST_BYTES, STATS_PATH
from orders.emulator.server import EmulatorProcess
from tests.helpers import calls


def test_a_fifo_long_poll_sees_a_group_freed_while_it_waits(emulator, settings):
    sqs = clients.client("sqs", settings)
    url = sqs.create_queue(QueueName=settings.prefix + "longpoll.fifo",
                           Attributes={"FifoQueue": "true"})["QueueUrl"]
    for i in range(3):
        sqs.send_message(QueueUrl=url, MessageBody=str(i), MessageGroupId="g", MessageDeduplicationId=str(i))
    (first,) = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1)["Messages"]
    free_the_group = lambda: sqs.delete_message(QueueUrl=url, ReceiptHandle=first["ReceiptHandle"])  # noqa: E731
    threading.Timer(1.0, free_the_group).start()
    started = time.monotonic()
    got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1, WaitTimeSeconds=10).get("Messages", [])
    # moto alone returned nothing after the full 10 s: it froze the groups in flight at the poll's start.
    assert [m["Body"] for m in got] == ["1"]
    assert time.monotonic() - started < 9


def test_the_emulator_counts_calls_at_the_server(emulator, settings):
    calls(emulator.endpoint, reset=True)
    clients.client("sqs", settings).list_queues(QueueNamePrefix=settings.prefix)
    assert calls(emulator.endpoint)["sqs:ListQueues"] == 1


def _scratch_table(settings):
    ddb = clients.client("dynamodb", settings)
    name = settings.prefix + "scratch"
    ddb.create_table(TableName=name, BillingMode="PAY_PER_REQUEST",
                     KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                     AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}])
    return ddb, name


EVERY_TYPE = {
    "pk": {"S": "item-1"}, "n": {"N": "12.50"}, "b": {"B": b"\x00\xffbytes"}, "yes": {"BOOL": True},
    "none": {"NULL": True}, "ss": {"SS": ["a", "b"]}, "ns": {"NS": ["1", "2.5"]},
    "bs": {"BS": [b"\x01", b"\x02"]},
    "m": {"M": {"l": {"L": [{"S": "x"}, {"N": "1"}, {"M": {"deep": {"B": b"\x07"}}}]}, "e": {"M": {}}}},
}


def test_item_responses_keep_every_attribute_type(emulator, settings):
    # The emulator writes item responses as JSON directly (orders.emulator.moto_dynamodb), not
    # through moto's shape walk: bytes must come back as bytes, nesting intact.
    ddb, table = _scratch_table(settings)
    ddb.put_item(TableName=table, Item=EVERY_TYPE)
    got = ddb.get_item(TableName=table, Key={"pk": {"S": "item-1"}}, ConsistentRead=True)["Item"]
    assert {k: v for k, v in got.items() if k not in ("ss", "ns", "bs")} == \
        {k: v for k, v in EVERY_TYPE.items() if k not in ("ss", "ns", "bs")}
    assert {k: sorted(got[k][t]) for k, t in (("ss", "SS"), ("ns", "NS"), ("bs", "BS"))} == \
        {"ss": ["a", "b"], "ns": ["1", "2.5"], "bs": [b"\x01", b"\x02"]}
    new = ddb.update_item(TableName=table, Key={"pk": {"S": "item-1"}}, UpdateExpression="ADD n :one",
                          ExpressionAttributeValues={":one": {"N": "1"}}, ReturnValues="ALL_NEW")
    assert Decimal(new["Attributes"]["n"]["N"]) == Decimal("13.5")
    assert new["Attributes"]["b"] == {"B": b"\x00\xffbytes"}
    batch = ddb.batch_get_item(RequestItems={table: {"Keys": [{"pk": {"S": "item-1"}}]}})
    assert batch["Responses"][table][0]["m"] == EVERY_TYPE["m"]
    assert ddb.describe_table(TableName=table)["Table"]["CreationDateTime"].year >= 2026


def test_the_item_size_limit_and_condition_failures_still_hold(emulator, settings):
    ddb, table = _scratch_table(settings)
    big = {"pk": {"S": "big"}, **{f"a{i}": {"S": "x" * 50_000} for i in range(9)}}
    with pytest.raises(ClientError, match="ValidationException"):
        ddb.put_item(TableName=table, Item=big)  # 450 KB
    ddb.put_item(TableName=table, Item={"pk": {"S": "one"}})
    with pytest.raises(ddb.exceptions.ConditionalCheckFailedException):
        ddb.put_item(TableName=table, Item={"pk": {"S": "one"}},
                     ConditionExpression="attribute_not_exists(pk)")


def test_an_update_expression_parsed_once_serves_every_item_and_value(emulator, settings):
    # orders.emulator.moto_dynamodb parses each UpdateExpression once: the same text with other
    # values, other items, a failed condition and a transaction must each get their own result.
    ddb, table = _scratch_table(settings)
    expression = "SET v = :v, tags = list_append(if_not_exists(tags, :empty), :tag) ADD n :one"
    for pk, value in (("a", "1"), ("b", "2"), ("a", "3")):
        ddb.update_item(TableName=table, Key={"pk": {"S": pk}}, UpdateExpression=expression,
                        ExpressionAttributeValues={":v": {"S": value}, ":empty": {"L": []},
                                                   ":tag": {"L": [{"S": value}]}, ":one": {"N": "1"}})
    with pytest.raises(ddb.exceptions.ConditionalCheckFailedException):
        ddb.update_item(TableName=table, Key={"pk": {"S": "b"}}, UpdateExpression=expression,
                        ConditionExpression="n > :one",
                        ExpressionAttributeValues={":v": {"S": "x"}, ":empty": {"L": []},
                                                   ":tag": {"L": [{"S": "x"}]}, ":one": {"N": "1"}})
    ddb.transact_write_items(TransactItems=[{"Update": {
        "TableName": table, "Key": {"pk": {"S": "b"}}, "UpdateExpression": expression,
        "ExpressionAttributeValues": {":v": {"S": "4"}, ":empty": {"L": []},
                                      ":tag": {"L": [{"S": "4"}]}, ":one": {"N": "1"}}}}])
    items = {pk: ddb.get_item(TableName=table, Key={"pk": {"S": pk}}, ConsistentRead=True)["Item"]
             for pk in ("a", "b")}
    assert (items["a"]["v"], items["a"]["tags"], items["a"]["n"]) == \
        ({"S": "3"}, {"L": [{"S": "1"}, {"S": "3"}]}, {"N": "2"})
    assert (items["b"]["v"], items["b"]["tags"], items["b"]["n"]) == \
        ({"S": "4"}, {"L": [{"S": "2"}, {"S": "4"}]}, {"N": "2"})


#: Updates moto's validators must refuse, each by a different processor, with AWS's message.
REFUSED_UPDATES = [
    ("SET n = :one, n = :two", "Two document paths overlap"),
    ("SET pk = :one", "This attribute is part of the key"),
    ("SET n = absent + :one", "attribute that does not exist in the item"),
    ("SET n = s + :one", "operator or function: +, operand type: S"),
    ("SET l = list_append(:one, l)", "Incorrect operand type for operator or function"),
]


@pytest.mark.parametrize(("expression", "message"), REFUSED_UPDATES)
def test_each_validation_of_an_update_still_refuses_what_aws_refuses(emulator, settings, expression, message):
    # orders.emulator.moto_dynamodb has each validator build its map of node types once: every kind
    # of check must still run, on the first update that needs it and on later ones.
    ddb, table = _scratch_table(settings)
    ddb.put_item(TableName=table, Item={"pk": {"S": "k"}, "s": {"S": "text"}, "l": {"L": []}})
    values = {":one": {"N": "1"}, ":two": {"N": "2"}}
    used = {name: value for name, value in values.items() if name in expression}
    for _ in range(2):
        with pytest.raises(ClientError) as refused:
            ddb.update_item(TableName=table, Key={"pk": {"S": "k"}}, UpdateExpression=expression,
                            ExpressionAttributeValues=used)
        assert refused.value.response["Error"]["Code"] == "ValidationException"
        assert message in refused.value.response["Error"]["Message"], refused.value.response["Error"]
    counter = "SET n = if_not_exists(n, :zero) + :one, l = list_append(l, :l)"
    for _ in range(2):
        ddb.update_item(TableName=table, Key={"pk": {"S": "k"}}, UpdateExpression=counter,
                        ExpressionAttributeValues={":zero": {"N": "0"}, ":one": {"N": "1"},
                                                   ":l": {"L": [{"S": "x"}]}})
    item = ddb.get_item(TableName=table, Key={"pk": {"S": "k"}})["Item"]
    assert item["n"] == {"N": "2"} and item["l"] == {"L": [{"S": "x"}, {"S": "x"}]}
    assert item["s"] == {"S": "text"}


def test_a_gzipped_request_is_served_and_logged(emulator, settings):
    """botocore gzips a PutMetricData over 10 KB; the access log once failed it with a 500 (it parsed
    the zipped body), so every large metrics flush was lost, and a test's log caught the warning."""
    cloudwatch = clients.new_client("cloudwatch", settings)  # its own: the handler below stays on it
    seen: list[str] = []
    cloudwatch.meta.events.register("before-send.*", lambda request, **_: seen.append(
        request.headers.get("Content-Encoding", b"")))
    namespace = settings.prefix + "zipped"
    data = [{"MetricName": f"m{i:03d}", "Value": float(i), "Unit": "Count",
             "Dimensions": [{"Name": "Padding", "Value": "x" * 100}]} for i in range(150)]
    access_records(emulator.endpoint, reset=True)
    cloudwatch.put_metric_data(Namespace=namespace, MetricData=data)
    assert seen and seen[0] in ("gzip", b"gzip")  # the request really was zipped
    names = {m["MetricName"] for m in cloudwatch.list_metrics(Namespace=namespace)["Metrics"]}
    assert names == {d["MetricName"] for d in data}
    (record,) = [r for r in access_records(emulator.endpoint) if r["call"] == "cloudwatch:PutMetricData"]
    assert record["status"] == 200 and "unparsed" not in record["context"]


def test_a_request_moto_fails_is_still_logged_with_its_status(emulator, settings):
    cloudwatch = clients.new_client("cloudwatch", settings, clients.OTHER_REGION_CONFIG)  # one attempt

    def not_gzip(request, **_):
        request.headers["Content-Encoding"] = "gzip"  # claims gzip, is not: moto's unzip raises
    cloudwatch.meta.events.register("before-sign.*", not_gzip)
    access_records(emulator.endpoint, reset=True)
    with pytest.raises(ClientError) as refused:
        cloudwatch.put_metric_data(Namespace=settings.prefix + "bad",
                                   MetricData=[{"MetricName": "m", "Value": 1.0}])
    status = refused.value.response["ResponseMetadata"]["HTTPStatusCode"]
    records = [r for r in access_records(emulator.endpoint) if r["call"] == "cloudwatch:PutMetricData"]
    assert records and {r["status"] for r in records} == {status}


def test_a_client_keeps_its_connection_from_call_to_call(emulator, settings):
    """As with AWS, an SDK's calls reuse its connections: moto's werkzeug server closed each one after
    its answer, so every call paid a TCP connect on both sides and a new server thread. Thirty at once
    (a run's processes hold about that many) all stay open: cheroot keeps ten idle ones by default."""
    host, port = emulator.endpoint.removeprefix("http://").split(":")
    connections = [http.client.HTTPConnection(host, int(port), timeout=10) for _ in range(30)]

    def ask(connection: http.client.HTTPConnection) -> None:
        connection.request("GET", "/_orders/calls")
        answer = connection.getresponse()  # RemoteDisconnected if the server closed it meanwhile
        assert answer.status == 200 and isinstance(json.loads(answer.read()), dict)
        assert (answer.getheader("Connection") or "").lower() != "close"

    for connection in connections:
        ask(connection)
    sockets = [connection.sock for connection in connections]
    for _ in range(2):
        for connection in connections:
            ask(connection)
    assert None not in sockets and [c.sock for c in connections] == sockets
    for connection in connections:
        connection.close()
    # boto3 too: the socket its first call opened serves the next ten (werkzeug left none open).
    sqs = clients.new_client("sqs", settings)
    sqs.list_queues(QueueNamePrefix=settings.prefix)
    pool = sqs._endpoint.http_session._manager.connection_from_url(emulator.endpoint)  # this client's

    def open_sockets() -> list[object]:
        return [connection.sock for connection in list(pool.pool.queue) if connection is not None]

    first = open_sockets()
    for _ in range(10):
        sqs.list_queues(QueueNamePrefix=settings.prefix)
    assert first and None not in first and open_sockets() == first


def test_a_hundred_long_polls_at_once_leave_room_for_the_message_they_wait_for(emulator, settings):
    """The server's threads are a fixed pool: a hundred long polls in flight (more than a run's
    workers hold) and the send they wait for still gets a thread, and one of them its message."""
    sqs = clients.new_client("sqs", settings, clients.CLIENT_CONFIG.merge(Config(max_pool_connections=128)))
    url = sqs.create_queue(QueueName=settings.prefix + "crowd")["QueueUrl"]
    polls = 100
    with ThreadPoolExecutor(polls) as pool:
        waiting = [pool.submit(sqs.receive_message, QueueUrl=url, WaitTimeSeconds=10) for _ in range(polls)]
        time.sleep(1)  # the polls reach the server (one that has not yet only changes who gets it)
        sqs.send_message(QueueUrl=url, MessageBody="found")
        got = [m["Body"] for f in waiting for m in f.result().get("Messages", [])]
    assert got == ["found"]


def test_the_emulator_stops_at_once_with_long_polls_in_flight():
    """A stopping server joins its threads: polls waiting out their 20 s are answered at once, and the
    process ends by its SIGTERM (not the SIGKILL that follows a stop that takes too long)."""
    emulator = EmulatorProcess(with_redis=False).start()
    settings = emulator.settings({"ORDERS_ENV": "stop-" + uuid.uuid4().hex[:6]})
    sqs = clients.new_client("sqs", settings)
    url = sqs.create_queue(QueueName=settings.prefix + "idle")["QueueUrl"]
    with ThreadPoolExecutor(4) as pool:
        polls = [pool.submit(sqs.receive_message, QueueUrl=url, WaitTimeSeconds=20) for _ in range(4)]
        time.sleep(1)
        emulator.stop()
        answers = [f.exception() or f.result() for f in polls]
    assert emulator._proc is not None and emulator._proc.returncode == 0
    assert all(isinstance(a, dict) and not a.get("Messages") for a in answers), answers


def _post(endpoint: str, body: bytes, **headers: str) -> int:
    """A request as a CloudWatch client signs it (moto checks no signature), sent as is."""
    host, port = endpoint.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    connection.request("POST", "/", body=body, headers={
        "Authorization": "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/monitoring/aws4_request, "
                         "SignedHeaders=host, Signature=0",
        "X-Amz-Target": "GraniteServiceVersion20100801.PutMetricData",
        "Content-Type": "application/x-amz-json-1.0", **headers})
    answer = connection.getresponse()
    answer.read()
    connection.close()
    return answer.status


def test_a_gzip_bomb_is_not_unzipped_whole_by_the_log_and_is_recorded_as_unparsed(emulator):
    """64 MiB of zeros in 64 KB of gzip: the log unzips at most MAX_UNZIPPED of it, records the call
    as unparsed, and the emulator still answers (moto's own reading of it is moto's)."""
    bomb = gzip.compress(bytes(64 * 1024 * 1024), compresslevel=9)
    assert len(bomb) < 100_000
    access_records(emulator.endpoint, reset=True)
    status = _post(emulator.endpoint, bomb, **{"Content-Encoding": "gzip"})
    (record,) = access_records(emulator.endpoint)
    assert record["call"] == "cloudwatch:?" and record["status"] == status
    assert record["context"]["unparsed"].startswith("UnicodeDecodeError: ")


def test_an_unreadable_body_is_recorded_without_quoting_it(emulator):
    """The log's note on a body it cannot read names the error, never the body's bytes."""
    secret = "tok_visa_4242_never_logged"
    access_records(emulator.endpoint, reset=True)
    status = _post(emulator.endpoint, b"\xff" + f'{{"token": "{secret}"}}'.encode())
    (record,) = access_records(emulator.endpoint)
    assert record["status"] == status and record["context"]["unparsed"].startswith("UnicodeDecodeError: ")
    assert secret not in json.dumps(record)


def test_answers_carry_no_cors_headers(emulator, settings):
    """No browser calls the emulator; moto worked CORS headers out for every answer (MOTO_DEFAULTS)."""
    for service, target in (("sqs", "AmazonSQS.ListQueues"), ("dynamodb", "DynamoDB_20120810.ListTables")):
        url = emulator.env.get(f"AWS_ENDPOINT_URL_{service.upper()}", emulator.endpoint)
        host, port = url.removeprefix("http://").split(":")
        connection = http.client.HTTPConnection(host, int(port), timeout=30)
        connection.request("POST", "/", body=b"{}", headers={
            "Authorization": "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/"
                             f"{service}/aws4_request, SignedHeaders=host, Signature=0",
            "X-Amz-Target": target, "Content-Type": "application/x-amz-json-1.0", "Origin": "https://example.com"})
        answer = connection.getresponse()
        answer.read()
        connection.close()
        assert answer.status == 200, service
        assert answer.getheader("Access-Control-Allow-Origin") is None, service


def _announce_a_body_past_the_limit(endpoint: str) -> int:
    """The status answered to a request announcing a body one byte past the limit, and never sending it."""
    host, port = urlsplit(endpoint).hostname, urlsplit(endpoint).port
    connection = http.client.HTTPConnection(host, port, timeout=10)
    connection.putrequest("POST", "/")
    connection.putheader("Content-Length", str(MAX_REQUEST_BYTES + 1))  # announced, never sent
    connection.putheader("X-Amz-Target", "DynamoDB_20120810.ListTables")
    connection.endheaders()
    answer = connection.getresponse()
    answer.read()
    connection.close()
    return answer.status


#: A request for the emulator's call counts, sent as the unread body of another.
_SECOND_REQUEST = f"GET {STATS_PATH} HTTP/1.1\r\nHost: emulator\r\n\r\n".encode()
#: Two framings of a body the emulator refuses without reading it all: a negative length, a chunk size
#: that is not hexadecimal. What follows the refused part is a whole second request.
_REFUSED_UNREAD = {
    "negative length": b"Content-Length: -%d\r\n\r\n%s" % (len(_SECOND_REQUEST), _SECOND_REQUEST),
    "malformed chunk": b"Transfer-Encoding: chunked\r\n\r\nzz\r\n%s" % _SECOND_REQUEST,
}


def _answers_on_one_connection(endpoint: str, framing: str) -> list[bytes]:
    """The status lines answered on one connection to a POST framed as `_REFUSED_UNREAD[framing]`, read until
    the server closes (or resets) the connection, with "kept open" last if it is still open after 5 s."""
    import socket

    request = (b"POST / HTTP/1.1\r\nHost: emulator\r\nContent-Type: application/x-www-form-urlencoded\r\n"
               + _REFUSED_UNREAD[framing])
    answered, kept_open = b"", []
    with socket.create_connection((urlsplit(endpoint).hostname, urlsplit(endpoint).port), timeout=5) as sock:
        sock.sendall(request)
        try:
            while chunk := sock.recv(65536):
                answered += chunk
        except ConnectionResetError:  # closed with bytes of ours still unread: closed all the same
            pass
        except TimeoutError:
            kept_open = [b"kept open"]
    return [line for line in answered.split(b"\r\n") if line.startswith(b"HTTP/1.1 ")] + kept_open


@pytest.mark.parametrize("framing", sorted(_REFUSED_UNREAD))
@pytest.mark.parametrize("service", ["front", "dynamodb"])
def test_a_body_refused_unread_is_not_read_as_the_next_request(emulator, framing, service):
    """A request refused before its body is read leaves the rest of it on the connection: cheroot kept the
    connection open despite the answer's `Connection: close`, and answered those bytes as a request of its
    own (a second request the client never sent as one: its answers out of step with its requests). The
    connection is closed after the refusal, by the front and by the DynamoDB process alike."""
    endpoint = emulator.env.get("AWS_ENDPOINT_URL_DYNAMODB", emulator.endpoint) if service == "dynamodb" \
        else emulator.endpoint
    assert _answers_on_one_connection(endpoint, framing) == [b"HTTP/1.1 400 Bad Request"]


def test_a_body_past_the_limit_is_answered_413_without_being_read_and_the_emulator_serves_on(emulator,
                                                                                              settings):
    assert _announce_a_body_past_the_limit(emulator.endpoint) == 413
    assert "TableNames" in clients.client("dynamodb", settings).list_tables()


def test_werkzeugs_server_limits_a_body_as_cheroot_does(monkeypatch):
    """ORDERS_EMULATOR_HTTP=werkzeug, the server kept to compare: it limits no body of its own; the emulator
    answers 413 unread all the same, closes the connection after a body refused unread, and serves on."""
    monkeypatch.setenv("ORDERS_EMULATOR_HTTP", "werkzeug")
    emulator = EmulatorProcess(with_redis=False, one_process=True).start()
    try:
        assert _announce_a_body_past_the_limit(emulator.endpoint) == 413
        # Werkzeug's server closes every connection after its answer: this guards that it still does.
        answers = _answers_on_one_connection(emulator.endpoint, "negative length")
        assert answers == [b"HTTP/1.1 400 Bad Request"]
        settings = emulator.settings({"ORDERS_ENV": "wz-" + uuid.uuid4().hex[:6]})
        assert "TableNames" in clients.new_client("dynamodb", settings).list_tables()
    finally:
        emulator.stop()
