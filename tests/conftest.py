"""Shared fixtures: one embedded emulator per test session, one namespace per test.

The emulator runs in its own process and every test reaches it over HTTP, as
workers in production reach SQS. Each test gets its own ORDERS_ENV, so its
queues, topics and tables are its own: nothing leaks from one test to the next.

The test process's environment names the emulator and the test's namespace
(pytest's monkeypatch, undone after each test): the worker processes, Flower and
commands a test starts inherit it, as a deployment's processes share theirs.
The test process itself is pointed at a namespace by passing its Settings
(`app.reconfigure`, and every function that takes settings).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from orders.celery import app
from orders.emulator.server import EmulatorProcess
from orders.settings import Settings, get_settings

#: What every test's namespace sets on top of the emulator's variables.
TEST_ENV = {
    # Short long-polls keep worker start and stop quick in tests.
    "ORDERS_WAIT_TIME_SECONDS": "1",
    # A failed message comes back at once, so DLQ tests need not wait out backoffs.
    "ORDERS_FAILURE_BACKOFF": "0",
    # A killed or stopped test worker's messages come back in seconds, not the 30 s default.
    "ORDERS_RECEIVE_VISIBILITY": "10",
}


@pytest.fixture(scope="session")
def emulator() -> Iterator[EmulatorProcess]:
    """The embedded AWS emulator and control plane, shared by the session."""
    emu = EmulatorProcess().start()
    with pytest.MonkeyPatch.context() as env:
        for name, value in emu.env.items():
            env.setenv(name, value)
        try:
            yield emu
        finally:
            from orders.aws import metrics

            metrics.buffer().close()  # while the emulator still answers, not at interpreter exit
            emu.stop()


@pytest.fixture
def settings(emulator: EmulatorProcess, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """Settings for a fresh namespace, with the Celery app pointed at it."""
    namespace = {"ORDERS_ENV": f"t{uuid.uuid4().hex[:10]}", **TEST_ENV}
    for name, value in namespace.items():  # for the processes the test starts
        monkeypatch.setenv(name, value)
    # Code that still reads the process-wide settings (rather than the app's or its
    # caller's) reads this test's namespace too.
    get_settings.cache_clear()
    current = emulator.settings(namespace)
    app.reconfigure(current)
    yield current
    get_settings.cache_clear()


@pytest.fixture
def infra(settings: Settings) -> Settings:
    """A provisioned namespace: every queue, DLQ, topic and subscription exists."""
    from orders.infra import provisioning

    provisioning.up(settings)
    return settings
