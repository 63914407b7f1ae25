import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

from ssmcast.datasets import dataset_info, list_datasets, load_dataset, load_m4_hourly, load_wide

LTSF_FILES = {
    "etth1": ("ett/ETTh1.csv", "%Y-%m-%d %H:%M:%S"),
    "etth2": ("ett/ETTh2.csv", "%Y-%m-%d %H:%M:%S"),
    "ettm1": ("ett/ETTm1.csv", "%Y-%m-%d %H:%M:%S"),
    "ettm2": ("ett/ETTm2.csv", "%Y-%m-%d %H:%M:%S"),
    "weather": ("weather/weather.csv", "%Y-%m-%d %H:%M:%S"),
    "exchange_rate": ("exchange_rate/exchange_rate.csv", "%Y/%m/%d %H:%M"),
    "illness": ("illness/national_illness.csv", "%Y-%m-%d %H:%M:%S"),
}


def assert_long_frame(df: pd.DataFrame, time_index: str = "datetime"):
    assert list(df.columns) == ["unique_id", "ds", "y"]
    assert isinstance(df.index, pd.RangeIndex) and df.index.start == 0 and df.index.step == 1
    assert pd.api.types.is_string_dtype(df["unique_id"])
    assert df["y"].dtype == np.float64
    if time_index == "datetime":
        assert df["ds"].dtype == "datetime64[us]"
    else:
        assert df["ds"].dtype == np.int64
    resorted = df.sort_values(["unique_id", "ds"], kind="stable", ignore_index=True)
    pd.testing.assert_frame_equal(df, resorted)


def series(df: pd.DataFrame, uid: str) -> pd.DataFrame:
    return df[df["unique_id"] == uid]


@pytest.mark.parametrize("name", list(LTSF_FILES))
def test_ltsf_file_matches_raw_csv(name, data_dir):
    path, date_format = LTSF_FILES[name]
    raw = pd.read_csv(data_dir / path)
    info = dataset_info(name)
    df = load_dataset(name, data_dir, download=False)
    assert_long_frame(df)
    value_columns = [c for c in raw.columns if c != "date"]
    assert tuple(value_columns) == info.columns and info.columns[-1] == "OT" == info.target
    assert len(df) == len(raw) * len(value_columns) == info.n_rows
    assert len(raw) == info.n_timesteps
    assert sorted(df["unique_id"].unique()) == sorted(value_columns)
    dates = pd.to_datetime(raw["date"], format=date_format).to_numpy()
    assert pd.Timestamp(dates[0]) == pd.Timestamp(info.start)
    assert pd.Timestamp(dates[-1]) == pd.Timestamp(info.end)
    for column in value_columns:
        one = series(df, column)
        np.testing.assert_array_equal(one["y"].to_numpy(), raw[column].to_numpy(np.float64))
        np.testing.assert_array_equal(one["ds"].to_numpy(), dates)


@pytest.mark.parametrize("name", [n for n in list_datasets() if n != "m4_hourly"])
def test_timestamps_follow_declared_frequency(name, data_dir):
    info = dataset_info(name)
    wide = load_wide(name, data_dir, download=False)
    grid = pd.date_range(info.start, periods=info.n_timesteps, freq=info.freq)
    if info.regular:
        assert wide.index.equals(grid)
        assert wide.index.is_unique
    else:
        assert wide.index[0] == grid[0] and wide.index[-1] == pd.Timestamp(info.end)
        assert not wide.index.equals(grid)
    assert list(wide.columns) == list(info.columns)
    assert wide.shape == (info.n_timesteps, info.n_series)


def test_weather_irregularities_are_the_documented_ones(data_dir):
    wide = load_wide("weather", data_dir, download=False)
    steps = np.diff(wide.index.to_numpy()) // np.timedelta64(10, "m")
    assert sorted(np.unique(steps, return_counts=True)[0].tolist()) == [0, 1, 10]
    (duplicate,) = np.flatnonzero(steps == 0)
    (gap,) = np.flatnonzero(steps == 10)
    assert duplicate + 1 == 19044 and wide.index[duplicate] == pd.Timestamp("2020-05-12 06:00")
    pd.testing.assert_series_equal(wide.iloc[duplicate], wide.iloc[duplicate + 1], check_names=False)
    assert wide.index[gap] == pd.Timestamp("2020-05-29 09:30")
    assert wide.index[gap + 1] == pd.Timestamp("2020-05-29 11:10")


