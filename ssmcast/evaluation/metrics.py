"""Point and probabilistic forecast metrics, on arrays and on long forecast frames.

Array-level functions take ``y_true`` and ``y_pred`` of equal shape (any shape, flattened), finite and
non-empty; anything else is a ``ValueError`` naming the argument. Conventions:

* ``mape`` and ``smape`` are in percent. ``smape`` is the M4 one, ``mean(200 |y - f| / (|y| + |f|))``;
  a point where ``y = f = 0`` counts as 0. ``mape`` raises when an actual is zero.
* ``mase`` scales the MAE by the in-sample MAE of the seasonal-naive forecast at lag ``m`` on the
  training part (M4). A zero scale (training data constant at lag ``m``) raises a ``ValueError``
  rather than returning ``inf``: a silent ``inf`` would poison every average it enters.
* ``owa`` is the M4 overall weighted average, ``(sMAPE / sMAPE_naive2 + MASE / MASE_naive2) / 2``.
* ``pinball_loss`` at level ``q`` is ``mean(q (y - f)_+ + (1 - q) (f - y)_+)``.
* ``crps`` is approximated from quantile forecasts: ``2 * mean_q pinball_loss(q)``. CRPS equals
  ``2 * integral_0^1 pinball_q dq``, so this is the Riemann sum of that integral over the given levels
  (good with many evenly spaced levels, e.g. 0.05, 0.1, ..., 0.95; coarse with two or three).
* ``coverage`` is the fraction of actuals with ``lower <= y <= upper``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
from sklearn.metrics import (
    mean_absolute_error,
    mean_absolute_percentage_error,
    mean_pinball_loss,
    mean_squared_error,
)

from ssmcast.forecasting import check_quantiles, quantile_column

__all__ = [
    "mae",
    "mse",
    "rmse",
    "mape",
    "smape",
    "mase",
    "mase_scale",
    "owa",
    "pinball_loss",
    "mean_pinball",
    "crps",
    "coverage",
    "score",
    "POINT_METRICS",
    "OVERALL",
]

OVERALL = "__overall__"
POINT_METRICS = ("mae", "mse", "rmse", "mape", "smape", "mase")


def _as_array(x, name: str) -> np.ndarray:
    try:
        a = np.asarray(x, dtype=float)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be numeric; got {type(x).__name__}") from None
    if a.size == 0:
        raise ValueError(f"{name} is empty")
    if not np.all(np.isfinite(a)):
        bad = np.flatnonzero(~np.isfinite(a.ravel()))
        raise ValueError(f"{name} contains {bad.size} NaN/inf value(s), first at flat position {bad[0]}")
    return a.ravel()


def _pair(y_true, y_pred, pred_name: str = "y_pred") -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(y_true)
    p = np.asarray(y_pred)
    if t.shape != p.shape:
        raise ValueError(f"y_true and {pred_name} differ in shape: {t.shape} vs {p.shape}")
    return _as_array(t, "y_true"), _as_array(p, pred_name)


def mae(y_true, y_pred) -> float:
    """Mean absolute error."""
    t, p = _pair(y_true, y_pred)
    return float(mean_absolute_error(t, p))


def mse(y_true, y_pred) -> float:
    """Mean squared error."""
    t, p = _pair(y_true, y_pred)
    return float(mean_squared_error(t, p))


def rmse(y_true, y_pred) -> float:
    """Root mean squared error."""
    return float(np.sqrt(mse(y_true, y_pred)))


def mape(y_true, y_pred) -> float:
    """Mean absolute percentage error in percent, ``100 mean(|y - f| / |y|)``; zero actuals raise.

    Computed by sklearn, which clamps ``|y|`` below machine epsilon to epsilon."""
    t, p = _pair(y_true, y_pred)
    zeros = np.flatnonzero(t == 0)
    if zeros.size:
        raise ValueError(f"mape is undefined: y_true has {zeros.size} zero value(s), first at position {zeros[0]}")
    return float(100.0 * mean_absolute_percentage_error(t, p))


def smape(y_true, y_pred) -> float:
    """Symmetric MAPE (M4) in percent, ``mean(200 |y - f| / (|y| + |f|))``; 0 where ``y = f = 0``."""
    t, p = _pair(y_true, y_pred)
    denom = np.abs(t) + np.abs(p)
    terms = np.divide(200.0 * np.abs(t - p), denom, out=np.zeros_like(denom), where=denom > 0)
    return float(terms.mean())


def mase_scale(y_train, season_length: int = 1) -> float:
    """In-sample MAE of the seasonal-naive forecast at lag ``season_length`` (the MASE denominator)."""
    m = _season_length(season_length)
    y = _as_array(y_train, "y_train")
    if y.size <= m:
        raise ValueError(f"mase needs more than season_length={m} training values; got {y.size}")
    scale = float(np.mean(np.abs(y[m:] - y[:-m])))
    if scale == 0.0:
        raise ValueError(
            f"mase is undefined: the training data is constant at lag season_length={m} "
            "(seasonal-naive in-sample MAE is 0)"
        )
    return scale


def mase(y_true, y_pred, y_train, season_length: int = 1) -> float:
    """Mean absolute scaled error: MAE divided by :func:`mase_scale` of the training part."""
    return mae(y_true, y_pred) / mase_scale(y_train, season_length)


def owa(smape_value: float, mase_value: float, smape_naive2: float, mase_naive2: float) -> float:
    """M4 overall weighted average of a method against Naive2 (all four values already averaged)."""
    values = {
        "smape_value": smape_value,
        "mase_value": mase_value,
        "smape_naive2": smape_naive2,
        "mase_naive2": mase_naive2,
    }
    for name, v in values.items():
        if not np.isfinite(v) or v < 0:
            raise ValueError(f"owa needs a finite non-negative {name}; got {v!r}")
    for name in ("smape_naive2", "mase_naive2"):
        if values[name] == 0:
            raise ValueError(f"owa is undefined: {name} is 0")
    return 0.5 * (smape_value / smape_naive2 + mase_value / mase_naive2)


def _level(q) -> float:
    levels = check_quantiles([q])
    return levels[0]


def pinball_loss(y_true, y_quantile, q: float) -> float:
    """Pinball (quantile) loss of the level-``q`` forecast ``y_quantile``."""
    level = _level(q)
    t, p = _pair(y_true, y_quantile, "y_quantile")
    return float(mean_pinball_loss(t, p, alpha=level))


def _quantile_matrix(y_true, quantile_preds, quantiles) -> tuple[np.ndarray, np.ndarray, list[float]]:
    """``(y (n,), Q (n, k), levels)`` from a ``{q: array}`` mapping or an ``(..., k)`` array + levels."""
    t = np.asarray(y_true)
    if isinstance(quantile_preds, Mapping):
        if quantiles is not None:
            raise ValueError("pass quantiles either as the keys of quantile_preds or as quantiles, not both")
        levels = [_level(q) for q in quantile_preds]
        if len(set(levels)) != len(levels):
            raise ValueError(f"quantile_preds has duplicate levels: {sorted(quantile_preds)}")
        columns = [np.asarray(quantile_preds[q]) for q in quantile_preds]
        for q, c in zip(quantile_preds, columns):
            if c.shape != t.shape:
                raise ValueError(f"quantile_preds[{q}] and y_true differ in shape: {c.shape} vs {t.shape}")
        Q = np.stack([_as_array(c, f"quantile_preds[{q}]") for q, c in zip(quantile_preds, columns)], axis=-1)
    else:
        if quantiles is None:
            raise ValueError("quantiles are required when quantile_preds is an array")
        levels = [_level(q) for q in quantiles]
        if len(set(levels)) != len(levels):
            raise ValueError(f"quantiles has duplicate levels: {list(quantiles)}")
        Q = np.asarray(quantile_preds)
        if Q.shape != t.shape + (len(levels),):
            raise ValueError(
                f"quantile_preds must have shape y_true.shape + (n_quantiles,) = {t.shape + (len(levels),)}; "
                f"got {Q.shape}"
            )
        Q = _as_array(Q, "quantile_preds").reshape(-1, len(levels))
    if not levels:
        raise ValueError("no quantile levels given")
    return _as_array(t, "y_true"), Q, levels


def mean_pinball(y_true, quantile_preds, quantiles: Sequence[float] | None = None) -> float:
    """Pinball loss averaged over levels; ``quantile_preds`` is ``{q: array}`` or ``(..., k)`` + levels."""
    t, Q, levels = _quantile_matrix(y_true, quantile_preds, quantiles)
    return float(np.mean([mean_pinball_loss(t, Q[:, j], alpha=q) for j, q in enumerate(levels)]))


def crps(y_true, quantile_preds, quantiles: Sequence[float] | None = None) -> float:
    """CRPS approximated from quantile forecasts: ``2 * mean over levels of the pinball loss``."""
    return 2.0 * mean_pinball(y_true, quantile_preds, quantiles)


def coverage(y_true, lower, upper) -> float:
    """Empirical coverage: the fraction of ``y_true`` inside ``[lower, upper]`` (bounds included)."""
    t, lo = _pair(y_true, lower, "lower")
    _, hi = _pair(y_true, upper, "upper")
    crossed = np.flatnonzero(lo > hi)
    if crossed.size:
        raise ValueError(f"lower > upper at {crossed.size} point(s), first at position {crossed[0]}")
    return float(np.mean((t >= lo) & (t <= hi)))


def _season_length(season_length) -> int:
    if isinstance(season_length, bool) or not isinstance(season_length, (int, np.integer)) or season_length < 1:
        raise ValueError(f"season_length must be a positive integer; got {season_length!r}")
    return int(season_length)


# ----------------------------------------------------------------------------------------------------
# frame level


def _parse_metrics(metrics: Iterable[str] | str) -> list[str]:
    if isinstance(metrics, str):
        metrics = [metrics]
    names = [str(m).lower() for m in metrics]
    if not names:
        raise ValueError("metrics is empty")
    known = set(POINT_METRICS) | {"owa", "pinball", "crps", "coverage"}
    for name in names:
        base = name.split("_")[0]
        if name not in known and not (base == "coverage" and _coverage_level(name) is not None):
            raise ValueError(
                f"unknown metric {name!r}; choose from {sorted(known)} or 'coverage_<level>' (e.g. coverage_80)"
            )
    if len(set(names)) != len(names):
        raise ValueError(f"metrics has duplicates: {names}")
    return names


def _coverage_level(name: str) -> float | None:
    try:
        level = float(name.split("_", 1)[1])
    except (IndexError, ValueError):
        return None
    return level if 0 < level < 100 else None


def _quantile_columns(frame: pd.DataFrame) -> dict[float, str]:
    found = {}
    for col in frame.columns:
        if isinstance(col, str) and col.startswith("y_pred_q"):
            try:
                found[float(col[len("y_pred_q") :])] = col
            except ValueError:
                continue
    return dict(sorted(found.items()))


def _interval_pairs(levels: Iterable[float]) -> list[tuple[float, float, str]]:
    """Symmetric pairs ``(q, 1 - q)`` among the levels as ``(lo, hi, "coverage_<central %>")``."""
    levels = list(levels)
    pairs = []
    for lo in levels:
        if lo >= 0.5:
            continue
        hi = [q for q in levels if np.isclose(q, 1 - lo)]
        if hi:
            pct = round(100 * (hi[0] - lo), 6)
            label = f"coverage_{int(pct) if float(pct).is_integer() else pct}"
            pairs.append((lo, hi[0], label))
    return pairs


def _long_frame(df, name: str, value_col: str) -> pd.DataFrame:
    """``df`` as a pandas long frame (polars/pyarrow converted), checked for its columns and rows."""
    from ssmcast.data.frames import to_pandas

    df = to_pandas(df, name)
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"{name} must be a DataFrame with columns unique_id, ds, {value_col}; got a Series")
    missing = [c for c in ("unique_id", "ds", value_col) if c not in df.columns]
    if missing:
        raise ValueError(f"{name} is missing column(s) {missing}; it has {list(df.columns)}")
    if df.empty:
        raise ValueError(f"{name} is empty")
    return df


def score(
    forecasts: pd.DataFrame,
    actuals: pd.DataFrame | None = None,
    metrics: Iterable[str] = ("mae", "rmse", "smape"),
    train: pd.DataFrame | None = None,
    season_length: int | None = None,
    benchmark: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Score a long forecast frame per series and overall.

    ``forecasts`` has ``unique_id, ds, y_pred[, y_pred_q{q}...][, cutoff][, y]``; ``actuals`` is a long
    ``unique_id, ds, y`` frame (may hold more rows than needed), or ``None`` when ``forecasts`` already
    has ``y`` (a :func:`~ssmcast.evaluation.backtest` frame). ``metrics`` are names from
    ``mae, mse, rmse, mape, smape, mase, owa, pinball, crps, coverage, coverage_<level>``:
    ``pinball``/``crps`` use every quantile column, ``coverage`` every symmetric pair ``(q, 1 - q)``
    (one ``coverage_<central %>`` column each), ``coverage_80`` the pair 0.1/0.9.
    ``mase`` (and ``owa``) need ``train``, the long history frame; with a ``cutoff`` column each window is
    scaled by the training values up to its own cutoff. ``season_length`` defaults to the usual period
    of ``train``'s frequency. ``owa`` needs ``benchmark``, Naive2's forecasts for the same rows.

    Returns one row per series (``unique_id``) and a last row ``unique_id == "__overall__"``: the mean over
    series of each metric (M4 style), except ``owa`` which is the M4 ratio of the overall means.
    """
    return with_overall(*series_scores(forecasts, actuals, metrics, train, season_length, benchmark))


