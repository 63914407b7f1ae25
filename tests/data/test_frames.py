import copy

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pandas.tseries.frequencies import to_offset

from ssmcast.data import fill_gaps, future_timestamps, infer_freq, to_long, to_wide, validate

FREQS = ["h", "D", "W-SAT", "MS", "ME", "min", "15min", "10min", "QS-JAN", "YE-DEC", "B", "s"]
IDS = ["a", "b", "B", "10", "2", "série", "x y"]


# ------------------------------------------------------------------------------------ strategies


@st.composite
def complete_panels(draw):
    """A wide frame (all series on one grid) with a datetime or integer index."""
    ids = draw(st.lists(st.sampled_from(IDS), min_size=1, max_size=4, unique=True))
    n = draw(st.integers(1, 12))
    if draw(st.booleans()):
        index = pd.date_range("2020-01-01", periods=n, freq=draw(st.sampled_from(FREQS)))
    else:
        index = pd.Index(draw(st.integers(-5, 5)) + draw(st.integers(1, 4)) * np.arange(n), dtype="int64")
    values = draw(
        st.lists(st.floats(-1e6, 1e6, allow_nan=False, width=64), min_size=n * len(ids), max_size=n * len(ids))
    )
    return pd.DataFrame(np.array(values).reshape(n, len(ids)), index=index, columns=ids)


@st.composite
def ragged_long_panels(draw):
    """A long frame whose series have different lengths and starts, rows in random order."""
    ids = draw(st.lists(st.sampled_from(IDS), min_size=1, max_size=4, unique=True))
    pieces = []
    for uid in ids:
        n = draw(st.integers(1, 8))
        start = draw(st.integers(0, 5))
        pieces.append(
            pd.DataFrame(
                {
                    "unique_id": uid,
                    "ds": pd.date_range("2021-03-01", periods=n + start, freq="D")[start:],
                    "y": np.arange(n, dtype=float) + 100 * len(pieces),
                    "x": np.arange(n, dtype=float) * -1.0,
                }
            )
        )
    frame = pd.concat(pieces, ignore_index=True)
    order = draw(st.permutations(range(len(frame))))
    return frame.iloc[list(order)].reset_index(drop=True)


def canonical_wide(wide: pd.DataFrame) -> pd.DataFrame:
    """What to_wide returns for a complete wide frame: sorted str columns, sorted index named ds."""
    out = wide.copy()
    out.columns = pd.Index([str(c) for c in out.columns], dtype=object)
    out = out[sorted(out.columns)].sort_index()
    out.index.name = "ds"
    return out


# ------------------------------------------------------------------------------------ conversion


@settings(max_examples=25)  # pandas-bound examples: keep the test fast
@given(complete_panels())
def test_wide_long_wide_round_trip(wide):
    original = wide.copy(deep=True)
    long = to_long(wide)
    pd.testing.assert_frame_equal(wide, original)  # caller's frame untouched
    assert list(long.columns) == ["unique_id", "ds", "y"]
    assert len(long) == wide.size
    pd.testing.assert_frame_equal(to_wide(long), canonical_wide(wide), check_freq=False)


@settings(max_examples=25)  # pandas-bound examples: keep the test fast
@given(complete_panels())
def test_long_wide_long_round_trip(wide):
    long = to_long(wide)
    again = to_long(to_wide(long))
    pd.testing.assert_frame_equal(again, long)


@settings(max_examples=25)  # pandas-bound examples: keep the test fast
@given(ragged_long_panels())
def test_to_long_sorts_unsorted_input_and_keeps_covariates(frame):
    original = frame.copy(deep=True)
    long = to_long(frame)
    pd.testing.assert_frame_equal(frame, original)
    assert isinstance(long.index, pd.RangeIndex) and long.index.start == 0
    assert list(long.columns) == ["unique_id", "ds", "y", "x"]
    # reference: Python's sort of the (unique_id, ds) pairs
    expected = sorted(zip(frame["unique_id"], frame["ds"], frame["y"], frame["x"]), key=lambda r: (r[0], r[1]))
    assert list(zip(long["unique_id"], long["ds"], long["y"], long["x"])) == expected
    assert validate(frame).shape == long.shape
    long.loc[0, "x"] = 12345.0  # the result shares no memory with the caller's frame
    pd.testing.assert_frame_equal(frame, original)


