"""Backtests and leaderboards of a panel that never leaves the cluster: a Dask DataFrame, or a partitioned
Parquet dataset, whose partitions each hold whole series (issue #36).

The classical baselines fit one model per series, so a panel partitioned by ``unique_id`` can be evaluated one
partition at a time, where the partition lives: every partition's backtest (and its scores) runs as one Dask
task on a worker, with the estimator's local path (``backend="local"``, one process: the parallelism is over
partitions). Nothing but the per-series score rows (and, for :func:`backtest`, the forecasts when the caller
computes them) ever reaches the client, so a panel larger than one machine's memory is never collected. The
result is the one the in-memory path gives on the collected panel, series for series.

Every series must sit in exactly one partition (``ddf.shuffle("unique_id")`` or writing the Parquet dataset
with ``partition_on``/one file per group of series makes it so); this is checked on the ``unique_id`` column
alone before any model runs, and a series split across partitions is an error naming it.

Global models (the neural forecasters) learn from every series at once: evaluating them partition by partition
would fit a different model per partition, so they are refused here by name.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.base import clone

from ssmcast.forecasting import check_quantiles, quantile_column

__all__ = ["is_partitioned", "as_dask_frame", "backtest_partitioned", "compare_partitioned"]


def _dask_frame_type():
    try:
        import dask.dataframe as dd
    except ImportError:
        return None
    return dd.DataFrame


def is_partitioned(df) -> bool:
    """Whether ``df`` is a Dask DataFrame or a path (a Parquet dataset), the inputs of this module."""
    if isinstance(df, (str, os.PathLike)):
        return True
    kind = _dask_frame_type()
    return kind is not None and isinstance(df, kind)


def as_dask_frame(df):
    """``df`` as a Dask DataFrame: itself, or the Parquet dataset (a directory or a file) a path names."""
    if isinstance(df, (str, os.PathLike)):
        path = Path(df)
        if not path.exists():
            raise FileNotFoundError(f"no Parquet dataset at {str(path)!r}")
        try:
            import dask.dataframe as dd
        except ImportError:
            raise ImportError("a partitioned Parquet dataset is read with dask: pip install 'ssmcast[dask]'") from None
        with warnings.catch_warnings():  # dask 2026.8 uses inplace=True, deprecated by pandas 3.1
            warnings.filterwarnings("ignore", message=".*inplace keyword in DataFrame.*is deprecated")
            return dd.read_parquet(str(path))
    return df


def _check_estimator(estimator, name: str = "estimator") -> None:
    params = estimator.get_params(deep=False) if hasattr(estimator, "get_params") else {}
    if "backend" not in params:
        raise TypeError(
            f"{name} ({type(estimator).__name__}) is a global model: it learns from every series at once, so it "
            "cannot be evaluated one partition of a panel at a time; collect the panel (ddf.compute()) or use a "
            "per-series model (the classical baselines)"
        )


def _check_columns(ddf) -> None:
    missing = [c for c in ("unique_id", "ds", "y") if c not in ddf.columns]
    if missing:
        raise ValueError(f"the partitioned panel is missing column(s) {missing}; it has {list(ddf.columns)} "
                         "(the long format: unique_id, ds, y)")


def _ids_of(part: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({"unique_id": pd.unique(part["unique_id"].astype(str))})


def check_partitioned_by_series(ddf) -> int:
    """Raise if a series spans more than one partition (reads the ``unique_id`` column only); returns the number
    of series."""
    meta = pd.DataFrame({"unique_id": pd.Series(dtype=pd.Series(["x"]).astype(str).dtype)})
    ids = ddf[["unique_id"]].map_partitions(_ids_of, meta=meta).compute()["unique_id"]
    split = ids[ids.duplicated()]
    if len(split):
        raise ValueError(
            f"series {sorted(split.unique())[:5]} span more than one partition: every series must sit in one "
            "partition (e.g. ddf = ddf.shuffle('unique_id'), or write the Parquet dataset grouped by unique_id)"
        )
    return len(ids)


def _local(estimator):
    """A clone on the local path, one process: inside a partition's task the parallelism is over partitions."""
    params = {"backend": "local"}
    if "n_jobs" in estimator.get_params(deep=False):
        params["n_jobs"] = 1
    return clone(estimator, safe=False).set_params(**params)


def _backtest_part(part: pd.DataFrame, estimator, horizon, n_windows, start, step, refit, quantiles, columns):
    from ssmcast.evaluation.backtest import _run_backtest

    if part.empty:
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in columns.items()})
    frame = _run_backtest(_local(estimator), part, horizon, n_windows, start, step, refit, quantiles).frame
    return frame.astype(columns)


def _meta(ddf, quantiles) -> dict:
    ds = ddf["ds"].dtype
    text = pd.Series(["x"]).astype(str).dtype  # what the in-memory backtest gives unique_id (pandas' str)
    columns = {"cutoff": ds, "unique_id": text, "ds": ds, "y": "float64", "y_pred": "float64"}
    for q in check_quantiles(quantiles):
        columns[quantile_column(q)] = "float64"
    return columns


