"""The app's pools and task-sent dispatcher follow its configuration: nothing to reset by hand."""

from __future__ import annotations

from typing import Any

from orders.celery import OrdersCelery
from orders.runtime.amqp import Rebuilt
from orders.settings import Settings


def _settings(env: str, **extra: str) -> Settings:
    return Settings.from_env({"ORDERS_ENV": env, "AWS_DEFAULT_REGION": "us-east-1",
                              "AWS_ENDPOINT_URL": "http://127.0.0.1:1", **extra})


def test_a_reconfigured_app_sends_with_the_new_configuration() -> None:
    app = OrdersCelery("pools", set_as_current=False)
    one, two = _settings("one"), _settings("two", ORDERS_STOCK_TRANSPORT="1")
    app.reconfigure(one)
    first = app.amqp.producer_pool
    assert app.amqp.producer_pool is first and app.pool is app.pool  # built once per configuration
    assert first.connections.connection.transport_options["orders_settings"] is one
    app.reconfigure(two)
    second = app.amqp.producer_pool
    assert second is not first and app.producer_pool is second
    assert second.connections.connection.transport_options["orders_settings"] is two
    assert second.connections.connection.transport_cls == "sqs"  # stock kombu, as `two` says
    assert app.pool.connection.transport_options["orders_settings"] is two


def test_a_pool_for_other_settings_leaves_the_apps_own_alone() -> None:
    app = OrdersCelery("pools-for", set_as_current=False)
    mine, other = _settings("mine"), _settings("other")
    app.reconfigure(mine)
    own = app.amqp.producer_pool
    theirs = app.producer_pool_for(other)
    assert theirs.connections.connection.transport_options["orders_settings"] is other
    assert app.amqp.producer_pool is own
    # Kept, keyed by settings.
    assert app.producer_pool_for(other) is theirs is app.amqp.producer_pool_for(other)


def test_rebuilt_builds_once_per_configuration_and_closes_what_it_replaces() -> None:
    built: list[object] = []
    closed: list[object] = []

    def build() -> object:
        built.append(object())
        return built[-1]

    rebuilt: Rebuilt[object] = Rebuilt(build, close=closed.append)
    options = {"a": 1}
    first = rebuilt.get("url", options)
    assert rebuilt.get("url", options) is first and closed == []
    # Another object with equal content is another configuration: compared by identity.
    second = rebuilt.get("url", {"a": 1})
    assert second is not first and closed == [first]
    assert rebuilt.get("url", {"a": 1}) is not second


def _sender(pool: Any) -> Settings:
    """The settings (credentials included) a producer pool's connections are made with."""
    settings: Settings = pool.connections.connection.transport_options["orders_settings"]
    return settings


def test_settings_that_differ_only_in_credentials_get_pools_of_their_own() -> None:
    app = OrdersCelery("pools-credentials", set_as_current=False)
    a = _settings("same").with_credentials("key-a", "secret-a")
    b = _settings("same").with_credentials("key-b", "secret-b")
    pool_a, pool_b = app.amqp.producer_pool_for(a), app.amqp.producer_pool_for(b)
    assert pool_a is not pool_b
    assert _sender(pool_a).access_key_id == "key-a" and _sender(pool_b).access_key_id == "key-b"
    # Equal settings (another object, the same values) share one; so does the same object asked again.
    assert app.amqp.producer_pool_for(_settings("same").with_credentials("key-a", "secret-a")) is pool_a
    assert app.amqp.producer_pool_for(b) is pool_b
    # The stock transport (credentials in its URL) and any other difference get their own too.
    stock = [_settings("same", ORDERS_STOCK_TRANSPORT="1").with_credentials(k, "s") for k in ("k1", "k2")]
    pools = {id(app.amqp.producer_pool_for(s)) for s in [*stock, _settings("other"), _settings("same")]}
    assert len(pools) == 4


def test_an_app_reconfigured_with_other_credentials_sends_with_them() -> None:
    app = OrdersCelery("reconfigured-credentials", set_as_current=False)
    app.reconfigure(_settings("same").with_credentials("key-a", "secret-a"))
    first = app.amqp.producer_pool
    app.reconfigure(_settings("same").with_credentials("key-b", "secret-b"))
    assert app.amqp.producer_pool is not first
    assert _sender(app.amqp.producer_pool).access_key_id == "key-b"
    assert app.pool.connection.transport_options["orders_settings"].access_key_id == "key-b"
