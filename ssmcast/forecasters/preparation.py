"""Data preparation of the neural forecasters: frames checked and turned into scaled arrays and windows.

:class:`DataPreparation` is a mixin of :class:`ssmcast.forecasters.base.NeuralForecaster`: validation of the
frames it is given, the per-series scaling fitted on the training part, covariates and calendar features
arranged as the columns of one input matrix per *unit* (one series with ``channel_mode="independent"``, the
whole panel with ``"mixed"``), and the training/validation windows over those units.
"""

from __future__ import annotations

import functools
import gc
from typing import Any

import numpy as np
import pandas as pd

from ssmcast.data.frames import ID, TARGET, TIME, _bounds, _quote, _series_chunks, to_long, to_pandas, validate_long
from ssmcast.data.scaling import SeriesScaler, location_scale
from ssmcast.data.windows import BatchedWindows, SeriesPanel, WindowDataset
from ssmcast.forecasters.features import calendar_features

_NO_STATIC = np.zeros(0, np.float32)  # the (empty) static features of a unit without any, shared
_NO_STATIC.flags.writeable = False


def _collector_paused(method):
    """``method`` with Python's cyclic garbage collector paused while it runs (and left as it was after).

    The bookkeeping of a panel makes a few small containers a series (a unit's dict, its id list, ...), all of
    them kept; with the collector on, its full collections walk every live object again each time a quarter as
    many new ones appeared: at 100k series about a third of an ``update()``, and the reason its cost grew faster
    than the number of series from 10k to 100k (issue #36). This bookkeeping makes no reference cycles of its own:
    what the collector would free is freed by reference counting anyway, and the rest waits for its next pass."""

    @functools.wraps(method)
    def paused(*args, **kwargs):
        if not gc.isenabled():
            return method(*args, **kwargs)
        gc.disable()
        try:
            return method(*args, **kwargs)
        finally:
            gc.enable()

    return paused


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

    def _read_shard(self, data, val_df) -> tuple[pd.DataFrame, Any, int, int]:
        """``fit``'s training frame from a partitioned Parquet dataset: every file in one process, this rank's files
        under a launcher's DDP (``ssmcast.training.ranks``), the columns the model uses only. Sets ``data_shard_``;
        returns ``(frame, shards, rank, world)``."""
        from ssmcast.data.shards import ParquetShards
        from ssmcast.training.ranks import env_rank_world

        shards = data if isinstance(data, ParquetShards) else ParquetShards(data)
        rank, world = env_rank_world()
        if world > 1 and self.channel_mode == "mixed":
            raise ValueError("channel_mode='mixed' makes the whole panel one sample: it cannot be sharded by series "
                             f"over {world} ranks; fit it in one process, or use channel_mode='independent'")
        if world > 1 and val_df is not None:
            raise ValueError(f"val_df is not taken by a fit sharded over {world} ranks (each rank reads only its own "
                             "series): hold out the last val_size steps of each series instead")
        past, future, static = self._columns()
        files = shards.files_of(rank, world)
        frame = shards.read(rank, world, [ID, TIME, TARGET, *past, *future, *static])
        self.data_shard_ = {"rank": rank, "world_size": world, "files": files, "rows": len(frame),
                            "series": int(frame[ID].nunique())}
        return frame, shards, rank, world

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

    def _fit_scaler_panel(self, frame: pd.DataFrame, lengths: np.ndarray, train: np.ndarray,
                          value_cols: list[str]) -> None:
        """:meth:`_fit_scaler` on the first ``train[i]`` rows of each series ``i`` of the validated frame (issue #36):
        the same statistics (pandas' group kernels, run on whole series a chunk at a time with integer keys) without
        the copy of the training rows and the ``unique_id`` strings as Python objects that cost ~6x the frame."""
        if self.scaler is None:
            self._fit_scaler(frame, value_cols)  # (no statistics: loc 0, scale 1)
            return
        if (train <= 0).any():  # series without training rows: the reference raises for them, naming them
            starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
            position = np.arange(len(frame)) - np.repeat(starts, lengths)
            self._fit_scaler(frame[position < np.repeat(train, lengths)], value_cols)
            return
        columns = [frame[c].to_numpy(np.float64) for c in value_cols]
        loc = np.empty((len(lengths), len(value_cols)))
        scale = np.empty((len(lengths), len(value_cols)))
        for first, last, a, b in _series_chunks(lengths):
            n_rows = train[first:last]
            keys = np.repeat(np.arange(first, last), n_rows)
            if (n_rows == lengths[first:last]).all():
                rows = slice(a, b)
            else:  # the first train[i] rows of each series of the chunk
                offset = np.repeat(np.cumsum(lengths[first:last]) - lengths[first:last] - np.cumsum(n_rows) + n_rows,
                                   n_rows)
                rows = a + np.arange(len(keys)) + offset
            values = pd.DataFrame({c: col[rows] for c, col in zip(value_cols, columns)})
            chunk_loc, chunk_scale = location_scale(values, keys, self.scaler)
            loc[first:last], scale[first:last] = chunk_loc.to_numpy(np.float64), chunk_scale.to_numpy(np.float64)
        empty = np.flatnonzero(np.isnan(loc).any(axis=1))
        if len(empty):
            raise ValueError(f"series with no finite training values in {value_cols}: "
                             f"{_quote([repr(self.ids_[i]) for i in empty])}")
        flat = ~(scale > SeriesScaler().min_scale * np.maximum(1.0, np.abs(loc)))
        scale[flat] = 1.0
        self.loc_, self.scale_ = loc, scale

    @_collector_paused
    def _panel_units(self, frame: pd.DataFrame, bounds=None, series_rows: np.ndarray | None = None
                     ) -> tuple[list[dict[str, Any]], np.ndarray, np.ndarray]:
        """Units of a validated frame (``channel_mode="independent"``), all at once: one scaled ``(T, n_inputs)``
        float32 array for the whole panel, each unit's ``X`` and ``ds`` views of it and of the frame's stamps.

        ``series_rows[i]``: the row of the frame's ``i``-th series in ``loc_``/``scale_`` (default ``0..n-1``).
        Returns ``(units, X, offsets)``; the units equal what :meth:`_unit_inputs` makes of :meth:`_series_arrays`
        (issue #36: no Python work per row, no copy per series)."""
        past, future, _ = self._columns()
        value_cols = [TARGET, *past, *future]
        starts, lengths = _bounds(frame) if bounds is None else bounds
        ids = _ids_at(frame, starts)
        series_rows = np.arange(len(starts)) if series_rows is None else np.asarray(series_rows)
        columns = [frame[c].to_numpy(np.float64) for c in value_cols]
        ds = frame[TIME].to_numpy()
        n_calendar = self._calendar(ds[:1]).shape[1] if len(ds) else 0
        X = np.empty((len(frame), len(value_cols) + n_calendar), np.float32)
        bad = []
        for first, last, a, b in _series_chunks(lengths):
            rows = np.repeat(series_rows[first:last], lengths[first:last])
            values = columns[0][a:b, None] if len(columns) == 1 else np.stack([c[a:b] for c in columns], axis=1)
            scaled = (values - self.loc_[rows]) / self.scale_[rows]
            too_large = (np.abs(scaled) > np.finfo(np.float32).max).any(axis=1)
            if too_large.any():  # refused below (not cast: inf in float32)
                bad += list(dict.fromkeys(np.asarray(frame[ID].array[a:b][too_large])))
            else:
                X[a:b, : len(value_cols)] = scaled
        if bad:
            raise ValueError(
                f"series {bad[:5]}: values that, scaled by the scaling fitted on the training data, exceed float32's "
                f"range ({np.finfo(np.float32).max:.3g}), which the model computes in; check those rows"
            )
        ends = starts + lengths
        if n_calendar:
            cache: dict = {}
            for a, b in zip(starts.tolist(), ends.tolist()):
                X[a:b, len(value_cols) :] = self._calendar(ds[a:b], cache)
        statics = self.static_values_
        units = [{"ids": [u], "X": X[a:b], "ds": ds[a:b], "static": statics.get(u, _NO_STATIC)}
                 for u, a, b in zip(ids, starts.tolist(), ends.tolist())]
        return units, X, np.concatenate([starts, [len(frame)]]).astype(np.int64)

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

    def _windows(self, units, first_target: list[int] | None = None, panel=None, target_range=None) -> BatchedWindows:
        """Training/validation windows over the units (targets from ``first_target[u]`` on, contexts may
        reach back), gathered a batch at a time from one contiguous panel. ``panel=(X, offsets)``: the units' rows
        already are that one array (:meth:`_panel_units`), used as it is; ``target_range`` ``(n_units, 2)``: rows
        where targets may lie (instead of ``first_target``)."""
        C, fs = self.n_targets_, self._future_slice
        if panel is None:
            X = np.concatenate([u["X"] for u in units])  # (total, n_inputs)
            lengths = np.array([len(u["X"]) for u in units])
        else:
            X, offsets = panel
            lengths = np.diff(offsets)
        static = np.stack([u["static"] for u in units])
        panel = SeriesPanel(
            X[:, :C], np.concatenate([[0], np.cumsum(lengths)]),
            past=X[:, C : fs.start] if fs.start > C else None,
            future=X[:, fs] if fs.stop > fs.start else None,
            static=static if static.shape[1] else None,
        )
        if first_target is not None:
            target_range = np.stack([np.asarray(first_target), lengths], axis=1)
        dataset = WindowDataset(panel, self.input_size, self.horizon, step=self.window_step, target_range=target_range)
        return BatchedWindows(dataset)


    def _history_units(self, df, validated: bool = False) -> dict[int, dict[str, Any]]:
        """Units for a supplied history frame (known series only), scaled with the fitted scaler."""
        frame = df if validated else self._validate_frame(df, "df")
        bounds = _bounds(frame)  # validated: sorted by id, so each series' first row names it (issue #36: no
        ids = _ids_at(frame, bounds[0])  # set of every row's id)
        unknown = sorted(u for u in ids if u not in self.unit_of_)
        if unknown:
            raise ValueError(f"unknown unique_id(s) {unknown[:5]}: the model was fitted on {self.ids_[:5]}...")
        if self.channel_mode == "mixed":
            if sorted(ids) != sorted(self.ids_):
                raise ValueError(f"channel_mode='mixed' needs the history of every training series {self.ids_}")
            units = self._unit_inputs(self._series_arrays(frame, self.ids_))
            return {self.unit_of_[u["ids"][0]]: u for u in units}
        keys = [self.unit_of_[u] for u in ids]  # independent mode: unit i is series ids_[i]
        units, _, _ = self._panel_units(frame, bounds, series_rows=keys)
        if any(a > b for a, b in zip(keys, keys[1:])):  # in the fitted order (as a frame sorted by id gives)
            keys, units = zip(*sorted(zip(keys, units), key=lambda pair: pair[0]))
        return dict(zip(keys, units))

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


def _ids_at(frame: pd.DataFrame, rows: np.ndarray) -> list[str]:
    """The ``unique_id`` of the given rows as a list of str (one conversion, not an element at a time)."""
    return frame[ID].array.take(rows).to_numpy().tolist() if len(rows) else []
