"""`orders infra up|check|down` over every region of ORDERS_REGIONS: two emulator processes, one per region
(docs/multi-region.md, slice 2)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from orders.aws import clients
from orders.emulator.server import EmulatorProcess
from orders.settings import Settings, get_settings
from orders.topology import TABLES
from tests.helpers import invoke, region_emulators, use_regions

PRIMARY, SECONDARY = "us-east-1", "us-west-2"


@pytest.fixture(scope="module")
def emulators() -> Iterator[dict[str, EmulatorProcess]]:
    """One emulator process per region, as each region's AWS."""
    with region_emulators(PRIMARY, SECONDARY) as found:
        yield found


@pytest.fixture
def deployment(emulators: dict[str, EmulatorProcess], monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """A fresh environment over both regions, as a user sets it: ORDERS_REGIONS=REGION=URL,..."""
    yield use_regions(monkeypatch, emulators, f"g{uuid.uuid4().hex[:10]}")
    get_settings.cache_clear()



def test_up_provisions_every_region_complete_and_check_finds_both_in_step(deployment):
    code, output = invoke("infra", "up")
    assert code == 0, output
    assert f"Changes in region {PRIMARY}:" in output and f"Changes in region {SECONDARY}:" in output
    for region in deployment.regions:
        regional = deployment.for_region(region)
        ddb, sqs = clients.client("dynamodb", regional), clients.client("sqs", regional)
        names = set(ddb.list_tables()["TableNames"])
        assert {spec.table_name(regional) for spec in TABLES} <= names, region
        for spec in TABLES:  # the replicated tables' streams, in each region, as global tables need
            described = ddb.describe_table(TableName=spec.table_name(regional))["Table"]
            view = described.get("StreamSpecification", {}).get("StreamViewType")
            assert view == ("NEW_AND_OLD_IMAGES" if spec.replicated else None), (region, spec.name)
        queues = sqs.list_queues(QueueNamePrefix=regional.prefix).get("QueueUrls", [])
        assert any(url.endswith(f"{regional.prefix}orders-dlq") for url in queues), region

    code, output = invoke("infra", "check")
    assert code == 0, output
    assert f"No drift in region {PRIMARY}" in output and f"No drift in region {SECONDARY}" in output
    code, output = invoke("infra", "up")
    assert code == 0 and f"Nothing to change in region {SECONDARY}" in output, output


def test_a_resource_deleted_in_the_second_region_is_drift_naming_that_region(deployment):
    assert invoke("infra", "up")[0] == 0
    west = deployment.for_region(SECONDARY)
    table = f"{west.prefix}stock"
    clients.client("dynamodb", west).delete_table(TableName=table)

    code, output = invoke("infra", "check")
    assert code == 1, output
    assert f"No drift in region {PRIMARY}" in output
    drift = output[output.index(f"in region {SECONDARY}, fixed by"):]
    assert table in drift, output

    code, output = invoke("infra", "up")
    assert code == 0 and table in output[output.index(f"Changes in region {SECONDARY}"):], output
    assert invoke("infra", "check")[0] == 0


def test_down_deletes_in_every_region(deployment):
    assert invoke("infra", "up")[0] == 0
    code, output = invoke("infra", "down", "--yes")
    assert code == 0, output
    for region in deployment.regions:
        assert f"Deleted in region {region}:" in output
        regional = deployment.for_region(region)
        names = clients.client("dynamodb", regional).list_tables()["TableNames"]
        assert not [name for name in names if name.startswith(regional.prefix)], region
