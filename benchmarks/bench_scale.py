"""Scale benchmark (issue #36): the naive family, ETS/ARIMA overhead and backtest on large synthetic panels.

Each measurement runs in its own Python process (no warm caches shared between them), on a synthetic hourly
long panel of ``--length`` points a series (level 10 plus daily seasonality and noise, one fixed seed). With
``--tree DIR`` every measurement is repeated, alternating, with the ``ssmcast`` package found in ``DIR`` (a
checkout or ``git worktree`` of an older commit), so old and new are timed side by side in one run::

    git worktree add /tmp/old 4ae62c0^            # the code before issue #36
    python benchmarks/bench_scale.py --n 1000 10000 --tree /tmp/old
    python benchmarks/bench_scale.py --n 100000 --work seasonal_naive naive

Prints one line per measurement (work, series, code, seconds, peak RSS) and the machine (CPU, cores, load).
The machine is what it is: read the ratios of one run, not the seconds of different runs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

WORK = {
    # name: code run after `df` (the panel) exists; it sets `seconds` (a dict of timed phases)
    "seasonal_naive": """
        from ssmcast.baselines import SeasonalNaiveForecaster as C
        est = C(season_length=24, horizon=24)
        t = time.perf_counter(); est.fit(df); seconds["fit"] = time.perf_counter() - t
        t = time.perf_counter(); out = est.predict(); seconds["predict"] = time.perf_counter() - t
        check = float(out["y_pred"].sum())
    """,
    "naive": """
        from ssmcast.baselines import NaiveForecaster as C
        est = C(horizon=24)
        t = time.perf_counter(); est.fit(df); seconds["fit"] = time.perf_counter() - t
        t = time.perf_counter(); out = est.predict(quantiles=[0.1, 0.9]); seconds["predict"] = time.perf_counter() - t
        check = float(out["y_pred_q0.9"].sum())
    """,
    "naive2": """
        from ssmcast.baselines import Naive2Forecaster as C
        est = C(season_length=24, horizon=24)
        t = time.perf_counter(); est.fit(df); seconds["fit"] = time.perf_counter() - t
        t = time.perf_counter(); out = est.predict(); seconds["predict"] = time.perf_counter() - t
        check = float(out["y_pred"].sum())
    """,
    "backtest_seasonal_naive": """
        from ssmcast.baselines import SeasonalNaiveForecaster as C
        from ssmcast.evaluation import backtest
        t = time.perf_counter()
        out = backtest(C(season_length=24), df, horizon=24, n_windows=3, step=24)
        seconds["backtest"] = time.perf_counter() - t
        check = float(out["y_pred"].sum())
    """,
    "s4d_prepare_update": """
        # the neural path at scale: data preparation (a fit of a few batches), then the first update(), which
        # builds every series' recurrent state from its history (revin=False: the O(1)-per-step streaming mode)
        from ssmcast import S4DForecaster
        from ssmcast.backbones.s4 import S4DConfig
        est = S4DForecaster(input_size=48, horizon=24, max_epochs=1, revin=False, val_size=0, verbose=False,
                            accelerator="cpu", precision="32", backbone=S4DConfig(d_model=16, n_layers=1, d_state=8),
                            trainer_kwargs={"limit_train_batches": 5})
        t = time.perf_counter(); est.fit(df); seconds["fit"] = time.perf_counter() - t
        last = df.groupby("unique_id", sort=False).tail(1)
        new = last.assign(ds=last["ds"] + pd.Timedelta(hours=1), y=last["y"])
        t = time.perf_counter(); out = est.update(new); seconds["first_update"] = time.perf_counter() - t
        t = time.perf_counter(); out = est.update(new.assign(ds=new["ds"] + pd.Timedelta(hours=1)))
        seconds["second_update"] = time.perf_counter() - t
        check = float(out["y_pred"].abs().sum())
    """,
    "ets_overhead": """
        # ssmcast's own cost around statsmodels: the time inside statsmodels' ETS calls (outermost ones, measured
        # by wrapping them) subtracted from the whole fit + predict; "overhead" is the rest, per series
        from statsmodels.tsa.exponential_smoothing.ets import ETSModel, ETSResults
        from ssmcast.baselines import ETSForecaster as C
        inside = _wrap([(ETSModel, "__init__"), (ETSModel, "fit"), (ETSModel, "smooth"),
                        (ETSResults, "get_prediction"), (ETSResults, "forecast"), (ETSResults, "simulate")])
        est = C(horizon=24)
        t = time.perf_counter(); est.fit(df); est.predict(quantiles=[0.1, 0.9]); total = time.perf_counter() - t
        seconds["statsmodels"] = inside[0]
        seconds["overhead"] = total - inside[0]
        check = float(est.predict()["y_pred"].sum())
    """,
    "arima_overhead": """
        from statsmodels.tsa.statespace.mlemodel import MLEModel, MLEResults
        from statsmodels.tsa.statespace.sarimax import SARIMAX
        from ssmcast.baselines import ARIMAForecaster as C
        inside = _wrap([(SARIMAX, "__init__"), (MLEModel, "fit"), (MLEModel, "filter"), (MLEModel, "smooth"),
                        (MLEResults, "get_forecast"), (MLEResults, "get_prediction")])
        est = C(order=(1, 1, 1), horizon=24)
        t = time.perf_counter(); est.fit(df); est.predict(quantiles=[0.1, 0.9]); total = time.perf_counter() - t
        seconds["statsmodels"] = inside[0]
        seconds["overhead"] = total - inside[0]
        check = float(est.predict()["y_pred"].sum())
    """,
    "ets": """
        from ssmcast.baselines import ETSForecaster as C
        est = C(season_length=24, horizon=24)
        t = time.perf_counter(); est.fit(df); seconds["fit"] = time.perf_counter() - t
        t = time.perf_counter(); out = est.predict(); seconds["predict"] = time.perf_counter() - t
        check = float(out["y_pred"].sum())
    """,
}

RUNNER = """
import resource, sys, time, warnings
warnings.simplefilter("ignore")
import numpy as np, pandas as pd
n, length = {n}, {length}
rng = np.random.default_rng(0)
t = np.arange(length)
y = 10 + np.sin(2 * np.pi * t / 24) + rng.normal(scale=0.3, size=(n, length))
df = pd.DataFrame({{"unique_id": np.repeat([f"s{{i:07d}}" for i in range(n)], length),
                   "ds": np.tile(pd.date_range("2020-01-01", periods=length, freq="h").to_numpy(), n),
                   "y": y.ravel()}})
