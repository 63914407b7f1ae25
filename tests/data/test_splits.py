import copy

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ssmcast.data import TemporalSplit, select_rows, validate


def lengths_frame(lengths, start="2020-01-01", freq="h"):
    pieces = [
        pd.DataFrame(
            {"unique_id": uid, "ds": pd.date_range(start, periods=n, freq=freq), "y": np.arange(n, dtype=float)}
        )
        for uid, n in lengths.items()
    ]
    return validate(pd.concat(pieces, ignore_index=True))


@pytest.mark.parametrize(
    "n, expected",
    # Time-Series-Library "custom" protocol: int(0.7 n) / remainder / int(0.2 n)
    [(52696, (36887, 5270, 10539)), (7588, (5311, 760, 1517)), (966, (676, 97, 193))],
)
def test_fraction_split_matches_the_custom_protocol(n, expected):
    frame = validate(pd.Series(np.zeros(n), index=pd.RangeIndex(n), name="s"))
    ranges = TemporalSplit.by_rows(0.7, None, 0.2).ranges(frame)
    counts = tuple(int(ranges[p][0, 1] - ranges[p][0, 0]) for p in ("train", "val", "test"))
    assert counts == expected
    assert ranges["train"][0, 0] == 0 and ranges["test"][0, 1] == n  # contiguous, in order, all rows


def test_row_counts_leave_the_tail_unused_and_name_short_series():
    frame = lengths_frame({"long": 30, "short": 12})
    with pytest.raises(ValueError, match=r"series too short for n_train=10, n_val=5, n_test=5: 'short' \(12 rows\)"):
        TemporalSplit.by_rows(10, 5, 5).ranges(frame)
    ranges = TemporalSplit.by_rows(10, 5, 5).ranges(frame[frame.unique_id == "long"])
    assert ranges["train"].tolist() == [[0, 10]] and ranges["val"].tolist() == [[10, 15]]
    assert ranges["test"].tolist() == [[15, 20]]
    ranges = TemporalSplit.by_rows(None, 2, 3).ranges(frame)
    assert ranges["train"].tolist() == [[0, 25], [0, 7]] and ranges["test"].tolist() == [[27, 30], [9, 12]]


@settings(max_examples=25)  # pandas-bound examples: keep the test fast
@given(
    st.lists(st.integers(1, 40), min_size=1, max_size=4),
    st.integers(0, 50),
    st.integers(0, 50),
    st.booleans(),
)
def test_time_split_matches_boolean_masks(lengths, val_offset, test_gap, with_end):
    frame = lengths_frame({f"s{i}": n for i, n in enumerate(lengths)})
    val_start = pd.Timestamp("2020-01-01") + pd.Timedelta(hours=val_offset)
    test_start = val_start + pd.Timedelta(hours=test_gap + 1)
    test_end = test_start + pd.Timedelta(hours=5) if with_end else None
    split = TemporalSplit.by_time(val_start=val_start, test_start=test_start, test_end=test_end)
    ranges = split.ranges(frame)
    for s, (_, series) in enumerate(frame.groupby("unique_id", sort=True)):
        ds = series["ds"].reset_index(drop=True)
        masks = {
            "train": ds < val_start,
            "val": (ds >= val_start) & (ds < test_start),
            "test": (ds >= test_start) & ((ds < test_end) if test_end is not None else True),
        }
        for part, mask in masks.items():
            lo, hi = ranges[part][s]
            assert np.flatnonzero(mask.to_numpy()).tolist() == list(range(lo, hi))


def test_time_split_without_val_and_with_integer_stamps():
    frame = validate(pd.DataFrame({"unique_id": ["a"] * 10, "ds": np.arange(10) * 5, "y": np.arange(10.0)}))
    ranges = TemporalSplit.by_time(test_start=30).ranges(frame)
    assert ranges["train"].tolist() == [[0, 6]] and ranges["val"].tolist() == [[6, 6]]
    assert ranges["test"].tolist() == [[6, 10]]
    with pytest.raises(ValueError, match="integer ds needs integer split stamps"):
        TemporalSplit.by_time(test_start="2020-01-01").ranges(frame)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: TemporalSplit.by_rows(None, None, 5), "at most one of n_train, n_val, n_test may be None"),
        (lambda: TemporalSplit.by_rows(-1, 5, 5), "n_train must be a non-negative row count"),
        (lambda: TemporalSplit.by_rows(0.7, 1.5, None), r"n_val as a fraction must lie strictly between 0 and 1"),
        (lambda: TemporalSplit.by_rows(True, 1, 1), "n_train must be a row count"),
        (lambda: TemporalSplit.by_rows("70%", 1, 1), "n_train must be a row count"),
        (lambda: TemporalSplit.by_time(val_start="2020-02-01", test_start="2020-01-01"), "split stamps must increase"),
        (lambda: TemporalSplit.by_time(test_start=None), "by_time needs test_start"),
    ],
)
def test_split_arguments_are_checked(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_time_zone_mismatch_is_rejected():
    frame = lengths_frame({"a": 10})
    with pytest.raises(ValueError, match="disagree on time zones"):
        TemporalSplit.by_time(test_start=pd.Timestamp("2020-01-01 05:00", tz="UTC")).ranges(frame)


def test_select_rows_with_reach_back():
    frame = lengths_frame({"a": 10, "b": 6})
    original = copy.deepcopy(frame)
    ranges = TemporalSplit.by_rows(0.5, None, 0.2).ranges(frame)  # a: 5/3/2, b: 3/2/1
    test = select_rows(frame, ranges["test"])
    assert test.groupby("unique_id")["y"].apply(list).to_dict() == {"a": [8.0, 9.0], "b": [5.0]}
    with_context = select_rows(frame, ranges["test"], reach_back=4)
    assert with_context.groupby("unique_id")["y"].apply(list).to_dict() == {
        "a": [4.0, 5.0, 6.0, 7.0, 8.0, 9.0],
        "b": [1.0, 2.0, 3.0, 4.0, 5.0],
    }
    pd.testing.assert_frame_equal(frame, original)
    with pytest.raises(ValueError, match=r"ranges must have shape \(2, 2\)"):
        select_rows(frame, ranges["test"][:1])