@settings(max_examples=25)  # pandas-bound examples: keep the test fast
@given(
    st.lists(st.floats(-1e3, 1e3, allow_nan=False), min_size=1, max_size=10),
    st.one_of(st.none(), st.sampled_from(["sales", 7])),
)
def test_series_round_trip(values, name):
    series = pd.Series(values, index=pd.date_range("2022-01-01", periods=len(values), freq="W-SUN"), name=name)
    long = to_long(series)
    uid = "series_0" if name is None else str(name)
    assert (long["unique_id"] == uid).all()
    wide = to_wide(long)
    assert list(wide.columns) == [uid]
    np.testing.assert_array_equal(wide[uid].to_numpy(), series.to_numpy())
    assert wide.index.name == "ds" and list(wide.index) == list(series.index)


def test_to_long_named_columns_and_ds_column_wide_frame():
    long = pd.DataFrame(
        {"store": ["s2", "s1", "s1"], "date": ["2020-01-02", "2020-01-02", "2020-01-01"], "sales": [3, 2, 1]}
    )
    out = to_long(long, id_col="store", time_col="date", target_col="sales")
    assert list(out.columns) == ["unique_id", "ds", "y"]
    assert out["unique_id"].tolist() == ["s1", "s1", "s2"]
    assert out["y"].tolist() == [1, 2, 3]
    assert pd.api.types.is_datetime64_any_dtype(out["ds"])

    wide = pd.DataFrame({"ds": [3, 1, 2], "u": [30.0, 10.0, 20.0], 5: [3.0, 1.0, 2.0]})
    out = to_long(wide)
    assert out["unique_id"].tolist() == ["5"] * 3 + ["u"] * 3
    assert out["ds"].tolist() == [1, 2, 3, 1, 2, 3]
    assert out["y"].tolist() == [1.0, 2.0, 3.0, 10.0, 20.0, 30.0]


def test_to_long_trims_ragged_wide_edges_but_keeps_interior_nan():
    wide = pd.DataFrame(
        {"a": [np.nan, 1.0, np.nan, 3.0, np.nan], "b": [1.0, 2.0, 3.0, 4.0, 5.0], "c": [np.nan] * 5},
        index=pd.date_range("2020-01-01", periods=5, freq="D"),
    )
    long = to_long(wide)
    a = long[long["unique_id"] == "a"]
    assert a["ds"].tolist() == list(wide.index[1:4])
    assert np.isnan(a["y"].iloc[1])
    assert (long["unique_id"] == "c").sum() == 5  # an all-NaN series is kept for validate() to reject
    with pytest.raises(ValueError, match=r"NaN/inf values.*\('a', 2020-01-03\)"):
        validate(wide[["a", "b"]])


def test_to_long_time_stamp_types():
    as_objects = pd.DataFrame({"unique_id": ["a", "a"], "ds": pd.Series([2, 1], dtype=object), "y": [1.0, 2.0]})
    out = to_long(as_objects)
    assert out["ds"].dtype == np.int64 and out["ds"].tolist() == [1, 2]
    periods = pd.Series([1.0, 2.0], index=pd.period_range("2020-01", periods=2, freq="M"))
    assert to_long(periods)["ds"].tolist() == [pd.Timestamp("2020-01-01"), pd.Timestamp("2020-02-01")]
    with pytest.raises(ValueError, match="datetimes or integers; got mixed-integer-float"):
        to_long(as_objects.assign(ds=pd.Series([2.5, 1], dtype=object)))
    with pytest.raises(ValueError, match="datetimes or integers; got booleans"):
        to_long(as_objects.assign(ds=[True, False]))


