"""The README's "Ten lines of Python" run as shown: the printed output must be the output block under it.

Numbers are compared with a relative tolerance of 1e-5 (CPU training is deterministic for a given thread
count; the last printed digits move with it), every other word exactly.
"""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
NUMBER = re.compile(r"^-?\d+(\.\d+)?$")


def example_and_output(text: str) -> tuple[str, str]:
    section = text.split("## Ten lines of Python", 1)[1]
    blocks = re.findall(r"```(\w*)\n(.*?)```", section, flags=re.S)
    (lang, code), (_, shown) = blocks[0], blocks[1]
    assert lang == "python"
    return code, shown


def test_the_example_has_ten_lines_and_an_output_block():
    code, shown = example_and_output(README.read_text())
    lines = [line for line in code.splitlines() if line.strip()]
    assert len(lines) <= 11, "the 'ten lines' example grew"
    assert "MAE over 52 weeks" in shown


def test_readme_example_prints_what_the_readme_shows(data_dir, monkeypatch, tmp_path):
    code, shown = example_and_output(README.read_text())
    monkeypatch.setenv("SSMCAST_DATA_DIR", str(data_dir))
    monkeypatch.chdir(tmp_path)  # Lightning may write logs next to the caller
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, str(README), "exec"), {"__name__": "readme_example"})
    got, want = out.getvalue().split(), shown.split()
    assert len(got) == len(want), f"printed:\n{out.getvalue()}\nREADME shows:\n{shown}"
    for g, w in zip(got, want):
        if NUMBER.match(w) and NUMBER.match(g):
            assert float(g) == pytest.approx(float(w), rel=1e-5), f"printed:\n{out.getvalue()}"
        else:
            assert g == w, f"printed:\n{out.getvalue()}"