def backtest_partitioned(estimator, df, horizon: int, n_windows=None, start=None, step: int = 1, refit=False,
                         quantiles=None):
    """:func:`~ssmcast.evaluation.backtest` of a partitioned panel: a lazy Dask DataFrame of the same rows
    (``cutoff, unique_id, ds, y, y_pred[, y_pred_q{q}...]``), one partition's backtest per input partition
    (``.compute()`` it, or write it with ``.to_parquet``). Sorted by ``unique_id, cutoff, ds`` within each
    partition; computed it equals the in-memory backtest of the collected panel up to the order of the series."""
    from ssmcast.evaluation.backtest import _positive_int

    _check_estimator(estimator)
    horizon, step = _positive_int(horizon, "horizon"), _positive_int(step, "step")
    ddf = as_dask_frame(df)
    _check_columns(ddf)
    check_partitioned_by_series(ddf)
    columns = _meta(ddf, quantiles)
    meta = pd.DataFrame({c: pd.Series(dtype=t) for c, t in columns.items()})
    return ddf.map_partitions(_backtest_part, estimator, horizon, n_windows, start, step, refit, quantiles,
                              columns, meta=meta, align_dataframes=False)


def _compare_part(part: pd.DataFrame, index: int, named: dict, horizon, n_windows, step, refit, quantiles, metrics,
                  season_length):
    """One partition's rows of every model's per-series scores (and its fit/predict times): a frame with a
    ``model`` column, or an ``error`` for a model that failed on this partition."""
    from ssmcast.evaluation.backtest import _run_backtest
    from ssmcast.evaluation.compare import naive2_forecasts
    from ssmcast.evaluation.metrics import series_scores

    if part.empty:
        return pd.DataFrame()
    from ssmcast.data.frames import to_long

    data = to_long(part)
    benchmark = None
    if "owa" in metrics:
        benchmark = naive2_forecasts(data, horizon, n_windows=n_windows, step=step, season_length=season_length)
    tables = []
    for name, est in named.items():
        try:
            run = _run_backtest(_local(est), data, horizon, n_windows=n_windows, step=step, refit=refit,
                                quantiles=quantiles)
            table, _, _ = series_scores(run.frame, metrics=metrics, train=data, season_length=season_length,
                                        benchmark=benchmark)
            table = table.assign(model=name, fit_time_s=run.fit_time_s, predict_time_s=run.predict_time_s,
                                 n_fits=run.n_fits, error="", partition=index)
        except Exception as err:  # noqa: BLE001 - reported in the leaderboard, as compare() does
            table = pd.DataFrame([{"model": name, "error": f"{type(err).__name__}: {err}", "partition": index}])
        tables.append(table)
    return pd.concat(tables, ignore_index=True)


def compare_partitioned(named: dict, df, horizon: int, n_windows: int, metrics, quantiles, season_length, refit,
                        step: int):
    """:func:`~ssmcast.evaluation.compare` of a partitioned panel (called by it): each partition's backtests
    and per-series scores as one task; the leaderboard from the gathered per-series rows (the overall row is the
    mean over series, as in memory). Returns ``(table, scores)``: the leaderboard rows and each model's
    per-series score table; the forecasts stay on the cluster (use :func:`backtest_partitioned` for them)."""
    from dask import delayed

    from ssmcast.evaluation.metrics import _parse_metrics, with_overall

    for name, est in named.items():
        _check_estimator(est, f"model {name!r}")
    names = _parse_metrics(metrics)
    ddf = as_dask_frame(df)
    _check_columns(ddf)
    check_partitioned_by_series(ddf)
    if ("mase" in names or "owa" in names) and season_length is None:
        raise ValueError("season_length is needed for mase/owa on a partitioned panel (it is not inferred from "
                         "the data, which stays on the cluster): e.g. season_length=24 for hourly data")
    parts = [delayed(_compare_part)(p, i, named, horizon, n_windows, step, refit, quantiles, names, season_length)
             for i, p in enumerate(ddf.to_delayed())]
    gathered = [t for t in delayed(list)(parts).compute() if len(t)]
    rows_all = pd.concat(gathered, ignore_index=True) if gathered else pd.DataFrame(columns=["model", "error"])
    rows, scores = [], {}
    for name in named:
        mine = rows_all[rows_all["model"] == name]
        errors = mine["error"][mine["error"].astype(bool)] if "error" in mine else pd.Series(dtype=object)
        if mine.empty or len(errors):
            message = errors.iloc[0] if len(errors) else "no partition produced scores"
            rows.append({"model": name, "fit_time_s": np.nan, "predict_time_s": np.nan, "n_fits": 0,
                         "error": message})
            continue
        per_series = mine.drop(columns=["model", "fit_time_s", "predict_time_s", "n_fits", "error", "partition"])
        columns = [c for c in per_series.columns if c != "unique_id" and not c.startswith("_")]
        table = with_overall(per_series.sort_values("unique_id", kind="stable").reset_index(drop=True), columns,
                             names)
        scores[name] = table
        overall = table.iloc[-1]
        rows.append({"model": name, **{c: float(overall[c]) for c in columns},
                     "fit_time_s": _per_task_sum(mine, "fit_time_s"),
                     "predict_time_s": _per_task_sum(mine, "predict_time_s"),
                     "n_fits": int(mine["n_fits"].max()), "error": ""})
    return rows, scores


def _per_task_sum(rows: pd.DataFrame, column: str) -> float:
    """A time each partition's rows repeat, summed over the partitions (the work done, not the wall time)."""
    return float(rows.groupby("partition")[column].first().sum())