def test_to_long_and_to_wide_reject_bad_input():
    with pytest.raises(TypeError, match="DataFrame"):
        to_long(np.zeros((3, 2)))
    with pytest.raises(ValueError, match=r"missing column\(s\) \['ds'\]"):
        to_long(pd.DataFrame({"unique_id": ["a"], "y": [1.0]}))
    with pytest.raises(ValueError, match=r"missing column\(s\) \['sales'\]"):
        to_long(pd.DataFrame({"store": ["a"], "ds": [1], "y": [1.0]}), id_col="store", target_col="sales")
    with pytest.raises(ValueError, match="datetimes or integers.*cannot parse 'soon'"):
        to_long(pd.DataFrame({"unique_id": ["a", "a"], "ds": ["2020-01-01", "soon"], "y": [1.0, 2.0]}))
    with pytest.raises(ValueError, match="datetimes or integers.*floats 1.5"):
        to_long(pd.DataFrame({"unique_id": ["a"], "ds": [1.5], "y": [1.0]}))
    with pytest.raises(ValueError, match="duplicate series column"):
        to_long(pd.DataFrame([[1.0, 2.0]], columns=["a", "a"]))
    with pytest.raises(ValueError, match=r"duplicate \(unique_id, ds\) rows cannot be pivoted: \('a', 1\)"):
        to_wide(pd.DataFrame({"unique_id": ["a", "a"], "ds": [1, 1], "y": [1.0, 2.0]}))


# ------------------------------------------------------------------------------------ validation


def good_frame():
    return pd.DataFrame(
        {
            "unique_id": ["a"] * 4 + ["b"] * 3,
            "ds": list(pd.date_range("2020-01-01", periods=4, freq="h"))
            + list(pd.date_range("2020-01-01", periods=3, freq="h")),
            "y": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0],
        }
    )


def with_value(frame, row, column, value):
    out = frame.copy()
    out[column] = out[column].astype(object)
    out.loc[row, column] = value
    return out


BAD_INPUTS = [
    ("empty", lambda f: f.iloc[:0], {}, r"empty frame"),
    ("missing column", lambda f: f.drop(columns="y"), {}, r"missing column\(s\) \['y'\]"),
    (
        "non-numeric target",
        lambda f: with_value(f, 5, "y", "five"),
        {},
        r"target y must be numeric.*'five'.*\('b', 2020-01-01 01:00:00\)",
    ),
    ("boolean target", lambda f: f.assign(y=True), {}, r"target y must be numeric; got booleans"),
    (
        "NaN target",
        lambda f: with_value(f, 2, "y", np.nan).astype({"y": float}),
        {},
        r"NaN/inf values.*\('a', 2020-01-01 02:00:00\)",
    ),
    (
        "inf target",
        lambda f: f.assign(y=f["y"].where(f.index != 6, np.inf)),
        {},
        r"NaN/inf.*\('b', 2020-01-01 02:00:00\)",
    ),
    (
        "duplicate",
        lambda f: pd.concat([f, f.iloc[[1]]]),
        {},
        r"duplicate \(unique_id, ds\) rows: \('a', 2020-01-01 01:00:00\)",
    ),
    ("too short", lambda f: f, {"min_length": 4}, r"shorter than min_length=4: 'b' \(3 rows\)"),
    (
        "gap",
        lambda f: f.drop(index=2),
        {},
        r"gaps in the 'h' time grid: 'a' misses 1 stamp\(s\), first 2020-01-01 02:00:00",
    ),
    (
        "off grid",
        lambda f: with_value(f, 3, "ds", pd.Timestamp("2020-01-01 03:30")).astype({"ds": "datetime64[us]"}),
        {},
        r"off the 'h' frequency grid at rows \('a', 2020-01-01 03:30:00\)",
    ),
    (
        "given freq mismatch",
        lambda f: f,
        {"freq": "2h"},
        r"off the '2h' frequency grid at rows \('a', 2020-01-01 01:00:00\)",
    ),
    ("old alias", lambda f: f, {"freq": "H"}, r"freq='H' is not a pandas frequency.*'h' not 'H'"),
    ("integer freq on datetimes", lambda f: f, {"freq": 1}, r"datetime ds needs a pandas frequency alias"),
    ("missing ds", lambda f: with_value(f, 4, "ds", None).astype({"ds": "datetime64[us]"}), {}, r"missing ds.*'b'"),
    ("missing id", lambda f: with_value(f, 0, "unique_id", None), {}, r"missing unique_id in 1 row"),
    ("bad fill", lambda f: f, {"fill": "mean"}, r"fill must be one of"),
    ("duplicate target column", lambda f: pd.concat([f, f[["y"]]], axis=1), {}, r"duplicate column name\(s\) \['y'\]"),
    (
        "duplicate covariate columns",
        lambda f: pd.concat([f.assign(p=1.0), f[["y"]].rename(columns={"y": "p"})], axis=1),
        {},
        r"duplicate column name\(s\) \['p'\]",
    ),
    ("bad min_length", lambda f: f, {"min_length": 0}, r"min_length must be a positive integer"),
    ("missing covariate", lambda f: f, {"covariates": ["price"]}, r"covariate column\(s\) \['price'\] not found"),
    (
        "non-numeric covariate",
        lambda f: f.assign(shop=list("abcdefg")),
        {},
        r"covariate 'shop'.*must be numeric.*\('a', 2020-01-01\)",
    ),
]


