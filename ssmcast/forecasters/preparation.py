"""Data preparation of the neural forecasters: frames checked and turned into scaled arrays and windows.

:class:`DataPreparation` is a mixin of :class:`ssmcast.forecasters.base.NeuralForecaster`: validation of the
frames it is given, the per-series scaling fitted on the training part, covariates and calendar features
arranged as the columns of one input matrix per *unit* (one series with ``channel_mode="independent"``, the
whole panel with ``"mixed"``), and the training/validation windows over those units.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ssmcast.data.frames import ID, TARGET, TIME, to_long, to_pandas, validate_long
from ssmcast.data.scaling import SeriesScaler
from ssmcast.data.windows import BatchedWindows, SeriesPanel, WindowDataset
from ssmcast.forecasters.features import calendar_features


class DataPreparation:
    """Frames -> units ``{"ids", "X" (T, n_inputs), "ds", "static"}`` -> windows (see the module docstring)."""

    def _columns(self) -> tuple[list[str], list[str], list[str]]:
        as_list = lambda v: [v] if isinstance(v, str) else list(v or [])
        return as_list(self.past_covariates), as_list(self.future_covariates), as_list(self.static_features)

    def _validate_frame(self, df, what: str, min_length: int = 1) -> pd.DataFrame:
        past, future, static = self._columns()
        wanted = past + future + static
        frame = to_long(df)
        missing = [c for c in wanted if c not in frame.columns]
        if missing:
            raise ValueError(f"{what} lacks the covariate column(s) {missing} given at construction")
        return validate_long(frame, min_length=min_length, fill=self.fill, covariates=wanted,
                             freq=getattr(self, "freq_", None))

    # ------------------------------------------------------------------ data preparation
    def _fit_scaler(self, train: pd.DataFrame, value_cols: list[str]) -> None:
        """Per-series ``loc_``/``scale_`` ``(n_series, n_values)`` fitted on the training rows only."""
        if self.scaler is None:
            self.loc_ = np.zeros((len(self.ids_), len(value_cols)))
            self.scale_ = np.ones((len(self.ids_), len(value_cols)))
            return
        scaler = SeriesScaler(self.scaler, columns=value_cols).fit(train)
        rows = scaler.series_index(np.asarray(self.ids_, dtype=object))
        self.loc_, self.scale_ = scaler.loc_[rows], scaler.scale_[rows]

    def _series_arrays(self, frame: pd.DataFrame, ids: list[str]) -> dict[str, dict[str, Any]]:
        """Scaled values ``(T, n_values)`` and stamps of each series in ``frame`` (validated: sorted by id, ds)."""
        past, future, _ = self._columns()
        value_cols = [TARGET, *past, *future]
        uid = frame[ID].to_numpy()
        starts = np.flatnonzero(np.r_[True, uid[1:] != uid[:-1]])
        bounds = np.r_[starts, len(uid)]
        index = {u: i for i, u in enumerate(self.ids_)}
        rows = np.repeat([index[u] for u in uid[starts]], np.diff(bounds))
        scaled = (frame[value_cols].to_numpy(np.float64) - self.loc_[rows]) / self.scale_[rows]
        too_large = np.abs(scaled) > np.finfo(np.float32).max  # inf in float32: refuse, naming the series
        if too_large.any():
            bad = list(dict.fromkeys(uid[np.flatnonzero(too_large.any(1))]))
            raise ValueError(
                f"series {bad[:5]}: values that, scaled by the scaling fitted on the training data, exceed float32's "
                f"range ({np.finfo(np.float32).max:.3g}), which the model computes in; check those rows"
            )
        values = scaled.astype(np.float32)
        ds = frame[TIME].to_numpy()
        out = {uid[a]: {"values": values[a:b], "ds": ds[a:b]} for a, b in zip(bounds[:-1], bounds[1:])}
        return {u: out[u] for u in ids if u in out}

    def _calendar(self, ds, cache: dict | None = None) -> np.ndarray:
        """Calendar features of the stamps ``ds`` (on the ``freq_`` grid, so its first stamp and length name it;
        ``cache`` shares them between series over the same stamps)."""
        if not self.calendar_features:
            return np.zeros((len(ds), 0), np.float32)
        if cache is None:
            return calendar_features(ds, self.freq_)
        key = (ds[0], len(ds))
        if key not in cache:
            cache[key] = calendar_features(ds, self.freq_)
        return cache[key]

    def _unit_inputs(self, series: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
        """Turn per-series arrays into units: ``X (T, n_inputs)`` = targets, past, future, calendar."""
        if self.channel_mode == "mixed":
            ds = [s["ds"] for s in series.values()]
            lengths = {len(d) for d in ds}
            if len(lengths) != 1 or any(not np.array_equal(d, ds[0]) for d in ds[1:]):
                raise ValueError(
                    "channel_mode='mixed' needs every series to share the same time stamps; "
                    f"series {list(series)} differ (lengths {sorted(lengths)})"
                )
            X = np.concatenate([s["values"] for s in series.values()], axis=1)
            X = np.concatenate([X, self._calendar(ds[0])], axis=1)
            return [{"ids": list(series), "X": X, "ds": ds[0], "static": np.zeros(0, np.float32)}]
        units, cache = [], {}
        for uid, s in series.items():
            X = np.concatenate([s["values"], self._calendar(s["ds"], cache)], axis=1)
            static = self.static_values_.get(uid, np.zeros(0, np.float32))
            units.append({"ids": [uid], "X": X, "ds": s["ds"], "static": static})
        return units

    @property
    def _future_slice(self) -> slice:
        """Columns of ``X`` known in advance (future covariates, calendar)."""
        past, future, _ = self._columns()
        start = self.n_targets_ + (len(past) if self.channel_mode == "independent" else 0)
        return slice(start, self.n_inputs_)

    def _windows(self, units, first_target: list[int] | None = None) -> BatchedWindows:
        """Training/validation windows over the units (targets from ``first_target[u]`` on, contexts may
        reach back), gathered a batch at a time from one contiguous panel."""
        C, fs = self.n_targets_, self._future_slice
        X = np.concatenate([u["X"] for u in units])  # (total, n_inputs)
        lengths = np.array([len(u["X"]) for u in units])
        static = np.stack([u["static"] for u in units])
        panel = SeriesPanel(
            X[:, :C], np.concatenate([[0], np.cumsum(lengths)]),
            past=X[:, C : fs.start] if fs.start > C else None,
            future=X[:, fs] if fs.stop > fs.start else None,
            static=static if static.shape[1] else None,
        )
        target_range = None
        if first_target is not None:
            target_range = np.stack([np.asarray(first_target), lengths], axis=1)
        dataset = WindowDataset(panel, self.input_size, self.horizon, step=self.window_step, target_range=target_range)
        return BatchedWindows(dataset)


    def _history_units(self, df, validated: bool = False) -> dict[int, dict[str, Any]]:
        """Units for a supplied history frame (known series only), scaled with the fitted scaler."""
        frame = df if validated else self._validate_frame(df, "df")
        unknown = sorted(set(frame[ID]) - set(self.ids_))
        if unknown:
            raise ValueError(f"unknown unique_id(s) {unknown[:5]}: the model was fitted on {self.ids_[:5]}...")
        ids = list(pd.unique(frame[ID]))
        if self.channel_mode == "mixed" and sorted(ids) != sorted(self.ids_):
            raise ValueError(f"channel_mode='mixed' needs the history of every training series {self.ids_}")
        present = set(ids)  # a set: a list here made every update()/predict(df=) quadratic in the series (#36)
        units = self._unit_inputs(self._series_arrays(frame, [u for u in self.ids_ if u in present]))
        return {self.unit_of_[u["ids"][0]]: u for u in units}

    def _future_rows(self, future_df) -> dict[str, pd.DataFrame]:
        """``future_df`` checked and split by series, each indexed by ``ds`` ({} without future covariates)."""
        _, future, _ = self._columns()
        if not future:
            return {}
        if future_df is None:
            raise ValueError(f"this model uses future_covariates {future}: pass future_df with their values "
                             f"over the forecast horizon")
        expected = f"future_df must be a long DataFrame with columns unique_id, ds, {', '.join(future)}"
        try:
            future_df = to_pandas(future_df)  # polars/Arrow -> pandas
        except TypeError as err:
            raise ValueError(f"{expected} ({err})") from None
        if not isinstance(future_df, pd.DataFrame) or not {ID, TIME} <= set(future_df.columns):
            raise ValueError(expected)
        missing = [c for c in future if c not in future_df.columns]
        if missing:
            raise ValueError(f"future_df lacks the future covariate column(s) {missing}")
        ids = future_df[ID].astype(str).to_numpy()
        return {uid: rows.set_index(TIME) for uid, rows in future_df.groupby(ids, sort=False)}

    def _future_block(self, unit, stamps, future_rows: dict[str, pd.DataFrame], n_required: int,
                      calendar_cache: dict | None = None) -> np.ndarray:
        """Known-in-advance inputs over ``stamps``: future covariates (scaled) then calendar.

        Future covariates are required over the first ``n_required`` stamps (the forecast steps); the rest
        only pads the model's last direct block and repeats the last required row.
        """
        _, future, _ = self._columns()
        parts = []
        if future:
            required, padding = stamps[:n_required], len(stamps) - n_required
            uid = unit["ids"][0]
            try:
                block = future_rows[uid].loc[required, future].to_numpy(np.float64)
            except KeyError:
                raise ValueError(
                    f"future_df misses future covariate values for series {uid!r} over the {len(required)} "
                    f"forecast steps {required[0]} .. {required[-1]}"
                ) from None
            if not np.isfinite(block).all():
                raise ValueError(f"future_df has NaN/inf future covariates for series {uid!r}")
            i = self.unit_of_[uid]  # independent mode (covariates): unit i is series ids_[i]; O(1), not ids_.index
            past, _, _ = self._columns()
            cols = slice(1 + len(past), 1 + len(past) + len(future))
            block = np.concatenate([block, np.repeat(block[-1:], padding, axis=0)])
            parts.append((block - self.loc_[i, cols]) / self.scale_[i, cols])
        parts.append(self._calendar(stamps, calendar_cache))
        return np.concatenate(parts, axis=1).astype(np.float32) if parts else np.zeros((len(stamps), 0), np.float32)

