"""Static checks of the tutorial notebooks (``notebooks/*.ipynb``); nbmake executes them separately.

These need no kernel: the notebooks are stored the way ``pytest --nbmake`` and git want them (valid
nbformat, the stock ``python3`` kernel, outputs stripped), every code cell compiles, and each notebook
has the quick/full parameter switch that keeps its test run short.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import nbformat
import pytest

NOTEBOOK_DIR = Path(__file__).resolve().parents[2] / "notebooks"
EXPECTED = ["01_quickstart", "02_compare_with_arima", "03_streaming", "04_hydra_and_mlflow", "05_explain"]
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
QUICK_SWITCH = 'os.environ.get("SSMCAST_NOTEBOOK_QUICK", "1") == "1"'


def _code(cell) -> str:
    """A code cell's source with IPython-only lines (``%magic``, ``!shell``) blanked out."""
    return "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in cell.source.splitlines())


def _code_cells(nb) -> list:
    return [c for c in nb.cells if c.cell_type == "code"]


def test_every_tutorial_is_there():
    assert [p.stem for p in NOTEBOOKS if p.stem in EXPECTED] == EXPECTED, (
        f"notebooks/ holds {[p.name for p in NOTEBOOKS]}; expected {EXPECTED}"
    )


@pytest.fixture(params=NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def notebook(request):
    return request.param, nbformat.read(request.param, as_version=4)


def test_valid_nbformat_with_the_stock_python3_kernel(notebook):
    path, nb = notebook
    nbformat.validate(nb)
    # nbmake (and plain Jupyter on a fresh install) only know the "python3" kernel spec
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3", path.name


def test_outputs_are_stripped(notebook):
    path, nb = notebook
    dirty = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and (c.outputs or c.execution_count)]
    assert not dirty, f"{path.name}: cells {dirty} carry outputs or execution counts; strip them before committing"


def test_code_cells_compile(notebook):
    path, nb = notebook
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            try:
                ast.parse(_code(cell), filename=f"{path.name}[cell {i}]")
            except SyntaxError as err:
                pytest.fail(f"{path.name}, cell {i}: {err}")


def test_opens_with_a_title_and_a_quick_switch(notebook):
    path, nb = notebook
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# "), path.name
    first_code = _code_cells(nb)[0].source
    assert QUICK_SWITCH in first_code, f"{path.name}: the first code cell must read SSMCAST_NOTEBOOK_QUICK"
    assert re.search(r"\bif QUICK\b", first_code), f"{path.name}: the parameter cell never branches on QUICK"


def test_teaches_in_markdown(notebook):
    path, nb = notebook
    markdown = [c for c in nb.cells if c.cell_type == "markdown"]
    assert len(markdown) >= 4, f"{path.name}: only {len(markdown)} markdown cells"
    # no two code cells without some explanation in between, except short runs of up to three
    kinds = "".join("c" if c.cell_type == "code" else "m" for c in nb.cells)
    assert "cccc" not in kinds, f"{path.name}: four code cells in a row ({kinds})"


def test_no_machine_specific_paths_or_downloads(notebook):
    path, nb = notebook
    source = "\n".join(c.source for c in _code_cells(nb))
    assert not re.search(r"[\"'](/work|/tmp|/home|/root|[A-Za-z]:\\\\)", source), f"{path.name}: absolute path"
    # benchmark files only through SSMCAST_DATA_DIR and never downloaded: every load_dataset call of a
    # file-backed dataset passes download=False
    for match in re.finditer(r"load_dataset\(([^)]*)\)", source):
        args = match.group(1)
        if any(name in args for name in ("airline", "etth", "ettm", "weather", "exchange", "illness", "m4")):
            assert "download=False" in args, f"{path.name}: {match.group(0)} may download"
