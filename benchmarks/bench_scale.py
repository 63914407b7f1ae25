"""Scale benchmark (issue #36): the naive family, ETS/ARIMA overhead, backtest and the neural path (S4D data
preparation, update(), predict(df=), a fit's memory) on large synthetic panels.

Each measurement runs in its own Python process (no warm caches shared between them), on a synthetic hourly
long panel of ``--length`` points a series (level 10 plus daily seasonality and noise, one fixed seed). With
``--tree DIR`` every measurement is repeated, alternating, with the ``ssmcast`` package found in ``DIR`` (a
checkout or ``git worktree`` of an older commit), so old and new are timed side by side in one run::

    git worktree add /tmp/old 4ae62c0^            # the code before issue #36
    python benchmarks/bench_scale.py --n 1000 10000 --tree /tmp/old
    python benchmarks/bench_scale.py --n 100000 --work seasonal_naive naive
    python benchmarks/bench_scale.py --n 10000 30000 100000 --work s4d_streaming --rounds 2   # neural, slope
    python benchmarks/bench_scale.py --n 100000 --work s4d_fit_memory --tree /tmp/old        # peak RSS of a fit
    python benchmarks/bench_scale.py --n 1000 --work arima_statsmodels_only ets_statsmodels_only --tree /tmp/old \
        --rounds 2     # ETS/ARIMA overhead: by subtraction of the bare statsmodels loop and by wrapped calls, CPU

Prints one line per measurement (work, series, code, seconds, peak RSS; a work's own memory figures where it
measures them) and the machine (CPU, cores, load); with several ``--n``, the log-log slope of each phase's seconds
in the number of series (``--rounds R``: every size measured R times, a round over all sizes at a time, the least
kept). The machine is what it is: read the ratios of one run, not the seconds of different runs.
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

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

# what the two paired ARIMA works share: statsmodels' calls wrapped, and the ssmcast side of the pair
_ARIMA_PAIRED = """\
        from statsmodels.tsa.statespace.mlemodel import MLEModel, MLEResults
        from statsmodels.tsa.statespace.sarimax import SARIMAX
        from ssmcast.baselines import ARIMAForecaster as C
        inside = _wrap([(SARIMAX, "__init__"), (MLEModel, "fit"), (MLEModel, "filter"), (MLEModel, "smooth"),
                        (MLEResults, "get_forecast"), (MLEResults, "get_prediction")])
        h = 24

        def ssmcast_run(frame, values):
            out = C(order=(1, 1, 1), horizon=h).fit(frame).predict(quantiles=[0.1, 0.9])
            return float(out["y_pred"].sum() + out["y_pred_q0.9"].sum())
