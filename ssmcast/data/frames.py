"""The DataFrame contract: every ssmcast model consumes long ``unique_id, ds, y[, covariates...]`` frames.

* :func:`to_pandas` lets polars DataFrames and pyarrow Tables in (columnar conversion to pandas); every
  function here, and every estimator and evaluation entry point, passes its frames through it;
* :func:`to_long` turns a long frame, a wide frame (one column per series) or a ``pd.Series`` into the
  canonical long frame, sorted by ``(unique_id, ds)`` with a fresh ``RangeIndex``;
* :func:`to_wide` is its inverse (index ``ds``, one column per ``unique_id``);
* :func:`validate` runs :func:`to_long` plus every check a model relies on and returns a clean copy whose
  series lie on a complete, regular time grid with finite values (:func:`validate_long` skips the
  conversion for a frame that is already :func:`to_long`'s output);
* :func:`infer_freq`, :func:`future_timestamps` and :func:`fill_gaps` deal with the time grid.

``ds`` is either datetime-like (pandas-3 frequency aliases: ``"h"``, ``"min"``, ``"15min"``, ``"D"``,
``"W-SAT"``, ``"MS"``, ``"ME"``...) or integer (the frequency is then an integer step). No function here
modifies its input.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence

import numpy as np
import pandas as pd
from pandas.tseries.frequencies import to_offset
from pandas.tseries.offsets import BaseOffset, Tick

__all__ = [
    "ID",
    "TIME",
    "TARGET",
    "FILL_POLICIES",
    "to_pandas",
    "to_long",
    "to_wide",
    "validate",
    "validate_long",
    "infer_freq",
    "future_timestamps",
    "fill_gaps",
    "as_offset",
]

ID, TIME, TARGET = "unique_id", "ds", "y"
FILL_POLICIES = (None, "ffill", "interpolate", "zero", "drop")
_SHOW = 5  # offending rows/series quoted in an error message


def _quote(items: Sequence, n: int = _SHOW) -> str:
    items = list(items)
    head = ", ".join(str(item) for item in items[:n])
    return head + (f", ... ({len(items)} in all)" if len(items) > n else "")


def _rows(frame: pd.DataFrame, mask) -> str:
    """``(unique_id, ds)`` pairs of the rows where ``mask`` holds, for error messages."""
    sub = frame.loc[np.asarray(mask, dtype=bool), [ID, TIME]]
    return _quote([f"({uid!r}, {_fmt_ds(ds)})" for uid, ds in zip(sub[ID], sub[TIME])])


def _fmt_ds(ds) -> str:
    if isinstance(ds, pd.Timestamp):
        return str(ds.date()) if ds == ds.normalize() and ds.tz is None else str(ds)
    return str(ds)


# ----------------------------------------------------------------------------------------- input types

_ACCEPTED = "a pandas DataFrame (or Series), a polars DataFrame or a pyarrow Table"


def to_pandas(data, what: str | None = None):
    """``data`` as a pandas object: the one door through which polars and Arrow frames enter ssmcast.

    * pandas ``DataFrame`` or ``Series``: returned as it is (nothing in ssmcast modifies it);
    * pyarrow ``Table`` (or ``RecordBatch``): converted column by column with ``to_pandas`` (no Python
      object per value): time stamps keep their unit and time zone (a tz-aware ``timestamp`` becomes a
      tz-aware pandas column), ``date32``/``date64`` become ``datetime64``, integers stay integers,
      ``float32``/``float64`` keep their width, strings (``string``, ``large_string``, ``string_view``)
      become pandas ``str`` and dictionary columns ``category``; nulls become NaN/NaT (an integer column
      with nulls becomes float64 with NaN), so :func:`validate` reports them as it reports pandas' NaN;
    * polars ``DataFrame``: ``to_arrow()``, then as a pyarrow Table (``String``/``Utf8`` ids arrive as
      ``str``, ``Categorical``/``Enum`` as ``category``, ``Datetime(time_zone=...)`` tz-aware, ``Date`` as
      ``datetime64``). polars is never imported for this: its frames are recognised by their type's module,
      so ssmcast works without polars installed;
    * polars ``LazyFrame``: a ``TypeError`` asking for ``.collect()``. Running a lazy query (which may scan
      files, and would run again for every call it is passed to) is left to the caller;
    * anything else (a dict, a numpy array, a file path...): a ``TypeError`` naming the accepted types.

    The caller's object is left untouched (its data is copied into new pandas columns); the wide or long
    layout is kept as it is (:func:`to_long` handles both). ``what`` names the argument in error messages.
    """
    prefix = f"{what}: " if what else ""
    if isinstance(data, (pd.DataFrame, pd.Series)):
        return data
    module, name = type(data).__module__, type(data).__name__
    if module.split(".")[0] == "polars":
        if name == "LazyFrame":
            raise TypeError(
                f"{prefix}got a polars LazyFrame; call .collect() on it first (ssmcast takes eager frames and "
                "does not run lazy queries itself)"
            )
        if name == "DataFrame":
            return _arrow_to_pandas(data.to_arrow())
    elif module.split(".")[0] == "pyarrow":
        import pyarrow as pa  # a dependency of ssmcast, but imported only when an Arrow object arrives

        if isinstance(data, (pa.Table, pa.RecordBatch)):
            return _arrow_to_pandas(data)
    shown = name if module == "builtins" else f"{module.split('.')[0]}.{name}"  # dict, numpy.ndarray, polars.Series
    hint = ""
    if isinstance(data, (str, bytes, os.PathLike)):
        hint = " (to use a file, read it first, e.g. with pd.read_parquet or pd.read_csv)"
    raise TypeError(f"{prefix}expected {_ACCEPTED}; got {shown}{hint}")


def _arrow_to_pandas(table) -> pd.DataFrame:
    """pyarrow's columnar conversion; dates as ``datetime64`` (``[ms]``) rather than ``datetime.date`` objects."""
    return table.to_pandas(date_as_object=False)


