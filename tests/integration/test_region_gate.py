"""Rule R1 on a real worker: a worker of the passive region runs no step, and runs them once its region
is made active (orders.runtime.region_gate). One emulator serves both regions and the switch here
(each region's resources apart, as moto keeps them per region); tests/integration/test_failover.py
runs them in processes of their own."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest

from orders import place_order
from orders.aws import clients, region_switch
from orders.aws.stock import set_stock
from orders.aws.store import OrderStore
from orders.celery import app
from orders.domain.errors import RegionInactive
from orders.infra import provisioning
from orders.runtime import region_gate
from orders.runtime.queue_urls import queue_url
from orders.settings import Settings
from tasks.orders import placement
from tests.conftest import TEST_ENV
from tests.helpers import wait_for, worker
from tests.integration.pipeline_support import make_order

PRIMARY, STANDBY, OUTSIDE = "us-east-1", "us-west-2", "us-east-2"


@pytest.fixture
def standby(emulator, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """The standby region's settings, provisioned, with its catalogue, the switch at its first epoch."""
    url = emulator.endpoint
    settings = emulator.settings({**TEST_ENV, "ORDERS_ENV": f"g{uuid.uuid4().hex[:10]}",
                                  "ORDERS_REGIONS": f"{PRIMARY}={url},{STANDBY}={url}",
                                  "ORDERS_SWITCH": f"{OUTSIDE}={url}", "ORDERS_REGION": STANDBY})
    provisioning.up(settings)
    region_switch.provision(settings)
    set_stock(settings, "SKU-1", 10)
    region_switch.forget()
    previous = app.settings
    app.reconfigure(settings)
    yield settings
    app.reconfigure(previous)
    region_switch.forget()


def waiting(settings: Settings, queue: str) -> int:
    attributes = clients.client("sqs", settings).get_queue_attributes(
        QueueUrl=queue_url(settings, queue),
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
    return sum(int(v) for v in attributes.values())


def test_a_worker_of_the_passive_region_runs_nothing_until_its_region_is_made_active(standby):
    order = make_order()
    args, kwargs, options = placement(order, standby)
    with worker(["orders"]):
        place_order.apply_async(args, kwargs, **options)  # into the standby's queue, as a late message would
        time.sleep(3 * region_gate.CHECK_SECONDS + region_switch.SWITCH_CACHE_SECONDS)
        assert OrderStore(standby).load(order["orderId"]) is None  # not run: the region is passive
        assert waiting(standby, "orders") == 1  # and not lost: still in its queue
        region_switch.flip(standby, STANDBY, "the standby takes over (test)")
        wait_for(lambda: OrderStore(standby).load(order["orderId"]), timeout=60)
    record = OrderStore(standby).load(order["orderId"])
    assert record is not None and (record.home_region, record.home_epoch) == (STANDBY, 1)


def test_producers_send_to_the_active_region_and_refuse_when_the_switch_cannot_be_read(standby):
    assert region_gate.producing(standby).region == PRIMARY  # the switch's first epoch: the primary
    region_switch.flip(standby, STANDBY, "test")
    region_switch.forget()
    assert region_gate.producing(standby) == standby
    cut_off = Settings.from_env({"ORDERS_REGIONS": f"{PRIMARY}=http://127.0.0.1:9,{STANDBY}=http://127.0.0.1:9",
                                 "ORDERS_SWITCH": f"{OUTSIDE}=http://127.0.0.1:9"})
    with pytest.raises(RegionInactive):
        region_gate.producing(cut_off)
