import copy

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch.utils.data import DataLoader

from ssmcast.data import (
    BatchedWindows,
    SeriesPanel,
    TemporalSplit,
    WindowDataset,
    collate_windows,
    to_wide,
    validate,
    window_counts,
)


def naive_windows(lengths, L, H, *, step=1, min_start=0, target_range=None, reach_back=True):
    """Slow reference: walk every series row by row and keep the windows that satisfy the rules."""
    out = []
    for b, n in enumerate(lengths):
        lo, hi = (0, n) if target_range is None else target_range[b]
        first = None
        for t in range(n):
            if t < min_start or (not reach_back and t < lo):
                continue
            if t + L < lo or t + L + H > min(hi, n):
                continue
            if first is None:
                first = t
            if (t - first) % step == 0:
                out.append((b, t))
    return out


@st.composite
def window_setups(draw):
    lengths = draw(st.lists(st.integers(0, 30), min_size=1, max_size=5))
    L, H = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    step, min_start = draw(st.integers(1, 4)), draw(st.integers(0, 5))
    use_range = draw(st.booleans())
    target_range = None
    if use_range:
        target_range = []
        for n in lengths:
            lo = draw(st.integers(0, n))
            target_range.append((lo, draw(st.integers(lo, n))))
    return lengths, L, H, step, min_start, target_range, draw(st.booleans())


def panel_from_lengths(lengths, channels=1, seed=0):
    rng = np.random.default_rng(seed)
    total = int(sum(lengths))
    values = rng.normal(size=(total, channels)).astype(np.float32)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    return SeriesPanel(values, offsets, past=rng.normal(size=(total, 2)), future=rng.normal(size=(total, 3)))


@given(window_setups())
def test_window_arithmetic_matches_naive_enumeration(setup):
    lengths, L, H, step, min_start, target_range, reach_back = setup
    panel = panel_from_lengths(lengths)
    dataset = WindowDataset(
        panel, L, H, step=step, min_start=min_start, target_range=target_range, reach_back=reach_back
    )
    expected = naive_windows(
        lengths, L, H, step=step, min_start=min_start, target_range=target_range, reach_back=reach_back
    )
    assert len(dataset) == len(expected)
    if target_range is None and min_start == 0:
        assert len(dataset) == sum(max(0, (n - L - H) // step + 1) for n in lengths)
    values, past, future = panel.values.numpy(), panel.past.numpy(), panel.future.numpy()
    offsets = panel.offsets
    for i, (b, t) in enumerate(expected):
        item = dataset[i]
        row = offsets[b] + t
        assert int(item["series"]) == b and int(item["start"]) == t
        # the window lies inside one series
        assert offsets[b] <= row and row + L + H <= offsets[b + 1]
        np.testing.assert_array_equal(item["context"].numpy(), values[row : row + L])
        np.testing.assert_array_equal(item["target"].numpy(), values[row + L : row + L + H])
        np.testing.assert_array_equal(item["past_covariates"].numpy(), past[row : row + L])
        np.testing.assert_array_equal(item["future_covariates"].numpy(), future[row : row + L + H])
        if target_range is not None:  # no target crosses the part's boundary
            lo, hi = target_range[b]
            assert lo <= t + L and t + L + H <= hi
    if len(dataset):
        batch = dataset.batch(np.arange(len(dataset)))
        stacked = {key: torch.stack([dataset[i][key] for i in range(len(dataset))]) for key in batch}
        for key in batch:
            torch.testing.assert_close(batch[key], stacked[key], rtol=0, atol=0)


def test_negative_and_out_of_range_indices():
    dataset = WindowDataset(panel_from_lengths([10, 12]), 3, 2)
    n = len(dataset)
    torch.testing.assert_close(dataset[-1]["context"], dataset[n - 1]["context"])
    with pytest.raises(IndexError):
        dataset[n]
    with pytest.raises(IndexError):
        dataset.batch([0, -n - 1])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"input_size": 0, "horizon": 1}, "input_size must be an integer >= 1"),
        ({"input_size": 2, "horizon": 0}, "horizon must be an integer >= 1"),
        ({"input_size": 2, "horizon": 1, "step": 0}, "step must be an integer >= 1"),
        ({"input_size": 2, "horizon": 1, "min_start": -1}, "min_start must be an integer >= 0"),
        ({"input_size": 2.5, "horizon": 1}, "input_size must be an integer"),
        ({"input_size": 2, "horizon": 1, "target_range": [(0, 5)]}, r"target_range must have shape \(2, 2\)"),
    ],
)
def test_window_dataset_rejects_bad_arguments(kwargs, message):
    panel = panel_from_lengths([10, 12])
    with pytest.raises(ValueError, match=message):
        WindowDataset(panel, **kwargs)