@pytest.mark.parametrize("make, kwargs, message", [case[1:] for case in BAD_INPUTS], ids=[c[0] for c in BAD_INPUTS])
def test_validate_rejects_bad_input_naming_the_problem(make, kwargs, message):
    frame = make(good_frame())
    original = copy.deepcopy(frame)
    with pytest.raises(ValueError, match=message):
        validate(frame, **kwargs)
    pd.testing.assert_frame_equal(frame, original)


def test_validate_integer_ds_errors():
    frame = pd.DataFrame({"unique_id": ["a"] * 4, "ds": [0, 2, 4, 7], "y": [1.0, 2.0, 3.0, 4.0]})
    with pytest.raises(ValueError, match=r"off the 2 frequency grid at rows \('a', 7\)"):
        validate(frame)
    with pytest.raises(ValueError, match="integer ds needs an integer freq step"):
        validate(frame, freq="h")
    with pytest.raises(ValueError, match="positive step"):
        validate(frame, freq=-1)
    assert validate(frame, freq=1, fill="zero")["y"].tolist() == [1, 0, 2, 0, 3, 0, 0, 4]


def test_validate_returns_clean_copy_and_leaves_caller_untouched():
    frame = good_frame().iloc[::-1].reset_index(drop=True)
    frame["y"] = frame["y"].astype("int64")
    frame["promo"] = np.arange(7, dtype="int32")
    original = copy.deepcopy(frame)
    out = validate(frame, min_length=3)
    pd.testing.assert_frame_equal(frame, original)
    assert out["y"].dtype == np.float64 and out["promo"].dtype == np.float64
    assert out["unique_id"].tolist() == ["a"] * 4 + ["b"] * 3
    assert out.attrs["freq"] == "h"
    out.loc[0, "y"] = -1.0
    pd.testing.assert_frame_equal(frame, original)
    assert list(validate(frame, covariates=[]).columns) == ["unique_id", "ds", "y"]


def gappy_frame():
    # series a: NaN at 01:00, stamp 03:00 missing, inf at 04:00; series b: leading and trailing NaN
    return pd.DataFrame(
        {
            "unique_id": ["a"] * 5 + ["b"] * 4,
            "ds": pd.to_datetime(
                ["2020-01-01 00:00", "2020-01-01 01:00", "2020-01-01 02:00", "2020-01-01 04:00", "2020-01-01 05:00"]
                + ["2020-01-01 00:00", "2020-01-01 01:00", "2020-01-01 02:00", "2020-01-01 03:00"]
            ),
            "y": [0.0, np.nan, 2.0, np.inf, 5.0, np.nan, 1.0, 2.0, np.nan],
        }
    )


@pytest.mark.parametrize(
    "fill, a, b",
    [
        ("ffill", [0, 0, 2, 2, 2, 5], [1, 1, 2, 2]),
        ("zero", [0, 0, 2, 0, 0, 5], [0, 1, 2, 0]),
        # linear over grid positions; edges take the nearest finite value
        ("interpolate", [0, 1, 2, 3, 4, 5], [1, 1, 2, 2]),
    ],
)
def test_fill_policies(fill, a, b):
    frame = gappy_frame()
    original = copy.deepcopy(frame)
    out = validate(frame, fill=fill)
    pd.testing.assert_frame_equal(frame, original)
    grid = pd.date_range("2020-01-01", periods=6, freq="h")
    assert out.loc[out.unique_id == "a", "ds"].tolist() == list(grid)
    np.testing.assert_allclose(out.loc[out.unique_id == "a", "y"], a)
    np.testing.assert_allclose(out.loc[out.unique_id == "b", "y"], b)


