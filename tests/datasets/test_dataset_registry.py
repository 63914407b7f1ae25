import dataclasses
import hashlib
import re

import pandas as pd
import pytest

from ssmcast.datasets import LTSF_DATASETS, DatasetInfo, dataset_info, list_datasets, sha256_file

FILE_DATASETS = [n for n in list_datasets() if dataset_info(n).source == "file"]


def readme_table(data_dir):
    """Rows `| file | bytes | sha256 | git blob |` of the shared data README."""
    rows = {}
    pattern = re.compile(r"^\| (\S+) \| (\d+) \| ([0-9a-f]{64}) \| ([0-9a-f]{40}) \|$")
    for line in (data_dir / "README.md").read_text().splitlines():
        match = pattern.match(line.strip())
        if match:
            rows[match[1]] = (int(match[2]), match[3], match[4])
    return rows


def test_list_datasets():
    assert list_datasets() == [
        "etth1", "etth2", "ettm1", "ettm2", "weather", "exchange_rate", "illness", "m4_hourly", "airline",
        "co2", "nile", "sunspots", "elnino", "macrodata",
    ]  # fmt: skip
    assert all(dataset_info(name).name == name for name in list_datasets())


def test_registry_matches_readme_table(data_dir):
    table = readme_table(data_dir)
    registered = {f.path: f for name in FILE_DATASETS for f in dataset_info(name).files}
    assert len(table) == 10 and set(table) == set(registered)
    for path, (size, sha256, blob) in table.items():
        assert (registered[path].size, registered[path].sha256, registered[path].git_blob) == (size, sha256, blob)


@pytest.mark.parametrize("name", FILE_DATASETS)
def test_shared_files_match_checksums(name, data_dir):
    for file in dataset_info(name).files:
        path = data_dir / file.path
        content = path.read_bytes()
        assert len(content) == file.size
        assert sha256_file(path) == hashlib.sha256(content).hexdigest() == file.sha256
        assert hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest() == file.git_blob


@pytest.mark.parametrize("name", FILE_DATASETS)
def test_mirrors_are_pinned_raw_github_urls(name):
    for file in dataset_info(name).files:
        assert file.mirrors
        for mirror in file.mirrors:
            assert re.fullmatch(r"https://raw\.githubusercontent\.com/[\w.-]+/[\w.-]+/[0-9a-f]{40}/\S+", mirror.url)
            assert mirror.url.endswith(".gz") == (mirror.compression == "gzip")
            assert mirror.url.endswith(file.path.rsplit("/", 1)[1] + (".gz" if mirror.compression else ""))


@pytest.mark.parametrize("name", list_datasets())
def test_info_is_consistent(name):
    info = dataset_info(name)
    assert isinstance(info, DatasetInfo)
    with pytest.raises(dataclasses.FrozenInstanceError):
        info.freq = "D"
    assert len(info.columns) == len(set(info.columns)) == info.n_series
    assert info.target in info.columns or info.name == "m4_hourly"
    assert info.seasonality >= 1 and info.license and info.citation and info.source_urls
    assert info.time_index in ("datetime", "integer") and info.source in ("file", "statsmodels")
    assert pd.tseries.frequencies.to_offset(info.freq).freqstr.startswith(info.freq)
    if info.n_timesteps is not None:
        assert info.n_rows == info.n_series * info.n_timesteps
    if info.source == "file":
        assert info.size == sum(f.size for f in info.files) > 0 and len(info.sha256) == len(info.files)
    if name in LTSF_DATASETS:
        assert info.split is not None and info.columns[-1] == info.target == "OT"
        assert info.horizons == ((24, 36, 48, 60) if name == "illness" else (96, 192, 336, 720))
    else:
        assert info.split is None


def test_documented_constants():
    expected = {
        "etth1": ("h", 24), "ettm1": ("15min", 96), "weather": ("10min", 144), "exchange_rate": ("D", 1),
        "illness": ("W-TUE", 52), "m4_hourly": ("h", 24), "airline": ("MS", 12), "co2": ("W-SAT", 52),
        "nile": ("YS", 1), "sunspots": ("YS", 1), "elnino": ("MS", 12), "macrodata": ("QS", 4),
    }  # fmt: skip
    for name, (freq, seasonality) in expected.items():
        assert (dataset_info(name).freq, dataset_info(name).seasonality) == (freq, seasonality), name
    m4 = dataset_info("m4_hourly")
    assert (m4.n_series, m4.test_horizon, m4.train_lengths, m4.time_index) == (414, 48, (700, 960), "integer")
    assert dataset_info("airline").columns == ("AirPassengers",)
    assert dataset_info("weather").regular is False
    assert all(dataset_info(n).regular for n in list_datasets() if n != "weather")
