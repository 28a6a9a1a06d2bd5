"""`orders region status | failover | failback | watch | adopt` over two regions, each its own emulator
process, and the switch in a third (docs/multi-region.md, "Failover and failback")."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest

from orders.aws import clients, region_switch
from orders.aws.stock import set_stock
from orders.aws.tables import table_name, to_item
from orders.emulator.server import EmulatorProcess
from orders.settings import Settings, get_settings
from tests.helpers import invoke, paused, region_emulators, regions_variable

EAST, WEST, SWITCH = "us-east-1", "us-west-2", "us-east-2"


@pytest.fixture(scope="module")
def emulators() -> Iterator[dict[str, EmulatorProcess]]:
    """One emulator process per region, and one for the switch, outside both."""
    with region_emulators(EAST, WEST, SWITCH) as found:
        yield found


@pytest.fixture
def deployment(emulators: dict[str, EmulatorProcess], monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """A fresh environment over both regions with its switch, provisioned by `orders infra up`."""
    overrides = {"ORDERS_ENV": f"r{uuid.uuid4().hex[:10]}",
                 "ORDERS_REGIONS": regions_variable({r: emulators[r] for r in (EAST, WEST)}),
                 "ORDERS_SWITCH": f"{SWITCH}={emulators[SWITCH].endpoint}"}
    for name, value in {**emulators[EAST].env, **overrides}.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_ENDPOINT_URL_SQS", "AWS_ENDPOINT_URL_SNS", "AWS_ENDPOINT_URL_DYNAMODB"):
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()
    region_switch.forget()
    code, output = invoke("infra", "up")
    assert code == 0, output
    yield emulators[EAST].settings(overrides)
    get_settings.cache_clear()
    region_switch.forget()


def _json(*args: str) -> dict:
    code, output = invoke("region", *args, "--json")
    assert code == 0, output
    return json.loads(output)


def test_status_shows_the_primary_active_and_both_regions_healthy(deployment):
    status = _json("status")
    assert (status["active"], status["epoch"], status["at"], status["reason"]) == (EAST, 0, None, None)
    assert [(r["region"], r["ok"], r["error"]) for r in status["regions"]] == [
        (EAST, True, None), (WEST, True, None)]
    assert all(r["sqs_ms"] > 0 and r["dynamodb_ms"] > 0 for r in status["regions"])
    code, output = invoke("region", "status")
    assert code == 0 and f"Active region: {EAST} (epoch 0: never flipped)" in output, output


def test_failover_goes_to_the_other_region_and_failback_returns_to_the_primary(deployment):
    over = _json("failover", "--reason", "drill")
    assert {k: over[k] for k in ("active", "epoch", "previous", "reason")} == {
        "active": WEST, "epoch": 1, "previous": EAST, "reason": "drill"}
    assert over["at"] and over["adopted"] == []
    assert _json("status")["active"] == WEST

    back = _json("failback")
    assert (back["active"], back["epoch"], back["previous"], back["reason"]) == (EAST, 2, WEST, "failback")
    assert [(h["from"], h["to"], h["epoch"]) for h in region_switch.history(deployment)] == [
        (EAST, WEST, 1), (WEST, EAST, 2)]


def test_a_flip_that_cannot_be_made_is_one_line_and_exit_2(deployment):
    code, output = invoke("region", "failback")
    assert code == 2 and f"{EAST} is already the active region" in output, output
    code, output = invoke("region", "failover", "--to", "eu-west-1")
    assert code == 2 and "not a region of ORDERS_REGIONS" in output, output
    assert len(output.strip().splitlines()) == 1, output
    assert region_switch.read(deployment).epoch == 0


def test_a_stopped_region_is_reported_unhealthy_and_failback_to_it_is_refused(deployment, emulators):
    assert _json("failover")["active"] == WEST
    with paused(emulators[EAST].endpoint):
        status = _json("status")
        health = {r["region"]: r for r in status["regions"]}
        assert health[WEST]["ok"] and not health[EAST]["ok"], status
        assert health[EAST]["error"].startswith("sqs: ") and health[EAST]["sqs_ms"] is None
        code, output = invoke("region", "failback")
        assert code == 2 and f"the primary {EAST} is unhealthy" in output, output
    assert region_switch.read(deployment).active == WEST


def test_watch_auto_fails_over_once_the_active_region_failed_its_probes_in_a_row(deployment, emulators):
    with paused(emulators[EAST].endpoint):
        code, output = invoke("region", "watch", "--auto", "--interval", "0", "--failures", "2",
                              "--rounds", "3")
    assert code == 0, output
    assert f"decision: failed over to {WEST} (epoch 1)" in output, output
    assert output.count("decision:") == 1, output  # the first failure alone decides nothing
    switch = region_switch.read(deployment)
    assert (switch.active, switch.epoch, switch.previous) == (WEST, 1, EAST)
    assert switch.reason == f"automatic: {EAST} failed 2 probes in a row"


def test_watch_without_auto_only_says_what_it_would_do(deployment, emulators):
    with paused(emulators[EAST].endpoint):
        code, output = invoke("region", "watch", "--interval", "0", "--failures", "1", "--rounds", "1")
    assert code == 0, output
    assert f"decision: {EAST} is unhealthy: fail over to {WEST}" in output, output
    assert region_switch.read(deployment).epoch == 0


def test_status_with_the_switch_unreadable_still_probes_every_region_and_exits_2(deployment, emulators):
    with paused(emulators[SWITCH].endpoint):
        code, output = invoke("region", "status", "--json")
        assert code == 2, output
        status = json.loads(output[:output.rindex("}") + 1])
        assert status["active"] is None and status["error"].startswith("AWS call failed"), status
        assert [(r["region"], r["ok"]) for r in status["regions"]] == [(EAST, True), (WEST, True)]
        code, output = invoke("region", "status")
    assert code == 2 and "Active region: unknown (the switch cannot be read)" in output, output
    assert f"{WEST:<14} ?" in output, output


def test_a_hand_made_switch_item_is_refused_by_every_command_in_one_line(deployment, emulators):
    place = deployment.switch_settings()
    assert place is not None
    clients.client("dynamodb", place).put_item(
        TableName=region_switch.table_name(place),
        Item=to_item({"pk": "switch", "sk": "current", "active": "eu-west-1", "epoch": "three"}))
    for command in (("status",), ("failover", "--to", WEST), ("failback",)):
        code, output = invoke("region", *command)
        assert code == 2 and "'eu-west-1' active, not a region of ORDERS_REGIONS" in output, (command, output)
        assert "Traceback" not in output, output
    with paused(emulators[EAST].endpoint):
        code, output = invoke("region", "watch", "--auto", "--interval", "0", "--failures", "1",
                              "--rounds", "1")
    assert code == 0 and "the switch cannot be read" in output and "decision:" not in output, output


def test_the_automatic_failover_and_adopt_recount_the_stock_as_a_manual_flip_does(deployment, emulators):
    west = deployment.for_region(WEST)
    set_stock(west, "SKU-RECOUNT", 5)
    # What last-writer-wins leaves after a flip: a release lost, the hold it released gone (no hold at all).
    clients.client("dynamodb", west).update_item(
        TableName=table_name(west, "stock"), Key=to_item({"sku": "SKU-RECOUNT"}),
        UpdateExpression="SET reserved = :r, available = :a",
        ExpressionAttributeValues=to_item({":r": -1, ":a": 6}))
    with paused(emulators[EAST].endpoint):
        code, output = invoke("region", "watch", "--auto", "--interval", "0", "--failures", "1",
                              "--rounds", "1")
    assert code == 0 and f"decision: failed over to {WEST}" in output, output
    assert "Stock SKU-RECOUNT recounted from its holds: {'available': 6, 'reserved': -1, 'sold': 0} -> " \
           "{'available': 5, 'reserved': 0, 'sold': 0}" in output, output
    adopt = _json("adopt")  # again, by hand: nothing left to do
    assert (adopt["active"], adopt["adopted"], adopt["recounted"]) == (WEST, [], [])
