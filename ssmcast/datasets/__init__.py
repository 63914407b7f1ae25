"""Benchmark datasets: loaders, metadata and the long-horizon (Time-Series-Library) split protocol.

Example::

    from ssmcast.datasets import load_dataset, load_wide, ltsf_split, window_starts
    df = load_dataset("etth1")       # long frame: unique_id, ds, y (7 series)
    wide = load_wide("etth1")        # (17420, 7) matrix, columns in file order, OT last
    ltsf_split("etth1").train        # (0, 8640): fit the scaler on these rows only
    window_starts("etth1", "test", input_size=96, horizon=96).size  # 2785 test windows

Files are looked up in `data_dir`, `$SSMCAST_DATA_DIR`, the source checkout's `data/`, `$XDG_CACHE_HOME/ssmcast`
(`~/.cache/ssmcast`), then downloaded into that cache and checked against their sha256. `ssmcast data fetch NAME`
(or `make data` for all) puts them in the checkout's `data/`; `ssmcast data list` shows what is where.
"""

from .loaders import load_dataset, load_m4_hourly, load_wide
from .protocol import (
    LTSF_DATASETS,
    Borders,
    ltsf_borders,
    ltsf_split,
    n_test_windows,
    n_windows,
    window_starts,
)
from .registry import DataFile, DatasetInfo, Mirror, Split, custom_split, dataset_info, list_datasets
from .storage import ENV_VAR, ChecksumError, DatasetNotFoundError, cache_dir, fetch_file, sha256_file

__all__ = [
    "ENV_VAR",
    "LTSF_DATASETS",
    "Borders",
    "ChecksumError",
    "DataFile",
    "DatasetInfo",
    "DatasetNotFoundError",
    "Mirror",
    "Split",
    "cache_dir",
    "custom_split",
    "dataset_info",
    "fetch_file",
    "list_datasets",
    "load_dataset",
    "load_m4_hourly",
    "load_wide",
    "ltsf_borders",
    "ltsf_split",
    "n_test_windows",
    "n_windows",
    "sha256_file",
    "window_starts",
]
