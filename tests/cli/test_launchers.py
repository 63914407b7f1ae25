"""Hydra launcher plugins named in the docs (issue #36): a sweep through joblib (local processes) and through
submitit (its local executor: the SLURM path without a cluster) runs every job and gives the results of the
default sequential launcher."""

from __future__ import annotations

import pandas as pd
import pytest
from cli_helpers import run_cli

SWEEP = ["compare", "--multirun", "data=co2", "quick=true", "models=[naive,seasonal_naive]", "tracking=none",
         "n_windows=2", "horizon=13,26"]  # fmt: skip


def boards(directory) -> dict[str, pd.DataFrame]:
    return {p.parent.name: pd.read_csv(p).drop(columns=["fit_time_s", "predict_time_s"])
            for p in sorted(directory.glob("*/leaderboard.csv"))}  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("launcher", [["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"],
                                      ["hydra/launcher=submitit_local", "hydra.launcher.timeout_min=5"]])
def test_a_sweep_through_a_launcher_plugin_equals_the_sequential_sweep(launcher, tmp_path):
    runs = {}
    for name, extra in [("basic", []), ("plugin", launcher)]:
        done = run_cli([*SWEEP, *extra, f"hydra.sweep.dir={tmp_path / name}"], cwd=tmp_path)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        runs[name] = boards(tmp_path / name)
    assert sorted(runs["plugin"]) == ["0", "1"]  # both jobs ran
    for job in ("0", "1"):
        pd.testing.assert_frame_equal(runs["plugin"][job], runs["basic"][job])