# ----------------------------------------------------------------------------------------- conversion


def _as_time(values: pd.Series | pd.Index, what: str) -> pd.Series:
    """Datetime or int64 time stamps; strings are parsed as dates, periods become their start time."""
    values = pd.Series(values, copy=True).reset_index(drop=True)
    dtype = values.dtype
    if isinstance(dtype, pd.PeriodDtype):
        return values.dt.to_timestamp()
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return values
    if pd.api.types.is_bool_dtype(dtype):
        raise ValueError(f"{what} must hold datetimes or integers; got booleans")
    if pd.api.types.is_integer_dtype(dtype):
        return values.astype("int64") if values.notna().all() else values
    if pd.api.types.is_float_dtype(dtype):
        finite = values.dropna()
        if (finite == np.round(finite)).all():  # integers; with NaN (e.g. Arrow ints with nulls) nullable Int64,
            return values.astype("int64" if values.notna().all() else "Int64")  # for validate() to name them
        fractional = finite[finite != np.round(finite)].unique()
        raise ValueError(f"{what} must hold datetimes or integers; got floats {_quote(fractional)}")
    if pd.api.types.is_timedelta64_dtype(dtype):
        raise ValueError(f"{what} must hold datetimes or integers; got timedeltas")
    kind = pd.api.types.infer_dtype(values, skipna=False)
    if kind == "integer":  # Python ints in an object column
        return values.astype("int64")
    if kind in ("floating", "mixed-integer-float", "decimal", "boolean"):
        raise ValueError(f"{what} must hold datetimes or integers; got {kind} values")
    present = values.notna()
    for fmt in ("ISO8601", "mixed"):
        try:
            return pd.to_datetime(values, format=fmt)
        except (ValueError, TypeError):
            continue
    parsed = pd.to_datetime(values, format="mixed", errors="coerce")
    bad = values[present & parsed.isna()]
    raise ValueError(f"{what} must hold datetimes or integers; cannot parse {_quote(map(repr, bad.unique()))}")


def to_long(data, *, id_col: str = ID, time_col: str = TIME, target_col: str = TARGET) -> pd.DataFrame:
    """Canonical long frame ``unique_id, ds, y[, covariates...]`` from a long frame, a wide frame or a Series.

    * long frame: a DataFrame with an ``id_col`` column (and ``time_col``, ``target_col``); other columns
      are kept as covariates (in their order);
    * wide frame: any other DataFrame; ``ds`` comes from a ``time_col`` column, else from the index
      (DatetimeIndex, integer index, PeriodIndex or date strings), and every other column is one series
      named by its column label. Each series' leading and trailing NaNs (ragged panels) are dropped;
      interior NaNs are kept for :func:`validate` to judge;
    * ``pd.Series``: one series named by ``data.name`` (else ``"series_0"``), ``ds`` from its index;
    * a polars DataFrame or a pyarrow Table, long or wide: converted by :func:`to_pandas` first.

    Returns a new frame sorted by ``(unique_id, ds)`` (stable) with a fresh ``RangeIndex``; ``unique_id``
    is ``str``, ``ds`` datetime64 or int64. Raises ``ValueError`` for missing or duplicated columns.
    """
    data = to_pandas(data)
    if isinstance(data, pd.Series):
        uid = "series_0" if data.name is None else str(data.name)
        out = pd.DataFrame({ID: uid, TIME: _as_time(data.index, "the Series index"), TARGET: data.to_numpy()})
        out[ID] = out[ID].astype(str)
        return _sorted(out)
    if isinstance(data.columns, pd.MultiIndex):
        raise ValueError("MultiIndex columns are not supported: pass a long frame or a flat wide frame")
    named = id_col != ID or target_col != TARGET
    if id_col in data.columns or named:
        duplicated = list(dict.fromkeys(data.columns[data.columns.duplicated()]))
        if duplicated:  # (a wide frame's duplicated series columns get their own message below)
            raise ValueError(f"duplicate column name(s) {duplicated}: each column must be named once")
        missing = [col for col in (id_col, time_col, target_col) if col not in data.columns]
        if missing:
            raise ValueError(
                f"long frame is missing column(s) {missing}; it has {list(data.columns)} "
                f"(id_col={id_col!r}, time_col={time_col!r}, target_col={target_col!r})"
            )
        extra = [col for col in data.columns if col not in (id_col, time_col, target_col)]
        clash = [col for col in extra if col in (ID, TIME, TARGET)]
        if clash:
            raise ValueError(f"covariate column(s) {clash} clash with the canonical names unique_id/ds/y")
        ids = data[id_col].reset_index(drop=True)
        if ids.dtype != "str":
            null_id = ids.isna()
            ids = ids.astype(str)
            ids[null_id] = np.nan  # keep missing ids missing so validate() can name them
        # copy=False: _as_time's stamps are already a copy (a dict of columns is copied again by default: a second
        # copy of every stamp, issue #36); the caller's columns set below stay theirs (copy-on-write)
        out = pd.DataFrame({ID: ids, TIME: _as_time(data[time_col], f"column {time_col!r}")}, copy=False)
        for src, col in [(target_col, TARGET), *((c, c) for c in extra)]:
            out[col] = data[src].reset_index(drop=True)  # copy-on-write: the caller's frame stays intact
        return _sorted(out)
    return _wide_to_long(data, time_col)


