"""The package's layers import downward only (ops -> backbones -> training -> forecasters; tracking, jobs and the
CLI on top), checked on the source: an import circle such as forecasters <-> tracking cannot come back."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "ssmcast"
LOWER = ["ops", "backbones", "data", "training", "forecasters", "baselines", "datasets"]
UPPER = ("ssmcast.tracking", "ssmcast.jobs", "ssmcast.cli")


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


@pytest.mark.parametrize("layer", LOWER)
def test_lower_layers_never_import_tracking_jobs_or_the_cli(layer):
    offenders = {
        str(path.relative_to(PACKAGE.parent)): sorted(n for n in imported_modules(path) if n.startswith(UPPER))
        for path in (PACKAGE / layer).rglob("*.py")
    }
    assert not {k: v for k, v in offenders.items() if v}


def test_the_checker_sees_lazy_imports_inside_functions(tmp_path):
    source = tmp_path / "m.py"
    source.write_text("def f():\n    from ssmcast.tracking import active_run_logger\n")
    assert "ssmcast.tracking" in imported_modules(source)