def series_scores(forecasts, actuals=None, metrics=("mae", "rmse", "smape"), train=None,
                  season_length=None, benchmark=None) -> tuple[pd.DataFrame, list[str], list[str]]:
    """:func:`score`'s per-series rows, before the overall row: ``(table, metric columns, metric names)``; the
    table keeps OWA's parts (``_smape, _mase, _smape_b, _mase_b``) so that tables of disjoint sets of series
    (the partitions of a panel) can be concatenated and given their overall row by :func:`with_overall`."""
    names = _parse_metrics(metrics)
    forecasts = _long_frame(forecasts, "forecasts", "y_pred")
    keys = ["unique_id", "ds"] + (["cutoff"] if "cutoff" in forecasts.columns else [])
    frame = forecasts.reset_index(drop=True)
    frame["unique_id"] = frame["unique_id"].astype(str)
    if frame.duplicated(keys).any():
        dup = frame.loc[frame.duplicated(keys, keep=False), keys].head(3).to_dict("records")
        raise ValueError(f"forecasts has duplicate {tuple(keys)} rows, e.g. {dup}")
    if actuals is not None:
        actuals = _long_frame(actuals, "actuals", "y")
        acts = actuals[["unique_id", "ds", "y"]].copy()
        acts["unique_id"] = acts["unique_id"].astype(str)
        if acts.duplicated(["unique_id", "ds"]).any():
            dup = acts.loc[acts.duplicated(["unique_id", "ds"]), ["unique_id", "ds"]].head(3).to_dict("records")
            raise ValueError(f"actuals has duplicate (unique_id, ds) rows, e.g. {dup}")
        frame = frame.drop(columns=["y"], errors="ignore").merge(acts, on=["unique_id", "ds"], how="left")
    elif "y" not in frame.columns:
        raise ValueError("actuals is None, so forecasts must have a 'y' column")
    missing = frame["y"].isna()
    if missing.any():
        ids = sorted(frame.loc[missing, "unique_id"].unique())[:5]
        raise ValueError(f"no actual y for {int(missing.sum())} forecast row(s) of series {ids}")
    for col in ["y", "y_pred"]:
        if not np.all(np.isfinite(frame[col].to_numpy(float))):
            ids = sorted(frame.loc[~np.isfinite(frame[col].to_numpy(float)), "unique_id"].unique())[:5]
            raise ValueError(f"forecasts column {col!r} has NaN/inf values for series {ids}")

    qcols = _quantile_columns(frame)
    pairs = _interval_pairs(qcols)
    columns: list[str] = []
    for name in names:
        if name in ("pinball", "crps") and not qcols:
            raise ValueError(f"metric {name!r} needs quantile columns y_pred_q<level>; forecasts has none")
        if name == "coverage":
            if not pairs:
                raise ValueError(
                    "metric 'coverage' needs a symmetric pair of quantile columns (q, 1-q); "
                    f"forecasts has levels {list(qcols)}"
                )
            columns += [label for *_, label in pairs if label not in columns]
        elif name.startswith("coverage_"):
            level = _coverage_level(name) / 100
            lo, hi = round((1 - level) / 2, 10), round((1 + level) / 2, 10)
            for q in (lo, hi):
                if not any(np.isclose(q, k) for k in qcols):
                    raise ValueError(f"metric {name!r} needs column {quantile_column(q)}; forecasts has {list(qcols)}")
            if name not in columns:
                columns.append(name)
        else:
            columns.append(name)

    need_scale = "mase" in names or "owa" in names
    if need_scale:
        frame["_scale"] = _mase_scales(frame, train, season_length)
    if "owa" in names:
        bench = _benchmark_predictions(frame, benchmark, keys)

    rows = []
    for uid, g in frame.groupby("unique_id", sort=True):
        y, f = g["y"].to_numpy(float), g["y_pred"].to_numpy(float)
        row: dict = {"unique_id": uid}
        for name in names:
            if name in ("mae", "mse", "rmse", "mape", "smape"):
                row[name] = _ARRAY_METRICS[name](y, f)
            elif name == "mase":
                row[name] = float(np.mean(np.abs(y - f) / g["_scale"].to_numpy()))
            elif name == "owa":
                b = bench.loc[g.index].to_numpy(float)
                row["_smape"], row["_smape_b"] = smape(y, f), smape(y, b)
                row["_mase"] = float(np.mean(np.abs(y - f) / g["_scale"].to_numpy()))
                row["_mase_b"] = float(np.mean(np.abs(y - b) / g["_scale"].to_numpy()))
                row[name] = _owa_or_nan(row["_smape"], row["_mase"], row["_smape_b"], row["_mase_b"])
            elif name == "pinball":
                row[name] = mean_pinball(y, {q: g[c].to_numpy(float) for q, c in qcols.items()})
            elif name == "crps":
                row[name] = crps(y, {q: g[c].to_numpy(float) for q, c in qcols.items()})
            elif name == "coverage":
                for lo, hi, label in pairs:
                    row[label] = coverage(y, g[qcols[lo]].to_numpy(float), g[qcols[hi]].to_numpy(float))
            else:
                level = _coverage_level(name) / 100
                lo = next(k for k in qcols if np.isclose(k, (1 - level) / 2))
                hi = next(k for k in qcols if np.isclose(k, (1 + level) / 2))
                row[name] = coverage(y, g[qcols[lo]].to_numpy(float), g[qcols[hi]].to_numpy(float))
        rows.append(row)
    return pd.DataFrame(rows), columns, names


