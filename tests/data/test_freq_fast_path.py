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