def test_load_wide_matches_long_frame(data_dir):
    df = load_dataset("etth1", data_dir, download=False)
    wide = load_wide("etth1", data_dir, download=False)
    pivot = df.pivot(index="ds", columns="unique_id", values="y")[list(wide.columns)]
    np.testing.assert_array_equal(pivot.to_numpy(), wide.to_numpy())
    raw = pd.read_csv(data_dir / "ett/ETTh1.csv")
    np.testing.assert_array_equal(wide.to_numpy(), raw.drop(columns="date").to_numpy())


def test_m4_hourly_matches_raw_files(data_dir):
    raw_train = pd.read_csv(data_dir / "m4/Hourly-train.csv", index_col=0)
    raw_test = pd.read_csv(data_dir / "m4/Hourly-test.csv", index_col=0)
    info = dataset_info("m4_hourly")
    train, test = load_m4_hourly(data_dir, download=False)
    for df in (train, test):
        assert_long_frame(df, time_index="integer")
    assert info.columns == tuple(raw_train.index) == tuple(f"H{i}" for i in range(1, 415))
    assert train["unique_id"].nunique() == test["unique_id"].nunique() == info.n_series == 414
    train_lengths = train.groupby("unique_id").size()
    assert (train_lengths.min(), train_lengths.max()) == info.train_lengths == (700, 960)
    assert (test.groupby("unique_id").size() == 48).all()
    for uid in ("H1", "H2", "H10", "H169", "H414"):
        values = raw_train.loc[uid].dropna().to_numpy()
        one_train, one_test = series(train, uid), series(test, uid)
        np.testing.assert_array_equal(one_train["y"].to_numpy(), values)
        np.testing.assert_array_equal(one_train["ds"].to_numpy(), np.arange(1, len(values) + 1))
        np.testing.assert_array_equal(one_test["y"].to_numpy(), raw_test.loc[uid].to_numpy())
        np.testing.assert_array_equal(one_test["ds"].to_numpy(), np.arange(len(values) + 1, len(values) + 49))
    assert len(train) == int(raw_train.notna().to_numpy().sum())


def test_m4_hourly_splits_through_load_dataset(data_dir):
    train, test = load_m4_hourly(data_dir, download=False)
    pd.testing.assert_frame_equal(load_dataset("m4_hourly", data_dir, split="train", download=False), train)
    pd.testing.assert_frame_equal(load_dataset("m4_hourly", data_dir, split="test", download=False), test)
    both = load_dataset("m4_hourly", data_dir, download=False)
    assert_long_frame(both, time_index="integer")
    assert len(both) == len(train) + len(test) == dataset_info("m4_hourly").n_rows
    for uid in ("H3", "H200"):
        expected = pd.concat([series(train, uid), series(test, uid)], ignore_index=True)
        pd.testing.assert_frame_equal(series(both, uid).reset_index(drop=True), expected)
        assert (np.diff(series(both, uid)["ds"].to_numpy()) == 1).all()
    # the held-out values are the last 48 steps of each series
    tails = both.groupby("unique_id").tail(48).reset_index(drop=True)
    pd.testing.assert_frame_equal(tails, test)


def test_airline_matches_raw_csv(data_dir):
    raw = pd.read_csv(data_dir / "airline/Airline.csv")
    df = load_dataset("airline", data_dir, download=False)
    assert_long_frame(df)
    assert (df["unique_id"] == "AirPassengers").all() and len(df) == 144
    np.testing.assert_array_equal(df["y"].to_numpy(), raw["Passengers"].to_numpy(np.float64))
    assert df["ds"].iloc[0] == pd.Timestamp("1949-01-01") and df["ds"].iloc[-1] == pd.Timestamp("1960-12-01")
    np.testing.assert_array_equal(df["ds"].dt.strftime("%Y-%m").to_numpy(), raw["Date"].to_numpy())


def test_co2_keeps_nans_and_weekly_stamps():
    raw = sm.datasets.co2.load_pandas().data
    df = load_dataset("co2")
    assert_long_frame(df)
    assert len(df) == len(raw) == 2284 and (df["unique_id"] == "co2").all()
    np.testing.assert_array_equal(df["y"].to_numpy(), raw["co2"].to_numpy())  # NaN == NaN here
    np.testing.assert_array_equal(df["ds"].to_numpy(), raw.index.to_numpy())
    assert df["y"].isna().sum() == raw["co2"].isna().sum() == 59
    assert dataset_info("co2").missing_values
    assert (df["ds"].dt.day_of_week == 5).all()  # Saturdays


