"""SNS to SQS across emulator processes, one per region (applied by orders.emulator.server).

moto delivers a topic's message to an SQS subscription inside its own process, in the backend of the
region the queue's ARN names. With an emulator process per region (docs/multi-region.md) the other
region's queue lives in another process, where moto's copy of that region is empty: the message was
dropped (or the publish failed). Here a subscription whose queue ARN names a region a peer serves is
delivered to that peer over HTTP, by SendMessageBatch of those waiting together, with the body and
attributes moto would have given it (raw delivery: the message and its attributes as SQS attributes;
otherwise SNS's JSON notification). SNS retries a failed delivery to SQS for days; here a thread tries
again every second for RETRY_SECONDS (a peer in an outage gets its messages when it answers again), then
drops it, counted; a delivery the peer's queue refuses (no such queue, a message too large) is dropped
at once, counted `rejected`, as SNS does not retry a client-side error. A queue that is neither here nor
a peer's is counted `undeliverable` and the publish succeeds, as on SNS (moto failed the whole Publish,
so every publish of an emulator whose topics subscribe another region's queue failed until its peers
were set).

Peers are set after start by `POST /_orders/peers {"us-west-2": "http://127.0.0.1:PORT"}` (replacing
the previous ones); `GET /_orders/peers` shows them and the delivery counts.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from botocore.exceptions import ClientError

from orders.aws.errors import is_retryable_aws_error
from orders.emulator.faults import control_request, json_answer

log = logging.getLogger(__name__)

PEERS_PATH = "/_orders/peers"
#: How long a delivery to a peer that does not take it is tried again (the replica queue's retention).
RETRY_SECONDS = 3_600.0
RETRY_INTERVAL = 1.0
MAX_HELD = 10_000
#: SendMessageBatch's bounds: entries, and their bodies' total (SQS's message size, 256 KiB until 2025).
BATCH_ENTRIES, BATCH_BYTES = 10, 256 * 1024


@dataclass(frozen=True)
class Target:
    """Where a cross-region delivery goes: the peer's endpoint and the queue's URL there."""

    endpoint: str
    region: str
    queue_url: str


def target_for(queue_arn: str, peers: Mapping[str, str]) -> Target | None:
    """The peer serving the queue's region, None when no peer does (moto delivers it in this process)."""
    parts = queue_arn.split(":")
    if len(parts) != 6 or parts[2] != "sqs" or parts[3] not in peers:
        return None
    endpoint = peers[parts[3]].rstrip("/")
    return Target(endpoint, parts[3], f"{endpoint}/{parts[4]}/{parts[5]}")


def sqs_attributes(message_attributes: Mapping[str, Any] | None) -> dict[str, dict[str, str]]:
    """SNS message attributes as raw delivery gives them to SQS (as moto's Subscription.publish does)."""
    found = {}
    for key, value in (message_attributes or {}).items():
        kind = str(value["Type"])
        slot = "BinaryValue" if kind.startswith("Binary") else "StringValue"
        text = str(value["Value"]) if kind.startswith("Number") else value["Value"]
        found[key] = {"DataType": kind, slot: text}
    return found


def parse_peers(body: bytes) -> dict[str, str]:
    """The body of `POST /_orders/peers`: region -> an http(s) endpoint with a host (ValueError otherwise:
    a `file:` or empty endpoint would send the deliveries elsewhere than an emulator, or to AWS itself)."""
    peers = json.loads(body or b"{}")
    if not isinstance(peers, dict):
        raise ValueError("a JSON object of region: endpoint")
    for region, url in peers.items():
        found = urlsplit(url) if isinstance(url, str) else None
        if not region or found is None or found.scheme not in ("http", "https") or not found.hostname:
            raise ValueError(f"peer {region!r}: {url!r} is not an http(s) endpoint")
    return dict(peers)


@dataclass
class Delivery:
    target: Target
    body: str
    attributes: dict[str, dict[str, str]]
    until: float
    due: float = 0.0


