"""The active-region switch (orders.aws.region_switch, rule R1 of docs/multi-region.md) on a real emulator:
one process serves both regions and the switch's place, each its own AWS region there."""

from __future__ import annotations

import socket
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from decimal import Decimal

import pytest

from orders.aws import clients, region_switch
from orders.aws.region_switch import Switch, SwitchMoved
from orders.aws.tables import to_item
from orders.domain.errors import PermanentError, RetryableError
from orders.emulator.server import EmulatorProcess
from orders.infra import provisioning
from orders.settings import ConfigurationError, Settings

EAST, WEST, SWITCH_REGION = "us-east-1", "us-west-2", "us-east-2"


def _deployment(emulator: EmulatorProcess, switch: str) -> Settings:
    return emulator.settings({"ORDERS_ENV": f"s{uuid.uuid4().hex[:10]}",
                              "ORDERS_REGIONS": f"{EAST},{WEST}", "ORDERS_SWITCH": switch})


@pytest.fixture
def deployment(emulator: EmulatorProcess) -> Iterator[Settings]:
    """Two regions and the switch's table in its own region, in a fresh namespace."""
    settings = _deployment(emulator, SWITCH_REGION)
    assert region_switch.provision(settings)
    region_switch.forget()
    yield settings
    region_switch.forget()


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_before_any_flip_the_primary_is_active_at_epoch_zero(deployment):
    assert region_switch.read(deployment) == Switch(EAST, 0, None, None, None)
    assert region_switch.history(deployment) == []
    assert region_switch.is_active(deployment)
    assert not region_switch.is_active(deployment.for_region(WEST))
    assert not region_switch.provision(deployment)  # there already


def test_a_flip_moves_the_active_region_raises_the_epoch_and_is_recorded(deployment):
    flipped = region_switch.flip(deployment, WEST, "drill")
    assert (flipped.active, flipped.epoch, flipped.previous, flipped.reason) == (WEST, 1, EAST, "drill")
    assert region_switch.read(deployment) == flipped
    back = region_switch.flip(deployment, EAST, "drill over", expect_epoch=1)
    assert (back.active, back.epoch, back.previous) == (EAST, 2, WEST)
    assert region_switch.history(deployment) == [
        {"epoch": 1, "at": flipped.at, "from": EAST, "to": WEST, "reason": "drill"},
        {"epoch": 2, "at": back.at, "from": WEST, "to": EAST, "reason": "drill over"},
    ]


def test_a_flip_to_the_active_region_or_outside_the_regions_is_refused(deployment):
    with pytest.raises(PermanentError, match="already the active region"):
        region_switch.flip(deployment, EAST, "no-op")
    with pytest.raises(ConfigurationError, match="not a region of ORDERS_REGIONS"):
        region_switch.flip(deployment, "eu-west-1", "elsewhere")
    assert region_switch.read(deployment).epoch == 0
    assert region_switch.history(deployment) == []


def test_of_two_flips_from_the_same_epoch_one_wins_and_the_other_is_told(deployment):
    region_switch.flip(deployment, WEST, "first operator", expect_epoch=0)
    with pytest.raises(SwitchMoved, match=f"at epoch 1 with {WEST} active"):
        region_switch.flip(deployment, WEST, "second operator", expect_epoch=0)
    assert [h["reason"] for h in region_switch.history(deployment)] == ["first operator"]


def test_flips_racing_from_one_epoch_make_exactly_one_winner(deployment):
    """Several operators read epoch 0 and write at once: the conditional write lets one through."""
    start, outcomes = threading.Barrier(4), []

    def operator(n: int) -> None:
        start.wait()
        try:
            outcomes.append(region_switch.flip(deployment, WEST, f"operator {n}", expect_epoch=0))
        except SwitchMoved as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=operator, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    winners = [o for o in outcomes if isinstance(o, Switch)]
    assert len(winners) == 1 and sum(isinstance(o, SwitchMoved) for o in outcomes) == 3, outcomes
    assert region_switch.read(deployment) == winners[0]
    assert [h["reason"] for h in region_switch.history(deployment)] == [winners[0].reason]


def test_current_is_cached_per_process_and_a_flip_is_seen_once_forgotten(deployment):
    west = deployment.for_region(WEST)
    assert region_switch.current(deployment) == Switch(EAST, 0, None, None, None)
    assert region_switch.is_active(deployment) and not region_switch.is_active(west)
    region_switch.flip(deployment, WEST, "planned")
    region_switch.forget()
    assert region_switch.current(west) == region_switch.read(deployment)
    assert region_switch.is_active(west) and not region_switch.is_active(deployment)


class _Relay:
    """A TCP relay to the emulator that, once `cut` is set, takes requests and passes none on (a switch
    gone quiet: its calls wait for their timeouts); `swallowed` is set when it has dropped one."""

    def __init__(self, endpoint: str):
        self.target = urllib.parse.urlsplit(endpoint)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.cut, self.swallowed = threading.Event(), threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection((self.target.hostname, self.target.port))
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while chunk := source.recv(65536):
                if self.cut.is_set():
                    self.swallowed.set()
                else:
                    sink.sendall(chunk)
        except OSError:
            pass
        finally:
            source.close()
            sink.close()

    def close(self) -> None:
        self.listener.close()