def _wide_to_long(wide: pd.DataFrame, time_col: str) -> pd.DataFrame:
    if time_col in wide.columns:
        ds = _as_time(wide[time_col], f"column {time_col!r}")
        values = wide.drop(columns=[time_col])
    else:
        ds = _as_time(wide.index, "the wide frame's index")
        values = wide
    if values.shape[1] == 0:
        raise ValueError("wide frame has no series columns")
    names = [str(col) for col in values.columns]
    if len(set(names)) != len(names):
        dup = [name for name, count in Counter(names).items() if count > 1]
        raise ValueError(f"wide frame has duplicate series column(s) {_quote(dup)}")
    n_rows, n_series = values.shape
    order = sorted(range(n_series), key=names.__getitem__)  # columns in id order: often no sort needed
    y = pd.concat([values.iloc[:, j].reset_index(drop=True) for j in order], ignore_index=True)
    out = pd.DataFrame(
        {
            ID: pd.Series(np.repeat(np.array([names[j] for j in order], dtype=object), n_rows), dtype=str),
            TIME: pd.concat([ds] * n_series, ignore_index=True),
            TARGET: y,
        }
    )
    out = _sorted(out)
    present = out[TARGET].notna()
    seen_before = present.groupby(out[ID]).cummax()
    seen_after = present[::-1].groupby(out[ID][::-1]).cummax()[::-1]
    all_missing = ~present.groupby(out[ID]).transform("any")
    keep = (seen_before & seen_after) | all_missing
    return out.loc[keep].reset_index(drop=True)


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    if _is_sorted(frame):
        return frame.reset_index(drop=True)
    return frame.sort_values([ID, TIME], kind="stable", na_position="last").reset_index(drop=True)


def _is_sorted(frame: pd.DataFrame) -> bool:
    """Whether ``(unique_id, ds)`` is already in non-decreasing order (cheap: no sort)."""
    if len(frame) < 2 or frame[ID].isna().any() or frame[TIME].isna().any():
        return len(frame) < 2
    ids = frame[ID].array
    same = np.asarray(ids[1:] == ids[:-1], dtype=bool)
    if not (same | np.asarray(ids[1:] > ids[:-1], dtype=bool)).all():
        return False
    ds = frame[TIME].array
    return bool(np.asarray(ds[1:] >= ds[:-1], dtype=bool)[same].all())


def to_wide(long_df: pd.DataFrame, values: str = TARGET) -> pd.DataFrame:
    """Wide frame: index ``ds`` (named ``"ds"``), one column per ``unique_id`` (sorted), cells ``values``.

    Missing ``(unique_id, ds)`` pairs become NaN. Inverse of :func:`to_long` on complete panels.
    """
    long_df = to_pandas(long_df, "long_df")
    if isinstance(long_df, pd.Series):
        long_df = to_long(long_df)
    missing = [col for col in (ID, TIME, values) if col not in long_df.columns]
    if missing:
        raise ValueError(f"to_wide needs a long frame; missing column(s) {missing}")
    dup = long_df.duplicated([ID, TIME], keep=False)
    if dup.any():
        raise ValueError(f"duplicate (unique_id, ds) rows cannot be pivoted: {_rows(long_df, dup)}")
    wide = long_df.pivot(index=TIME, columns=ID, values=values)
    wide = wide.sort_index()
    wide.index.name = TIME
    wide.columns = pd.Index([str(col) for col in wide.columns], dtype=object)
    return wide


# ----------------------------------------------------------------------------------------- frequency


def as_offset(freq) -> BaseOffset | int:
    """A pandas ``DateOffset`` for a frequency alias/offset/Timedelta, or a positive int step."""
    if isinstance(freq, (bool, np.bool_)):
        raise ValueError(f"freq must be a pandas frequency alias or a positive integer step; got {freq!r}")
    if isinstance(freq, (int, np.integer)):
        if freq <= 0:
            raise ValueError(f"an integer freq must be a positive step; got {freq}")
        return int(freq)
    try:
        return to_offset(freq)
    except (ValueError, TypeError) as err:
        raise ValueError(
            f"freq={freq!r} is not a pandas frequency (pandas 3 aliases: 'h' not 'H', 'min' not 'T', "
            f"'s' not 'S', 'ME'/'MS' for months, 'W-SUN' for weeks): {err}"
        ) from None


def _freq_name(offset: BaseOffset | int) -> str | int:
    return offset if isinstance(offset, int) else offset.freqstr


try:
    pd.get_option("future.infer_freq_returns_offset")
    _INFER_FREQ_RETURNS_OFFSET: str | None = "future.infer_freq_returns_offset"
except pd.errors.OptionError:  # pandas 3.0
    _INFER_FREQ_RETURNS_OFFSET = None


