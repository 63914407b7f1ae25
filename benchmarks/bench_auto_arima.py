"""AutoARIMA on M4 Hourly (414 series, h = 48, m = 24): wall time and sMAPE / MASE / OWA beside the M4 baselines.

Runs ``AutoARIMAForecaster`` (default ``approximation=None``: R's rule, so every M4 Hourly series, m = 24, is
searched by CSS and only the chosen model is fitted by exact MLE) with ``n_jobs=1`` and ``n_jobs=2`` on the same
series, and scores it with SeasonalNaive and ETS beside Naive2 (``ssmcast.evaluation.score``: mean sMAPE, mean
MASE with the in-sample seasonal-naive scale at m = 24, OWA of the means relative to Naive2 on the same series).
On all 414 series the Naive2 row should reproduce the M4 competition's (sMAPE 18.383, MASE 2.395).
``--exact-series K`` also times the exact search (``approximation=False``, every candidate by exact MLE) on the
first K of the chosen series, side by side with the approximated one on the same K.

    python benchmarks/bench_auto_arima.py --quick              # smoke run: 3 series, n_jobs=1, 8 candidates
    python benchmarks/bench_auto_arima.py --n-series 48        # 48 evenly spaced series
    python benchmarks/bench_auto_arima.py                      # all 414 series
"""

from __future__ import annotations

import argparse
import os
import platform
import time
import warnings
from collections import Counter

import numpy as np
import pandas as pd

from ssmcast.baselines import (
    AutoARIMAForecaster,
    ETSForecaster,
    FallbackWarning,
    Naive2Forecaster,
    SeasonalNaiveForecaster,
)
from ssmcast.baselines.arima import arima_name, fit_sarimax
from ssmcast.baselines.css import fit_css
from ssmcast.datasets import load_dataset
from ssmcast.evaluation.metrics import score

H, M = 48, 24
M4_NAIVE2 = (18.383, 2.395)  # sMAPE, MASE of Naive2 on M4 Hourly (competition results table)


