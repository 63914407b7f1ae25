"""Frequency inference infers each distinct even grid once (issue #36); it must say what inferring every series
on its own says, the slow obvious reference."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ssmcast.data.frames import _bounds, _freq_name, _infer_freq_long, _series_freq, to_long


def reference(frame: pd.DataFrame):
    starts, lengths = _bounds(frame)
    ds = frame["ds"].to_numpy()
    names = {_freq_name(f) for f in (_series_freq(ds[s : s + n]) for s, n in zip(starts, lengths)) if f is not None}
    return names


def panel(*series) -> pd.DataFrame:
    parts = [pd.DataFrame({"unique_id": f"s{i}", "ds": ds, "y": np.arange(len(ds), dtype=float)})
             for i, ds in enumerate(series)]  # fmt: skip
    return to_long(pd.concat(parts, ignore_index=True))


CASES = {
    "hourly": [pd.date_range("2020-01-01", periods=50, freq="h"),
               pd.date_range("2020-03-01 05:00", periods=9, freq="h")],
    "daily": [pd.date_range("2020-01-01", periods=30, freq="D"), pd.date_range("2021-01-01", periods=3, freq="D")],
    "weekly, same weekday": [pd.date_range("2020-01-04", periods=20, freq="W-SAT"),
                             pd.date_range("2021-01-02", periods=12, freq="W-SAT")],
    "weekly, different weekdays": [pd.date_range("2020-01-04", periods=20, freq="W-SAT"),
                                   pd.date_range("2020-01-05", periods=20, freq="W-SUN")],
    "two-daily": [pd.date_range("2020-01-01", periods=30, freq="2D")] * 2,
    "monthly (uneven in seconds)": [pd.date_range("2020-01-01", periods=30, freq="MS")] * 2,
    "business days": [pd.date_range("2020-01-06", periods=40, freq="B")] * 2,
    "a gap in one series": [pd.date_range("2020-01-01", periods=40, freq="h").delete(7),
                            pd.date_range("2020-01-01", periods=40, freq="h")],
    "integer steps": [np.arange(0, 100, 5, dtype=np.int64), np.arange(3, 63, 5, dtype=np.int64)],
    "two stamps each": [pd.date_range("2020-01-01", periods=2, freq="D")] * 2
                       + [pd.date_range("2020-01-01", periods=9, freq="D")],
}  # fmt: skip


@pytest.mark.parametrize("name", list(CASES))
def test_the_fast_path_says_what_per_series_inference_says(name):
    frame = panel(*CASES[name])
    want = reference(frame)
    if len(want) == 1:
        assert _infer_freq_long(frame) == next(iter(want))
    else:
        with pytest.raises(ValueError, match="disagree"):
            _infer_freq_long(frame)


def _even_steps_reference(ds, starts, lengths):
    out = np.zeros(len(starts), np.int64)
    for k, (a, n) in enumerate(zip(starts, lengths)):
        d = np.diff(ds[a : a + n].astype(np.int64))
        if n >= 3 and d.min() > 0 and d.min() == d.max():
            out[k] = d.min()
    return out


def test_even_steps_by_reduceat_equal_a_loop_over_series():
    from ssmcast.data.frames import _even_steps

    rng = np.random.default_rng(0)
    for _ in range(50):
        lengths = rng.integers(1, 6, size=rng.integers(1, 8))
        ds = np.concatenate([np.cumsum(rng.choice([1, 1, 1, 2], size=n)) for n in lengths]).astype(np.int64)
        starts = np.r_[0, np.cumsum(lengths)[:-1]].astype(np.int64)
        np.testing.assert_array_equal(_even_steps(ds, starts, lengths), _even_steps_reference(ds, starts, lengths))


def _check_grid_reference(frame, offset):
    """Per series: rows off the grid and the missing stamps, from the series' own full grid."""
    starts, lengths = _bounds(frame)
    off, gaps = np.zeros(len(frame), bool), []
    for a, n in zip(starts, lengths):
        stamps = pd.Index(frame["ds"].iloc[a : a + n])
        if isinstance(offset, int):
            grid = pd.Index(np.arange(stamps[0], stamps[-1] + 1, offset))
        else:
            grid = pd.date_range(stamps[0], stamps[-1], freq=offset)
        off[a : a + n] = ~stamps.isin(grid)
        missing = grid.difference(stamps)
        if len(missing):
            gaps.append((frame["unique_id"].iat[a], len(missing), list(missing[:3])))
    return off, gaps


@pytest.mark.parametrize("kind", ["hourly", "integer"])
def test_grid_check_over_the_panel_equals_a_loop_over_series(kind):
    """The fixed-step grid check runs over the whole panel at once (issue #36); rows off the grid and gaps
    (count and first missing stamps) are what a per-series check finds."""
    from ssmcast.data.frames import _check_grid

    rng = np.random.default_rng(1)
    parts = []
    for i in range(30):
        n = int(rng.integers(1, 12))
        pos = np.sort(rng.choice(np.arange(3 * n + 3), size=n, replace=False))  # gaps in most series
        if kind == "hourly":
            ds = pd.Timestamp("2020-01-01") + pd.to_timedelta(pos, unit="h")
            if i % 7 == 3 and n > 1:  # a stamp off the hourly grid
                ds = ds.insert(1, ds[0] + pd.Timedelta(minutes=30))
        else:
            ds = 10 * pos + 5
            if i % 7 == 3 and n > 1:
                ds = np.insert(ds, 1, ds[0] + 3)
        parts.append(pd.DataFrame({"unique_id": f"s{i:02d}", "ds": ds, "y": 0.0}))
    frame = to_long(pd.concat(parts, ignore_index=True))
    offset = pd.tseries.frequencies.to_offset("h") if kind == "hourly" else 10
    off, gaps = _check_grid(frame, offset)
    want_off, want_gaps = _check_grid_reference(frame, offset)
    assert off.any() and len(gaps) > 5  # the panel exercises both
    np.testing.assert_array_equal(off, want_off)
    assert gaps == want_gaps