@dataclass
class Deliveries:
    """The peers, and the deliveries to them, sent on a thread of their own (a publish never waits)."""

    peers: dict[str, str] = field(default_factory=dict)
    counts: Counter[str] = field(default_factory=Counter)
    #: Past this many deliveries held for peers, a new one is dropped (counted `overflow`): a peer down for
    #: the hour of retries at notifications' 500 events/s would otherwise hold 1.8 million in memory.
    max_held: int = MAX_HELD
    _held: int = 0
    _queue: queue.Queue[Delivery] = field(default_factory=queue.Queue)
    _clients: dict[str, Any] = field(default_factory=dict)
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, delivery: Delivery) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, daemon=True, name="sns-peers")
                self._thread.start()
            if self._held >= self.max_held:
                self.counts["overflow"] += 1
                log.warning("sns: %d deliveries held for peers: dropped one to %s", self._held,
                            delivery.target.queue_url)
                return
            self._held += 1
        self._queue.put(delivery)

    def _run(self) -> None:
        waiting: list[Delivery] = []
        while True:
            try:
                waiting.append(self._queue.get(timeout=RETRY_INTERVAL if waiting else None))
                while True:  # all that came while the last pass ran, not one per pass
                    waiting.append(self._queue.get_nowait())
            except queue.Empty:
                pass
            now, down = time.monotonic(), set[str]()
            # A queue with one delivery due gets all of its waiting ones, in order: its order holds
            # across retries, and they wait (and go) together.
            due = {d.target for d in waiting if d.due <= now}
            done = {id(d) for batch in batches([d for d in waiting if d.target in due])
                    for d in self._send(batch, now, down)}
            kept = [d for d in waiting if id(d) not in done]
            with self._lock:
                self._held -= len(waiting) - len(kept)
            waiting = kept

    def _send(self, batch: list[Delivery], now: float, down: set[str]) -> list[Delivery]:
        """The deliveries of `batch` (one queue's) done with: sent, refused, or given up. A peer that
        failed once in this pass (`down`) is not called again in it: the rest wait for the next pass."""
        target = batch[0].target
        try:
            if target.endpoint in down:
                raise ConnectionError(f"{target.endpoint} failed earlier in this pass")
            answer = self._client(target).send_message_batch(QueueUrl=target.queue_url, Entries=[
                {"Id": str(n), "MessageBody": d.body, **({"MessageAttributes": d.attributes} if d.attributes
                                                         else {})} for n, d in enumerate(batch)])
        except Exception as exc:  # noqa: BLE001 - a failure of the peer is tried again, as SNS does
            if isinstance(exc, ClientError) and not is_retryable_aws_error(exc):
                return self._refused(batch, exc)
            down.add(target.endpoint)
            return [d for d in batch if self._given_up(d, now, exc)]
        failed = {int(f["Id"]): f for f in answer.get("Failed", [])}
        self.counts["delivered"] += len(batch) - len(failed)
        return [d for n, d in enumerate(batch) if n not in failed] + [
            d for n, d in enumerate(batch) if n in failed and (
                self._refused([d], failed[n]["Message"]) if failed[n].get("SenderFault")
                else self._given_up(d, now, failed[n]["Message"]))]

    def _refused(self, batch: list[Delivery], why: object) -> list[Delivery]:
        """The queue refused them (missing, a message too large): SNS does not retry a client-side error,
        and an hour of retries would not change the answer."""
        self.counts["rejected"] += len(batch)
        log.warning("sns: %s refused %d deliveries: %s", batch[0].target.queue_url, len(batch), why)
        return batch

    def _given_up(self, delivery: Delivery, now: float, why: object) -> bool:
        """Whether a delivery that failed is given up (its RETRY_SECONDS past); else it waits a second."""
        if now >= delivery.until:
            self.counts["dropped"] += 1
            log.warning("sns: dropped a delivery to %s after %.0f s: %s", delivery.target.queue_url,
                        RETRY_SECONDS, why)
            return True
        self.counts["retried"] += 1
        delivery.due = now + RETRY_INTERVAL
        return False

    def _client(self, target: Target) -> Any:
        # By region too: an emulator serving two regions tells them apart by the region a request is
        # signed for (the queue's URL is the same in both).
        key = f"{target.region} {target.endpoint}"
        if key not in self._clients:
            import boto3
            from botocore.config import Config

            self._clients[key] = boto3.client(
                "sqs", endpoint_url=target.endpoint, region_name=target.region,
                aws_access_key_id="testing", aws_secret_access_key="testing",
                config=Config(retries={"max_attempts": 1}, connect_timeout=2, read_timeout=5))
        return self._clients[key]

    def control(self, environ: dict[str, Any], body: bytes,
                start_response: Callable[..., Any]) -> list[bytes]:
        """GET or POST /_orders/peers."""
        method = environ.get("REQUEST_METHOD", "GET")
        if environ.get("PATH_INFO") != PEERS_PATH or method not in ("GET", "POST"):
            return json_answer(start_response, "404 Not Found", {"error": f"use GET or POST {PEERS_PATH}"})
        if method == "POST":
            try:
                peers = parse_peers(body)
            except ValueError as exc:
                return json_answer(start_response, "400 Bad Request", {"error": str(exc)})
            self.peers = peers  # replaced whole: a reader never sees half of it
        return json_answer(start_response, "200 OK", {"peers": self.peers, "counts": dict(self.counts)})