def test_while_one_caller_waits_on_a_switch_gone_quiet_the_others_get_its_last_answer(emulator, monkeypatch):
    relay = _Relay(emulator.endpoint)
    settings = _deployment(emulator, f"{SWITCH_REGION}=http://127.0.0.1:{relay.port}")
    assert region_switch.provision(settings)
    monkeypatch.setattr(region_switch, "SWITCH_CACHE_SECONDS", 3.0)
    region_switch.forget()
    last = region_switch.current(settings)
    assert last == Switch(EAST, 0, None, None, None)
    time.sleep(region_switch.SWITCH_CACHE_SECONDS)  # the answer is due to be read again
    relay.cut.set()
    reader_saw: list[Switch | None] = []
    reader = threading.Thread(target=lambda: reader_saw.append(region_switch.current(settings)))
    reader.start()
    assert relay.swallowed.wait(30)  # the reader now waits on the switch, for its timeouts
    assert region_switch.current(settings) == last  # not a wait behind it
    reader.join()
    assert reader_saw == [None]
    assert region_switch.current(settings) is None  # its failure is the answer now: closed
    assert not region_switch.is_active(settings)
    region_switch.forget()
    relay.close()


def test_a_switch_that_does_not_answer_makes_no_region_active(emulator):
    settings = _deployment(emulator, f"{SWITCH_REGION}=http://127.0.0.1:{_closed_port()}")
    region_switch.forget()
    with pytest.raises(RetryableError):
        region_switch.read(settings)
    assert region_switch.current(settings) is None
    assert not region_switch.is_active(settings)
    assert not region_switch.is_active(settings.for_region(WEST))
    region_switch.forget()


def test_a_missing_switch_table_is_a_clear_error_and_fails_closed(emulator):
    settings = _deployment(emulator, SWITCH_REGION)
    region_switch.forget()
    with pytest.raises(PermanentError, match="orders infra up"):
        region_switch.read(settings)
    assert not region_switch.is_active(settings)
    region_switch.forget()


def test_without_a_switch_or_with_one_region_every_process_is_active(emulator):
    alone = emulator.settings({"ORDERS_ENV": f"s{uuid.uuid4().hex[:10]}"})
    assert region_switch.current(alone) == Switch(alone.region or "", 0, None, None, None)
    assert region_switch.is_active(alone)
    unswitched = emulator.settings({"ORDERS_ENV": alone.env, "ORDERS_REGIONS": f"{EAST},{WEST}"})
    assert region_switch.is_active(unswitched.for_region(WEST))
    assert region_switch.read(unswitched) == Switch(EAST, 0, None, None, None)
    with pytest.raises(ConfigurationError, match="ORDERS_SWITCH"):
        region_switch.flip(unswitched, WEST, "nowhere to flip")


def test_infra_up_makes_the_switch_table_once_and_check_reports_it_missing(emulator):
    settings = _deployment(emulator, SWITCH_REGION)
    table = region_switch.table_name(settings)
    report = provisioning.check(settings)
    assert any(f"{table} (the region switch, in {SWITCH_REGION}): missing" in line for line in report.changes)
    results = provisioning.in_every_region(settings, provisioning.up)
    switch_lines = [line for _, report in results for line in report.changes if table in line]
    assert switch_lines == [f"table {table} (the region switch, in {SWITCH_REGION}): created"]
    place = settings.switch_settings()
    assert place is not None
    described = clients.client("dynamodb", place).describe_table(TableName=table)["Table"]
    assert described["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    assert all(report.clean for _, report in provisioning.in_every_region(settings, provisioning.check))
    deleted = [line for _, lines in provisioning.in_every_region(settings, provisioning.down)
               for line in lines]
    assert f"table {table} (the region switch, in {SWITCH_REGION})" in deleted
    assert not region_switch.exists(settings)


@pytest.mark.parametrize("fields, problem", [
    ({"active": "eu-west-1", "epoch": 3}, "not a region of ORDERS_REGIONS"),
    ({"active": WEST, "epoch": "three"}, "epoch"),
    ({"active": WEST, "epoch": Decimal("2.5")}, "epoch"),
    ({"active": WEST, "epoch": True}, "epoch"),
    ({"active": WEST}, "epoch"),
    ({"epoch": 3}, "active"),
    ({"active": 7, "epoch": 3}, "active"),
])
def test_a_hand_made_switch_item_is_a_clear_error_and_every_reader_fails_closed(deployment, fields, problem):
    place = deployment.switch_settings()
    assert place is not None
    clients.client("dynamodb", place).put_item(
        TableName=region_switch.table_name(place),
        Item=to_item({"pk": "switch", "sk": "current", **fields}))
    with pytest.raises(PermanentError, match=problem):
        region_switch.read(deployment)
    assert region_switch.current(deployment) is None
    assert not region_switch.is_active(deployment)
    assert not region_switch.is_active(deployment.for_region(WEST))
    with pytest.raises(PermanentError, match=problem):
        region_switch.flip(deployment, EAST, "over a hand-made item")
