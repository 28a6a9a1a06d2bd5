"""ORDERS_REGIONS (docs/multi-region.md, slice 2): the regions of a deployment, each with its endpoint."""

from __future__ import annotations

import pytest

from orders.settings import ConfigurationError, Settings

TWO = "us-east-1=http://127.0.0.1:5001,us-west-2=http://127.0.0.1:5002"


def test_unset_keeps_one_region_and_its_settings_as_they_were():
    settings = Settings.from_env({"AWS_DEFAULT_REGION": "eu-west-1", "AWS_ENDPOINT_URL": "http://emu"})
    assert settings.regions == ("eu-west-1",)
    assert settings.for_region("eu-west-1") == settings
    assert Settings.from_env({}).regions == ()


def test_the_first_region_is_the_primary_and_each_region_gets_its_endpoint():
    settings = Settings.from_env({"ORDERS_ENV": "prod", "ORDERS_REGIONS": TWO,
                                  "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": "http://other",
                                  "AWS_ENDPOINT_URL_SQS": "http://sqs"})
    assert settings.regions == ("us-east-1", "us-west-2")
    assert (settings.region, settings.endpoint_url, settings.service_endpoint_urls) == (
        "us-east-1", "http://127.0.0.1:5001", ())
    west = settings.for_region("us-west-2")
    assert (west.region, west.endpoint_url, west.env, west.prefix) == (
        "us-west-2", "http://127.0.0.1:5002", "prod", "prod-")
    # The region's endpoint replaces AWS_ENDPOINT_URL*.
    assert west.endpoint_for("SQS") == "http://127.0.0.1:5002"
    assert west.regions == settings.regions and west.for_region("us-east-1") == settings


def test_regions_without_endpoints_keep_the_sdk_endpoint_settings():
    settings = Settings.from_env({"ORDERS_REGIONS": " us-east-1 , us-west-2 ", "AWS_ENDPOINT_URL": "http://emu"})
    west = settings.for_region("us-west-2")
    assert (settings.region, west.region, west.endpoint_url) == ("us-east-1", "us-west-2", "http://emu")


@pytest.mark.parametrize(("value", "message"), [
    ("us-east-1=http://a,us-west-2", "no endpoint for us-west-2 while other regions have one"),
    ("us-east-1,us-west-2,us-east-1", "us-east-1 given more than once"),
    ("us-east-1=http://a,us-east-1=http://b", "us-east-1 given more than once"),
    ("us-east-1,east", "'east' is not a region name"),
    ("http://a", "is not a region name"),
])
def test_a_list_that_cannot_work_is_one_clear_error(value, message):
    with pytest.raises(ConfigurationError, match=message) as raised:
        Settings.from_env({"ORDERS_REGIONS": value})
    assert "ORDERS_REGIONS" in str(raised.value)


def test_an_unknown_region_is_refused_with_the_known_ones():
    settings = Settings.from_env({"ORDERS_REGIONS": TWO})
    known = r"'eu-west-1' is not one of ORDERS_REGIONS \(us-east-1, us-west-2\)"
    with pytest.raises(ConfigurationError, match=known):
        settings.for_region("eu-west-1")


def test_orders_region_chooses_this_process_region_among_the_list():
    west = Settings.from_env({"ORDERS_REGIONS": TWO, "ORDERS_REGION": "us-west-2"})
    assert (west.region, west.endpoint_url, west.primary, west.multi_region, west.other_regions) == (
        "us-west-2", "http://127.0.0.1:5002", "us-east-1", True, ("us-east-1",))
    assert Settings.from_env({"AWS_DEFAULT_REGION": "eu-west-1"}).other_regions == ()
    with pytest.raises(ConfigurationError, match="ORDERS_REGION='eu-west-1' is not one of ORDERS_REGIONS"):
        Settings.from_env({"ORDERS_REGIONS": TWO, "ORDERS_REGION": "eu-west-1"})
    with pytest.raises(ConfigurationError, match="without ORDERS_REGIONS"):
        Settings.from_env({"ORDERS_REGION": "us-west-2"})


def test_the_switch_and_the_gateway_live_where_their_settings_say():
    settings = Settings.from_env({"ORDERS_REGIONS": TWO, "ORDERS_SWITCH": "us-east-2=http://127.0.0.1:5003",
                                  "ORDERS_GATEWAY": "us-east-2=http://127.0.0.1:5003"})
    switch, gateway = settings.switch_settings(), settings.gateway_settings()
    assert switch is not None and (switch.region, switch.endpoint_url, switch.env) == (
        "us-east-2", "http://127.0.0.1:5003", settings.env)
    assert (gateway.region, gateway.endpoint_url) == ("us-east-2", "http://127.0.0.1:5003")
    # Unset: no switch (the primary is active), the gateway is this region's.
    assert settings.switched  # several regions and a switch: the switch decides who works
    alone = Settings.from_env({"ORDERS_REGIONS": TWO})
    assert alone.switch_settings() is None and alone.gateway_settings() == alone and not alone.switched
    assert not Settings.from_env({"ORDERS_SWITCH": "us-east-2"}).switched  # one region: nothing to switch
    with pytest.raises(ConfigurationError, match="ORDERS_SWITCH='nowhere'"):
        Settings.from_env({"ORDERS_SWITCH": "nowhere"})


def test_beat_looks_for_orders_to_adopt_only_where_a_switch_decides():
    from orders.runtime.config import beat_schedule

    switched = Settings.from_env({"ORDERS_REGIONS": TWO, "ORDERS_SWITCH": "us-east-2=http://127.0.0.1:5003"})
    assert beat_schedule(switched)["adopt-in-flight"]["task"] == "ops.adopt_in_flight"
    assert "adopt-in-flight" not in beat_schedule(Settings.from_env({}))  # one region: no task every 15 s