def _pd_infer(stamps: pd.DatetimeIndex) -> BaseOffset | None:
    """``pd.infer_freq`` as an offset: pandas >= 3.1 returns one under its future option (and warns without
    it); pandas 3.0 has no such option and returns the alias."""
    try:
        if _INFER_FREQ_RETURNS_OFFSET is None:
            freq = pd.infer_freq(stamps)
        else:
            with pd.option_context(_INFER_FREQ_RETURNS_OFFSET, True):
                freq = pd.infer_freq(stamps)
    except (ValueError, TypeError):
        return None
    if not isinstance(freq, str):
        return freq
    offset = to_offset(freq)
    if isinstance(offset, (pd.offsets.QuarterBegin, pd.offsets.BQuarterBegin)) and offset.startingMonth > 3:
        # the same grid; pandas 3.1 names quarter starts by their first month in the year (QS-JAN, not QS-OCT)
        offset = type(offset)(n=offset.n, startingMonth=(offset.startingMonth - 1) % 3 + 1)
    return offset


def _series_freq(ds: np.ndarray) -> BaseOffset | int | None:
    """The frequency of one sorted series of stamps, tolerating gaps; None when it cannot tell."""
    if len(ds) < 2:
        return None
    if np.issubdtype(ds.dtype, np.integer):
        steps = np.diff(ds)
        steps = steps[steps > 0]
        if len(steps) == 0:
            return None
        values, counts = np.unique(steps, return_counts=True)
        return int(values[np.argmax(counts)])
    stamps = pd.DatetimeIndex(ds)
    offset = _pd_infer(stamps) if len(stamps) >= 3 else None
    if offset is not None:
        return offset
    # gaps or stray stamps: candidates from short runs of consecutive stamps and the most common step;
    # the winner explains the stamps with the fewest off-grid plus missing stamps (then the most votes)
    starts = np.unique(np.linspace(0, len(stamps) - 3, num=max(min(len(stamps) - 2, 256), 0)).astype(int))
    votes = Counter()
    for start in starts:
        candidate = _pd_infer(stamps[start : start + 3])
        if candidate is not None:
            votes[candidate.freqstr] += 1
    steps = np.diff(stamps.asi8)
    values, counts = np.unique(steps[steps > 0], return_counts=True)
    if len(values):  # the most common step, the smallest on ties
        votes[_step_offset(pd.Timedelta(int(values[np.argmax(counts)]), unit=stamps.unit)).freqstr] += 0
    if not votes:
        return None
    best = min(votes, key=lambda name: (_mismatch(stamps, to_offset(name)), -votes[name]))
    return to_offset(best)


def _mismatch(stamps: pd.DatetimeIndex, offset: BaseOffset) -> int:
    """Stamps off the grid of ``offset`` (anchored at the first stamp) plus grid stamps missing."""
    grid = pd.date_range(start=stamps[0], end=stamps[-1], freq=offset, unit=stamps.unit)
    if len(grid) > 100 * len(stamps) + 1000:
        return len(grid)
    on = stamps.isin(grid)
    return int((~on).sum()) + len(grid) - int(on.sum())


def _step_offset(step: pd.Timedelta) -> BaseOffset:
    """A fixed step as an offset, whole days as ``"nD"`` (pandas 3 would say ``"24h"``)."""
    day = pd.Timedelta(days=1)
    return to_offset(f"{step // day}D") if step % day == pd.Timedelta(0) else to_offset(step)