def test_fill_drop_trims_edges_only():
    frame = gappy_frame()
    b_only = frame[frame.unique_id == "b"]
    out = validate(b_only, fill="drop")
    assert out["y"].tolist() == [1.0, 2.0]
    assert out["ds"].tolist() == list(pd.date_range("2020-01-01 01:00", periods=2, freq="h"))
    with pytest.raises(ValueError, match=r"gaps in the 'h' time grid: 'a' misses 1"):
        validate(frame, fill="drop")
    no_gap = pd.concat(
        [frame, pd.DataFrame({"unique_id": ["a"], "ds": [pd.Timestamp("2020-01-01 03:00")], "y": [3.0]})]
    )
    with pytest.raises(ValueError, match=r"interior NaN/inf at rows \('a', 2020-01-01 01:00:00\)"):
        validate(no_gap, fill="drop")
    with pytest.raises(ValueError, match="no finite values"):
        validate(pd.DataFrame({"unique_id": ["c"] * 3, "ds": [1, 2, 3], "y": [np.nan] * 3}), fill="ffill")


def test_co2_demo_dataset_validates_after_interpolation():
    sm_datasets = pytest.importorskip("statsmodels.datasets")
    co2 = sm_datasets.co2.load_pandas().data
    original = co2.copy(deep=True)
    with pytest.raises(ValueError, match=r"NaN/inf values.*\('co2', 1958-05-10\)"):
        validate(co2)
    out = validate(co2, fill="interpolate")
    pd.testing.assert_frame_equal(co2, original)
    assert infer_freq(co2) == "W-SAT" and out.attrs["freq"] == "W-SAT"
    assert np.isfinite(out["y"]).all() and len(out) == len(co2)
    observed = co2["co2"].notna().to_numpy()
    np.testing.assert_array_equal(out["y"].to_numpy()[observed], co2["co2"].to_numpy()[observed])
    # slow reference: each interior NaN is the straight line between its observed neighbours
    y, filled = co2["co2"].to_numpy(), out["y"].to_numpy()
    for i in np.flatnonzero(~observed):
        left = i - 1
        while left >= 0 and np.isnan(y[left]):
            left -= 1
        right = i + 1
        while right < len(y) and np.isnan(y[right]):
            right += 1
        if left >= 0 and right < len(y):
            expected = y[left] + (y[right] - y[left]) * (i - left) / (right - left)
            assert filled[i] == pytest.approx(expected)
    # missing weeks (rows removed) are inserted back on the W-SAT grid
    holes = co2.drop(index=co2.index[[10, 11, 500]])
    with pytest.raises(ValueError, match=r"'co2' misses 3 stamp\(s\), first 1958-06-07, 1958-06-14"):
        validate(holes)
    refilled = validate(holes, fill="interpolate")
    assert refilled["ds"].tolist() == list(co2.index)


def test_fill_gaps_inserts_nan_rows():
    frame = gappy_frame()
    out = fill_gaps(frame)
    a = out[out.unique_id == "a"]
    assert len(a) == 6 and np.isnan(a["y"].iloc[3])
    assert fill_gaps(frame, fill="zero").loc[lambda f: f.unique_id == "a", "y"].tolist() == [0, 0, 2, 0, 0, 5]
    with pytest.raises(ValueError, match="fill_gaps: fill must be"):
        fill_gaps(frame, fill="drop")
    with pytest.raises(ValueError, match=r"off the 'h' grid at rows \('a', 2020-01-01 02:30:00\)"):
        fill_gaps(frame.assign(ds=frame["ds"].where(frame.index != 2, pd.Timestamp("2020-01-01 02:30"))), freq="h")


@settings(max_examples=25)  # pandas-bound examples: keep the test fast
@given(complete_panels())
def test_validate_accepts_every_clean_panel_unchanged(wide):
    long = to_long(wide)
    out = validate(wide)
    pd.testing.assert_frame_equal(out, long.astype({"y": "float64"}), check_exact=True)


