"""Issue #36's table, re-measured on this checkout in one run: 1k, 10k and 100k series.

The rows of the table the issue opened with (its figures were today's code then: see ``benchmarks/SCALE.md``),
each measurement in its own Python process through ``bench_scale.run`` (one thread, the same synthetic hourly
panel: level 10, daily seasonality, noise), plus the panel of 500 points a series the issue used for ``backtest``
and ``validate``::

    python benchmarks/scale_report.py                          # 1k, 10k, 100k (ETS/ARIMA to 10k)
    python benchmarks/scale_report.py --n 1000 --rows ets arima

ETS and ARIMA are fitted up to ``--model-max-n`` series (default 10k: their cost is statsmodels' per series, so the
100k figure is the 10k one times ten, which the table prints as extrapolated). Prints a markdown table (seconds;
per series in ms) and the machine with its load at the start and the end; the machine is what it is, read
magnitudes and ratios, not the seconds of different runs.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_scale  # noqa: E402  (benchmarks/ is not a package)

# name: (label, points a series, code run after `df` exists: sets seconds[...] and check)
ROWS = {
    "seasonal_naive": ("`SeasonalNaiveForecaster` fit, n_jobs=1 / 2", 200, """
        from ssmcast.baselines import SeasonalNaiveForecaster as C
        for jobs in (1, 2):
            t = time.perf_counter(); est = C(season_length=24, horizon=24, n_jobs=jobs).fit(df)
            seconds[f"n_jobs={jobs}"] = time.perf_counter() - t
        check = float(est.predict()["y_pred"].sum())
    """),
    "ets": ("`ETSForecaster` fit, n_jobs=1 / 2", 200, """
        from ssmcast.baselines import ETSForecaster as C
        for jobs in (1, 2):
            t = time.perf_counter(); est = C(horizon=24, n_jobs=jobs).fit(df)
            seconds[f"n_jobs={jobs}"] = time.perf_counter() - t
        check = float(est.predict()["y_pred"].sum())
    """),
    "arima": ("`ARIMAForecaster(order=(1,1,1))` fit, n_jobs=1 / 2", 200, """
        from ssmcast.baselines import ARIMAForecaster as C
        for jobs in (1, 2):
            t = time.perf_counter(); est = C(order=(1, 1, 1), horizon=24, n_jobs=jobs).fit(df)
            seconds[f"n_jobs={jobs}"] = time.perf_counter() - t
        check = float(est.predict()["y_pred"].sum())
    """),
    "backtest": ("`backtest` SeasonalNaive, 3 windows of 24, length 500", 500, """
        from ssmcast.baselines import SeasonalNaiveForecaster as C
        from ssmcast.evaluation import backtest
        t = time.perf_counter(); out = backtest(C(season_length=24), df, horizon=24, n_windows=3, step=24)
        seconds["backtest"] = time.perf_counter() - t
        check = float(out["y_pred"].sum())
    """),
    "s4d": ("`S4DForecaster` fit (1 epoch, 50 batches): data preparation / first `update()`", 200, """
        # "preparation": the fit outside lightning's Trainer.fit (validation, scaling, windows, set-up), lightning
        # imported before the clock starts; then the first update(): every series' state from its history
        import lightning
        from ssmcast import S4DForecaster
        from ssmcast.backbones.s4 import S4DConfig
        inside = _wrap([(lightning.Trainer, "fit")])
        est = S4DForecaster(input_size=48, horizon=24, max_epochs=1, revin=False, verbose=False, accelerator="cpu",
                            precision="32", backbone=S4DConfig(d_model=16, n_layers=1, d_state=8),
                            trainer_kwargs={"limit_train_batches": 50})
        t = time.perf_counter(); est.fit(df); fit = time.perf_counter() - t
        seconds["preparation"] = fit - inside[0]
        last = df.groupby("unique_id", sort=False).tail(1)
        new = last.assign(ds=last["ds"] + pd.Timedelta(hours=1))
        t = time.perf_counter(); out = est.update(new); seconds["first_update"] = time.perf_counter() - t
        check = float(out["y_pred"].abs().sum())
    """),
    "validate": ("`validate` of the long frame, length 500", 500, """
        from ssmcast.data import validate
        t = time.perf_counter(); out = validate(df); seconds["validate"] = time.perf_counter() - t
        check = float(len(out))
    """),
}
MODELS = ("ets", "arima")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    parser.add_argument("--model-max-n", type=int, default=10000, help="ETS/ARIMA fitted up to this many series")
    args = parser.parse_args()
    for name, (_, _, code) in ROWS.items():
        bench_scale.WORK[f"report_{name}"] = code
    load = os.getloadavg()
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, python "
          f"{platform.python_version()}, 1 thread a process, load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
    results: dict = {}  # (row, n) -> seconds dict, or an error string
    for name in args.rows:
        length = ROWS[name][1]
        for n in args.n:
            if name in MODELS and n > args.model_max_n:
                continue
            out = bench_scale.run(f"report_{name}", n, length, bench_scale.ROOT, threads=1)
            results[name, n] = out.get("error") or out["seconds"]
            shown = out.get("error") or ", ".join(f"{k} {v:.2f} s" for k, v in out["seconds"].items())
            print(f"# {name} | {n} | {shown} | peak {out.get('peak_mb', 0):.0f} MB", flush=True)
    print()
    print("| work | " + " | ".join(f"{n:,} series" for n in args.n) + " | per series |")
    print("|---|" + "---|" * (len(args.n) + 1))
    for name in args.rows:
        cells, per = [], ""
        for n in args.n:
            got = results.get((name, n))
            if got is None:
                largest = max((m for m in args.n if isinstance(results.get((name, m)), dict)), default=None)
                cells.append("–" if largest is None else
                             " / ".join(f"~{v * n / largest:.0f} s" for v in results[name, largest].values())
                             + " (extrapolated)")
            elif isinstance(got, str):
                cells.append(f"error: {got}")
            else:
                cells.append(" / ".join(f"{v:.2f} s" for v in got.values()))
                per = " / ".join(f"{1000 * v / n:.3f} ms" for v in got.values())
        print(f"| {ROWS[name][0]} | " + " | ".join(cells) + f" | {per} |")
    load = os.getloadavg()
    print(f"\n# load average at the end: {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")


if __name__ == "__main__":
    main()
