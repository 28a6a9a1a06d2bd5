"""Which HTTP server the emulator serves with (ORDERS_EMULATOR_HTTP)."""

import pytest

from orders.emulator.server import http_server


def test_cheroot_unless_werkzeug_is_asked_for():
    assert http_server({}) == "cheroot"
    assert http_server({"ORDERS_EMULATOR_HTTP": " Werkzeug "}) == "werkzeug"
    assert http_server({"ORDERS_EMULATOR_HTTP": ""}) == "cheroot"


def test_an_unknown_server_is_refused_by_name():
    with pytest.raises(ValueError, match="ORDERS_EMULATOR_HTTP='gunicorn': one of cheroot, werkzeug"):
        http_server({"ORDERS_EMULATOR_HTTP": "gunicorn"})


def test_an_unknown_server_is_refused_before_any_process_starts(monkeypatch):
    from click.testing import CliRunner

    from orders.cli import cli
    from orders.emulator.server import EmulatorProcess

    monkeypatch.setenv("ORDERS_EMULATOR_HTTP", "gunicorn")
    emulator = EmulatorProcess(with_redis=False)
    with pytest.raises(ValueError, match="ORDERS_EMULATOR_HTTP='gunicorn'"):
        emulator.start()
    assert emulator._proc is None
    result = CliRunner().invoke(cli, ["emulator"])  # would exec the server: refused first
    assert result.exit_code == 2
    assert "ORDERS_EMULATOR_HTTP='gunicorn': one of cheroot, werkzeug" in result.output