def _bounds(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Start row and length of each series of a frame sorted by ``(unique_id, ds)``."""
    ids = frame[ID].array
    if len(ids) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    change = np.flatnonzero(np.asarray(ids[1:] != ids[:-1], dtype=bool)) + 1
    starts = np.concatenate([[0], change]).astype(np.int64)
    lengths = np.diff(np.concatenate([starts, [len(ids)]])).astype(np.int64)
    return starts, lengths


def infer_freq(df) -> str | int:
    """The common frequency of all series: a pandas-3 alias (``"h"``, ``"W-SAT"``, ``"MS"``...) or int step.

    Each series is inferred on its own (short gaps are tolerated: the most common local frequency wins);
    ``ValueError`` when series disagree or when no series has enough regular stamps (names the series).
    """
    return _infer_freq_long(to_long(df))


def _series_chunks(lengths: np.ndarray, rows: int = 1 << 20):
    """``(first, last, a, b)``: series ``first:last`` of a sorted panel, its rows ``a:b``, about ``rows`` rows a
    chunk (whole series): work over every row of a large panel in chunks keeps its temporaries small (issue #36)."""
    ends = np.cumsum(lengths)
    first, a = 0, 0
    while first < len(lengths):
        last = max(first + 1, int(np.searchsorted(ends, a + rows, side="right")))
        b = int(ends[last - 1])
        yield first, last, a, b
        first, a = last, b


def _even_steps(ds: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Per series: its constant step (in the stamps' integer unit) when it has >= 3 evenly spaced stamps, else 0.
    The minimum and maximum of each series' differences by one ``reduceat`` over the differences of a chunk of
    whole series, no Python per series (issue #36: per-series frequency inference was 90 % of a 20k-series baseline
    fit)."""
    steps = np.zeros(len(starts), np.int64)
    raw = ds.view(np.int64) if ds.dtype.kind == "M" else ds
    for first, last, a, b in _series_chunks(lengths):
        many = first + np.flatnonzero(lengths[first:last] >= 3)
        if len(many) == 0:
            continue
        # diff[i] = ds[a + i + 1] - ds[a + i]; series k owns diff[start_k - a : end_k - a - 1]
        diff = np.diff(raw[a:b].astype(np.int64, copy=False))
        # reduceat over the segments [start_k, start_k + length_k - 1) of the series with >= 3 stamps: the segments
        # are cut at their own starts, and a segment's end is the next index given, so the boundary differences
        # (between series) are excluded by giving every segment's end as an index too
        cuts = np.stack([starts[many] - a, starts[many] - a + lengths[many] - 1], axis=1).ravel()  # (2 * n_many,)
        low = np.minimum.reduceat(diff, cuts[cuts < len(diff)])[::2]
        high = np.maximum.reduceat(diff, cuts[cuts < len(diff)])[::2]
        even = (low > 0) & (low == high)
        steps[many[even]] = low[even]
    return steps


def _infer_freq_long(frame: pd.DataFrame, bounds: tuple[np.ndarray, np.ndarray] | None = None) -> str | int:
    if isinstance(frame[TIME].dtype, pd.DatetimeTZDtype):  # tz-aware: inferred on the local wall clock, as
        frame = frame.assign(**{TIME: frame[TIME].dt.tz_localize(None)})  # pd.infer_freq does (days stay days)
    starts, lengths = _bounds(frame) if bounds is None else bounds
    ds = frame[TIME].to_numpy()
    found: dict[str | int, list[str]] = {}
    unknown = []
    even = _even_steps(ds, starts, lengths)
    by_grid: dict[int, BaseOffset | int | None] = {}  # evenly spaced series: one inference per grid key
    day = 86_400 * 10**9 if not np.issubdtype(ds.dtype, np.integer) else None
    unit_ns = 1 if day is None else int(np.timedelta64(1, np.datetime_data(ds.dtype)[0]) / np.timedelta64(1, "ns"))
    ids = frame[ID].iloc[starts].to_numpy()  # one id a series
    # evenly spaced series, grouped by grid key without a loop: (step, weekday) for whole-day steps, else (step, -1)
    weekday = np.full(len(starts), -1, np.int64)
    if day is not None:
        whole_days = (even > 0) & ((even * unit_ns) % day == 0)
        if whole_days.any():  # 1970-01-01 was a Thursday (pandas' day_of_week 3)
            first_days = ds[starts[whole_days]].astype("datetime64[D]").astype(np.int64)
            weekday[whole_days] = (first_days + 3) % 7
    keys, first_of_key, key_of = np.unique(np.stack([even, weekday], axis=1), axis=0, return_index=True,
                                           return_inverse=True)
    key_of = key_of.ravel()
    for j, (step, _) in enumerate(keys):
        if step:  # one inference per distinct grid
            k = first_of_key[j]
            by_grid[j] = _series_freq(ds[starts[k] : starts[k] + lengths[k]])
    names = {j: (None if offset is None else _freq_name(offset)) for j, offset in by_grid.items()}
    for k in np.flatnonzero(even > 0):
        name = names[key_of[k]]
        if name is None:
            unknown.append(ids[k])
        else:
            found.setdefault(name, []).append(ids[k])
    for k in np.flatnonzero(even == 0):  # gaps, stray stamps, short series: each on its own
        offset = _series_freq(ds[starts[k] : starts[k] + lengths[k]])
        if offset is None:
            unknown.append(ids[k])
        else:
            found.setdefault(_freq_name(offset), []).append(ids[k])
    if not found:
        raise ValueError(
            f"cannot infer a frequency: no series has enough regularly spaced stamps "
            f"(series {_quote(map(repr, unknown))}); pass freq= explicitly"
        )
    if len(found) > 1:
        detail = "; ".join(f"{freq!r}: series {_quote(map(repr, ids), 3)}" for freq, ids in found.items())
        raise ValueError(f"series disagree on the frequency ({detail}); pass freq= or split the panel")
    return next(iter(found))


def future_timestamps(last_ds, freq, h: int) -> pd.DatetimeIndex | np.ndarray:
    """The ``h`` stamps after ``last_ds`` on the grid ``freq`` (DatetimeIndex, or an int64 array)."""
    if isinstance(h, (bool, np.bool_)) or not isinstance(h, (int, np.integer)) or h < 1:
        raise ValueError(f"h must be a positive integer; got {h!r}")
    offset = as_offset(freq)
    if isinstance(last_ds, (int, np.integer)) and not isinstance(last_ds, (bool, np.bool_)):
        if not isinstance(offset, int):
            raise ValueError(f"integer last_ds={last_ds} needs an integer freq step; got {freq!r}")
        return int(last_ds) + offset * np.arange(1, h + 1, dtype=np.int64)
    if isinstance(offset, int):
        raise ValueError(f"datetime last_ds={last_ds!r} needs a pandas frequency alias; got integer {freq!r}")
    last = pd.Timestamp(last_ds)
    return pd.date_range(start=last + offset, periods=h, freq=offset, unit=last.unit)


# ----------------------------------------------------------------------------------------- time grid


def _grid(first, last, offset, unit: str | None) -> np.ndarray:
    if isinstance(offset, int):
        return np.arange(first, last + 1, offset, dtype=np.int64)
    grid = pd.date_range(start=first, end=last, freq=offset, unit=unit)
    return grid.to_numpy() if grid.tz is None else grid


def _check_grid(frame: pd.DataFrame, offset, bounds: tuple[np.ndarray, np.ndarray] | None = None
                ) -> tuple[np.ndarray, list[tuple[str, int, list]]]:
    """Rows off the grid (mask) and, per series with gaps, ``(uid, n_missing, first missing stamps)``."""
    starts, lengths = _bounds(frame) if bounds is None else bounds
    ds = frame[TIME]
    integer = isinstance(offset, int)
    naive = integer or ds.dt.tz is None
    unit = None if integer else ds.dt.unit
    values = ds.to_numpy() if naive else pd.DatetimeIndex(ds)
    if integer:
        step = offset
    elif naive and isinstance(offset, Tick):
        step = int(pd.Timedelta(offset).as_unit(unit)._value)
    else:
        step = None
    off_grid = np.zeros(len(frame), dtype=bool)
    gaps = []
    if step is not None and len(frame):  # fixed step: index arithmetic over the whole panel at once
        raw = values if integer else values.astype(f"M8[{unit}]", copy=False).view(np.int64)  # (rows,), no copy
        n_missing = np.zeros(len(starts), np.int64)
        for first, last, a, b in _series_chunks(lengths):  # a chunk of whole series at a time: small temporaries
            length = lengths[first:last]
            delta = raw[a:b] - np.repeat(raw[starts[first:last]], length)  # offset of each row from its series' first
            on = delta % step == 0
            off_grid[a:b] = ~on
            on_count = np.add.reduceat(on, starts[first:last] - a, dtype=np.int64)
            n_missing[first:last] = delta[starts[first:last] - a + length - 1] // step + 1 - on_count  # (series,)
        suspects = np.flatnonzero(n_missing != 0)  # only these need the slow path below
    else:
        suspects = np.arange(len(starts))
    for start, length in zip(starts[suspects], lengths[suspects]):
        stamps = values[start : start + length]
        first, last = stamps[0], stamps[length - 1]
        if step is not None:  # fixed step: index arithmetic
            delta = stamps - first if integer else (stamps - first).astype(f"m8[{unit}]").astype(np.int64)
            on = delta % step == 0
            n_missing = int(delta[-1] // step) + 1 - int(on.sum())
        else:  # calendar offsets (months, weeks, business days) or tz-aware stamps
            on = pd.Index(stamps).isin(_grid(first, last, offset, unit))
            n_missing = None
        off_grid[start : start + length] = ~on
        if n_missing is None or n_missing > 0:
            missing = pd.Index(_grid(first, last, offset, unit)).difference(pd.Index(stamps))
            if len(missing):
                gaps.append((frame[ID].iat[start], len(missing), list(missing[:3])))
    return off_grid, gaps


def _insert_gaps(frame: pd.DataFrame, offset) -> pd.DataFrame:
    """Reindex each series onto its full grid from first to last stamp; new rows hold NaN (ids kept)."""
    starts, lengths = _bounds(frame)
    ds = frame[TIME]
    unit = None if isinstance(offset, int) else ds.dt.unit
    pieces_id, pieces_ds = [], []
    for start, length in zip(starts, lengths):
        grid = _grid(ds.iat[start], ds.iat[start + length - 1], offset, unit)
        pieces_ds.append(pd.Series(grid))
        pieces_id.append(np.full(len(grid), frame[ID].iat[start], dtype=object))
    full = pd.DataFrame({ID: pd.Series(np.concatenate(pieces_id), dtype=str)})
    full[TIME] = pd.concat(pieces_ds, ignore_index=True).astype(ds.dtype).to_numpy()
    if len(full) == len(frame):
        return frame.copy()
    merged = full.merge(frame, on=[ID, TIME], how="left", sort=False)
    return merged[list(frame.columns)]


def _fill_values(frame: pd.DataFrame, columns: list[str], fill: str) -> pd.DataFrame:
    out = frame.copy()
    for col in columns:
        values = out[col].astype("float64").replace([np.inf, -np.inf], np.nan)
        groups = values.groupby(out[ID], sort=False)
        if fill == "zero":
            values = values.fillna(0.0)
        elif fill == "ffill":
            values = groups.ffill()
            values = values.groupby(out[ID], sort=False).bfill()
        elif fill == "interpolate":
            values = groups.transform(lambda s: s.interpolate(method="linear", limit_direction="both"))
        out[col] = values
    return out


def fill_gaps(df, *, freq=None, fill: str | None = None) -> pd.DataFrame:
    """Insert every missing time stamp of each series (between its first and last) as a NaN row.

    ``freq`` defaults to :func:`infer_freq`. With ``fill`` in ``{"ffill", "interpolate", "zero"}`` the
    NaN/inf values of ``y`` and the numeric covariates are then filled per series (see :func:`validate`).
    Stamps off the grid raise ``ValueError``. Returns a new long frame.
    """
    if fill not in (None, "ffill", "interpolate", "zero"):
        raise ValueError(f"fill_gaps: fill must be None, 'ffill', 'interpolate' or 'zero'; got {fill!r}")
    frame = to_long(df)
    if len(frame) == 0:
        raise ValueError("empty frame: no rows")
    offset = as_offset(freq) if freq is not None else as_offset(_infer_freq_long(frame))
    _check_time_kind(frame, offset)
    off_grid, _ = _check_grid(frame, offset)
    if off_grid.any():
        raise ValueError(f"time stamps off the {_freq_name(offset)!r} grid at rows {_rows(frame, off_grid)}")
    out = _insert_gaps(frame, offset)
    if fill is not None:
        numeric = [c for c in out.columns[2:] if pd.api.types.is_numeric_dtype(out[c])]
        out = _fill_values(out, numeric, fill)
    return out


def _check_time_kind(frame: pd.DataFrame, offset) -> None:
    integer_ds = pd.api.types.is_integer_dtype(frame[TIME].dtype)
    if integer_ds and not isinstance(offset, int):
        raise ValueError(f"integer ds needs an integer freq step; got {_freq_name(offset)!r}")
    if not integer_ds and isinstance(offset, int):
        raise ValueError(f"datetime ds needs a pandas frequency alias; got integer freq {offset}")


# ----------------------------------------------------------------------------------------- validation


def _numeric(frame: pd.DataFrame, col: str, what: str) -> pd.Series:
    values = frame[col]
    if pd.api.types.is_bool_dtype(values.dtype):
        raise ValueError(f"{what} must be numeric; got booleans (cast them to float if intended)")
    if pd.api.types.is_numeric_dtype(values.dtype):
        return values.astype("float64")
    converted = pd.to_numeric(values, errors="coerce")
    bad = values.notna() & converted.isna()
    if bad.any():
        raise ValueError(
            f"{what} must be numeric (dtype {values.dtype}); non-numeric values "
            f"{_quote(map(repr, values[bad].unique()), 3)} at rows {_rows(frame, bad)}"
        )
    return converted.astype("float64")


def validate(
    df,
    *,
    min_length: int = 1,
    freq=None,
    fill: str | None = None,
    covariates: Sequence[str] | None = None,
) -> pd.DataFrame:
    """:func:`to_long` plus every check; returns a clean copy on a complete regular grid with finite values.

    ``df`` is a pandas DataFrame (long or wide) or Series, a polars DataFrame or a pyarrow Table (long or
    wide; converted column by column by :func:`to_pandas`, time zones, integer stamps, categorical ids and
    nulls included: a null ``y`` is reported as a NaN value). A polars LazyFrame must be ``.collect()``-ed
    first. The result is always a pandas DataFrame; the input is not modified.

    Checks (each failure is a ``ValueError`` naming the offending series and ``(unique_id, ds)`` rows):
    missing columns, empty frame, missing ids or stamps, non-numeric target/covariates, duplicate
    ``(unique_id, ds)``, stamps off the frequency grid (``freq`` given, else :func:`infer_freq`), gaps
    (missing stamps), NaN/inf values, series shorter than ``min_length`` (counted after filling).

    ``fill`` is the missing-data policy, applied per series to ``y`` and the covariates:

    * ``None``: gaps and NaN/inf raise;
    * ``"ffill"``: gaps become NaN rows; NaN/inf are forward filled (leading ones back filled);
    * ``"interpolate"``: gaps become NaN rows; NaN/inf are linearly interpolated over the grid position
      (leading/trailing ones take the nearest finite value);
    * ``"zero"``: gaps become NaN rows; NaN/inf become 0;
    * ``"drop"``: rows with NaN/inf are dropped, but the result must still be a complete grid, so only a
      series' leading/trailing non-finite rows may go; interior ones and gaps raise (use ``"interpolate"``).

    ``covariates=None`` keeps every extra column as a covariate (each must be numeric); a list keeps only
    those columns (each must exist and be numeric) and drops the other extra columns. ``y`` and the
    covariates come back as float64; ``ds`` keeps its dtype; ``unique_id`` is ``str``. The frequency used
    is stored in ``result.attrs["freq"]`` (``None`` when every series has a single row and none was given).
    """
    return validate_long(to_long(df), min_length=min_length, freq=freq, fill=fill, covariates=covariates)


def _adjacent_duplicates(frame: pd.DataFrame) -> np.ndarray:
    """Rows whose ``(unique_id, ds)`` another row has (every copy marked), in a frame sorted by ``(unique_id, ds)``
    (what :func:`to_long` returns): copies are neighbours, so two comparisons of neighbours find them (issue #36;
    a hash of every pair was 30 % of a 20k-series validate)."""
    n = len(frame)
    if n < 2:
        return np.zeros(n, dtype=bool)
    ids, ds = frame[ID].array, frame[TIME].array
    same = np.asarray(ids[1:] == ids[:-1], dtype=bool) & np.asarray(ds[1:] == ds[:-1], dtype=bool)  # (n-1,)
    dup = np.zeros(n, dtype=bool)
    dup[1:] |= same
    dup[:-1] |= same
    return dup


def validate_long(
    frame: pd.DataFrame,
    *,
    min_length: int = 1,
    freq=None,
    fill: str | None = None,
    covariates: Sequence[str] | None = None,
) -> pd.DataFrame:
    """:func:`validate` of a frame that is already :func:`to_long`'s output (callers that needed the long
    frame first, e.g. to look at its columns, save converting it twice)."""
    if fill not in FILL_POLICIES:
        raise ValueError(f"fill must be one of {FILL_POLICIES}; got {fill!r}")
    if isinstance(min_length, bool) or not isinstance(min_length, (int, np.integer)) or min_length < 1:
        raise ValueError(f"min_length must be a positive integer; got {min_length!r}")
    if len(frame) == 0:
        raise ValueError("empty frame: no rows")
    if frame[ID].isna().any():
        bad = np.flatnonzero(frame[ID].isna().to_numpy())
        raise ValueError(f"missing unique_id in {len(bad)} row(s) (ds {_quote(frame[TIME].iloc[bad])})")
    if frame[TIME].isna().any():
        bad = frame[TIME].isna()
        raise ValueError(f"missing ds (NaT/NaN) in series {_quote(map(repr, frame.loc[bad, ID].unique()))}")
    extra = list(frame.columns[3:])
    if covariates is not None:
        covariates = [covariates] if isinstance(covariates, str) else list(covariates)
        missing = [col for col in covariates if col not in extra]
        if missing:
            raise ValueError(f"covariate column(s) {missing} not found; the frame has extra columns {extra}")
        frame = frame[[ID, TIME, TARGET, *covariates]]
        extra = covariates
    frame = frame.copy(deep=False)  # copy-on-write: columns replaced below never reach the caller's frame, and
    frame[TARGET] = _numeric(frame, TARGET, "target y")  # a deep copy doubled a 100k-series fit's peak (#36)
    for col in extra:
        frame[col] = _numeric(frame, col, f"covariate {col!r} (select covariates with covariates=[...])")

    dup = _adjacent_duplicates(frame)
    if dup.any():
        raise ValueError(f"duplicate (unique_id, ds) rows: {_rows(frame, dup)}")

    bounds = _bounds(frame)  # (starts, lengths): the frame's row order stays as it is until the gaps are filled
    if freq is None and (bounds[1] <= 1).all():  # one row per series: no grid to check
        return _finish(frame, [TARGET, *extra], fill, min_length, None, bounds)
    offset = as_offset(freq) if freq is not None else as_offset(_infer_freq_long(frame, bounds))
    _check_time_kind(frame, offset)
    off_grid, gaps = _check_grid(frame, offset, bounds)
    name = _freq_name(offset)
    if off_grid.any():
        raise ValueError(f"time stamps off the {name!r} frequency grid at rows {_rows(frame, off_grid)}")
    if gaps and fill in (None, "drop"):
        detail = "; ".join(
            f"{uid!r} misses {n} stamp(s), first {_quote(map(_fmt_ds, first), 3)}"
            for uid, n, first in gaps[:_SHOW]
        )
        more = f" ({len(gaps)} series in all)" if len(gaps) > _SHOW else ""
        raise ValueError(
            f"gaps in the {name!r} time grid: {detail}{more}; "
            "pass fill='interpolate'/'ffill'/'zero' to fill them"
        )
    if gaps:
        frame, bounds = _insert_gaps(frame, offset), None
    return _finish(frame, [TARGET, *extra], fill, min_length, name, bounds)


def _finish(frame: pd.DataFrame, value_cols: list[str], fill, min_length: int, name, bounds=None) -> pd.DataFrame:
    """NaN/inf policy and length check of :func:`validate` on a frame already on its complete grid."""
    finite = np.isfinite(frame[value_cols].to_numpy(dtype="float64")).all(axis=1)
    if not finite.all():
        if fill is None:
            raise ValueError(
                f"NaN/inf values (in {[c for c in value_cols if not np.isfinite(frame[c]).all()]}) at rows "
                f"{_rows(frame, ~finite)}; pass fill= ({', '.join(map(repr, FILL_POLICIES[1:]))})"
            )
        if fill == "drop":
            frame, bounds = _drop_edges(frame, finite), None
        else:
            frame = _fill_values(frame, value_cols, fill)
            still = ~np.isfinite(frame[value_cols].to_numpy(dtype="float64")).all(axis=1)
            if still.any():
                raise ValueError(
                    f"fill={fill!r} left NaN values: series "
                    f"{_quote(map(repr, frame.loc[still, ID].unique()))} have no finite values in some column"
                )

    starts, lengths = _bounds(frame) if bounds is None else bounds
    short = lengths < min_length
    if short.any():
        detail = [f"{frame[ID].iat[s]!r} ({n} rows)" for s, n in zip(starts[short], lengths[short])]
        raise ValueError(f"series shorter than min_length={min_length}: {_quote(detail)}")
    frame = frame.reset_index(drop=True)
    frame.attrs["freq"] = name
    return frame


def _drop_edges(frame: pd.DataFrame, finite: np.ndarray) -> pd.DataFrame:
    good = pd.Series(finite, index=frame.index)
    groups_fwd = good.groupby(frame[ID], sort=False)
    seen_before = groups_fwd.cummax()
    seen_after = good[::-1].groupby(frame[ID][::-1], sort=False).cummax()[::-1]
    interior = ~good & seen_before & seen_after
    if interior.any():
        raise ValueError(
            f"fill='drop' can only drop leading/trailing NaN/inf rows (the grid must stay complete); "
            "interior "
            f"NaN/inf at rows {_rows(frame, interior)}; use fill='interpolate' or 'ffill'"
        )
    kept = frame.loc[good.to_numpy()]
    lost = sorted(set(frame[ID]) - set(kept[ID]))
    if lost:
        raise ValueError(f"fill='drop' would remove every row of series {_quote(map(repr, lost))}")
    return kept.reset_index(drop=True)