seconds = {{}}


def _wrap(methods):  # time spent inside the given methods (outermost calls only): a one-element list of seconds
    import functools
    spent, depth = [0.0], [0]
    for cls, name in methods:
        original = getattr(cls, name)

        @functools.wraps(original)
        def timed(*args, __original=original, **kwargs):
            depth[0] += 1
            start = time.perf_counter()
            try:
                return __original(*args, **kwargs)
            finally:
                depth[0] -= 1
                if depth[0] == 0:
                    spent[0] += time.perf_counter() - start
        setattr(cls, name, timed)
    return spent


{work}
import ssmcast, json
peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({{"seconds": seconds, "check": check, "peak_mb": peak_mb, "ssmcast": ssmcast.__file__}}))
"""


def run(work: str, n: int, length: int, tree: Path, threads: int) -> dict:
    code = RUNNER.format(n=n, length=length, work=textwrap.indent(textwrap.dedent(WORK[work]), ""))
    env = dict(os.environ, PYTHONPATH=str(tree), OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads))
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=tree)
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"rc {done.returncode}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, nargs="+", default=[1000, 10000], help="series in the panel")
    parser.add_argument("--length", type=int, default=200, help="points a series")
    parser.add_argument("--work", nargs="+", default=["seasonal_naive", "naive", "naive2", "backtest_seasonal_naive"],
                        choices=sorted(WORK))
    parser.add_argument("--tree", type=Path, default=None, help="another checkout to time side by side")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    load = os.getloadavg()
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()},"
          f" {args.threads} thread(s), load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
    print(f"# panels: hourly, {args.length} points a series; each measurement in its own process")
    print("work | series | code | phases (s) | total s | per series ms | peak MB | check")
    trees = [("this", ROOT)] + ([("other", args.tree.resolve())] if args.tree else [])
    for n in args.n:
        for work in args.work:
            totals = {}
            for label, tree in trees:
                out = run(work, n, args.length, tree, args.threads)
                if "error" in out:
                    print(f"{work} | {n} | {label} | error: {out['error']}", flush=True)
                    continue
                total = sum(out["seconds"].values())
                totals[label] = total
                phases = ", ".join(f"{k} {v:.2f}" for k, v in out["seconds"].items())
                print(f"{work} | {n} | {label} | {phases} | {total:.2f} | {1000 * total / n:.3f} | "
                      f"{out['peak_mb']:.0f} | {out['check']:.6g}", flush=True)
            if len(totals) == 2 and totals["this"] > 0:
                print(f"{work} | {n} | ratio other/this | {totals['other'] / totals['this']:.1f}x", flush=True)
    print(f"# load average at the end: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
