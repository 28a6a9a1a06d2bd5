"""The queue URL maps are shared by callers with the same settings only: AWS keys included."""

from __future__ import annotations

from orders.runtime.queue_urls import queue_urls
from orders.settings import Settings


def _settings(env: str, **extra: str) -> Settings:
    return Settings.from_env({"ORDERS_ENV": env, "AWS_DEFAULT_REGION": "us-east-1",
                              "AWS_ENDPOINT_URL": "http://127.0.0.1:1", **extra})


def test_callers_with_other_aws_keys_resolve_with_their_own() -> None:
    base = _settings("urls")
    a, b = base.with_credentials("key-a", "secret-a"), base.with_credentials("key-b", "secret-b")
    assert queue_urls(a) is not queue_urls(b)
    assert queue_urls(a).settings.access_key_id == "key-a" and queue_urls(b).settings.access_key_id == "key-b"
    # Equal settings share one map.
    assert queue_urls(_settings("urls").with_credentials("key-a", "secret-a")) is queue_urls(a)


def test_settings_that_change_the_map_get_their_own() -> None:
    assert queue_urls(_settings("urls-backoff")) is queue_urls(_settings("urls-backoff"))
    assert queue_urls(_settings("urls-backoff")) is not queue_urls(
        _settings("urls-backoff", ORDERS_FAILURE_BACKOFF="7"))
