"""Shared fixtures: one embedded emulator per test session, one namespace per test.

The emulator runs in its own process and every test reaches it over HTTP, as
workers in production reach SQS. Each test gets its own ORDERS_ENV, so its
queues, topics and tables are its own: nothing leaks from one test to the next.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from orders.emulator.server import EmulatorProcess
from orders.settings import Settings, get_settings


@pytest.fixture(scope="session")
def emulator() -> Iterator[EmulatorProcess]:
    """The embedded AWS emulator and control plane, shared by the session."""
    emu = EmulatorProcess().start()
    saved = {k: os.environ.get(k) for k in emu.env}
    os.environ.update(emu.env)
    try:
        yield emu
    finally:
        from orders.aws import metrics

        metrics.buffer().close()  # while the emulator still answers, not at interpreter exit
        emu.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture
def settings(emulator: EmulatorProcess, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """Settings for a fresh namespace, with the Celery app pointed at it."""
    from orders.celery import app

    monkeypatch.setenv("ORDERS_ENV", f"t{uuid.uuid4().hex[:10]}")
    # Short long-polls keep worker start and stop quick in tests.
    monkeypatch.setenv("ORDERS_WAIT_TIME_SECONDS", "1")
    # A failed message comes back at once, so DLQ tests need not wait out backoffs.
    monkeypatch.setenv("ORDERS_FAILURE_BACKOFF", "0")
    get_settings.cache_clear()
    current = get_settings()
    app.reconfigure(current)
    yield current
    get_settings.cache_clear()


@pytest.fixture
def infra(settings: Settings) -> Settings:
    """A provisioned namespace: every queue, DLQ, topic and subscription exists."""
    from orders.infra import provisioning

    provisioning.up(settings)
    return settings