def with_overall(table: pd.DataFrame, columns: list[str], names: list[str]) -> pd.DataFrame:
    """The per-series ``table`` of :func:`series_scores` with the overall row added (see :func:`score`)."""
    if (table["unique_id"] == OVERALL).any():
        raise ValueError(f"a series is named {OVERALL!r}, which score reserves for the overall row")
    overall: dict = {"unique_id": OVERALL}
    for col in columns:
        overall[col] = float(table[col].mean())
    if "owa" in names:
        overall["owa"] = _owa_or_nan(*(float(table[c].mean()) for c in ("_smape", "_mase", "_smape_b", "_mase_b")))
    table = pd.concat([table, pd.DataFrame([overall])], ignore_index=True)
    return table[["unique_id"] + columns]


_ARRAY_METRICS = {"mae": mae, "mse": mse, "rmse": rmse, "mape": mape, "smape": smape}


def _owa_or_nan(s, m, sb, mb) -> float:
    if sb == 0 or mb == 0:
        return float("nan")
    return owa(s, m, sb, mb)


def _benchmark_predictions(frame: pd.DataFrame, benchmark, keys: list[str]) -> pd.Series:
    if benchmark is None:
        raise ValueError("metric 'owa' needs benchmark=, the Naive2 forecasts for the same rows")
    benchmark = _long_frame(benchmark, "benchmark", "y_pred")
    bkeys = [k for k in keys if k in benchmark.columns]
    b = benchmark[bkeys + ["y_pred"]].rename(columns={"y_pred": "_bench"}).copy()
    b["unique_id"] = b["unique_id"].astype(str)
    if b.duplicated(bkeys).any():
        raise ValueError(f"benchmark has duplicate {tuple(bkeys)} rows")
    merged = frame[bkeys].merge(b, on=bkeys, how="left")
    merged.index = frame.index
    if merged["_bench"].isna().any():
        ids = sorted(frame.loc[merged["_bench"].isna(), "unique_id"].unique())[:5]
        raise ValueError(f"benchmark has no forecast for some rows of series {ids}")
    return merged["_bench"]


