"""Metadata of the bundled benchmark datasets: files, checksums, sources, frequency, standard splits.

Timestamp conventions (pandas 3 aliases, `datetime64[us]`, the pandas 3 default unit):
period data are stamped at the START of the period ("MS", "QS", "YS"), as the Airline CSV ("1949-01")
and `pd.Period.to_timestamp()` do. Hourly/minute files keep their stamps as written. Data without dates
(M4) get an integer step `ds` (`time_index == "integer"`).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "DataFile",
    "DatasetInfo",
    "Mirror",
    "Split",
    "custom_split",
    "dataset_info",
    "list_datasets",
]


@dataclass(frozen=True)
class Split:
    """Half-open row ranges `[start, stop)` of the train, validation and test parts of each series."""

    train: tuple[int, int]
    val: tuple[int, int]
    test: tuple[int, int]

    @property
    def n_train(self) -> int:
        return self.train[1] - self.train[0]

    @property
    def n_val(self) -> int:
        return self.val[1] - self.val[0]

    @property
    def n_test(self) -> int:
        return self.test[1] - self.test[0]


@dataclass(frozen=True)
class Mirror:
    """One public place a data file can be downloaded from.

    `compression="gzip"` means the download is gzip-compressed; `crlf_to_lf=True` means its line endings
    must be converted to LF (after decompression) to reproduce the checksummed file.
    """

    url: str
    compression: str | None = None
    crlf_to_lf: bool = False


@dataclass(frozen=True)
class DataFile:
    """A data file: its path relative to a data directory, its checksum and size, where to download it."""

    path: str
    sha256: str
    size: int
    git_blob: str
    mirrors: tuple[Mirror, ...]

    @property
    def urls(self) -> tuple[str, ...]:
        return tuple(mirror.url for mirror in self.mirrors)


@dataclass(frozen=True)
class DatasetInfo:
    """Everything known about one dataset.

    `columns` lists the series in the order models see them: the file's column order with the target
    last (what Time-Series-Library's loaders do; the files here already have `OT` last). `n_rows` is the
    number of rows of `load_dataset(name)` (all series, long format); `n_timesteps` the length of each
    series, or `None` when lengths differ (M4: `train_lengths` gives the shortest and longest train
    part). `horizons` are the
    forecast horizons the literature reports for this dataset; `test_horizon` the number of trailing
    values held out per series where the test set is defined that way (M4). `regular` is False when
    the file's timestamps are not an exact `freq` grid (Weather: see its `description`); the rows are
    kept as in the file because the protocol splits count rows.
    """

    name: str
    title: str
    source: str  # "file" or "statsmodels"
    files: tuple[DataFile, ...]
    freq: str
    time_index: str  # "datetime" or "integer"
    target: str
    columns: tuple[str, ...]
    seasonality: int
    n_series: int
    n_rows: int
    n_timesteps: int | None
    start: str | int
    end: str | int
    license: str
    citation: str
    source_urls: tuple[str, ...]
    description: str = ""
    split: Split | None = None
    horizons: tuple[int, ...] = ()
    test_horizon: int | None = None
    train_lengths: tuple[int, int] | None = None
    missing_values: bool = False
    regular: bool = True

    @property
    def sha256(self) -> tuple[str, ...]:
        return tuple(f.sha256 for f in self.files)

    @property
    def size(self) -> int:
        """Total size in bytes of the data files (0 for statsmodels' bundled datasets)."""
        return sum(f.size for f in self.files)


def _raw(repo: str, commit: str, path: str) -> str:
    return f"https://raw.githubusercontent.com/{repo}/{commit}/{path}"


_ETT_REPO, _ETT_COMMIT = "zhouhaoyi/ETDataset", "1d16c8f4f943005d613b5bc962e9eeb06058cf07"
_HICR_REPO, _HICR_COMMIT = "ljnvs/HiCR-Mamba", "d472c100956ed4373e9ca3700481ce88f8f1e4dd"
_NEMOTS_REPO, _NEMOTS_COMMIT = "Xieyyyy/NEMoTS", "0f58be8b0f77af83112592831b93efa728d0e929"
_SSCF_REPO, _SSCF_COMMIT = (
    "junwoopark92/Self-Supervised-Contrastive-Forecsating",
    "f394705adbf5217811276f5e59576c6e7ea7586c",
)
_M4_REPO, _M4_COMMIT = "Mcompetitions/M4-methods", "6c1067e5a57161249b17289a565178dc7a3fb3ca"
_SKTIME_REPO, _SKTIME_COMMIT = "sktime/sktime", "7bd7d1620c0656f3210eeb850bb1c0034159ee47"

_ETT_LICENSE = (
    "CC BY-ND 4.0 (ETDataset LICENSE): attribution required; verbatim copies only, "
    "no redistribution of derivatives"
)
_INFORMER = (
    "Zhou et al., 'Informer: Beyond Efficient Transformer for Long Sequence Time-Series Forecasting', "
    "AAAI 2021"
)
_AUTOFORMER = (
    "Wu et al., 'Autoformer: Decomposition Transformers with Auto-Correlation for Long-Term Series "
    "Forecasting', NeurIPS 2021"
)
_LTSF_HORIZONS = (96, 192, 336, 720)
_ETT_COLUMNS = ("HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL", "OT")

_ETT_HOUR_SPLIT = Split(train=(0, 8640), val=(8640, 11520), test=(11520, 14400))
_ETT_MINUTE_SPLIT = Split(train=(0, 34560), val=(34560, 46080), test=(46080, 57600))


def custom_split(n_rows: int) -> Split:
    """TSLib's `Dataset_Custom` split of a series of `n_rows` rows: 70% train, 20% test, the rest val."""
    if isinstance(n_rows, bool) or not isinstance(n_rows, int):
        raise TypeError(f"n_rows must be an int, got {type(n_rows).__name__}")
    n_train, n_test = int(n_rows * 0.7), int(n_rows * 0.2)
    n_val = n_rows - n_train - n_test
    if min(n_train, n_val, n_test) < 1:
        raise ValueError(f"n_rows={n_rows} is too short for a 70/10/20 split (each part needs a row)")
    return Split(train=(0, n_train), val=(n_train, n_train + n_val), test=(n_rows - n_test, n_rows))


def _ett(name: str, file: str, sha256: str, size: int, blob: str, hourly: bool) -> DatasetInfo:
    path = f"ETT-small/{file}"
    mirrors = (Mirror(_raw(_ETT_REPO, _ETT_COMMIT, path)),)
    if not hourly:  # the source snapshot lacked the ETTm blobs; the gz copies decompress to the same blob
        mirrors += (Mirror(_raw(_HICR_REPO, _HICR_COMMIT, f"datasets/{path}.gz"), compression="gzip"),)
    n = 17420 if hourly else 69680
    return DatasetInfo(
        name=name,
        title=f"ETT-small {file[:-4]} (electricity transformer temperature)",
        source="file",
        files=(DataFile(f"ett/{file}", sha256, size, blob, mirrors),),
        freq="h" if hourly else "15min",
        time_index="datetime",
        target="OT",
        columns=_ETT_COLUMNS,
        seasonality=24 if hourly else 96,
        n_series=7,
        n_rows=7 * n,
        n_timesteps=n,
        start="2016-07-01 00:00:00",
        end="2018-06-26 19:00:00" if hourly else "2018-06-26 19:45:00",
        license=_ETT_LICENSE,
        citation=_INFORMER,
        source_urls=(f"https://github.com/{_ETT_REPO}/tree/{_ETT_COMMIT}/ETT-small",),
        description="Loads and oil temperature (OT, the target) of an electricity transformer in China.",
        split=_ETT_HOUR_SPLIT if hourly else _ETT_MINUTE_SPLIT,
        horizons=_LTSF_HORIZONS,
    )


_WEATHER_COLUMNS = (
    "p (mbar)", "T (degC)", "Tpot (K)", "Tdew (degC)", "rh (%)", "VPmax (mbar)", "VPact (mbar)",
    "VPdef (mbar)", "sh (g/kg)", "H2OC (mmol/mol)", "rho (g/m**3)", "wv (m/s)", "max. wv (m/s)",
    "wd (deg)", "rain (mm)", "raining (s)", "SWDR (W/m\ufffd)", "PAR (\ufffdmol/m\ufffd/s)",
    "max. PAR (\ufffdmol/m\ufffd/s)", "Tlog (degC)", "OT",
)  # fmt: skip
_ILI_COLUMNS = (
    "% WEIGHTED ILI", "%UNWEIGHTED ILI", "AGE 0-4", "AGE 5-24", "ILITOTAL", "NUM. OF PROVIDERS", "OT",
)  # fmt: skip
_MACRO_COLUMNS = (
    "realgdp", "realcons", "realinv", "realgovt", "realdpi", "cpi", "m1", "tbilrate", "unemp", "pop",
    "infl", "realint",
)  # fmt: skip

_M4_CITATION = (
    "Makridakis, Spiliotis, Assimakopoulos, 'The M4 Competition: 100,000 time series and 61 forecasting "
    "methods', International Journal of Forecasting 36(1), 2020"
)
_STATSMODELS_LICENSE = "public domain (statsmodels dataset COPYRIGHT); statsmodels itself is BSD-3"

_REGISTRY: dict[str, DatasetInfo] = {
    "etth1": _ett(
        "etth1", "ETTh1.csv", "f18de3ad269cef59bb07b5438d79bb3042d3be49bdeecf01c1cd6d29695ee066",
        2589657, "a52c4925778c07c1ef1a2cf6fd01594919717d9e", hourly=True,
    ),
    "etth2": _ett(
        "etth2", "ETTh2.csv", "a3dc2c597b9218c7ce1cd55eb77b283fd459a1d09d753063f944967dd6b9218b",
        2417960, "6e3760778598fdee5208213d3fce122637307eec", hourly=True,
    ),
    "ettm1": _ett(
        "ettm1", "ETTm1.csv", "6ce1759b1a18e3328421d5d75fadcb316c449fcd7cec32820c8dafda71986c9e",
        10360719, "62c9f979e2dc5b05d9cc5b38891e60e6baf77417", hourly=False,
    ),
    "ettm2": _ett(
        "ettm2", "ETTm2.csv", "db973ca252c6410a30d0469b13d696cf919648d0f3fd588c60f03fdbdbadd1fd",
        9677236, "f9d46027c987d442d2d8f81308d1d8c4d1d35db8", hourly=False,
    ),
    "weather": DatasetInfo(
        name="weather",
        title="Weather (Autoformer, 21 meteorological variables, Jena 2020)",
        source="file",
        files=(
            DataFile(
                "weather/weather.csv",
                "9b2b19b13e342d9c9b9c51620d42b4be232df7fba30e7f5c4968b7c79ab138ad",
                7182728,
                "77d14be4f8a539120eab10d715a1915f2ec5b5d8",
                (
                    Mirror(
                        _raw(_HICR_REPO, _HICR_COMMIT, "datasets/weather/weather.csv.gz"),
                        compression="gzip",
                        crlf_to_lf=True,
                    ),
                    Mirror(_raw(_NEMOTS_REPO, _NEMOTS_COMMIT, "dataset/weather/weather.csv")),
                ),
            ),
        ),
        freq="10min",
        time_index="datetime",
        target="OT",
        columns=_WEATHER_COLUMNS,
        seasonality=144,
        n_series=21,
        n_rows=21 * 52696,
        n_timesteps=52696,
        start="2020-01-01 00:10:00",
        end="2021-01-01 00:00:00",
        license=(
            "none stated; Max Planck Institute for Biogeochemistry (Jena) data: research use with attribution"
        ),
        citation=_AUTOFORMER,
        source_urls=(
            f"https://github.com/{_HICR_REPO}/tree/{_HICR_COMMIT}/datasets/weather",
            "https://www.bgc-jena.mpg.de/wetter/",
        ),
        description=(
            "10-minute weather station readings; OT is CO2 (ppm). The header has U+FFFD characters. "
            "Not a regular grid: row 19044 (0-based data row) repeats row 19043 exactly, including its "
            "timestamp 2020-05-12 06:00, and 2020-05-29 09:40..11:00 (9 stamps) is missing. Rows are "
            "kept as in the file (the protocol counts rows), so `ds` has one duplicate per series."
        ),
        split=custom_split(52696),
        horizons=_LTSF_HORIZONS,
        regular=False,
    ),
    "exchange_rate": DatasetInfo(
        name="exchange_rate",
        title="Exchange rates of 8 countries against USD (LSTNet, Autoformer column order)",
        source="file",
        files=(
            DataFile(
                "exchange_rate/exchange_rate.csv",
                "d55e7aa2641009814a18ba3279431b13f6d413b0eab195b9ff21988d8cf94e97",
                630212,
                "6b04ff3158cd1e3b27b708eff0b75e14aaa400fb",
                (Mirror(_raw(_SSCF_REPO, _SSCF_COMMIT, "dataset/exchange_rate/exchange_rate.csv")),),
            ),
        ),
        freq="D",
        time_index="datetime",
        target="OT",
        columns=("0", "1", "2", "3", "4", "5", "6", "OT"),
        # The daily calendar is synthetic (trading days laid on consecutive dates), so no weekly cycle.
        seasonality=1,
        n_series=8,
        n_rows=8 * 7588,
        n_timesteps=7588,
        start="1990-01-01",
        end="2010-10-10",
        license="none stated: research use with attribution",
        citation=(
            "Lai et al., 'Modeling Long- and Short-Term Temporal Patterns with Deep Neural Networks' "
            "(LSTNet), SIGIR 2018"
        ),
        source_urls=(
            f"https://github.com/{_SSCF_REPO}/tree/{_SSCF_COMMIT}/dataset/exchange_rate",
            "https://github.com/laiguokun/multivariate-time-series-data",
        ),
        description=(
            "LSTNet order Australia, Britain, Canada, Switzerland, China, Japan, New Zealand, Singapore, "
            "but Autoformer swapped LSTNet columns 6 and 7: OT is New Zealand, '6' is Singapore."
        ),
        split=custom_split(7588),
        horizons=_LTSF_HORIZONS,
    ),
    "illness": DatasetInfo(
        name="illness",
        title="ILI: weekly influenza-like illness, US CDC ILINet (Autoformer preprocessing)",
        source="file",
        files=(
            DataFile(
                "illness/national_illness.csv",
                "8594cecb98c6f2f9dc014eca11c4d5d1e38ad5ce6ed0592d4abe65b146fce395",
                66653,
                "ae0424af871366ecacc501399fcb730e9200458c",
                (Mirror(_raw(_SSCF_REPO, _SSCF_COMMIT, "dataset/illness/national_illness.csv")),),
            ),
        ),
        freq="W-TUE",
        time_index="datetime",
        target="OT",
        columns=_ILI_COLUMNS,
        seasonality=52,
        n_series=7,
        n_rows=7 * 966,
        n_timesteps=966,
        start="2002-01-01",
        end="2020-06-30",
        license="CDC FluView ILINet data: US-government work, public domain; preprocessing by Autoformer",
        citation=_AUTOFORMER + "; CDC FluView ILINet",
        source_urls=(
            f"https://github.com/{_SSCF_REPO}/tree/{_SSCF_COMMIT}/dataset/illness",
            "https://gis.cdc.gov/grasp/fluview/fluportaldashboard.html",
        ),
        description="OT is the total number of patients. Look-back 36 (TSLib) or 104 (DLinear/PatchTST).",
        split=custom_split(966),
        horizons=(24, 36, 48, 60),
    ),
    "m4_hourly": DatasetInfo(
        name="m4_hourly",
        title="M4 competition, Hourly subset (414 series)",
        source="file",
        files=(
            DataFile(
                "m4/Hourly-train.csv",
                "ea59b7783573c49077a835ab6465c7d66f1474783360f310988a9a737fbca62f",
                2347115,
                "8c30294d79ac2b2f4c71b2769b74057d86143fbf",
                (Mirror(_raw(_M4_REPO, _M4_COMMIT, "Dataset/Train/Hourly-train.csv")),),
            ),
            DataFile(
                "m4/Hourly-test.csv",
                "71a57fccb15e534d973626ada4fb87febf789e9317715b7cc6dd3b5f90db6f42",
                132820,
                "34fa4fbedbba8263e12d52f321a01235c23404d3",
                (Mirror(_raw(_M4_REPO, _M4_COMMIT, "Dataset/Test/Hourly-test.csv")),),
            ),
        ),
        freq="h",
        time_index="integer",
        target="y",
        columns=tuple(f"H{i}" for i in range(1, 415)),
        seasonality=24,
        n_series=414,
        n_rows=373372,
        n_timesteps=None,
        start=1,
        end=1008,
        license="no LICENSE file; public M4 competition data, research use with citation",
        citation=_M4_CITATION,
        source_urls=(f"https://github.com/{_M4_REPO}/tree/{_M4_COMMIT}/Dataset",),
        description=(
            "Integer ds = 1, 2, ... per series (M4-info.csv with the start dates is not available); the "
            "test values continue the train steps. Evaluate with sMAPE, MASE (m=24) and OWA."
        ),
        horizons=(48,),
        test_horizon=48,
        train_lengths=(700, 960),
    ),
    "airline": DatasetInfo(
        name="airline",
        title="Airline passengers (Box-Jenkins Series G)",
        source="file",
        files=(
            DataFile(
                "airline/Airline.csv",
                "28af0eb869db6d9fbd31d5af03993a0cbf36c0857c3eb046a068c094b60da851",
                1744,
                "4cc79a772765dd3e371e76ff4d299191345e2cb0",
                (Mirror(_raw(_SKTIME_REPO, _SKTIME_COMMIT, "sktime/datasets/data/Airline/Airline.csv")),),
            ),
        ),
        freq="MS",
        time_index="datetime",
        target="AirPassengers",
        columns=("AirPassengers",),
        seasonality=12,
        n_series=1,
        n_rows=144,
        n_timesteps=144,
        start="1949-01-01",
        end="1960-12-01",
        license="classic public-domain textbook data (file from sktime, BSD-3)",
        citation="Box & Jenkins, 'Time Series Analysis: Forecasting and Control' (1976), Series G",
        source_urls=(f"https://github.com/{_SKTIME_REPO}/tree/{_SKTIME_COMMIT}/sktime/datasets/data/Airline",),
        description="Monthly international airline passengers (thousands), 1949-1960.",
    ),
    "co2": DatasetInfo(
        name="co2",
        title="Mauna Loa weekly atmospheric CO2 (statsmodels)",
        source="statsmodels",
        files=(),
        freq="W-SAT",
        time_index="datetime",
        target="co2",
        columns=("co2",),
        seasonality=52,
        n_series=1,
        n_rows=2284,
        n_timesteps=2284,
        start="1958-03-29",
        end="2001-12-29",
        license=_STATSMODELS_LICENSE,
        citation=(
            "Keeling, C.D. and T.P. Whorf (2004), Atmospheric CO2 concentrations derived from flask air "
            "samples at sites in the SIO network, CDIAC"
        ),
        source_urls=("https://www.statsmodels.org/stable/datasets/generated/co2.html",),
        description="Weekly (week ending Saturday) CO2 ppm; 59 missing weeks are kept as NaN.",
        missing_values=True,
    ),
    "nile": DatasetInfo(
        name="nile",
        title="Annual flow of the Nile at Aswan, 1871-1970 (statsmodels)",
        source="statsmodels",
        files=(),
        freq="YS",
        time_index="datetime",
        target="volume",
        columns=("volume",),
        seasonality=1,
        n_series=1,
        n_rows=100,
        n_timesteps=100,
        start="1871-01-01",
        end="1970-01-01",
        license=_STATSMODELS_LICENSE,
        citation=(
            "Cobb, G. W. (1978), 'The Problem of the Nile: Conditional Solution to a Changepoint "
            "Problem', Biometrika 65(2), 243-251; Durbin & Koopman, 'Time Series Analysis by State "
            "Space Methods'"
        ),
        source_urls=("https://www.statsmodels.org/stable/datasets/generated/nile.html",),
        description="Annual volume (10^8 m^3); year stamps at January 1st ('YS').",
    ),
    "sunspots": DatasetInfo(
        name="sunspots",
        title="Yearly sunspot activity 1700-2008 (statsmodels)",
        source="statsmodels",
        files=(),
        freq="YS",
        time_index="datetime",
        target="SUNACTIVITY",
        columns=("SUNACTIVITY",),
        # the ~11-year solar cycle is not a fixed period; annual data have no seasonality
        seasonality=1,
        n_series=1,
        n_rows=309,
        n_timesteps=309,
        start="1700-01-01",
        end="2008-01-01",
        license=_STATSMODELS_LICENSE,
        citation="NOAA National Geophysical Data Center, yearly sunspot numbers",
        source_urls=("https://www.statsmodels.org/stable/datasets/generated/sunspots.html",),
        description="Yearly sunspot numbers; year stamps at January 1st ('YS').",
    ),
    "elnino": DatasetInfo(
        name="elnino",
        title="El Nino sea surface temperature, Nino 1+2, monthly 1950-2010 (statsmodels)",
        source="statsmodels",
        files=(),
        freq="MS",
        time_index="datetime",
        target="elnino",
        columns=("elnino",),
        seasonality=12,
        n_series=1,
        n_rows=732,
        n_timesteps=732,
        start="1950-01-01",
        end="2010-12-01",
        license=_STATSMODELS_LICENSE,
        citation="NOAA National Weather Service, ERSST.V3B, Nino 1+2 index",
        source_urls=("https://www.statsmodels.org/stable/datasets/generated/elnino.html",),
        description="statsmodels' 12 monthly columns per year melted to one monthly series ('MS').",
    ),
    "macrodata": DatasetInfo(
        name="macrodata",
        title="US macroeconomic data 1959Q1-2009Q3 (statsmodels)",
        source="statsmodels",
        files=(),
        freq="QS",
        time_index="datetime",
        target="realgdp",
        columns=_MACRO_COLUMNS,
        seasonality=4,
        n_series=12,
        n_rows=12 * 203,
        n_timesteps=203,
        start="1959-01-01",
        end="2009-07-01",
        license=_STATSMODELS_LICENSE,
        citation=(
            "FRED, Federal Reserve Bank of St. Louis; US Bureau of Labor Statistics (compiled by statsmodels)"
        ),
        source_urls=("https://www.statsmodels.org/stable/datasets/generated/macrodata.html",),
        description="12 quarterly series (year/quarter columns become 'QS' stamps), in file order.",
    ),
}


def list_datasets() -> list[str]:
    """Names accepted by `load_dataset` and `dataset_info`: the file datasets, then statsmodels' ones."""
    return list(_REGISTRY)


def dataset_info(name: str) -> DatasetInfo:
    """Metadata of dataset `name` (see `list_datasets()`)."""
    if not isinstance(name, str):
        raise TypeError(f"dataset name must be a str, got {type(name).__name__}")
    key = name.lower()
    if key not in _REGISTRY:
        raise ValueError(f"unknown dataset {name!r}; available: {', '.join(_REGISTRY)}")
    return _REGISTRY[key]
