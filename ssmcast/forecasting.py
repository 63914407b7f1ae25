"""What every ssmcast forecaster shares, neural or classical: the output frame and its quantile columns.

Every estimator follows one API:

* ``fit(df, ...) -> self`` on anything :func:`ssmcast.data.to_long` accepts (long ``unique_id, ds, y``
  frames, wide frames, a ``pd.Series``);
* ``predict(h=None, df=None, quantiles=None) -> DataFrame`` with columns ``unique_id, ds, y_pred`` and
  one ``y_pred_q{q}`` column per quantile (:func:`quantile_column`), ``h`` steps after the end of each
  training series, or after the end of the history ``df`` when one is given (no refit);
* ``update(df_new, h=None, quantiles=None) -> DataFrame``: append observations that continue the fitted
  series and forecast from their new end (parameters unchanged; on any error nothing is appended).

Estimators that can forecast many fixed-length windows at once (the neural forecasters) may also offer
``predict_windows(context) -> array``: ``context`` of shape ``(n_windows, input_size, n_channels)`` on
the scale the model was fitted on, returning ``(n_windows, horizon, n_channels)``. The long-horizon
evaluation uses it when present and falls back to ``predict(df=...)`` otherwise.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd

__all__ = ["quantile_column", "check_quantiles", "forecast_frame", "season_length_from_freq"]


def quantile_column(q: float) -> str:
    """``0.1 -> "y_pred_q0.1"``, ``0.5 -> "y_pred_q0.5"``, ``0.975 -> "y_pred_q0.975"``."""
    return f"y_pred_q{float(q)!r}"


def check_quantiles(quantiles: Iterable[float] | None) -> list[float]:
    """Validated, sorted, de-duplicated quantile levels; each strictly inside (0, 1)."""
    if quantiles is None:
        return []
    if isinstance(quantiles, (int, float, np.floating)):
        quantiles = [quantiles]
    levels = []
    for q in quantiles:
        try:
            value = float(q)
        except (TypeError, ValueError):
            raise ValueError(f"quantiles must be numbers in (0, 1); got {q!r}") from None
        if not 0.0 < value < 1.0 or not np.isfinite(value):
            raise ValueError(f"quantiles must lie strictly between 0 and 1; got {q!r}")
        levels.append(value)
    return sorted(set(levels))


def forecast_frame(
    unique_id: Iterable, ds: Iterable, y_pred: Iterable, quantiles: Mapping[float, Iterable] | None = None
) -> pd.DataFrame:
    """The long forecast frame ``unique_id, ds, y_pred[, y_pred_q{q}...]`` (quantile columns ascending)."""
    ids = unique_id if isinstance(unique_id, (np.ndarray, pd.api.extensions.ExtensionArray)) else list(unique_id)
    stamps = pd.Series(ds.array if isinstance(ds, pd.Index) else ds if isinstance(ds, np.ndarray) else list(ds))
    columns = {"unique_id": pd.Series(ids, dtype=str), "ds": stamps, "y_pred": np.asarray(y_pred, float)}
    for q in sorted(quantiles or {}):  # every column at once: one block, not one insert per level
        columns[quantile_column(q)] = np.asarray(quantiles[q], dtype=float)
    return pd.DataFrame(columns)


_SEASONS = {
    "h": 24, "min": 60 * 24, "s": 60 * 60 * 24, "D": 7, "B": 5, "W": 52,
    "MS": 12, "ME": 12, "M": 12, "QS": 4, "QE": 4, "Q": 4, "YS": 1, "YE": 1, "Y": 1,
}


def season_length_from_freq(freq: str | int | None) -> int:
    """The usual seasonal period of a frequency: 24 hourly, 7 daily, 52 weekly, 12 monthly, 4 quarterly,
    1 yearly; sub-hourly ``15min`` gives the number of steps per day (96); integer steps give 1."""
    if freq is None or isinstance(freq, (int, np.integer)):
        return 1
    offset = pd.tseries.frequencies.to_offset(freq)
    base = offset.rule_code.split("-")[0]
    n = offset.n
    if base in ("min", "s", "h"):
        per_day = {"h": 24, "min": 24 * 60, "s": 24 * 3600}[base]
        return max(1, per_day // n) if per_day % n == 0 else 1
    if base in _SEASONS:
        season = _SEASONS[base]
        return max(1, season // n) if season % n == 0 else 1
    return 1
