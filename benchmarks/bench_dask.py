"""The per-series baselines on a dask.distributed LocalCluster against the local path (issue #36's report).

One process, one synthetic hourly panel (200 points a series, as ``bench_scale.py``); ``ETSForecaster`` and
``ARIMAForecaster(order=(1,1,1))`` fit + predict (24 steps, 10 %/90 % quantiles) with ``n_jobs=1``, ``n_jobs=2``
(joblib's local processes) and ``backend="dask"`` on a ``LocalCluster`` of ``--workers`` processes of one thread
each (started before the clock; its start-up time printed apart), each path twice, alternating; the forecasts of
every path are checked equal to the first's. Prints the machine and its load: read the ratios::

    python benchmarks/bench_dask.py --n 2000 --workers 2
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import pandas as pd


def panel(n: int, length: int) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    t = np.arange(length)
    y = 10 + np.sin(2 * np.pi * t / 24) + rng.normal(scale=0.3, size=(n, length))
    return pd.DataFrame({"unique_id": np.repeat([f"s{i:07d}" for i in range(n)], length),
                         "ds": np.tile(pd.date_range("2020-01-01", periods=length, freq="h").to_numpy(), n),
                         "y": y.ravel()})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=2000, help="series in the panel")
    parser.add_argument("--length", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2, help="LocalCluster worker processes (one thread each)")
    parser.add_argument("--models", nargs="+", default=["ets", "arima"], choices=["ets", "arima"])
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from distributed import Client, LocalCluster

    from ssmcast.baselines import ARIMAForecaster, ETSForecaster

    load = os.getloadavg()
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, python "
          f"{platform.python_version()}, load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
    df = panel(args.n, args.length)
    start = time.perf_counter()
    cluster = LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True, dashboard_address=None,
                           host="127.0.0.1")
    client = Client(cluster)
    print(f"# LocalCluster of {args.workers} worker processes started in {time.perf_counter() - start:.1f} s")
    makers = {"ets": lambda **kw: ETSForecaster(horizon=24, **kw),
              "arima": lambda **kw: ARIMAForecaster(order=(1, 1, 1), horizon=24, **kw)}
    paths = {"local n_jobs=1": {"n_jobs": 1}, "local n_jobs=2": {"n_jobs": 2}, f"dask {args.workers} workers": {
        "backend": "dask"}}
    print("model | path | round | fit + predict s | per series ms")
    try:
        for model in args.models:
            best: dict = {}
            reference = None
            for round_ in (1, 2):
                for label, kwargs in paths.items():
                    t = time.perf_counter()
                    out = makers[model](**kwargs).fit(df).predict(quantiles=[0.1, 0.9])
                    seconds = time.perf_counter() - t
                    if reference is None:
                        reference = out
                    pd.testing.assert_frame_equal(out, reference)  # every path: the same forecasts
                    best[label] = min(best.get(label, seconds), seconds)
                    print(f"{model} | {label} | {round_} | {seconds:.2f} | {1000 * seconds / args.n:.2f}", flush=True)
            base = best["local n_jobs=1"]
            print(f"# {model}: least of 2 rounds, local n_jobs=1 / path: "
                  + ", ".join(f"{label} {base / s:.2f}x" for label, s in best.items()), flush=True)
    finally:
        client.close()
        cluster.close()
    load = os.getloadavg()
    print(f"# load average at the end: {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")


if __name__ == "__main__":
    main()
