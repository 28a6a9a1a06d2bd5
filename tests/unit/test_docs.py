"""The docs stay true to the code: generated tables and the configuration reference."""

import re
from pathlib import Path

import pytest

from orders.infra import topology_doc

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", topology_doc.TABLES)
def test_architecture_tables_match_the_topology(name):
    documented = topology_doc.documented(topology_doc.DOC.read_text(), name)
    assert documented is not None, f"docs/architecture.md lost its generated:{name} markers"
    assert documented == topology_doc.TABLES[name](), (
        "docs/architecture.md is out of date: run `python -m orders.infra.topology_doc --write`")


def test_readme_documents_every_environment_variable_the_settings_read():
    read = set(re.findall(r'"((?:ORDERS|AWS)_[A-Z0-9_]+)"', (ROOT / "orders" / "settings.py").read_text()))
    readme = (ROOT / "README.md").read_text()
    undocumented = sorted(v for v in read if f"`{v}`" not in readme)
    assert read and not undocumented, f"README.md's configuration table lacks {undocumented}"


def test_the_readme_example_order_passes_validation():
    import ast

    from orders.domain.order import validate

    readme = (ROOT / "README.md").read_text()
    example = re.search(r"place_order\.delay\((\{.*?\})\)\n```", readme, re.S)
    assert example, "README.md lost its place_order.delay({...}) example"
    order = validate(ast.literal_eval(example.group(1)))
    assert order.order_id == "ord-1001" and order.tier == "vip"
