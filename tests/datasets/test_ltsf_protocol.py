import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ssmcast.datasets import (
    LTSF_DATASETS,
    Split,
    custom_split,
    dataset_info,
    ltsf_borders,
    ltsf_split,
    n_test_windows,
    n_windows,
    window_starts,
)


class TSLibReference:
    """A literal transcription of Time-Series-Library's Dataset_ETT_hour/_minute/_Custom borders,
    `__len__` and `__getitem__` index arithmetic (label_len=0), over row numbers instead of values."""

    def __init__(self, kind: str, n_rows: int, flag: str, seq_len: int, pred_len: int):
        type_map = {"train": 0, "val": 1, "test": 2}
        set_type = type_map[flag]
        if kind == "ett_hour":
            border1s = [0, 12 * 30 * 24 - seq_len, 12 * 30 * 24 + 4 * 30 * 24 - seq_len]
            border2s = [12 * 30 * 24, 12 * 30 * 24 + 4 * 30 * 24, 12 * 30 * 24 + 8 * 30 * 24]
        elif kind == "ett_minute":
            border1s = [0, 12 * 30 * 24 * 4 - seq_len, 12 * 30 * 24 * 4 + 4 * 30 * 24 * 4 - seq_len]
            border2s = [
                12 * 30 * 24 * 4,
                12 * 30 * 24 * 4 + 4 * 30 * 24 * 4,
                12 * 30 * 24 * 4 + 8 * 30 * 24 * 4,
            ]
        else:
            num_train = int(n_rows * 0.7)
            num_test = int(n_rows * 0.2)
            num_vali = n_rows - num_train - num_test
            border1s = [0, num_train - seq_len, n_rows - num_test - seq_len]
            border2s = [num_train, num_train + num_vali, n_rows]
        self.border1s, self.border2s = border1s, border2s
        self.data_x = np.arange(n_rows)[border1s[set_type] : border2s[set_type]]
        self.seq_len, self.pred_len = seq_len, pred_len

    def __len__(self):
        return len(self.data_x) - self.seq_len - self.pred_len + 1

    def __getitem__(self, index):
        s_begin = index
        s_end = s_begin + self.seq_len
        r_begin = s_end
        r_end = r_begin + self.pred_len
        return self.data_x[s_begin:s_end], self.data_x[r_begin:r_end]


def _kind(name):
    return {"etth1": "ett_hour", "etth2": "ett_hour", "ettm1": "ett_minute", "ettm2": "ett_minute"}.get(
        name, "custom"
    )


@pytest.mark.parametrize(
    "name, sizes",
    [
        ("etth1", (8640, 2880, 2880)),
        ("etth2", (8640, 2880, 2880)),
        ("ettm1", (34560, 11520, 11520)),
        ("ettm2", (34560, 11520, 11520)),
        ("weather", (36887, 5270, 10539)),
        ("exchange_rate", (5311, 760, 1517)),
        ("illness", (676, 97, 193)),
    ],
)
def test_split_sizes_match_protocol(name, sizes):
    split = ltsf_split(name)
    assert (split.n_train, split.n_val, split.n_test) == sizes
    assert split.train[0] == 0 and split.train[1] == split.val[0] and split.val[1] == split.test[0]
    assert split == dataset_info(name).split


def test_ett_split_leaves_tail_unused():
    assert ltsf_split("etth1") == Split(train=(0, 8640), val=(8640, 11520), test=(11520, 14400))
    assert ltsf_split("ettm2") == Split(train=(0, 34560), val=(34560, 46080), test=(46080, 57600))
    assert ltsf_split("etth1").test[1] < dataset_info("etth1").n_timesteps


@pytest.mark.parametrize("name", ["weather", "exchange_rate", "illness"])
def test_custom_split_covers_all_rows(name):
    split = ltsf_split(name)
    assert split.test[1] == dataset_info(name).n_timesteps
    assert split == custom_split(dataset_info(name).n_timesteps)


