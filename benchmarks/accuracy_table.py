"""The long-horizon accuracy grid as a Markdown table, read back from the MLflow runs that produced it.

Every ``ssmcast train experiment=ltsf_<data>_<horizon> ...`` run logs its test MSE / MAE and fit time; this script
groups the finished runs by recipe (the run's command line without ``experiment=``, ``seed=`` and output flags)
and by cell (data set and horizon), keeps the latest run of each seed, and prints one row per recipe: a cell is
``MSE / MAE (fit s)``, or ``mean ± std`` over the seeds (the fit time their mean) when there are several. The
recipe comes from the run's ``ssmcast.command_line`` tag, or for older runs from the Hydra overrides in its
output folder; smoke runs (``quick=true``) are left out. Nothing is trained or changed::

    python benchmarks/accuracy_table.py --uri sqlite:///mlflow.db --data etth2 ettm2 --horizons 96 720
"""

from __future__ import annotations

import argparse
import os
import shlex
from pathlib import Path

import numpy as np
import pandas as pd

_NOT_RECIPE = ("experiment=", "seed=", "verbose=", "quick=", "hydra.", "tracking.")


def recipe(run: pd.Series) -> list[str] | None:
    """The run's command-line words (overrides), or None when neither the tag nor the Hydra folder has them."""
    line = run.get("tags.ssmcast.command_line")
    if isinstance(line, str) and line:
        return shlex.split(line)[2:]
    overrides = Path(str(run.get("tags.output_dir"))) / ".hydra" / "overrides.yaml"
    if overrides.is_file():
        import yaml

        words = [str(word) for word in yaml.safe_load(overrides.read_text()) or []]
        return [word for word in words if not word.startswith("command=")]
    return None


def cell(values: pd.DataFrame) -> str:
    mse, mae, fit = values["metrics.test_mse"], values["metrics.test_mae"], values["metrics.fit_time_s"]
    if len(values) == 1:
        return f"{mse.iloc[0]:.3f} / {mae.iloc[0]:.3f} ({fit.iloc[0]:.0f} s)"
    return (f"{mse.mean():.3f} ± {mse.std(ddof=1):.3f} / {mae.mean():.3f} ± {mae.std(ddof=1):.3f} "
            f"({fit.mean():.0f} s, {len(values)} seeds)")


def table(runs: pd.DataFrame, data: list[str] | None, horizons: list[int] | None) -> str:
    rows = []
    for _, run in runs.iterrows():
        words = recipe(run)
        if words is None or str(run.get("params.quick")) == "True":  # a smoke run (quick=true) is no result
            continue
        experiment = next((w.split("=", 1)[1] for w in words if w.startswith("experiment=")), "")
        if not experiment.startswith("ltsf_"):
            continue
        name, horizon = experiment[len("ltsf_"):].rsplit("_", 1)
        if (data and name not in data) or (horizons and int(horizon) not in horizons):
            continue
        seed = next((w.split("=", 1)[1] for w in words if w.startswith("seed=")), "0")
        label = " ".join(w for w in words if not w.startswith(_NOT_RECIPE))
        rows.append({"recipe": label, "cell": f"{name} H={horizon}", "seed": seed, "start": run["start_time"],
                     **{k: run[k] for k in ("metrics.test_mse", "metrics.test_mae", "metrics.fit_time_s")}})
    if not rows:
        return "no finished long-horizon train runs match"
    frame = pd.DataFrame(rows).sort_values("start").groupby(["recipe", "cell", "seed"]).tail(1)
    cells = sorted(frame["cell"].unique(), key=lambda c: (c.split()[0], int(c.split("=")[1])))
    lines = ["| recipe | " + " | ".join(cells) + " |", "|---" * (len(cells) + 1) + "|"]
    for label, group in frame.groupby("recipe", sort=True):
        by_cell = {c: cell(g) for c, g in group.groupby("cell")}
        lines.append(f"| `{label}` | " + " | ".join(by_cell.get(c, "–") for c in cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--uri", default=os.environ.get("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db"),
                        help="the MLflow tracking URI the runs were logged to")
    parser.add_argument("--experiment", default=None, help="MLflow experiment name (default: every experiment)")
    parser.add_argument("--data", nargs="+", default=None, help="data set names, e.g. etth1 ettm2")
    parser.add_argument("--horizons", nargs="+", type=int, default=None)
    args = parser.parse_args()
    import mlflow

    mlflow.set_tracking_uri(args.uri)
    found = mlflow.search_runs(experiment_names=[args.experiment] if args.experiment else None,
                               search_all_experiments=args.experiment is None,
                               filter_string="attributes.status = 'FINISHED' and tags.`ssmcast.command` = 'train'")
    needed = {"metrics.test_mse", "metrics.test_mae", "metrics.fit_time_s"}
    if found.empty or not needed <= set(found.columns):
        print("no finished long-horizon train runs at", args.uri)
        return
    found = found[np.isfinite(found["metrics.test_mse"].astype(float))]
    print(table(found, args.data, args.horizons))


if __name__ == "__main__":
    main()