def test_panel_rejects_bad_arrays():
    with pytest.raises(ValueError, match="offsets must run from 0 to T=5"):
        SeriesPanel(np.zeros((5, 1)), [0, 4])
    with pytest.raises(ValueError, match="non-decreasing"):
        SeriesPanel(np.zeros((5, 1)), [0, 4, 3, 5])
    with pytest.raises(ValueError, match="not finite in float32"):
        SeriesPanel(np.array([[1.0], [1e39]]), [0, 2])
    with pytest.raises(ValueError, match=r"past covariates must have shape \(T=5, n\)"):
        SeriesPanel(np.zeros((5, 1)), [0, 5], past=np.zeros((4, 1)))
    with pytest.raises(ValueError, match="channel_mode must be one of"):
        SeriesPanel(np.zeros((5, 1)), [0, 5], channel_mode="stacked")


def test_panel_from_frame_independent_with_covariates_and_static(make_panel):
    frame = make_panel({"b": 9, "a": 7}, covariates=("price", "holiday"))
    original = copy.deepcopy(frame)
    static = pd.DataFrame({"size": [2.0, 1.0], "region": [0, 1]}, index=["b", "a"])
    panel = SeriesPanel.from_frame(frame, past_covariates=["price"], future_covariates=["holiday"], static=static)
    pd.testing.assert_frame_equal(frame, original)
    assert panel.series_ids == ["a", "b"] and panel.n_channels == 1
    np.testing.assert_array_equal(panel.offsets, [0, 7, 16])
    dataset = WindowDataset(panel, 3, 2)
    long = validate(frame)
    for i in range(len(dataset)):
        item = dataset[i]
        uid = panel.series_ids[int(item["series"])]
        rows = long[long.unique_id == uid].iloc[int(item["start"]) :]
        np.testing.assert_allclose(item["context"][:, 0], rows["y"].iloc[:3], rtol=1e-6)
        np.testing.assert_allclose(item["target"][:, 0], rows["y"].iloc[3:5], rtol=1e-6)
        np.testing.assert_allclose(item["past_covariates"][:, 0], rows["price"].iloc[:3], rtol=1e-6)
        np.testing.assert_allclose(item["future_covariates"][:, 0], rows["holiday"].iloc[:5], rtol=1e-6)
        np.testing.assert_array_equal(item["static"], static.loc[uid].to_numpy(dtype=np.float32))
    loader = DataLoader(dataset, batch_size=4, shuffle=True, generator=torch.Generator().manual_seed(0))
    batch = next(iter(loader))
    assert batch["context"].shape == (4, 3, 1) and batch["future_covariates"].shape == (4, 5, 1)
    assert batch["static"].shape == (4, 2) and batch["series"].dtype == torch.int64
    windows = dataset.windows()
    assert len(windows) == len(dataset) == (7 - 5 + 1) + (9 - 5 + 1)
    assert windows["unique_id"].tolist()[:3] == ["a"] * 3
    assert windows["cutoff"].iloc[0] == long["ds"].iloc[2]


def test_static_and_covariate_errors(make_panel):
    frame = make_panel({"a": 6, "b": 6}, covariates=("price",))
    with pytest.raises(ValueError, match="static features missing for series 'b'"):
        SeriesPanel.from_frame(frame, static=pd.DataFrame({"size": [1.0]}, index=["a"]))
    with pytest.raises(ValueError, match=r"static features must be numeric.*\['kind'\]"):
        SeriesPanel.from_frame(frame, static=pd.DataFrame({"kind": ["x", "y"]}, index=["a", "b"]))
    with pytest.raises(ValueError, match="static features are NaN/inf for series 'b'"):
        SeriesPanel.from_frame(frame, static=pd.DataFrame({"unique_id": ["a", "b"], "size": [1.0, np.nan]}))
    with pytest.raises(ValueError, match=r"\['price'\] are listed as both past and future"):
        SeriesPanel.from_frame(frame, past_covariates=["price"], future_covariates=["price"])
    with pytest.raises(ValueError, match=r"covariate column\(s\) \['promo'\] not found"):
        SeriesPanel.from_frame(frame, past_covariates=["promo"])