DELIVERIES = Deliveries()


def batches(due: list[Delivery]) -> list[list[Delivery]]:
    """The deliveries by queue, in their order, in SendMessageBatch's bounds (entries and total size)."""
    by_queue: dict[Target, list[list[Delivery]]] = {}  # the target, not the URL: it is each region's
    for delivery in due:
        chunks = by_queue.setdefault(delivery.target, [[]])
        if len(chunks[-1]) == BATCH_ENTRIES or sum(len(d.body) for d in chunks[-1]) + len(delivery.body) > (
                BATCH_BYTES):
            chunks.append([])
        chunks[-1].append(delivery)
    return [chunk for chunks in by_queue.values() for chunk in chunks if chunk]


def install() -> None:
    """Patch moto's SNS subscriptions in this process (the emulator's) to deliver to the peers' queues."""
    from moto.sns.models import Subscription
    from moto.sqs.exceptions import QueueDoesNotExist

    publish = Subscription.publish

    def publish_across(self: Any, message: str, message_id: str, subject: str | None = None,
                       message_attributes: dict[str, Any] | None = None, group_id: str | None = None,
                       deduplication_id: str | None = None, message_structure: str | None = None) -> None:
        target = target_for(self.endpoint, DELIVERIES.peers) if self.protocol == "sqs" else None
        if target is None:
            try:
                return publish(self, message, message_id, subject, message_attributes, group_id,
                               deduplication_id, message_structure)
            except QueueDoesNotExist:  # SNS's Publish never fails for a subscriber: it fails to deliver
                DELIVERIES.counts["undeliverable"] += 1
                log.warning("sns: no queue %s here, and no peer serves its region", self.endpoint)
                return None
        if self._filter_policy_matcher is not None and not self._filter_policy_matcher.matches(
                message_attributes, message):
            return None
        if message_structure == "json":
            message = self._parse_message_structure(message, self.protocol)
        if self.attributes.get("RawMessageDelivery"):  # a boolean in moto
            body, attributes = message, sqs_attributes(message_attributes)
        else:
            body = json.dumps(self.get_post_data(message, message_id, subject,
                                                 message_attributes=message_attributes), sort_keys=True)
            attributes = {}
        DELIVERIES.add(Delivery(target, body, attributes, until=time.monotonic() + RETRY_SECONDS))
        return None

    Subscription.publish = publish_across  # type: ignore[method-assign]


def set_peers(endpoint: str, peers: Mapping[str, str]) -> dict[str, Any]:
    """Tell the emulator at `endpoint` which emulator serves each other region (by region name)."""
    return control_request(endpoint, PEERS_PATH, dict(peers))


def peer_report(endpoint: str) -> dict[str, Any]:
    """{"peers": {region: endpoint}, "counts": {"delivered", "retried", "dropped", "rejected", "overflow",
    "undeliverable": n}}."""
    return control_request(endpoint, PEERS_PATH)


def connect(endpoints: Mapping[str, str]) -> None:
    """Tell each region's emulator (`endpoints`: region -> endpoint) where the other regions' are."""
    for region, endpoint in endpoints.items():
        set_peers(endpoint, {other: url for other, url in endpoints.items() if other != region})