"""

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
        # the neural path at scale: data preparation (a fit of a few batches: "prepare" is the fit outside
        # lightning's Trainer.fit, "train" the 5 batches inside it; lightning is imported before the clock starts),
        # then the first update(), which builds every series' recurrent state from its history (revin=False: the
        # O(1)-per-step streaming mode), then a second update()
        import lightning
        from ssmcast import S4DForecaster
        from ssmcast.backbones.s4 import S4DConfig
        inside = _wrap([(lightning.Trainer, "fit")])
        est = S4DForecaster(input_size=48, horizon=24, max_epochs=1, revin=False, val_size=0, verbose=False,
                            accelerator="cpu", precision="32", backbone=S4DConfig(d_model=16, n_layers=1, d_state=8),
                            trainer_kwargs={"limit_train_batches": 5})
        t = time.perf_counter(); est.fit(df); fit = time.perf_counter() - t
        seconds["prepare"], seconds["train"] = fit - inside[0], inside[0]
        last = df.groupby("unique_id", sort=False).tail(1)
        new = last.assign(ds=last["ds"] + pd.Timedelta(hours=1), y=last["y"])
        t = time.perf_counter(); out = est.update(new); seconds["first_update"] = time.perf_counter() - t
        t = time.perf_counter(); out = est.update(new.assign(ds=new["ds"] + pd.Timedelta(hours=1)))
        seconds["second_update"] = time.perf_counter() - t
        check = float(out["y_pred"].abs().sum())
    """,
    "s4d_streaming": """
        # what a running S4D model costs per call, for the slope in the number of series: a later update() (one
        # row a series, the states already built), predict(df=history) from the last input_size rows, and
        # predict(df=history, context="full") (every state from the whole history). Fit and the first two updates
        # untimed; each call timed 3 times in the process, the least kept (the machine's load comes and goes)
        import lightning
        from ssmcast import S4DForecaster
        from ssmcast.backbones.s4 import S4DConfig
        est = S4DForecaster(input_size=48, horizon=24, max_epochs=1, revin=False, val_size=0, verbose=False,
                            accelerator="cpu", precision="32", backbone=S4DConfig(d_model=16, n_layers=1, d_state=8),
                            trainer_kwargs={"limit_train_batches": 5})
        est.fit(df)
        last = df.groupby("unique_id", sort=False).tail(1)
        rows = [last.assign(ds=last["ds"] + pd.Timedelta(hours=k)) for k in range(1, 6)]
        est.update(rows[0])
        est.update(rows[1])
        seconds["later_update"] = float("inf")
        for new in rows[2:]:
            t = time.perf_counter(); out = est.update(new)
            seconds["later_update"] = min(seconds["later_update"], time.perf_counter() - t)
        history = pd.concat([df, *rows]).sort_values(["unique_id", "ds"], kind="stable", ignore_index=True)
        for name, context in (("predict_df", "window"), ("predict_df_full", "full")):
            seconds[name] = float("inf")
            for _ in range(3):
                t = time.perf_counter(); pred = est.predict(df=history, context=context)
                seconds[name] = min(seconds[name], time.perf_counter() - t)
            check = float(pred["y_pred"].abs().sum())
        check += float(out["y_pred"].abs().sum())
    """,
    "s4d_fit_memory": """
        # peak resident memory of a fit (5 batches) against the frame's own (df.memory_usage(deep=True)): the
        # process's high-water mark reset just before fit (Linux /proc/self/clear_refs), and the RSS before fit
        # (interpreter, torch, lightning, the frame)
        import lightning
        from ssmcast import S4DForecaster
        from ssmcast.backbones.s4 import S4DConfig
        est = S4DForecaster(input_size=48, horizon=24, max_epochs=1, revin=False, val_size=0, verbose=False,
                            accelerator="cpu", precision="32", backbone=S4DConfig(d_model=16, n_layers=1, d_state=8),
                            trainer_kwargs={"limit_train_batches": 5})
        del y  # (the runner's values, a copy of the frame's)
        import gc; gc.collect()
        frame_mb = df.memory_usage(deep=True).sum() / 2**20
        before_mb = _rss_mb()
        _reset_peak()
        t = time.perf_counter(); est.fit(df); seconds["fit"] = time.perf_counter() - t
        peak = _peak_mb()
        memory = {"frame_mb": frame_mb, "rss_before_fit_mb": before_mb, "fit_peak_mb": peak,
                  "fit_peak_over_frame": peak / frame_mb, "fit_growth_over_frame": (peak - before_mb) / frame_mb}
        check = float(est.loc_.sum())
    """,
    "ets_overhead": """
        # ssmcast's own cost around statsmodels: the time inside statsmodels' ETS calls (outermost ones, measured
        # by wrapping them) subtracted from the whole fit + predict; "overhead" is the rest, per series. Wall
        # seconds as phases, the same in process CPU seconds (less sensitive to the other jobs' share of the
        # cores) under "cpu". Statsmodels attributes computed lazily outside the wrapped calls count as overhead
        # here: ets_statsmodels_only (the bare statsmodels loop) gives the other measure
        from statsmodels.tsa.exponential_smoothing.ets import ETSModel, ETSResults
        from ssmcast.baselines import ETSForecaster as C
        inside = _wrap([(ETSModel, "__init__"), (ETSModel, "fit"), (ETSModel, "smooth"),
                        (ETSResults, "get_prediction"), (ETSResults, "forecast"), (ETSResults, "simulate")])
        est = C(horizon=24)
        t, c = time.perf_counter(), time.process_time()
        est.fit(df); out = est.predict(quantiles=[0.1, 0.9])
        total, total_cpu = time.perf_counter() - t, time.process_time() - c
        seconds["statsmodels"] = inside[0]
        seconds["overhead"] = total - inside[0]
        cpu.update(total=total_cpu, statsmodels=inside[1], overhead=total_cpu - inside[1])
        check = float(out["y_pred"].sum() + out["y_pred_q0.9"].sum())
    """,
    "ets_statsmodels_only": """
        # overhead by subtraction: ETSForecaster() fit + predict(quantiles=[0.1, 0.9]) against the bare statsmodels
        # loop a user writes for the same forecasts (ETS(A,N,N), the same estimates; the mean and the 10 %/90 %
        # bounds, pred_int(alpha=0.2); a pandas endog, as statsmodels' exact intervals need), alternating in one
        # process (_paired); ets_overhead's wrapped calls measured on the ssmcast runs as well
        from statsmodels.tsa.exponential_smoothing.ets import ETSModel, ETSResults
        from ssmcast.baselines import ETSForecaster as C
        inside = _wrap([(ETSModel, "__init__"), (ETSModel, "fit"), (ETSModel, "smooth"),
                        (ETSResults, "get_prediction"), (ETSResults, "forecast"), (ETSResults, "simulate")])
        h = 24

        def ssmcast_run(frame, values):
            out = C(horizon=h).fit(frame).predict(quantiles=[0.1, 0.9])
            return float(out["y_pred"].sum() + out["y_pred_q0.9"].sum())

        def bare_run(frame, values):
            check = 0.0
            for series in values:
                res = ETSModel(pd.Series(series), error="add").fit(disp=False, maxiter=1000)
                pred = res.get_prediction(start=len(series), end=len(series) + h - 1)
                mean, bounds = pred.predicted_mean, pred.pred_int(alpha=0.2)
                check += float(np.sum(mean) + np.sum(np.asarray(bounds)[:, 1]))
            return check

        check = _paired(ssmcast_run, bare_run, inside)
    """,
    "arima_overhead": """
        # as ets_overhead. The wrapped calls are statsmodels' own computations: SARIMAX's constructor, the
        # estimation (MLEModel.fit), the Kalman filter/smoother runs (MLEModel.filter/smooth, raw filters with
        # return_ssm=True included) and statsmodels' forecasts (results' get_forecast/get_prediction)
        from statsmodels.tsa.statespace.mlemodel import MLEModel, MLEResults
        from statsmodels.tsa.statespace.sarimax import SARIMAX
        from ssmcast.baselines import ARIMAForecaster as C
        inside = _wrap([(SARIMAX, "__init__"), (MLEModel, "fit"), (MLEModel, "filter"), (MLEModel, "smooth"),
                        (MLEResults, "get_forecast"), (MLEResults, "get_prediction")])
        est = C(order=(1, 1, 1), horizon=24)
        t, c = time.perf_counter(), time.process_time()
        est.fit(df); out = est.predict(quantiles=[0.1, 0.9])
        total, total_cpu = time.perf_counter() - t, time.process_time() - c
        seconds["statsmodels"] = inside[0]
        seconds["overhead"] = total - inside[0]
        cpu.update(total=total_cpu, statsmodels=inside[1], overhead=total_cpu - inside[1])
        check = float(out["y_pred"].sum() + out["y_pred_q0.9"].sum())
    """,
    "arima_statsmodels_only": """
        # as ets_statsmodels_only for ARIMAForecaster(order=(1, 1, 1)); the bare loop: the same estimates (MLE on
        # the differenced series with the scale concentrated out, lbfgs, 50 iterations), the undifferenced model
        # filtered at them, statsmodels' forecast: the mean and the 10 %/90 % bounds (conf_int(alpha=0.2)); no
        # parameter covariance (cov_type="none"), fit's own smoothed results
""" + _ARIMA_PAIRED + """
        def bare_run(frame, values):
            check = 0.0
            for series in values:
                res = SARIMAX(series, order=(1, 1, 1), simple_differencing=True, concentrate_scale=True).fit(
                    disp=False, method="lbfgs", maxiter=50, cov_type="none")
                params = np.r_[res.params, res.scale]
                forecast = SARIMAX(series, order=(1, 1, 1)).filter(params, cov_type="none").get_forecast(h)
                mean, bounds = forecast.predicted_mean, forecast.conf_int(alpha=0.2)
                check += float(np.sum(mean) + np.sum(bounds[:, 1]))
            return check

        check = _paired(ssmcast_run, bare_run, inside)
    """,
    "arima_statsmodels_calls": """
        # ssmcast's own work by subtraction (this tree's code): ARIMAForecaster's fit + predict against a bare loop
        # of only the statsmodels calls it makes itself, alternating in one process (_paired): the estimation
        # (fit(return_params=True), then one filter at the estimates for the likelihood and the scale) and the
        # undifferenced model's raw filter (filter(..., return_ssm=True)); no forecast step, since ssmcast computes
        # the forecasts' mean and variance from that filter's last state. The rest (its forecast recursion, the
        # statistics it reads, frames, batches) is ssmcast's. check_difference: not comparable here
""" + _ARIMA_PAIRED + """
        def bare_run(frame, values):
            check = 0.0
            for series in values:
                model = SARIMAX(series, order=(1, 1, 1), simple_differencing=True, concentrate_scale=True)
                res = model.filter(model.fit(disp=False, method="lbfgs", maxiter=50, return_params=True),
                                   cov_type="none")
                raw = SARIMAX(series, order=(1, 1, 1)).filter(np.r_[res.params, res.scale], return_ssm=True)
                check += float(raw.predicted_state[0, -1])
            return check

        check = _paired(ssmcast_run, bare_run, inside)
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
memory = {{}}
cpu = {{}}  # process CPU seconds of a work's phases, where it measures them
per_series_ms = {{}}  # a work's derived figures, milliseconds a series


def _rss_mb():  # resident memory now, MB
    return int(open("/proc/self/statm").read().split()[1]) * __import__("os").sysconf("SC_PAGE_SIZE") / 2**20


def _reset_peak():  # restart the high-water mark of resident memory (Linux) at the current RSS
    open("/proc/self/clear_refs", "w").write("5")


def _peak_mb():  # the high-water mark of resident memory since the last _reset_peak (else since start), MB
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM"):
            return int(line.split()[1]) / 1024


def _wrap(methods):  # time inside the given methods (outermost calls only): [wall seconds, process CPU seconds]
    import functools
    spent, depth = [0.0, 0.0], [0]
    for cls, name in methods:
        original = getattr(cls, name)

        @functools.wraps(original)
        def timed(*args, __original=original, **kwargs):
            depth[0] += 1
            # both CPU-clock reads inside the wall interval: reading the process CPU clock is a system call, and on
            # a loaded machine the scheduler often switches away right after it; read outside the interval, those
            # waits fell outside the wrapped calls and inflated the wall "overhead" (10x at load 9 on 2 cores)
            start = time.perf_counter()
            start_cpu = time.process_time()
            try:
                return __original(*args, **kwargs)
            finally:
                depth[0] -= 1
                if depth[0] == 0:
                    end_cpu = time.process_time()
                    spent[0] += time.perf_counter() - start
                    spent[1] += end_cpu - start_cpu
        setattr(cls, name, timed)
    return spent


def _paired(ssmcast_run, bare_run, inside, chunks=2):
    # ssmcast's fit + predict and the bare statsmodels loop of the same series, alternating in one process: the
    # panel cut into `chunks` sub-panels, each run by both (ssmcast first on even chunks, the bare loop first on
    # odd ones: ABBA, a linear drift of the machine's load cancels). Sets the wall `seconds` and `cpu` of both, and
    # `per_series_ms`: the overhead by subtraction (ssmcast minus bare) and by the wrapped calls (ssmcast minus
    # the time inside `inside`'s statsmodels calls during ssmcast's runs), wall and CPU. Returns ssmcast's check
    cut = np.linspace(0, n, chunks + 1).astype(int)
    parts = [(df.iloc[a * length : b * length].reset_index(drop=True), y[a:b]) for a, b in zip(cut[:-1], cut[1:])]
    wall, cpu_s, checks = ({{"ssmcast": 0.0, "bare": 0.0}} for _ in range(3))
    inside_wall = inside_cpu = 0.0
    for i, (frame, values) in enumerate(parts):
        runs = [("ssmcast", ssmcast_run), ("bare", bare_run)]
        for name, fn in runs if i % 2 == 0 else runs[::-1]:
            before = list(inside)
            t = time.perf_counter()
            c = time.process_time()
            checks[name] += fn(frame, values)
            c = time.process_time() - c
            wall[name] += time.perf_counter() - t
            cpu_s[name] += c
            if name == "ssmcast":
                inside_wall += inside[0] - before[0]
                inside_cpu += inside[1] - before[1]
    seconds.update(ssmcast=wall["ssmcast"], statsmodels_only=wall["bare"])
    cpu.update(ssmcast=cpu_s["ssmcast"], statsmodels_only=cpu_s["bare"], ssmcast_inside_statsmodels=inside_cpu)
    per_series_ms.update({{
        "subtracted_wall": 1000 * (wall["ssmcast"] - wall["bare"]) / n,
        "subtracted_cpu": 1000 * (cpu_s["ssmcast"] - cpu_s["bare"]) / n,
        "wrapped_wall": 1000 * (wall["ssmcast"] - inside_wall) / n,
        "wrapped_cpu": 1000 * (cpu_s["ssmcast"] - inside_cpu) / n,
        "check_difference": abs(checks["ssmcast"] - checks["bare"]),
    }})
    return checks["ssmcast"]


{work}
import ssmcast, json
peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({{"seconds": seconds, "check": check, "peak_mb": peak_mb, "memory": memory, "cpu": cpu,
                  "per_series_ms": per_series_ms,
                  "ssmcast": ssmcast.__file__}}))
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
    parser.add_argument("--rounds", type=int, default=1,
                        help="measure every size this many times, a round over all sizes at a time (slopes: least)")
    parser.add_argument("--other-max-n", type=int, default=None,
                        help="run --tree's code only up to this many series (old code can take hours at 100k)")
    args = parser.parse_args()
    load = os.getloadavg()
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()},"
          f" {args.threads} thread(s), load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
    print(f"# panels: hourly, {args.length} points a series; each measurement in its own process")
    print("work | series | code | phases (s) | total s | per series ms | peak MB | check")
    trees = [("this", ROOT)] + ([("other", args.tree.resolve())] if args.tree else [])
    timings: dict = {}  # (work, code, phase) -> {n: least seconds over the rounds}
    for n in [n for _ in range(args.rounds) for n in args.n]:  # rounds over every size: load drifts hit them all
        for work in args.work:
            totals = {}
            for label, tree in trees:
                if label == "other" and args.other_max_n is not None and n > args.other_max_n:
                    continue
                out = run(work, n, args.length, tree, args.threads)
                if "error" in out:
                    print(f"{work} | {n} | {label} | error: {out['error']}", flush=True)
                    continue
                total = sum(out["seconds"].values())
                totals[label] = total
                for phase, value in out["seconds"].items():
                    by_n = timings.setdefault((work, label, phase), {})
                    by_n[n] = min(by_n.get(n, value), value)
                phases = ", ".join(f"{k} {v:.2f}" for k, v in out["seconds"].items())
                print(f"{work} | {n} | {label} | {phases} | {total:.2f} | {1000 * total / n:.3f} | "
                      f"{out['peak_mb']:.0f} | {out['check']:.6g}", flush=True)
                if out.get("memory"):
                    shown = ", ".join(f"{k} {v:.2f}" for k, v in out["memory"].items())
                    print(f"{work} | {n} | {label} | memory: {shown}", flush=True)
                if out.get("cpu"):
                    shown = ", ".join(f"{k} {v:.2f}" for k, v in out["cpu"].items())
                    per = ", ".join(f"{k} {1000 * v / n:.3f}" for k, v in out["cpu"].items())
                    print(f"{work} | {n} | {label} | CPU s: {shown} | CPU ms a series: {per}", flush=True)
                if out.get("per_series_ms"):
                    shown = ", ".join(f"{k} {v:.3f}" for k, v in out["per_series_ms"].items())
                    print(f"{work} | {n} | {label} | ms a series: {shown}", flush=True)
            if len(totals) == 2 and totals["this"] > 0:
                print(f"{work} | {n} | ratio other/this | {totals['other'] / totals['this']:.1f}x", flush=True)
    for (work, label, phase), by_n in timings.items():  # growth with the number of series: log-log slope
        if len(by_n) >= 2:
            ns = sorted(by_n)
            slope = np.polyfit(np.log(ns), np.log([max(by_n[n], 1e-9) for n in ns]), 1)[0]
            print(f"# slope | {work} | {label} | {phase} | series {ns} | seconds "
                  f"{[round(by_n[n], 3) for n in ns]} | log-log slope {slope:.3f}", flush=True)
    print(f"# load average at the end: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