def test_mixed_mode_channels_are_the_series_of_the_panel(make_panel):
    frame = make_panel({"z": 20, "a": 20, "m": 20}, covariates=("temp",))
    panel = SeriesPanel.from_frame(
        frame,
        channel_mode="mixed",
        past_covariates=["temp"],
        static=pd.DataFrame({"k": [1.0, 2.0, 3.0]}, index=["a", "m", "z"]),
    )
    assert panel.n_blocks == 1 and panel.n_channels == 3 and panel.series_ids == ["a", "m", "z"]
    wide = to_wide(frame)
    temp = to_wide(frame, values="temp")
    dataset = WindowDataset(panel, 4, 3, step=2)
    assert len(dataset) == (20 - 7) // 2 + 1
    for i in range(len(dataset)):
        item = dataset[i]
        t = int(item["start"])
        np.testing.assert_allclose(item["context"], wide.iloc[t : t + 4].to_numpy(), rtol=1e-6)
        np.testing.assert_allclose(item["target"], wide.iloc[t + 4 : t + 7].to_numpy(), rtol=1e-6)
        np.testing.assert_allclose(item["past_covariates"], temp.iloc[t : t + 4].to_numpy(), rtol=1e-6)
        assert item["static"].shape == (3, 1)
    with pytest.raises(ValueError, match=r"same ds range as 'a' \(20 rows.*differing: 'b' \(19 rows"):
        SeriesPanel.from_frame(make_panel({"a": 20, "b": 19}), channel_mode="mixed")


def test_dataset_memory_is_linear_in_total_length():
    lengths = [3000, 5000, 2000]
    L, H = 200, 100
    panel = panel_from_lengths(lengths, channels=2)
    dataset = WindowDataset(panel, L, H)
    T = sum(lengths)
    n_windows = sum(n - L - H + 1 for n in lengths)
    assert len(dataset) == n_windows
    row_bytes = 4 * (2 + 2 + 3)  # values (2 channels) + past (2) + future (3), float32
    assert panel.nbytes == T * row_bytes + 8 * (len(lengths) + 1)
    # the dataset itself holds O(n_series) numbers: nothing scales with windows x window length
    own = [v for v in vars(dataset).values() if isinstance(v, (np.ndarray, torch.Tensor))]
    assert sum(a.nbytes for a in own) <= 8 * 3 * (len(lengths) + 1)
    materialised = n_windows * (L + H) * row_bytes  # what stacking every window would cost
    assert panel.nbytes + sum(a.nbytes for a in own) < materialised / 100
    # items are views into the one panel array, not copies
    assert dataset[5]["context"].untyped_storage().data_ptr() == panel.values.untyped_storage().data_ptr()


def test_window_counts_follow_the_long_horizon_protocol():
    # ETTh-like: 17420 rows, 8640/2880/2880 split; test windows = 2881 - H whatever the look-back
    ranges = TemporalSplit.by_rows(8640, 2880, 2880)._counts(17420)
    assert ranges == (8640, 2880, 2880)
    for L in (96, 336, 720):
        for H in (96, 192, 336, 720):
            first, counts = window_counts([17420], L, H, target_range=[(11520, 14400)])
            assert counts[0] == 2881 - H
            assert first[0] == 11520  # the first test context reaches back exactly L rows
            first, counts = window_counts([17420], L, H, target_range=[(11520, 14400)], reach_back=False)
            assert first[0] == 11520 + L and counts[0] == 2881 - H - L


def test_batched_loader_yields_the_same_batches_as_the_per_item_loader():
    dataset = WindowDataset(panel_from_lengths([40, 0, 25, 60], channels=2), 7, 3, step=2)
    dataset.panel.static = torch.arange(8.0).reshape(4, 2)
    plain = DataLoader(dataset, batch_size=6, shuffle=True, generator=torch.Generator().manual_seed(3))
    fast = DataLoader(
        BatchedWindows(dataset),
        batch_size=6,
        shuffle=True,
        generator=torch.Generator().manual_seed(3),
        collate_fn=collate_windows,
    )
    n_batches = 0
    for slow_batch, fast_batch in zip(plain, fast, strict=True):
        assert slow_batch.keys() == fast_batch.keys()
        for key in slow_batch:
            torch.testing.assert_close(fast_batch[key], slow_batch[key], rtol=0, atol=0)
        n_batches += 1
    assert n_batches == -(-len(dataset) // 6)
    assert collate_windows([dataset[0], dataset[1]])["context"].shape == (2, 7, 2)
