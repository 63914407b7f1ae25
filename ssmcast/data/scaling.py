"""Per-series scaling fitted on training rows only: ``"standard"`` (z-score) and ``"robust"`` (median/IQR).

``x_scaled = (x - loc[series]) / scale[series]`` and exactly back. A series whose training spread is zero
(a constant) keeps ``scale = 1`` so it is only centred. Works on long frames (rows matched by
``unique_id``) and on numpy arrays or torch tensors with series ids (or with one series per last axis).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from ssmcast.data.frames import ID, TARGET, _quote, to_long

__all__ = ["SCALERS", "SeriesScaler", "location_scale"]

SCALERS = ("standard", "robust")


def location_scale(values: pd.DataFrame, keys, method: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-group ``loc`` and ``scale`` of the columns of ``values`` (rows grouped by ``keys``, groups sorted),
    non-finite values ignored: mean and population std (``"standard"``) or median and IQR (``"robust"``). The
    statistics :meth:`SeriesScaler.fit` computes; each group's depend on its own rows only, so a panel can be
    done a chunk of whole series at a time with any keys that sort as the series do."""
    values = values.astype("float64").replace([np.inf, -np.inf], np.nan)  # (N, K)
    groups = values.groupby(keys, sort=True)
    if method == "standard":
        return groups.mean(), groups.std(ddof=0)
    q = groups.quantile([0.25, 0.5, 0.75])
    return q.xs(0.5, level=1), q.xs(0.75, level=1) - q.xs(0.25, level=1)