@pytest.mark.parametrize("input_size", [1, 36, 96, 336, 720, 5000])
def test_etth1_has_2785_test_windows_at_h96_for_any_input_size(input_size):
    assert n_test_windows("etth1", 96) == 2785
    assert n_windows("etth1", "test", input_size, 96) == 2785
    assert len(TSLibReference("ett_hour", 17420, "test", input_size, 96)) == 2785


@pytest.mark.parametrize(
    "name, offset",
    [("etth1", 2881), ("ettm1", 11521), ("weather", 10540), ("exchange_rate", 1518), ("illness", 194)],
)
def test_test_window_formula(name, offset):
    for horizon in (24, 60, 96):
        assert n_test_windows(name, horizon) == offset - horizon


@pytest.mark.parametrize("name", LTSF_DATASETS)
@pytest.mark.parametrize("part", ["train", "val", "test"])
def test_windows_match_tslib_reference(name, part):
    n_rows = dataset_info(name).n_timesteps
    input_size, horizon = (36, 24) if name == "illness" else (96, 192)
    reference = TSLibReference(_kind(name), n_rows, part, input_size, horizon)
    borders = ltsf_borders(name, input_size)
    assert list(borders.border1s) == reference.border1s
    assert list(borders.border2s) == reference.border2s
    starts = window_starts(name, part, input_size, horizon)
    assert len(starts) == len(reference) == n_windows(name, part, input_size, horizon)
    for k in (0, 1, len(reference) // 2, len(reference) - 1):
        x_rows, y_rows = reference[k]
        np.testing.assert_array_equal(x_rows, starts[k] + np.arange(input_size))
        np.testing.assert_array_equal(y_rows, starts[k] + input_size + np.arange(horizon))
    expected = np.array([reference[k][0][0] for k in range(len(reference))])
    np.testing.assert_array_equal(starts, expected)


@pytest.mark.parametrize("name", LTSF_DATASETS)
def test_test_targets_cover_exactly_the_test_rows(name):
    split = ltsf_split(name)
    input_size, horizon = 24, 24
    starts = window_starts(name, "test", input_size, horizon)
    assert starts[0] + input_size == split.test[0]
    assert starts[-1] + input_size + horizon == split.test[1]
    assert starts.dtype == np.int64


@given(
    n_rows=st.integers(30, 5000),
    input_size=st.integers(1, 20),
    horizon=st.integers(1, 5),
    part=st.sampled_from(["train", "val", "test"]),
)
def test_custom_split_windows_match_reference(n_rows, input_size, horizon, part):
    split = custom_split(n_rows)
    reference = TSLibReference("custom", n_rows, part, input_size, horizon)
    assert split.n_train + split.n_val + split.n_test == n_rows
    if reference.__len__() < 1 or input_size > split.n_train:
        with pytest.raises(ValueError):
            n_windows(split, part, input_size, horizon)
        return
    starts = window_starts(split, part, input_size, horizon)
    expected = [reference[k][0][0] for k in range(len(reference))]
    np.testing.assert_array_equal(starts, expected)
    if part == "test":
        assert len(starts) == n_test_windows(split, horizon) == split.n_test - horizon + 1


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="no long-horizon split"):
        ltsf_split("airline")
    with pytest.raises(ValueError, match="unknown dataset"):
        ltsf_split("electricity")
    with pytest.raises(ValueError, match="input_size=9000"):
        ltsf_borders("etth1", 9000)
    with pytest.raises(ValueError, match="input_size must be >= 1"):
        ltsf_borders("etth1", 0)
    with pytest.raises(TypeError, match="input_size must be an int"):
        ltsf_borders("etth1", 96.0)
    with pytest.raises(TypeError, match="input_size must be an int"):
        ltsf_borders("etth1", True)
    with pytest.raises(ValueError, match="horizon=194"):
        n_test_windows("illness", 194)
    with pytest.raises(ValueError, match="horizon=2900"):
        n_windows("etth1", "val", 96, 2900)
    with pytest.raises(ValueError, match="part must be one of"):
        n_windows("etth1", "validation", 96, 96)
    with pytest.raises(ValueError, match="too short"):
        custom_split(3)
    with pytest.raises(TypeError, match="n_rows must be an int"):
        custom_split(100.0)
    assert n_test_windows("illness", 193) == 1