def timed(estimator, train: pd.DataFrame):
    """``(forecast, seconds, fallbacks, fitted estimator)`` of fit + predict(H)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", FallbackWarning)
        start = time.perf_counter()
        forecast = estimator.fit(train).predict(H)
        seconds = time.perf_counter() - start
    fallbacks = sum(issubclass(w.category, FallbackWarning) for w in caught)
    return forecast, seconds, fallbacks, estimator


def overall(forecast, test, train, naive2) -> tuple[float, float, float]:
    table = score(forecast, test, metrics=("smape", "mase", "owa"), train=train, season_length=M, benchmark=naive2)
    row = table.iloc[-1]
    return float(row["smape"]), float(row["mase"]), float(row["owa"])


def css_vs_exact(y: np.ndarray, specs, repeats: int) -> None:
    """CPU time of one CSS fit and one exact MLE fit (statsmodels) of the same models on one series."""
    print(f"\none fit on {len(y)} values, CPU seconds (process_time), side by side:")
    print(f"{'model':<36}{'CSS ms':>9}{'exact s':>9}{'ratio':>8}{'CSS AICc':>11}{'exact AICc':>12}")
    for order, seasonal, constant in specs:
        start = time.process_time()
        for _ in range(repeats):
            css = fit_css(y, order, seasonal, constant)
        t_css = (time.process_time() - start) / repeats
        start = time.process_time()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ConvergenceWarning of statsmodels' optimiser
            exact = fit_sarimax(y, order, seasonal, "c" if constant else None)[3]
        t_exact = time.process_time() - start
        name = arima_name(order, seasonal, "c" if constant else None)
        print(f"{name:<36}{t_css * 1e3:>9.1f}{t_exact:>9.2f}{t_exact / t_css:>8.0f}{css.aicc:>11.1f}"
              f"{exact.aicc:>12.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-series", type=int, default=414, help="evenly spaced M4 Hourly series (max 414)")
    parser.add_argument("--jobs", default="1,2", help="comma-separated n_jobs values to time (default 1,2)")
    parser.add_argument("--exact-series", type=int, default=0,
                        help="also time approximation=False on the first K chosen series (slow: ~1-2 min each)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 3 series, n_jobs=1 only, AutoARIMA limited to 8 candidate models")
    parser.add_argument("--data-dir", default=None, help="default: $SSMCAST_DATA_DIR, ../shared/data, cache")
    parser.add_argument("--ets-auto", action="store_true", help="ETS chosen by AICc (slow) instead of ETS(A,N,A)")
    args = parser.parse_args()

    train_all = load_dataset("m4_hourly", args.data_dir, split="train")
    test_all = load_dataset("m4_hourly", args.data_dir, split="test")
    ids = np.array(sorted(train_all["unique_id"].unique(), key=lambda s: int(s[1:])))  # H1 .. H414
    n = 3 if args.quick else min(max(args.n_series, 1), len(ids))
    chosen = ids[np.unique(np.linspace(0, len(ids) - 1, n).round().astype(int))]
    train = train_all[train_all["unique_id"].isin(chosen)].reset_index(drop=True)
    test = test_all[test_all["unique_id"].isin(chosen)].reset_index(drop=True)
    jobs = [1] if args.quick else [int(j) for j in args.jobs.split(",")]
    max_models = 8 if args.quick else 94

    print(f"machine: {platform.platform()} | processor {platform.processor() or platform.machine()} | "
          f"{os.cpu_count()} CPUs | load average {os.getloadavg()[0]:.1f} at start")
    print("NOTE: the machine may be shared with other jobs (check the load average); timings are noisy.")
    shown = ", ".join(chosen[:8]) + (" ..." if len(chosen) > 8 else "")
    print(f"M4 Hourly: {len(chosen)} of {len(ids)} series ({shown}), h={H}, m={M}\n")

    naive2_all = Naive2Forecaster(season_length=M).fit(train_all).predict(H)
    s_all, m_all, _ = overall(naive2_all, test_all, train_all, naive2_all)
    print(f"Naive2 on all {len(ids)} series: sMAPE {s_all:.3f}, MASE {m_all:.3f} "
          f"(M4 table: {M4_NAIVE2[0]:.3f}, {M4_NAIVE2[1]:.3f})\n")

    rows = []
    naive2, t_naive2, _, _ = timed(Naive2Forecaster(season_length=M), train)
    rows.append(("Naive2", *overall(naive2, test, train, naive2), t_naive2, 0))
    snaive, t_snaive, fb, _ = timed(SeasonalNaiveForecaster(season_length=M), train)
    rows.append(("SeasonalNaive", *overall(snaive, test, train, naive2), t_snaive, fb))
    ets = (ETSForecaster(auto=True, season_length=M) if args.ets_auto
           else ETSForecaster(error="add", seasonal="add", season_length=M))
    ets_forecast, t_ets, fb, _ = timed(ets, train)
    rows.append(("ETS(auto)" if args.ets_auto else "ETS(A,N,A)", *overall(ets_forecast, test, train, naive2),
                 t_ets, fb))

    timings, reference, fitted = {}, None, None
    for n_jobs in jobs:
        est = AutoARIMAForecaster(season_length=M, n_jobs=n_jobs, max_models=max_models)
        forecast, seconds, fb, est = timed(est, train)
        timings[n_jobs] = seconds
        print(f"AutoARIMA n_jobs={n_jobs}: {seconds:.1f} s (load average {os.getloadavg()[0]:.1f})")
        if reference is None:
            reference, arima_fallbacks, fitted = forecast, fb, est
        else:
            same = np.allclose(forecast["y_pred"], reference["y_pred"], rtol=1e-6, atol=1e-8)
            print(f"  forecasts identical to n_jobs={jobs[0]}: {same}")
    rows.append(("AutoARIMA", *overall(reference, test, train, naive2), timings[jobs[0]], arima_fallbacks))

    try:
        from statsforecast import StatsForecast
        from statsforecast.models import AutoARIMA as SFAutoARIMA
    except ImportError:
        print("statsforecast: not installed (it would downgrade pandas 3.1 -> 2.3, so it is kept out of the venv)")
    else:
        start = time.perf_counter()
        sf = StatsForecast(models=[SFAutoARIMA(season_length=M)], freq=1, n_jobs=1)
        sf_forecast = sf.forecast(df=train, h=H).reset_index().rename(columns={"AutoARIMA": "y_pred"})
        rows.append(("statsforecast AutoARIMA", *overall(sf_forecast, test, train, naive2),
                     time.perf_counter() - start, 0))

    print(f"\n{'method':<26}{'sMAPE':>9}{'MASE':>9}{'OWA':>8}{'fit+predict s':>15}{'fallbacks':>11}")
    for name, s, m, owa, seconds, fb in rows:
        print(f"{name:<26}{s:>9.3f}{m:>9.3f}{owa:>8.3f}{seconds:>15.1f}{fb:>11d}")

    summary = fitted.summary()
    models = summary[summary["fallback"].isna()]
    print(f"\nAutoARIMA ({len(summary)} series): approximation used on {int(models['approximation'].eq(True).sum())}; "
          f"candidates per series mean {models['n_models'].mean():.1f} (max {models['n_models'].max()}); "
          f"exact MLE fits per series mean {models['n_exact_fits'].mean():.2f} "
          f"(max {models['n_exact_fits'].max()}); fallbacks {len(summary) - len(models)}; "
          f"series with fit warnings {len(fitted.fit_warnings_)}")
    print("most frequent models: " + "; ".join(f"{k} x{v}" for k, v in Counter(summary["model"]).most_common(5)))
    print("\nAutoARIMA wall time: " + ", ".join(f"n_jobs={k}: {v:.1f} s" for k, v in timings.items()))
    if 1 in timings and 2 in timings:
        print(f"speed-up n_jobs=2 vs 1: {timings[1] / timings[2]:.2f}x (same run, side by side)")
    per_series = timings[jobs[0]] / len(chosen)
    print(f"AutoARIMA per series (n_jobs={jobs[0]}): {per_series:.2f} s; all 414: ~{per_series * 414 / 60:.0f} min")

    y = train_all.loc[train_all["unique_id"] == "H1", "y"].to_numpy()
    specs = [((2, 0, 2), (1, 1, 1, M), True), ((1, 0, 0), (2, 1, 0, M), True), ((2, 1, 2), (0, 1, 1, M), False)]
    css_vs_exact(y, specs[:1] if args.quick else specs, repeats=3 if args.quick else 20)

    if args.exact_series > 0 and not args.quick:
        few = chosen[:args.exact_series]
        sub = train[train["unique_id"].isin(few)]
        _, t_approx, _, approx = timed(AutoARIMAForecaster(season_length=M, n_jobs=1), sub)
        _, t_exact, _, exact = timed(AutoARIMAForecaster(season_length=M, n_jobs=1, approximation=False), sub)
        print(f"\nexact vs approximated search on {len(few)} series ({', '.join(few)}), n_jobs=1, side by side: "
              f"exact {t_exact:.1f} s, approximated {t_approx:.1f} s, ratio {t_exact / t_approx:.1f}x")
        both = approx.summary()[["unique_id", "model", "aicc", "n_exact_fits"]].merge(
            exact.summary()[["unique_id", "model", "aicc", "n_exact_fits"]], on="unique_id",
            suffixes=("_approx", "_exact"))
        print(both.to_string(index=False))
    print(f"\nload average at end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
