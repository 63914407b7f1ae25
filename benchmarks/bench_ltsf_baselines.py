"""Classical baselines under the long-horizon protocol: ``predict_windows`` (affine window maps) against the
per-window fallback, side by side in one run, on the same fitted parameters.

``evaluate_ltsf`` scores every test window (2785 on ETTh1 at H=96). A baseline's ``predict_windows`` forecasts a
linear model's windows through its affine map ``W y + b``, built from about ``input_size`` Kalman filters per
channel; the fallback (what ``evaluate_ltsf`` does for an estimator without ``predict_windows``) re-filters the
model once per window and channel through ``predict(df=window)``. Both must give the same MSE / MAE.

    python benchmarks/bench_ltsf_baselines.py --quick                   # seconds: OT only, H=24, 400 windows
    python benchmarks/bench_ltsf_baselines.py --channels OT HUFL        # ETTh1, H=96, input 96, every window

Needs the ETTh1 CSV (``SSMCAST_DATA_DIR`` or the download cache).
"""

from __future__ import annotations

import argparse
import os
import platform
import warnings

import numpy as np

from ssmcast.baselines import ARIMAForecaster, ETSForecaster
from ssmcast.datasets import load_wide, ltsf_split
from ssmcast.evaluation import evaluate_ltsf


def without_windows(cls):
    """The same estimator class with ``predict_windows`` hidden: evaluate_ltsf falls back to predict(df=)."""
    return type(f"{cls.__name__}PerWindow", (cls,), {"predict_windows": None, "__module__": __name__})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--channels", nargs="+", default=["OT"])
    parser.add_argument("--input-size", type=int, default=96)
    parser.add_argument("--horizon", type=int, default=96)
    parser.add_argument("--quick", action="store_true", help="H=24 on the first 400 test windows")
    args = parser.parse_args()
    print(f"machine: {platform.platform()}, {platform.processor() or platform.machine()}, cpus={os.cpu_count()}, "
          f"load avg {' '.join(f'{v:.1f}' for v in os.getloadavg())}")

    dataset, split = "etth1", None
    horizon = 24 if args.quick else args.horizon
    if args.quick:  # the standard split with a test part of 400 windows
        wide = load_wide("etth1")
        parts = ltsf_split("etth1")
        end = parts.test[0] + 400 + horizon - 1
        dataset, split = wide.iloc[:end], (parts.train, parts.val, (parts.test[0], end))
    models = {
        "ARIMA(0,1,1)(0,1,1)24": lambda cls: cls(order=(0, 1, 1), seasonal_order=(0, 1, 1), season_length=24),
        "ETS(A,N,A) m=24": lambda cls: cls(error="add", seasonal="add", season_length=24),
    }
    classes = {"ARIMA(0,1,1)(0,1,1)24": ARIMAForecaster, "ETS(A,N,A) m=24": ETSForecaster}
    print(f"ETTh1, channels {args.channels}, input {args.input_size}, H={horizon}")
    for name, make in models.items():
        results = {}
        for label, cls in (("predict_windows", classes[name]), ("per window", without_windows(classes[name]))):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # statsmodels convergence warnings while fitting
                res = evaluate_ltsf(make(cls), dataset, input_size=args.input_size, horizon=horizon,
                                    channels=args.channels, split=split)
            results[label] = res
            print(f"  {name:22s} {label:16s} {res.n_windows} windows  MSE {res.mse:.6f}  MAE {res.mae:.6f}  "
                  f"fit {res.fit_time_s:6.1f} s  predict {res.predict_time_s:7.1f} s  ({res.predict_mode})")
        fast, slow = results["predict_windows"], results["per window"]
        print(f"  {'':22s} predict speed-up x{slow.predict_time_s / fast.predict_time_s:.1f}, "
              f"|MSE difference| {abs(fast.mse - slow.mse):.1e}")
        assert np.isclose(fast.mse, slow.mse, rtol=1e-9) and np.isclose(fast.mae, slow.mae, rtol=1e-9)


if __name__ == "__main__":
    main()