@pytest.mark.parametrize(
    "name, year, value", [("nile", "year", "volume"), ("sunspots", "YEAR", "SUNACTIVITY")]
)
def test_annual_statsmodels_series(name, year, value):
    raw = getattr(sm.datasets, name).load_pandas().data
    df = load_dataset(name)
    assert_long_frame(df)
    assert (df["unique_id"] == value).all() and len(df) == len(raw) == dataset_info(name).n_rows
    np.testing.assert_array_equal(df["y"].to_numpy(), raw[value].to_numpy())
    np.testing.assert_array_equal(df["ds"].dt.year.to_numpy(), raw[year].to_numpy().astype(int))
    assert (df["ds"].dt.month == 1).all() and (df["ds"].dt.day == 1).all()
    if name == "nile":
        assert (df["ds"].dt.year.iloc[0], df["ds"].dt.year.iloc[-1]) == (1871, 1970)


def test_elnino_melts_months_in_time_order():
    raw = sm.datasets.elnino.load_pandas().data
    df = load_dataset("elnino")
    assert_long_frame(df)
    assert len(df) == 12 * len(raw) == 732
    expected_ds, expected_y = [], []
    for _, row in raw.iterrows():  # slow reference: one year at a time, January..December
        for month, column in enumerate(raw.columns[1:], start=1):
            expected_ds.append(pd.Timestamp(int(row["YEAR"]), month, 1))
            expected_y.append(row[column])
    np.testing.assert_array_equal(df["ds"].to_numpy(), pd.DatetimeIndex(expected_ds).as_unit("us").to_numpy())
    np.testing.assert_array_equal(df["y"].to_numpy(), np.array(expected_y))


def test_macrodata_one_series_per_column():
    raw = sm.datasets.macrodata.load_pandas().data
    df = load_dataset("macrodata")
    info = dataset_info("macrodata")
    assert_long_frame(df)
    value_columns = [c for c in raw.columns if c not in ("year", "quarter")]
    assert tuple(value_columns) == info.columns and len(value_columns) == info.n_series == 12
    assert len(df) == len(raw) * 12 == info.n_rows
    quarter_starts = pd.to_datetime(
        [f"{int(y)}-{3 * int(q) - 2:02d}-01" for y, q in zip(raw["year"], raw["quarter"])]
    ).as_unit("us")
    for column in value_columns:
        one = series(df, column)
        np.testing.assert_array_equal(one["y"].to_numpy(), raw[column].to_numpy())
        np.testing.assert_array_equal(one["ds"].to_numpy(), quarter_starts.to_numpy())


def test_every_dataset_loads_with_declared_shape(data_dir):
    for name in list_datasets():
        if name in ("ettm1", "ettm2", "weather"):  # read by the full-file tests above
            continue
        info = dataset_info(name)
        df = load_dataset(name, data_dir, download=False)
        assert len(df) == info.n_rows, name
        assert df["unique_id"].nunique() == info.n_series, name
        assert set(df["unique_id"].unique()) == set(info.columns), name
        assert df["ds"].min() == (pd.Timestamp(info.start) if info.time_index == "datetime" else info.start)
        assert df["ds"].max() == (pd.Timestamp(info.end) if info.time_index == "datetime" else info.end)
        assert df["y"].isna().any() == info.missing_values, name


def test_loader_argument_errors(data_dir):
    with pytest.raises(ValueError, match="unknown dataset 'electricity'"):
        load_dataset("electricity", data_dir)
    with pytest.raises(TypeError, match="dataset name must be a str"):
        load_dataset(3, data_dir)
    with pytest.raises(ValueError, match="split='train' is only defined for 'm4_hourly'"):
        load_dataset("etth1", data_dir, split="train")
    with pytest.raises(ValueError, match="split must be one of"):
        load_dataset("m4_hourly", data_dir, split="validation")
    with pytest.raises(ValueError, match="different lengths"):
        load_wide("m4_hourly", data_dir)
    with pytest.raises(ValueError, match="is not a directory"):
        load_dataset("airline", data_dir / "no-such-folder")
    assert dataset_info("ETTh1").name == "etth1"
