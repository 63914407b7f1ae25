"""The documentation site covers the public API (no build here: CI runs `make docs-build`, strict).

Every ssmcast package, every public top-level module, every module the top level re-exports from and every
module a documented package re-exports from outside itself (``ssmcast.tracking`` from
``ssmcast.training.loggers``) must be rendered by some ``::: module`` block of docs/; every page and notebook
must be in the navigation, and every ``:::`` target must exist.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "ssmcast"
DOCS = ROOT / "docs"
BLOCK = re.compile(r"^:::\s+([\w.]+)\s*$", re.MULTILINE)


def _config() -> dict:
    return yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))


def _blocks() -> dict[str, list[str]]:
    """``::: identifier`` targets, each with the pages that render it."""
    found: dict[str, list[str]] = {}
    for page in sorted(DOCS.rglob("*.md")):
        if DOCS / "notebooks" in page.parents:
            continue
        for ident in BLOCK.findall(page.read_text(encoding="utf-8")):
            found.setdefault(ident, []).append(str(page.relative_to(DOCS)))
    return found


def _module_file(name: str) -> Path | None:
    """The file of module ``name`` (a package's ``__init__.py``, or a namespace folder), else None."""
    path = ROOT.joinpath(*name.split("."))
    if (path / "__init__.py").is_file():
        return path / "__init__.py"
    if path.with_suffix(".py").is_file():
        return path.with_suffix(".py")
    if path.is_dir():
        return path
    return None


def _exports_sources(init: Path) -> set[str]:
    """The modules named in ``_EXPORTS``, the table of the lazy top-level names behind ``__all__``."""
    for node in ast.parse(init.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] == ["_EXPORTS"]:
            return {value.value for value in node.value.values}
    return set()


def _reexported_from_outside(package: str) -> set[str]:
    """Modules outside ``package`` whose names its ``__init__`` imports (and so publishes)."""
    init = PACKAGE.joinpath(*package.split(".")[1:], "__init__.py")
    modules = set()
    for node in ast.parse(init.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and node.module.startswith("ssmcast."):
            if node.module != package and not node.module.startswith(package + "."):
                modules.add(node.module)
    return modules


def required_modules() -> set[str]:
    packages = {"ssmcast"} | {
        "ssmcast." + p.parent.name for p in PACKAGE.glob("*/__init__.py")
    }
    top_level = {"ssmcast." + p.stem for p in PACKAGE.glob("*.py") if not p.stem.startswith("_")}
    exports = _exports_sources(PACKAGE / "__init__.py")
    reexports = set().union(*(_reexported_from_outside(p) for p in packages))
    return packages | top_level | exports | reexports


def test_the_top_level_exports_are_found():
    # the parsing above must see the lazy exports of ssmcast/__init__.py, or the test checks nothing
    assert {"ssmcast.forecasters", "ssmcast.datasets", "ssmcast.data"} <= _exports_sources(PACKAGE / "__init__.py")
    assert "ssmcast.training.loggers" in _reexported_from_outside("ssmcast.tracking")


@pytest.mark.parametrize("module", sorted(required_modules()))
def test_every_public_module_has_an_api_page(module):
    blocks = _blocks()
    assert module in blocks, f"no `::: {module}` block in docs/api/*.md: add it to an API page"


def test_every_block_names_an_existing_module():
    for ident, pages in _blocks().items():
        assert ident.split(".")[0] == "ssmcast", (ident, pages)
        parts = ident.split(".")
        assert any(_module_file(".".join(parts[:n])) for n in range(len(parts), 0, -1)), (ident, pages)
        # the longest prefix that is a module leaves at most an object and its attribute
        longest = max(n for n in range(1, len(parts) + 1) if _module_file(".".join(parts[:n])))
        assert len(parts) - longest <= 2, f"{ident} ({pages}): no such module"


def _nav_files(nav) -> list[str]:
    files = []
    for item in nav:
        if isinstance(item, str):
            files.append(item)
        elif isinstance(item, dict):
            for value in item.values():
                files.extend(_nav_files(value) if isinstance(value, list) else [value])
    return files


def test_navigation_lists_every_page_and_notebook():
    config = _config()
    assert config["strict"] is True and config["docs_dir"] == "docs"
    nav = _nav_files(config["nav"])
    for entry in nav:
        assert (DOCS / entry).is_file(), f"mkdocs.yml nav names a missing page: {entry}"
    pages = {str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md") if DOCS / "notebooks" not in p.parents}
    assert pages <= set(nav), f"pages missing from the nav: {sorted(pages - set(nav))}"
    notebooks = {f"notebooks/{p.name}" for p in (ROOT / "notebooks").glob("*.ipynb")}
    assert notebooks and notebooks <= set(nav), f"notebooks missing from the nav: {sorted(notebooks - set(nav))}"


def test_notebooks_are_rendered_not_executed():
    assert (DOCS / "notebooks").resolve() == (ROOT / "notebooks").resolve()
    plugins = {next(iter(p)) if isinstance(p, dict) else p: p for p in _config()["plugins"]}
    assert plugins["mkdocs-jupyter"]["mkdocs-jupyter"]["execute"] is False