def _mase_scales(frame: pd.DataFrame, train, season_length) -> np.ndarray:
    """The MASE denominator of each forecast row: per series, or per (series, cutoff) with a cutoff column."""
    if train is None:
        raise ValueError("metric 'mase' needs train=, the long history frame (unique_id, ds, y)")
    train = _long_frame(train, "train", "y")
    hist = train[["unique_id", "ds", "y"]].copy()
    hist["unique_id"] = hist["unique_id"].astype(str)
    hist = hist.sort_values(["unique_id", "ds"], kind="stable")
    if season_length is None:
        season_length = _default_season_length(hist)
    m = _season_length(season_length)
    groups = {uid: g for uid, g in hist.groupby("unique_id", sort=False)}
    scales = np.empty(len(frame))
    by = ["unique_id", "cutoff"] if "cutoff" in frame.columns else ["unique_id"]
    for key, g in frame.groupby(by, sort=False):
        uid = key[0] if isinstance(key, tuple) else key
        if uid not in groups:
            raise ValueError(f"train has no history for series {uid!r} (needed by mase)")
        h = groups[uid]
        if "cutoff" in by:
            values = h.loc[h["ds"] <= key[1], "y"].to_numpy(float)
        else:
            first = g["ds"].min()
            values = h.loc[h["ds"] < first, "y"].to_numpy(float)
        if values.size == 0:
            raise ValueError(f"train has no history before the forecasts of series {uid!r} (needed by mase)")
        try:
            scale = mase_scale(values, m)
        except ValueError as err:
            where = f"series {uid!r}" + (f" at cutoff {key[1]}" if "cutoff" in by else "")
            raise ValueError(f"{where}: {err}") from None
        scales[frame.index.get_indexer(g.index)] = scale
    return scales


def _default_season_length(hist: pd.DataFrame) -> int:
    """The usual seasonal period of the history's frequency (1 for integer time steps)."""
    from ssmcast.data.frames import infer_freq
    from ssmcast.forecasting import season_length_from_freq

    try:
        freq = infer_freq(hist[["unique_id", "ds", "y"]])
    except ValueError as err:
        raise ValueError(f"cannot infer season_length from the timestamps ({err}); pass season_length=") from None
    return season_length_from_freq(freq)
