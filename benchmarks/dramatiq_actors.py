"""The chain benchmark's five hops as dramatiq actors on dramatiq-sqs: the peer configuration.

Workers start them with `dramatiq benchmarks.dramatiq_actors:setup -Q orders`: the broker
is made from the process's settings, as a dramatiq app's is. Each actor sends the next
hop itself, as a Celery chain's step does; the last one hands the timeline to the
benchmark (benchmarks.timelines). Nothing happens at import, so the benchmark's own
process declares the same actors on a broker of its choosing to place the chains.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import dramatiq
from dramatiq_sqs import SQSBroker

from benchmarks.timelines import STAGES, finish, stamp
from orders.aws.clients import CLIENT_CONFIG, endpoint
from orders.settings import Settings, get_settings


def make_broker(settings: Settings) -> SQSBroker:
    """A broker on `settings`' SQS, its queues named `<namespace>-dramatiq_<stage>`."""
    return SQSBroker(namespace=f"{settings.env}-dramatiq", endpoint_url=endpoint("sqs", settings),
                     region_name=settings.region, aws_access_key_id=settings.access_key_id,
                     aws_secret_access_key=settings.secret_access_key, config=CLIENT_CONFIG)


def declare(broker: dramatiq.Broker) -> dict[str, dramatiq.Actor[Any, Any]]:
    """One actor per stage on its own queue (named after the stage), each sending the next."""
    actors: dict[str, dramatiq.Actor[Any, Any]] = {}
    for stage, after in zip(STAGES, (*STAGES[1:], None), strict=True):
        declared = dramatiq.actor(broker=broker, queue_name=stage, actor_name=f"bench_{stage}")
        actors[stage] = declared(_hop(actors, after))
    return actors


def _hop(actors: dict[str, dramatiq.Actor[Any, Any]], after: str | None) -> Callable[[list[Any]], None]:
    def hop(timeline: list[Any]) -> None:
        if after is None:
            finish(timeline)
        else:
            actors[after].send(stamp(timeline))
    return hop


class QueuesFirst(dramatiq.Middleware):
    """Looks every queue up before the worker consumes, as a long-running worker has long done:
    the benchmark counts calls from the first chain on, and a GetQueueUrl per queue and thread
    racing at the first send is start-up, not what a chain costs."""

    def before_worker_boot(self, broker: dramatiq.Broker, worker: Any) -> None:
        for name in broker.get_declared_queues():
            broker._ensure_queue(name)  # type: ignore[attr-defined]  # dramatiq-sqs's own look-up


def setup() -> None:
    """The worker's broker (dramatiq's CLI calls this): this process's settings, every stage declared."""
    broker = make_broker(get_settings())
    broker.add_middleware(QueuesFirst())
    dramatiq.set_broker(broker)
    declare(broker)
