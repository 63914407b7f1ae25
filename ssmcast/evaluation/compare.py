"""Side-by-side comparison of forecasters by backtesting: a leaderboard table, forecast and metric plots.

Figures are built on ``matplotlib.figure.Figure`` with the Agg canvas, never through pyplot's global
state, so nothing is shown or leaked; ``plt.close(fig)`` is harmless on them.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ssmcast.evaluation.backtest import _positive_int, _run_backtest, with_backend
from ssmcast.evaluation.metrics import (
    OVERALL,
    _default_season_length,
    _parse_metrics,
    _quantile_columns,
    score,
)

__all__ = ["compare", "Leaderboard", "CompareWarning", "naive2_forecasts", "plot_forecasts", "plot_metric_bars"]


class CompareWarning(UserWarning):
    """A model failed during :func:`compare`; its row in the leaderboard carries the error."""


@dataclass
class Leaderboard:
    """Result of :func:`compare`.

    ``table``: one row per model (``model``, one column per metric (overall value), ``fit_time_s``,
    ``predict_time_s``, ``n_fits``, ``error``), sorted by the first metric, failed models last.
    ``forecasts``: the backtest frame of each model that ran. ``scores``: the per-series score frames.
    ``history``: the long frame that was backtested (for plots).
    """

    table: pd.DataFrame
    forecasts: dict[str, pd.DataFrame]
    scores: dict[str, pd.DataFrame]
    history: pd.DataFrame
    metrics: list[str] = field(default_factory=list)

    def plot_forecasts(self, series: Sequence[str] | None = None, n_series: int = 3, tail: int | None = None):
        """Figure: history tail, actuals and each model's forecasts (with interval bands), a few series."""
        return plot_forecasts(self.forecasts, self.history, series=series, n_series=n_series, tail=tail)

    def plot_metric_bars(self, metrics: Sequence[str] | None = None):
        """Figure: one horizontal bar chart per metric, models in leaderboard order."""
        return plot_metric_bars(self.table, metrics=metrics)

    def save(self, directory) -> list[Path]:
        """Write ``leaderboard.csv``, ``forecasts.csv``, ``forecasts.png``, ``metrics.png``; return paths."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        paths = [out / "leaderboard.csv", out / "forecasts.csv"]
        self.table.to_csv(paths[0], index=False)
        frames = [f.assign(model=name) for name, f in self.forecasts.items()]
        (pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()).to_csv(paths[1], index=False)
        if self.forecasts:
            paths.append(out / "forecasts.png")
            self.plot_forecasts().savefig(paths[-1], dpi=100)
        if self.table[self.metrics].notna().any().any():
            paths.append(out / "metrics.png")
            self.plot_metric_bars().savefig(paths[-1], dpi=100)
        return paths


def _named(estimators) -> dict:
    if isinstance(estimators, Mapping):
        named = {str(k): v for k, v in estimators.items()}
    elif isinstance(estimators, Iterable) and not hasattr(estimators, "fit"):
        named = {}
        for est in estimators:
            base = type(est).__name__
            name, i = base, 2
            while name in named:
                name, i = f"{base}-{i}", i + 1
            named[name] = est
    else:
        raise TypeError("estimators must be a dict {name: estimator} or a list of estimators")
    if not named:
        raise ValueError("estimators is empty")
    for name, est in named.items():
        if not (hasattr(est, "fit") and hasattr(est, "predict")):
            raise TypeError(f"estimator {name!r} has no fit/predict methods ({type(est).__name__})")
    return named


def compare(
    estimators,
    df,
    horizon: int,
    n_windows: int = 1,
    metrics: Sequence[str] = ("mae", "rmse", "smape", "mase"),
    quantiles=None,
    season_length: int | None = None,
    refit: bool | int = False,
    step: int | None = None,
    benchmark: pd.DataFrame | None = None,
    backend: str | None = None,
) -> Leaderboard:
    """Backtest every estimator on the same windows and rank them.

    ``estimators`` is ``{name: estimator}`` or a list (named by class, ``-2``... for repeats). Each is
    evaluated by :func:`~ssmcast.evaluation.backtest` over the last ``n_windows`` windows of each series,
    ``step`` rows apart (default ``horizon``: non-overlapping windows), then scored with
    :func:`~ssmcast.evaluation.score` (MASE scaled on the data up to each cutoff; ``season_length``
    defaults to the usual period of the data's frequency). ``owa`` is relative to Naive2 on the same
    windows: ``benchmark`` gives its forecasts (a backtest frame, e.g. from :func:`naive2_forecasts`), or
    they are computed here. A model that raises is reported with a :class:`CompareWarning` and an
    ``error`` entry instead of stopping the comparison. ``backend="dask"`` runs the per-series work of every
    estimator that has a ``backend`` parameter (the classical baselines) on the current ``dask.distributed``
    client's workers; the others (the neural forecasters) run here as they are.

    ``df`` may also be a Dask DataFrame partitioned by series or the path of a Parquet dataset: each partition's
    backtests and per-series scores then run as one task where it lives and only the score rows are gathered
    (:mod:`ssmcast.evaluation.partitioned`; per-series models only, ``season_length`` given for mase/owa, the
    Naive2 benchmark computed per partition). ``fit_time_s``/``predict_time_s`` are then summed over the
    partitions' tasks, and ``forecasts`` is empty (:func:`~ssmcast.evaluation.backtest` gives them lazily).
    """
    from ssmcast.data.frames import to_long
    from ssmcast.evaluation.partitioned import compare_partitioned, is_partitioned

    named = _named(estimators)
    if backend is not None:
        from ssmcast.baselines.parallel import check_backend

        check_backend(backend)
    names = _parse_metrics(metrics)
    horizon = _positive_int(horizon, "horizon")
    n_windows = _positive_int(n_windows, "n_windows")
    step = horizon if step is None else _positive_int(step, "step")
    if is_partitioned(df):
        if benchmark is not None:
            raise ValueError("benchmark: a partitioned panel's Naive2 forecasts are computed per partition")
        rows, scores = compare_partitioned(named, df, horizon, n_windows, names, quantiles, season_length, refit,
                                           step)
        for row in rows:
            if row["error"]:
                warnings.warn(f"compare: model {row['model']!r} failed: {row['error']}", CompareWarning,
                              stacklevel=2)
        history = pd.DataFrame({"unique_id": pd.Series(dtype=object), "ds": pd.Series(dtype="datetime64[ns]"),
                                "y": pd.Series(dtype=float)})
        return _leaderboard(rows, {}, scores, history)
    data = to_long(df)
    if ("mase" in names or "owa" in names) and season_length is None:
        season_length = _default_season_length(data)
    if "owa" in names and benchmark is None:
        benchmark = naive2_forecasts(data, horizon, n_windows=n_windows, step=step, season_length=season_length)

    rows, forecasts, scores = [], {}, {}
    for name, est in named.items():
        row: dict = {"model": name}
        try:
            est = with_backend(est, backend, strict=False)
            run = _run_backtest(est, data, horizon, n_windows=n_windows, step=step, refit=refit, quantiles=quantiles)
            table = score(run.frame, metrics=names, train=data, season_length=season_length, benchmark=benchmark)
        except Exception as err:  # noqa: BLE001 - a failing model is reported, not fatal
            message = f"{type(err).__name__}: {err}"
            warnings.warn(f"compare: model {name!r} failed: {message}", CompareWarning, stacklevel=2)
            row.update(fit_time_s=np.nan, predict_time_s=np.nan, n_fits=0, error=message)
        else:
            forecasts[name], scores[name] = run.frame, table
            overall = table.loc[table["unique_id"] == OVERALL].iloc[0]
            row.update({col: float(overall[col]) for col in table.columns[1:]})
            row.update(fit_time_s=run.fit_time_s, predict_time_s=run.predict_time_s, n_fits=run.n_fits, error="")
        rows.append(row)
    return _leaderboard(rows, forecasts, scores, data)


def _leaderboard(rows: list[dict], forecasts: dict, scores: dict, history: pd.DataFrame) -> Leaderboard:
    columns: list[str] = []
    for row in rows:
        columns += [c for c in row if c not in ("model", "fit_time_s", "predict_time_s", "n_fits", "error")
                    and c not in columns]
    table = pd.DataFrame(rows)
    for col in columns:
        if col not in table.columns:
            table[col] = np.nan
    table = table[["model", *columns, "fit_time_s", "predict_time_s", "n_fits", "error"]]
    if columns:
        table = table.sort_values(columns[0], kind="stable", na_position="last")
    return Leaderboard(table.reset_index(drop=True), forecasts, scores, history, columns)


def naive2_forecasts(
    df, horizon: int, n_windows: int = 1, step: int | None = None, season_length: int | None = None
) -> pd.DataFrame:
    """The M4 Naive2 benchmark backtested on the windows :func:`compare` uses (refitted at each cutoff):
    the ``benchmark=`` that ``owa`` is relative to."""
    from ssmcast.baselines import Naive2Forecaster
    from ssmcast.data.frames import to_long

    data = to_long(df)
    horizon = _positive_int(horizon, "horizon")
    step = horizon if step is None else _positive_int(step, "step")
    if season_length is None:
        season_length = _default_season_length(data)
    run = _run_backtest(Naive2Forecaster(season_length=season_length), data, horizon, n_windows=n_windows,
                        step=step, refit=True)  # fmt: skip
    return run.frame


# ------------------------------------------------------------------------------------------------- plots


def _figure(n_rows: int, width: float = 9.0, row_height: float = 2.6) -> Figure:
    fig = Figure(figsize=(width, max(row_height * n_rows, 2.5)), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def plot_forecasts(
    forecasts: Mapping[str, pd.DataFrame] | pd.DataFrame,
    history: pd.DataFrame,
    series: Sequence[str] | None = None,
    n_series: int = 3,
    tail: int | None = None,
) -> Figure:
    """One panel per series: the last ``tail`` history points before the first cutoff (default
    ``3 x horizon``), the actuals through the forecast windows, and each model's forecast per window with a
    band between its widest symmetric quantile pair when it has one. ``forecasts`` is ``{model: backtest
    frame}`` (or one frame); ``history`` the long frame backtested."""
    if isinstance(forecasts, pd.DataFrame):
        forecasts = {"forecast": forecasts}
    if not forecasts:
        raise ValueError("forecasts is empty: nothing to plot")
    hist = history.copy()
    hist["unique_id"] = hist["unique_id"].astype(str)
    available = sorted(set().union(*(set(f["unique_id"].astype(str)) for f in forecasts.values())))
    if series is None:
        series = available[: _positive_int(n_series, "n_series")]
    unknown = [s for s in series if s not in available]
    if unknown:
        raise ValueError(f"series {unknown} have no forecasts; available: {available[:10]}")
    fig = _figure(len(series))
    axes = fig.subplots(len(series), 1, squeeze=False)[:, 0]
    colors = [f"C{i + 1}" for i in range(len(forecasts))]
    for ax, uid in zip(axes, series):
        frames = {m: f[f["unique_id"].astype(str) == uid] for m, f in forecasts.items()}
        first_cutoff = min(f["cutoff"].min() for f in frames.values() if len(f) and "cutoff" in f)
        horizon = max(int(f.groupby("cutoff").size().max()) for f in frames.values() if len(f) and "cutoff" in f)
        h = hist[hist["unique_id"] == uid]
        before = h[h["ds"] <= first_cutoff].tail(3 * horizon if tail is None else tail)
        last_ds = max(f["ds"].max() for f in frames.values() if len(f))
        shown = pd.concat([before, h[(h["ds"] > first_cutoff) & (h["ds"] <= last_ds)]])
        ax.plot(shown["ds"], shown["y"], color="black", lw=1.2, label="actual")
        for (model, f), color in zip(frames.items(), colors):
            qcols = _quantile_columns(f)
            lows = [q for q in qcols if q < 0.5 and any(np.isclose(1 - q, k) for k in qcols)]
            for i, (_, w) in enumerate(f.groupby("cutoff", sort=True)):
                ax.plot(w["ds"], w["y_pred"], color=color, lw=1.2, label=model if i == 0 else None)
                if lows:
                    lo = min(lows)
                    hi = next(k for k in qcols if np.isclose(1 - lo, k))
                    label = f"{model} {round(100 * (hi - lo))}%" if i == 0 else None
                    ax.fill_between(w["ds"], w[qcols[lo]], w[qcols[hi]], color=color, alpha=0.2, lw=0, label=label)
        ax.axvline(first_cutoff, color="grey", ls=":", lw=1)
        ax.set_title(str(uid), fontsize=10)
        ax.legend(fontsize=7, loc="upper left")
    fig.autofmt_xdate()
    return fig


def plot_metric_bars(table: pd.DataFrame, metrics: Sequence[str] | None = None) -> Figure:
    """One horizontal bar chart per metric of a leaderboard table (failed models left out)."""
    if "model" not in table.columns:
        raise ValueError("table must be a leaderboard table with a 'model' column")
    skip = {"model", "fit_time_s", "predict_time_s", "n_fits", "error"}
    metrics = [c for c in table.columns if c not in skip] if metrics is None else list(metrics)
    missing = [m for m in metrics if m not in table.columns]
    if missing:
        raise ValueError(f"metric(s) {missing} not in the table; it has {list(table.columns)}")
    if not metrics:
        raise ValueError("no metric columns to plot")
    ok = table[table[metrics].notna().all(axis=1)]
    fig = _figure(1, width=max(3.2 * len(metrics), 4.0), row_height=0.5 * len(ok) + 1.5)
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    for ax, metric in zip(axes, metrics):
        ax.barh(ok["model"].astype(str), ok[metric], color="C0")
        if metric.startswith("coverage_"):  # the nominal level
            ax.axvline(float(metric.split("_", 1)[1]) / 100, color="black", ls="--", lw=1)
        ax.invert_yaxis()
        ax.set_title(metric, fontsize=10)
    return fig