class SeriesScaler:
    """Per-series, per-column affine scaler (``fit`` on the training part, then ``transform`` anything).

    ``method="standard"``: ``loc`` = mean, ``scale`` = population std (``ddof=0``, as sklearn's
    ``StandardScaler``). ``method="robust"``: ``loc`` = median, ``scale`` = 75th - 25th percentile.
    Non-finite training values are ignored. ``columns`` are the long-frame columns scaled (default ``y``).
    """

    def __init__(
        self, method: str = "standard", *, columns: Sequence[str] = (TARGET,), min_scale: float = 1e-12
    ):
        if method not in SCALERS:
            raise ValueError(f"method must be one of {SCALERS}; got {method!r}")
        columns = [columns] if isinstance(columns, str) else list(columns)
        if not columns:
            raise ValueError("columns must name at least one column")
        self.method = method
        self.columns = columns
        self.min_scale = float(min_scale)
        self.ids_: np.ndarray | None = None  # (S,) unique_id
        self.loc_: np.ndarray | None = None  # (S, K)
        self.scale_: np.ndarray | None = None  # (S, K)

    # ------------------------------------------------------------------------------------------ fit

    def fit(self, df) -> SeriesScaler:
        """Fit ``loc``/``scale`` per series on every row of ``df`` (pass the training rows only)."""
        frame = df if isinstance(df, pd.DataFrame) and ID in df.columns else to_long(df)
        missing = [c for c in [ID, *self.columns] if c not in frame.columns]
        if missing:
            raise ValueError(f"scaler columns {missing} not in the frame (columns {list(frame.columns)})")
        if len(frame) == 0:
            raise ValueError("cannot fit a scaler on an empty frame")
        loc, scale = location_scale(frame[self.columns], frame[ID].astype(str).to_numpy(), self.method)
        empty = loc.index[loc.isna().any(axis=1)]
        if len(empty):
            empty = _quote(map(repr, empty))
            raise ValueError(f"series with no finite training values in {self.columns}: {empty}")
        ids = loc.index.to_numpy(dtype=object)
        loc = loc.to_numpy(dtype=np.float64, copy=True)  # (S, K)
        scale = scale.to_numpy(dtype=np.float64, copy=True)  # (S, K)
        flat = ~(scale > self.min_scale * np.maximum(1.0, np.abs(loc)))
        scale[flat] = 1.0
        self.ids_ = ids
        self.loc_, self.scale_ = loc, scale
        return self

    def fit_transform(self, df) -> pd.DataFrame:
        return self.fit(df).transform(df)

    def _check_fitted(self) -> None:
        if self.loc_ is None:
            raise ValueError("this SeriesScaler is not fitted yet: call fit() on the training rows first")

    def series_index(self, ids) -> np.ndarray:
        """Positions of ``ids`` among the fitted series; ``ValueError`` names ids not seen in ``fit``."""
        self._check_fitted()
        if isinstance(ids, pd.Series) and not pd.api.types.is_integer_dtype(ids.dtype):
            position = pd.Index(self.ids_).get_indexer(ids.astype(str))
            if (position < 0).any():
                unknown = ids[position < 0].astype(str).unique()
                raise ValueError(f"series not seen when the scaler was fitted: {_quote(map(repr, unknown))}")
            return position
        ids = np.asarray(ids)
        if ids.dtype.kind in "iu":
            bad = (ids < 0) | (ids >= len(self.ids_))
            if bad.any():
                bad = _quote(np.unique(ids[bad]))
                raise ValueError(f"series positions out of range [0, {len(self.ids_)}): {bad}")
            return ids.astype(np.int64)
        position = pd.Index(self.ids_).get_indexer(pd.Index(ids.astype(str).ravel())).reshape(ids.shape)
        if (position < 0).any():
            unknown = [str(i) for i in np.unique(ids[position < 0].astype(str))]
            raise ValueError(f"series not seen when the scaler was fitted: {_quote(map(repr, unknown))}")
        return position

    # ------------------------------------------------------------------------------------------ frames

    def transform(self, df) -> pd.DataFrame:
        """A new long frame with the scaled columns (float64)."""
        return self._apply_frame(df, inverse=False)

    def inverse_transform(self, df, *, columns: Sequence[str] | None = None) -> pd.DataFrame:
        """Undo :meth:`transform` on a long frame.

        ``columns`` maps frame columns to the fitted columns, e.g. ``{"y_pred": "y"}`` or a list of
        forecast columns all scaled like the first fitted column (default: the fitted columns).
        """
        return self._apply_frame(df, inverse=True, columns=columns)

    def _apply_frame(self, df, *, inverse: bool, columns=None) -> pd.DataFrame:
        self._check_fitted()
        frame = df.copy() if isinstance(df, pd.DataFrame) and ID in df.columns else to_long(df)
        if columns is None:
            mapping = {c: c for c in self.columns}
        elif isinstance(columns, dict):
            mapping = dict(columns)
        else:
            columns = [columns] if isinstance(columns, str) else list(columns)
            mapping = {c: self.columns[0] for c in columns}
        unknown = [target for target in mapping.values() if target not in self.columns]
        if unknown:
            raise ValueError(f"columns {unknown} were not fitted (fitted: {self.columns})")
        missing = [c for c in mapping if c not in frame.columns]
        if missing:
            raise ValueError(f"columns {missing} not in the frame (columns {list(frame.columns)})")
        rows = self.series_index(frame[ID])
        for col, fitted in mapping.items():
            k = self.columns.index(fitted)
            loc, scale = self.loc_[rows, k], self.scale_[rows, k]
            values = frame[col].to_numpy(dtype="float64")
            frame[col] = values * scale + loc if inverse else (values - loc) / scale
        return frame

    # ------------------------------------------------------------------------------------------ arrays

    def transform_array(self, values, series=None, *, column: str = TARGET):
        """Scale a numpy array or torch tensor.

        ``series=None``: the last axis enumerates the fitted series in order (``(..., S)``, the "mixed"
        channel layout). Otherwise ``series`` holds one id (or position) per entry of the first axis and
        the stats broadcast over the other axes (``values`` of shape ``(n, ...)``, ``series`` of ``(n,)``).
        """
        loc, scale = self._broadcast_stats(values, series, column)
        return (values - loc) / scale

    def inverse_transform_array(self, values, series=None, *, column: str = TARGET):
        """Undo :meth:`transform_array` (same ``series`` convention)."""
        loc, scale = self._broadcast_stats(values, series, column)
        return values * scale + loc

    def _broadcast_stats(self, values, series, column: str):
        self._check_fitted()
        if column not in self.columns:
            raise ValueError(f"column {column!r} was not fitted (fitted: {self.columns})")
        k = self.columns.index(column)
        shape = tuple(values.shape)
        if series is None:
            if not shape or shape[-1] != len(self.ids_):
                raise ValueError(
                    f"values of shape {shape}: with series=None the last axis must enumerate the "
                    f"{len(self.ids_)} fitted series"
                )
            loc, scale = self.loc_[:, k], self.scale_[:, k]
        else:
            if hasattr(series, "detach"):
                series = series.detach().cpu().numpy()
            rows = self.series_index(np.atleast_1d(np.asarray(series)))
            if rows.ndim != 1 or not shape or shape[0] != len(rows):
                raise ValueError(f"series has shape {rows.shape}; values of shape {shape} need {shape[:1]}")
            trailing = (1,) * (len(shape) - 1)
            loc = self.loc_[rows, k].reshape(-1, *trailing)
            scale = self.scale_[rows, k].reshape(-1, *trailing)
        if hasattr(values, "detach"):  # torch tensor: stats on its device and dtype
            import torch

            return (
                torch.as_tensor(loc, dtype=values.dtype, device=values.device),
                torch.as_tensor(scale, dtype=values.dtype, device=values.device),
            )
        dtype = values.dtype if np.issubdtype(np.asarray(values).dtype, np.floating) else np.float64
        return loc.astype(dtype), scale.astype(dtype)

    # ------------------------------------------------------------------------------------------ state

    def state_dict(self) -> dict:
        """Plain Python state (safe for ``torch.save`` / ``torch.load(weights_only=True)``)."""
        self._check_fitted()
        return {
            "method": self.method,
            "columns": list(self.columns),
            "min_scale": self.min_scale,
            "ids": [str(i) for i in self.ids_],
            "loc": self.loc_.tolist(),
            "scale": self.scale_.tolist(),
        }

    @classmethod
    def from_state_dict(cls, state: dict) -> SeriesScaler:
        scaler = cls(state["method"], columns=state["columns"], min_scale=state["min_scale"])
        scaler.ids_ = np.asarray(state["ids"], dtype=object)
        shape = (len(scaler.ids_), len(scaler.columns))
        scaler.loc_ = np.asarray(state["loc"], dtype=np.float64).reshape(shape)
        scaler.scale_ = np.asarray(state["scale"], dtype=np.float64).reshape(scaler.loc_.shape)
        return scaler

    def __repr__(self) -> str:
        fitted = "unfitted" if self.ids_ is None else f"{len(self.ids_)} series"
        return f"SeriesScaler(method={self.method!r}, columns={self.columns}, {fitted})"
