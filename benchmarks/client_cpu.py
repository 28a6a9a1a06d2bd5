"""What a PublishBatch costs a worker's CPU before it leaves the process: botocore's client as shipped, then
the platform's (orders.aws.clients, which encodes a query-protocol body once instead of at every read).

A step publishes its events with one PublishBatch; SNS speaks the query protocol, whose body botocore
url-encodes again each time it is read (to sign it, then to send it). Each call here is stopped at
botocore's `before-send`, so no network is involved: what is timed is serialising, signing and preparing.

    python -m benchmarks.client_cpu [--calls 400] [--entries 6]
"""

from __future__ import annotations

import argparse
import base64
import json
import time
from typing import Any

TOPIC = "arn:aws:sns:us-east-1:123456789012:dev-order-status"


class Stopped(Exception):
    """Raised at `before-send`: the request is ready, and goes nowhere."""


def stop(**_: Any) -> None:
    raise Stopped


def entries(count: int) -> list[dict[str, Any]]:
    """PublishBatch entries shaped as a step's customer events (orders.aws.sns.sns_entry): a JSON structure
    with the Celery task message for SQS, a summary for SMS and e-mail, and eight message attributes."""
    task = base64.b64encode(json.dumps({"args": [{"orderId": "ord-1", "data": "x" * 400}]}).encode()).decode()
    message = json.dumps({"default": json.dumps({"orderId": "ord-1", "data": "y" * 500}), "sqs": task,
                          "sms": "Your order ord-1: OrderShipped", "email": "z" * 700})
    attributes = {f"attr{j}": {"DataType": "String", "StringValue": f"value-{j}"} for j in range(8)}
    return [{"Id": str(i), "Message": message, "MessageStructure": "json", "MessageAttributes": attributes}
            for i in range(count)]


def per_call(client: Any, batch: list[dict[str, Any]], calls: int) -> float:
    """CPU ms of one PublishBatch up to the moment it would be sent."""
    client.meta.events.register("before-send", stop)
    started = time.process_time()
    for _ in range(calls):
        try:
            client.publish_batch(TopicArn=TOPIC, PublishBatchRequestEntries=batch)
        except Stopped:
            pass
    return 1000 * (time.process_time() - started) / calls


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.client_cpu")
    parser.add_argument("--calls", type=int, default=400, help="calls timed per client, per round")
    parser.add_argument("--entries", type=int, default=6, help="events in each PublishBatch")
    parser.add_argument("--rounds", type=int, default=3, help="rounds, the two clients alternated")
    args = parser.parse_args(argv)
    import boto3

    from orders.aws import clients
    from orders.settings import Settings

    settings = Settings.from_env({"AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": "http://127.0.0.1:9"}
                                 ).with_credentials("bench", "bench")
    shipped = boto3.session.Session(aws_access_key_id="bench", aws_secret_access_key="bench").client(
        "sns", region_name="us-east-1", endpoint_url="http://127.0.0.1:9", config=clients.CLIENT_CONFIG)
    ours = clients.new_client("sns", settings)
    batch = entries(args.entries)
    per_call(shipped, batch, 20), per_call(ours, batch, 20)  # warm both up
    print(f"CPU ms a PublishBatch of {args.entries} events, up to its send ({args.calls} calls a round):")
    for n in range(1, args.rounds + 1):
        before, after = per_call(shipped, batch, args.calls), per_call(ours, batch, args.calls)
        print(f"  round {n}: botocore as shipped {before:.2f}, encoded once {after:.2f} "
              f"({before / after:.2f}x)")


if __name__ == "__main__":
    main()
