"""Loaders returning the long format `unique_id, ds, y` shared by every ssmcast forecaster.

Conventions (see `dataset_info(name)` for the per-dataset values):
* `unique_id` is the CSV column name, exactly as in the header ("OT", "p (mbar)"), or the series id
  (M4 "H1".."H414"); single-series datasets use their value column ("co2", "volume", "SUNACTIVITY",
  "AirPassengers", "elnino").
* rows are sorted by (`unique_id`, `ds`) in code-point order of the ids, so "H10" precedes "H2";
  `dataset_info(name).columns` keeps the file's order (target last) and `load_wide` uses it.
* `ds` is `datetime64[us]` (the pandas 3 default) or, for M4 Hourly, an int64 step 1, 2, ... per series.
* `y` is float64; missing values (only `co2` has them) stay NaN.
* rows are never dropped or added: Weather keeps its one duplicated timestamp (`info.regular` is False).
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from .registry import DatasetInfo, dataset_info
from .storage import fetch_file, search_dirs

__all__ = ["load_dataset", "load_m4_hourly", "load_wide"]

_DATE_FORMATS = {
    "etth1": "%Y-%m-%d %H:%M:%S",
    "etth2": "%Y-%m-%d %H:%M:%S",
    "ettm1": "%Y-%m-%d %H:%M:%S",
    "ettm2": "%Y-%m-%d %H:%M:%S",
    "weather": "%Y-%m-%d %H:%M:%S",
    "exchange_rate": "%Y/%m/%d %H:%M",
    "illness": "%Y-%m-%d %H:%M:%S",
}
_SPLITS = ("all", "train", "test")


def load_dataset(
    name: str,
    data_dir: str | os.PathLike | None = None,
    *,
    split: str = "all",
    download: bool = True,
    verify: bool = True,
) -> pd.DataFrame:
    """Load dataset `name` (see `list_datasets()`) as a long frame with columns `unique_id, ds, y`.

    Files are looked up in `data_dir`, `$SSMCAST_DATA_DIR`, then the user cache, and downloaded into the
    cache when missing (`download=False` forbids it); `verify` checks size and sha256. `split` selects
    the M4 Hourly part: "train", "test" (the 48 held-out values) or "all" (both, test after train);
    other datasets have only "all" (their protocol splits are row ranges: see `ltsf_split`).
    Rows are kept exactly as in the source: Weather's one duplicated timestamp stays (`info.regular`).
    """
    info = dataset_info(name)
    search_dirs(data_dir)  # validates data_dir even for statsmodels' bundled datasets
    if split not in _SPLITS:
        raise ValueError(f"split must be one of {_SPLITS}, got {split!r}")
    if info.name == "m4_hourly":
        train, test = load_m4_hourly(data_dir, download=download, verify=verify)
        if split == "train":
            return train
        if split == "test":
            return test
        both = pd.concat([train, test], ignore_index=True)
        return both.sort_values(["unique_id", "ds"], kind="stable", ignore_index=True)
    if split != "all":
        raise ValueError(
            f"split={split!r} is only defined for 'm4_hourly'; for {info.name!r} use split='all' and "
            "the row ranges of ltsf_split(name) / dataset_info(name).split"
        )
    return _wide_to_long(_load_wide(info, data_dir, download, verify))


def load_wide(
    name: str, data_dir: str | os.PathLike | None = None, *, download: bool = True, verify: bool = True
) -> pd.DataFrame:
    """Dataset `name` as a wide frame: index `ds`, one float64 column per series in `info.columns` order.

    This is the (time, channel) matrix the long-horizon protocol indexes by row. Not available for
    M4 Hourly, whose series differ in length (use `load_m4_hourly`).
    """
    info = dataset_info(name)
    if info.name == "m4_hourly":
        raise ValueError("load_wide: m4_hourly series have different lengths; use load_m4_hourly()")
    return _load_wide(info, data_dir, download, verify)


def load_m4_hourly(
    data_dir: str | os.PathLike | None = None, *, download: bool = True, verify: bool = True
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """M4 Hourly as `(train, test)` long frames: 414 series "H1".."H414", 48 test values each.

    The files have no dates (M4-info.csv with the start dates is not available), so `ds` is an int64
    step: 1..n_train in train, n_train+1..n_train+48 in test.
    """
    info = dataset_info("m4_hourly")
    train_file, test_file = info.files
    train_raw = pd.read_csv(fetch_file(train_file, data_dir, download=download, verify=verify), index_col=0)
    test_raw = pd.read_csv(fetch_file(test_file, data_dir, download=download, verify=verify), index_col=0)
    ids = train_raw.index.astype(str).to_numpy()
    if not np.array_equal(ids, test_raw.index.astype(str).to_numpy()):
        raise ValueError("m4_hourly: Hourly-train.csv and Hourly-test.csv list different series ids")
    train = train_raw.to_numpy(np.float64)  # (S, max_len)
    test = test_raw.to_numpy(np.float64)  # (S, 48)
    lengths = _prefix_lengths(train, ids, "Hourly-train.csv")
    test_lengths = _prefix_lengths(test, ids, "Hourly-test.csv")
    if not (test_lengths == info.test_horizon).all():
        bad = ids[test_lengths != info.test_horizon][:5]
        raise ValueError(f"m4_hourly: series {list(bad)} do not have {info.test_horizon} test values")
    order = np.argsort(ids, kind="stable")
    train_df = _ragged_to_long(ids[order], train[order], lengths[order], first_step=np.ones(len(ids), int))
    test_df = _ragged_to_long(ids[order], test[order], test_lengths[order], first_step=lengths[order] + 1)
    return train_df, test_df


def _prefix_lengths(values: np.ndarray, ids: np.ndarray, file: str) -> np.ndarray:
    """Number of leading non-NaN values per row; raises if a row has a gap before its NaN tail."""
    present = ~np.isnan(values)  # (S, T)
    lengths = present.sum(axis=1)
    first_missing = np.argmin(np.c_[present, np.zeros(len(values), bool)], axis=1)  # (S,)
    contiguous = lengths == first_missing
    if not contiguous.all():
        raise ValueError(f"m4_hourly: {file} has missing values inside series {list(ids[~contiguous][:5])}")
    return lengths


def _ragged_to_long(ids: np.ndarray, values: np.ndarray, lengths: np.ndarray, first_step: np.ndarray):
    present = np.arange(values.shape[1]) < lengths[:, None]  # (S, T)
    steps = first_step[:, None] + np.arange(values.shape[1])  # (S, T)
    return pd.DataFrame(
        {
            "unique_id": pd.array(np.repeat(ids, lengths), dtype="str"),
            "ds": steps[present].astype(np.int64),
            "y": values[present],
        }
    )


def _wide_to_long(wide: pd.DataFrame) -> pd.DataFrame:
    names = [str(c) for c in wide.columns]
    order = sorted(range(len(names)), key=names.__getitem__)
    values = wide.to_numpy(np.float64)[:, order]  # (T, C)
    n_steps = len(wide)
    return pd.DataFrame(
        {
            "unique_id": pd.array(np.repeat(np.array(names, dtype=object)[order], n_steps), dtype="str"),
            "ds": np.tile(wide.index.to_numpy(), len(names)),
            "y": values.T.reshape(-1),
        }
    )


def _load_wide(info: DatasetInfo, data_dir, download: bool, verify: bool) -> pd.DataFrame:
    if info.source == "statsmodels":
        wide = _STATSMODELS_READERS[info.name]()
    elif info.name == "airline":
        path = fetch_file(info.files[0], data_dir, download=download, verify=verify)
        raw = pd.read_csv(path)
        _check_header(info, raw, ["Date", "Passengers"])
        index = pd.to_datetime(raw["Date"], format="%Y-%m")
        wide = pd.DataFrame({"AirPassengers": raw["Passengers"].to_numpy(np.float64)}, index=index)
    else:
        path = fetch_file(info.files[0], data_dir, download=download, verify=verify)
        raw = pd.read_csv(path)
        expected = ["date", *info.columns]
        if set(raw.columns) != set(expected):
            _check_header(info, raw, expected)
        index = pd.to_datetime(raw["date"], format=_DATE_FORMATS[info.name])
        wide = raw[list(info.columns)].astype(np.float64).set_axis(index)
    if [str(c) for c in wide.columns] != list(info.columns):
        raise ValueError(f"{info.name}: columns {list(wide.columns)} differ from the expected {info.columns}")
    wide.index = pd.DatetimeIndex(wide.index).as_unit("us").rename("ds")
    wide.columns = pd.Index(list(info.columns), dtype="str")
    if not wide.index.is_monotonic_increasing or (info.regular and not wide.index.is_unique):
        raise ValueError(f"{info.name}: timestamps are not strictly increasing")
    return wide


def _check_header(info: DatasetInfo, raw: pd.DataFrame, expected: list[str]) -> None:
    if list(raw.columns) != expected:
        raise ValueError(f"{info.name}: file columns {list(raw.columns)} differ from the expected {expected}")


def _statsmodels_data(name: str) -> pd.DataFrame:
    from statsmodels import datasets

    return getattr(datasets, name).load_pandas().data.copy()


def _years(values: pd.Series) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(pd.to_datetime(values.astype(int).astype(str), format="%Y"))


def _co2() -> pd.DataFrame:
    return _statsmodels_data("co2")[["co2"]].astype(np.float64)


def _nile() -> pd.DataFrame:
    raw = _statsmodels_data("nile")
    return pd.DataFrame({"volume": raw["volume"].to_numpy(np.float64)}, index=_years(raw["year"]))


def _sunspots() -> pd.DataFrame:
    raw = _statsmodels_data("sunspots")
    return pd.DataFrame({"SUNACTIVITY": raw["SUNACTIVITY"].to_numpy(np.float64)}, index=_years(raw["YEAR"]))


def _elnino() -> pd.DataFrame:
    raw = _statsmodels_data("elnino")
    months = list(raw.columns[1:])
    if len(months) != 12:
        raise ValueError(f"elnino: expected YEAR and 12 month columns, got {list(raw.columns)}")
    years = raw["YEAR"].astype(int).to_numpy()
    if not (np.diff(years) == 1).all():
        raise ValueError("elnino: years are not consecutive")
    index = pd.date_range(f"{years[0]}-01-01", periods=12 * len(years), freq="MS")
    return pd.DataFrame({"elnino": raw[months].to_numpy(np.float64).reshape(-1)}, index=index)


def _macrodata() -> pd.DataFrame:
    raw = _statsmodels_data("macrodata")
    periods = pd.PeriodIndex.from_fields(
        year=raw["year"].astype(int).to_numpy(), quarter=raw["quarter"].astype(int).to_numpy(), freq="Q"
    )
    return raw.drop(columns=["year", "quarter"]).astype(np.float64).set_axis(periods.to_timestamp())


_STATSMODELS_READERS = {
    "co2": _co2,
    "nile": _nile,
    "sunspots": _sunspots,
    "elnino": _elnino,
    "macrodata": _macrodata,
}