# ------------------------------------------------------------------------------------ frequency


@pytest.mark.parametrize("freq", FREQS)
def test_infer_freq_aliases_with_and_without_gaps(freq):
    index = pd.date_range("2020-01-04", periods=30, freq=freq)
    expected = to_offset(freq).freqstr
    series = pd.Series(np.arange(30.0), index=index)
    assert infer_freq(series) == expected
    assert infer_freq(series.drop(index=index[[7, 8, 20]])) == expected
    gappy = series.drop(index=index[[7, 20]])
    out = validate(gappy, fill="interpolate")
    assert out["ds"].tolist() == list(index)
    np.testing.assert_allclose(out["y"], np.arange(30.0))


def test_infer_freq_panel_errors_name_series():
    assert infer_freq(pd.DataFrame({"unique_id": ["a"] * 3, "ds": [0, 3, 6], "y": [1.0, 2, 3]})) == 3
    mixed = pd.concat(
        [
            pd.DataFrame({"unique_id": "hourly", "ds": pd.date_range("2020", periods=5, freq="h"), "y": 1.0}),
            pd.DataFrame({"unique_id": "daily", "ds": pd.date_range("2020", periods=5, freq="D"), "y": 1.0}),
        ]
    )
    with pytest.raises(
        ValueError, match=r"series disagree on the frequency \('D': series 'daily'; 'h': series 'hourly'\)"
    ):
        infer_freq(mixed)
    single = pd.DataFrame({"unique_id": ["lonely"], "ds": [pd.Timestamp("2020-01-01")], "y": [1.0]})
    with pytest.raises(ValueError, match="cannot infer a frequency.*'lonely'"):
        infer_freq(single)
    assert validate(single, freq="D")["y"].tolist() == [1.0]
    assert validate(single).attrs["freq"] is None  # nothing to check on one-row series

    # a one-row series inherits the frequency the other series agree on
    assert infer_freq(pd.concat([single, mixed[mixed.unique_id == "daily"]])) == "D"


@pytest.mark.parametrize("freq", FREQS)
def test_future_timestamps_match_repeated_offsets(freq):
    offset = to_offset(freq)
    last = pd.date_range("2021-05-01", periods=3, freq=freq)[-1]
    expected = [last]
    for _ in range(5):
        expected.append(expected[-1] + offset)  # slow reference: one step at a time
    out = future_timestamps(last, freq, 5)
    assert isinstance(out, pd.DatetimeIndex)
    assert list(out) == expected[1:]


def test_future_timestamps_integer_and_errors():
    np.testing.assert_array_equal(future_timestamps(10, 3, 4), [13, 16, 19, 22])
    assert future_timestamps(np.int64(10), 1, 1).dtype == np.int64
    with pytest.raises(ValueError, match="h must be a positive integer"):
        future_timestamps(10, 1, 0)
    with pytest.raises(ValueError, match="needs an integer freq step"):
        future_timestamps(10, "h", 2)
    with pytest.raises(ValueError, match="needs a pandas frequency alias"):
        future_timestamps(pd.Timestamp("2020-01-01"), 2, 2)
    with pytest.raises(ValueError, match="'min' not 'T'"):
        future_timestamps(pd.Timestamp("2020-01-01"), "T", 2)


def test_pandas_3_0_quarter_start_aliases_are_named_as_pandas_3_1_names_them(monkeypatch):
    """pandas 3.0 has no ``future.infer_freq_returns_offset`` and names a quarter-start grid by its last anchor
    month (``QS-OCT``); the same grid gets pandas 3.1's name (``QS-JAN``)."""
    import ssmcast.data.frames as frames

    stamps = pd.date_range("2020-01-01", periods=8, freq="QS-JAN")
    monkeypatch.setattr(frames, "_INFER_FREQ_RETURNS_OFFSET", None)
    for legacy, name in [("QS-OCT", "QS-JAN"), ("QS-NOV", "QS-FEB"), ("BQS-DEC", "BQS-MAR"), ("QE-DEC", "QE-DEC"),
                         ("h", "h")]:
        monkeypatch.setattr(frames.pd, "infer_freq", lambda _, legacy=legacy: legacy)
        assert frames._pd_infer(stamps).freqstr == name
