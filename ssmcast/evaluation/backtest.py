"""Rolling-origin backtesting (time-series cross-validation) of any ssmcast forecaster.

Window ``k`` has one cutoff per series: the last timestamp the estimator may see. The forecast covers the
``horizon`` rows after it. Cutoffs are positions in each series, so a panel whose series end on different
dates is handled series by series:

* ``n_windows`` only: the last ``n_windows`` windows of EACH series, the last one ending at the series'
  own end, consecutive cutoffs ``step`` rows apart (cutoffs are relative to each series' end);
* ``start`` (an integer position, negative counting from each series' end, or a timestamp: the last
  ``ds <= start`` in each series): the first cutoff, then every ``step`` rows while a full horizon
  remains (at most ``n_windows`` windows if given). Shorter series then run out of windows earlier.

The estimator never sees data after a cutoff: it is fitted on the history up to the cutoff (a clone of
the caller's estimator, which is left untouched) and later windows call
``predict(h, df=history_up_to_cutoff)``, which re-filters the fitted model on the new history.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.base import clone

from ssmcast.data.frames import _adjacent_duplicates
from ssmcast.forecasting import check_quantiles, quantile_column

__all__ = ["backtest", "cutoff_positions"]


@dataclass
class _BacktestRun:
    frame: pd.DataFrame
    fit_time_s: float
    predict_time_s: float
    n_fits: int


def _positive_int(value, name: str, allow_none: bool = False):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer; got {value!r}")
    return int(value)


def _refit_every(refit) -> int:
    """0 = never refit after the first fit, k = refit every k windows."""
    if isinstance(refit, (bool, np.bool_)):
        return 1 if refit else 0
    if isinstance(refit, (int, np.integer)) and refit >= 0:
        return int(refit)
    raise ValueError(f"refit must be True, False or a non-negative integer (refit every k windows); got {refit!r}")


def cutoff_positions(
    ds: pd.Series | np.ndarray, horizon: int, n_windows: int | None = None, start=None, step: int = 1
) -> list[int]:
    """Row positions of the cutoffs of one series with timestamps ``ds`` (see the module docstring)."""
    n = len(ds)
    last = n - horizon - 1  # latest cutoff with a full horizon after it
    if start is None:
        k = 1 if n_windows is None else n_windows
        positions = [last - (k - 1 - i) * step for i in range(k)]
        return positions if positions and positions[0] >= 0 else []
    if isinstance(start, (int, np.integer)) and not isinstance(start, bool):
        first = int(start) if start >= 0 else n + int(start)
        if first < 0:
            return []
    else:
        stamps = pd.Index(ds)
        try:
            first = int(stamps.searchsorted(start, side="right")) - 1
        except TypeError as err:
            raise ValueError(f"start {start!r} cannot be compared with the ds values: {err}") from None
        if first < 0:
            return []
    positions = list(range(first, last + 1, step))
    return positions[:n_windows] if n_windows is not None else positions


def backtest(
    estimator,
    df,
    horizon: int,
    n_windows: int | None = None,
    start=None,
    step: int = 1,
    refit: bool | int = False,
    quantiles=None,
    backend: str | None = None,
) -> pd.DataFrame:
    """Rolling-origin evaluation of ``estimator`` on ``df`` (anything :func:`ssmcast.data.to_long` takes).

    ``refit=False`` fits once (on the data up to the first cutoff) and re-filters for later cutoffs with
    ``predict(h, df=history)``; ``True`` refits a fresh clone at every cutoff; an integer ``k`` refits at
    windows 0, k, 2k, ... Returns the long frame ``cutoff, unique_id, ds, y, y_pred[, y_pred_q{q}...]``
    sorted by ``unique_id, cutoff, ds``. ``backend`` (``"local"`` or ``"dask"``) sets the backend of an
    estimator that has one (the classical baselines, :mod:`ssmcast.baselines.parallel`): with ``"dask"`` every
    window's per-series fits and forecasts run on the current ``dask.distributed`` client's workers.

    ``df`` may also be a Dask DataFrame partitioned by series, or the path of a Parquet dataset: then each
    partition is backtested where it lives and a lazy Dask DataFrame of the same rows is returned
    (:mod:`ssmcast.evaluation.partitioned`; per-series models only), so the panel is never collected.
    """
    from ssmcast.evaluation.partitioned import backtest_partitioned, is_partitioned

    if is_partitioned(df):
        if backend is not None:
            with_backend(estimator, backend, strict=True)  # checked; a partitioned panel runs on Dask anyway
        return backtest_partitioned(estimator, df, horizon, n_windows, start, step, refit, quantiles)
    estimator = with_backend(estimator, backend, strict=True)
    return _run_backtest(estimator, df, horizon, n_windows, start, step, refit, quantiles).frame


def with_backend(estimator, backend: str | None, strict: bool):
    """A clone of ``estimator`` with its ``backend`` parameter set (``backend=None``: ``estimator`` itself). An
    estimator without that parameter is returned as it is, or (``strict``) refused by name."""
    if backend is None:
        return estimator
    from ssmcast.baselines.parallel import check_backend

    check_backend(backend)
    params = estimator.get_params(deep=False) if hasattr(estimator, "get_params") else {}
    if "backend" not in params:
        if strict:
            raise ValueError(f"backend={backend!r}: {type(estimator).__name__} has no backend parameter (it applies "
                             "to the classical baselines, whose per-series work can run on a Dask cluster)")
        return estimator
    return clone(estimator, safe=False).set_params(backend=backend)


def _run_backtest(estimator, df, horizon, n_windows=None, start=None, step=1, refit=False, quantiles=None):
    from ssmcast.data.frames import to_long

    horizon = _positive_int(horizon, "horizon")
    step = _positive_int(step, "step")
    n_windows = _positive_int(n_windows, "n_windows", allow_none=True)
    every = _refit_every(refit)
    levels = check_quantiles(quantiles)
    if not (hasattr(estimator, "fit") and hasattr(estimator, "predict")):
        raise TypeError(f"estimator must have fit and predict methods; got {type(estimator).__name__}")

    data = to_long(df)  # sorted by (unique_id, ds)
    y = data["y"].to_numpy(float)
    if not np.all(np.isfinite(y)):
        ids = sorted(data.loc[~np.isfinite(y), "unique_id"].astype(str).unique())[:5]
        raise ValueError(f"df has NaN/inf target values in series {ids}; fill them first")
    dup = _adjacent_duplicates(data)
    if dup.any():
        ids = sorted(data.loc[dup, "unique_id"].astype(str).unique())[:5]
        raise ValueError(f"df has duplicate (unique_id, ds) rows in series {ids}")

    # the panel as arrays (issue #36): series s holds rows offsets[s]:offsets[s + 1]; no pandas per series/window
    codes, uids = pd.factorize(data["unique_id"].astype(str), sort=True)
    if len(codes) > 1 and (np.diff(codes) < 0).any():  # to_long sorts by id: only a mismatch of string orders
        order = np.argsort(codes, kind="stable")
        data, codes = data.iloc[order].reset_index(drop=True), codes[order]
    lengths = np.bincount(codes, minlength=len(uids))
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    position = np.arange(len(codes)) - offsets[codes]  # row's position in its series
    cutoffs = _cutoff_table(data["ds"], offsets, horizon, n_windows, start, step)  # (series, windows), -1: none
    n_cut = (cutoffs >= 0).sum(axis=1)
    if (n_cut == 0).any():
        short = np.flatnonzero(n_cut == 0)[:10]
        need = "horizon + 1" if start is None and n_windows is None else "the requested windows"
        raise ValueError(
            f"series too short for horizon={horizon}, n_windows={n_windows}, start={start!r}, step={step} "
            f"(need at least {need} rows): {[f'{uids[s]} (length {lengths[s]})' for s in short]}"
        )

    stamps = pd.Index(data["ds"])
    n_total = cutoffs.shape[1]
    model = None
    fit_time = predict_time = 0.0
    n_fits = 0
    pieces = []
    for k in range(n_total):
        active = cutoffs[:, k] >= 0
        limit = cutoffs[:, k]  # last visible position per series (-1: none)
        history = data.loc[position <= limit[codes]].reset_index(drop=True)
        predict_kwargs = {"h": horizon}
        if levels:
            predict_kwargs["quantiles"] = levels
        if model is None or (every and k % every == 0):
            model = clone(estimator, safe=False)
            tic = time.perf_counter()
            model.fit(history)
            fit_time += getattr(model, "fit_time_s_", None) or time.perf_counter() - tic  # the fit alone
            n_fits += 1
        else:
            predict_kwargs["df"] = history
        tic = time.perf_counter()
        forecast = model.predict(**predict_kwargs)
        predict_time += time.perf_counter() - tic

        active_ids = uids[active]
        target_rows = np.flatnonzero(active[codes] & (position > limit[codes]) & (position <= limit[codes] + horizon))
        actual = data.iloc[target_rows][["unique_id", "ds", "y"]].copy()
        actual["unique_id"] = actual["unique_id"].astype(str)
        series_of = codes[target_rows]
        actual.insert(0, "cutoff", stamps[offsets[series_of] + limit[series_of]].array)
        pieces.append(_join_forecast(forecast, actual, active_ids, horizon, levels, k))

    frame = pd.concat(pieces, ignore_index=True)
    frame = frame.sort_values(["unique_id", "cutoff", "ds"], kind="stable").reset_index(drop=True)
    return _BacktestRun(frame, fit_time, predict_time, n_fits)


def _cutoff_table(ds: pd.Series, offsets: np.ndarray, horizon: int, n_windows, start, step: int) -> np.ndarray:
    """Cutoff positions of every series, :func:`cutoff_positions` over the panel at once: ``(series, windows)``,
    window ``k`` of series ``s`` at ``[s, k]`` and -1 where a series has fewer windows."""
    lengths = np.diff(offsets)
    last = lengths - horizon - 1  # latest cutoff with a full horizon after it
    if start is None:
        k = 1 if n_windows is None else n_windows
        table = last[:, None] - (k - 1 - np.arange(k))[None, :] * step  # (series, k)
        table[table[:, :1].ravel() < 0] = -1  # a series without all its windows has none (as cutoff_positions)
        return table
    if isinstance(start, (int, np.integer)) and not isinstance(start, bool):
        first = np.full(len(lengths), int(start)) if start >= 0 else lengths + int(start)
    else:  # a stamp: the last ds <= start in each series
        try:
            visible = (ds <= start).to_numpy(dtype=bool)  # pandas compares stamps with Timestamps, datetimes, strings
        except TypeError as err:
            raise ValueError(f"start {start!r} cannot be compared with the ds values: {err}") from None
        first = np.add.reduceat(np.append(visible, False).astype(np.int64), offsets[:-1]) - 1
        first[lengths == 0] = -1
    count = np.where((first >= 0) & (last >= first), (last - first) // step + 1, 0)
    if n_windows is not None:
        count = np.minimum(count, n_windows)
    width = max(int(count.max()) if len(count) else 0, 1)
    table = first[:, None] + np.arange(width)[None, :] * step
    table[np.arange(width)[None, :] >= count[:, None]] = -1
    return table


def _join_forecast(forecast, actual: pd.DataFrame, ids, horizon: int, levels, window: int) -> pd.DataFrame:
    qcols = [quantile_column(q) for q in levels]
    if not isinstance(forecast, pd.DataFrame):
        raise TypeError(f"window {window}: predict must return a DataFrame; got {type(forecast).__name__}")
    missing = [c for c in ["unique_id", "ds", "y_pred", *qcols] if c not in forecast.columns]
    if missing:
        raise ValueError(
            f"window {window}: the forecast frame lacks column(s) {missing}; it has {list(forecast.columns)}"
        )
    fc = forecast[["unique_id", "ds", "y_pred", *qcols]].copy()
    fc["unique_id"] = fc["unique_id"].astype(str)
    counts = fc["unique_id"].value_counts()
    per_series = counts.reindex(pd.Index(ids, dtype=str), fill_value=0).to_numpy()
    lacking = list(np.asarray(ids)[per_series != horizon])
    if lacking:
        got = {uid: int(counts.get(uid, 0)) for uid in lacking[:5]}
        raise ValueError(f"window {window}: expected {horizon} forecast rows per series; got {got}")
    joined = actual.merge(fc, on=["unique_id", "ds"], how="left", validate="one_to_one", indicator=True)
    unmatched = joined.pop("_merge") != "both"
    if unmatched.any():
        ids_bad = sorted(joined.loc[unmatched, "unique_id"].unique())[:5]
        raise ValueError(
            f"window {window}: forecast timestamps do not match the next {horizon} timestamps "
            f"of series {ids_bad} "
            "(check the frequency)"
        )
    return joined
