"""`make test` without the benchmark datasets says so in one line at the end (issue #33)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path


def test_tests_skipped_for_missing_data_are_counted_in_one_closing_line(tmp_path):
    project = tmp_path / "checkout" / "repo"  # no ../shared/data beside it
    (project / "tests").mkdir(parents=True)
    shutil.copy(Path(__file__).with_name("conftest.py"), project / "tests" / "conftest.py")
    (project / "tests" / "test_x.py").write_text(
        "def test_a(data_dir):\n    pass\n\n\ndef test_b(data_dir):\n    pass\n\n\ndef test_c():\n    pass\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("SSMCAST_DATA_DIR", "CI", "PYTEST_XDIST_WORKER")}
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"], cwd=project,
                         capture_output=True, text=True, env=env, timeout=300)  # fmt: skip
    assert out.returncode == 0, out.stdout[-2000:]
    lines = [line for line in out.stdout.splitlines() if line.startswith("ssmcast: ")]
    assert lines == [lines[0]] and "2 test(s) were SKIPPED" in lines[0] and "make data" in lines[0]
