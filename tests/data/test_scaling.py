import copy
import io

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ssmcast.data import SeriesScaler, TemporalSplit, select_rows, validate


@st.composite
def long_frames(draw):
    ids = draw(st.lists(st.sampled_from(["a", "b", "c", "d"]), min_size=1, max_size=4, unique=True))
    rows = []
    for uid in ids:
        n = draw(st.integers(1, 8))
        values = draw(st.lists(st.floats(-1e4, 1e4, allow_nan=False), min_size=n, max_size=n))
        rows += [(uid, t, v) for t, v in enumerate(values)]
    return pd.DataFrame(rows, columns=["unique_id", "ds", "y"])


def reference_stats(frame, method):
    """Slow reference: one series at a time with plain numpy."""
    out = {}
    for uid in sorted(set(frame["unique_id"])):
        y = frame.loc[frame.unique_id == uid, "y"].to_numpy(dtype=float)
        if method == "standard":
            loc, scale = y.mean(), y.std()
        else:
            loc, scale = np.median(y), np.percentile(y, 75) - np.percentile(y, 25)
        out[uid] = (loc, 1.0 if scale <= 1e-12 * max(1.0, abs(loc)) else scale)
    return out


@pytest.mark.parametrize("method", ["standard", "robust"])
@settings(max_examples=20)  # pandas-bound examples: keep the test fast
@given(frame=long_frames())
def test_stats_match_reference_and_inverse_is_exact(method, frame):
    original = frame.copy(deep=True)
    scaler = SeriesScaler(method).fit(frame)
    expected = reference_stats(frame, method)
    assert list(scaler.ids_) == sorted(expected)
    for s, uid in enumerate(scaler.ids_):
        np.testing.assert_allclose([scaler.loc_[s, 0], scaler.scale_[s, 0]], expected[uid], rtol=1e-9, atol=1e-9)
    scaled = scaler.transform(frame)
    pd.testing.assert_frame_equal(frame, original)
    back = scaler.inverse_transform(scaled)
    np.testing.assert_allclose(back["y"], frame["y"], rtol=1e-12, atol=1e-9)
    pd.testing.assert_frame_equal(back[["unique_id", "ds"]], frame[["unique_id", "ds"]])


def test_zero_variance_series_is_only_centred():
    frame = pd.DataFrame(
        {
            "unique_id": ["flat"] * 4 + ["live"] * 4,
            "ds": list(range(4)) * 2,
            "y": [7.0, 7.0, 7.0, 7.0, 1.0, 2.0, 3.0, 4.0],
        }
    )
    for method in ("standard", "robust"):
        scaler = SeriesScaler(method).fit(frame)
        assert scaler.scale_[0, 0] == 1.0 and scaler.loc_[0, 0] == 7.0
        scaled = scaler.transform(frame)
        assert (scaled.loc[scaled.unique_id == "flat", "y"] == 0.0).all()
        np.testing.assert_array_equal(scaler.inverse_transform(scaled)["y"], frame["y"])


def test_fitted_on_train_rows_only():
    n = 40
    frame = validate(
        pd.DataFrame(
            {
                "unique_id": np.repeat(["a", "b"], n),
                "ds": np.tile(np.arange(n), 2),
                "y": np.random.default_rng(0).normal(size=2 * n),
            }
        )
    )
    ranges = TemporalSplit.by_rows(0.6, 0.2, 0.2).ranges(frame)
    scaler = SeriesScaler("standard").fit(select_rows(frame, ranges["train"]))
    changed = frame.copy()
    in_train = np.zeros(len(frame), dtype=bool)
    for s, start in enumerate([0, n]):
        in_train[start + ranges["train"][s, 0] : start + ranges["train"][s, 1]] = True
    changed.loc[~in_train, "y"] = 1e6  # val/test values change wildly
    again = SeriesScaler("standard").fit(select_rows(changed, ranges["train"]))
    np.testing.assert_array_equal(again.loc_, scaler.loc_)
    np.testing.assert_array_equal(again.scale_, scaler.scale_)
    np.testing.assert_allclose(scaler.loc_[:, 0], [frame.y[:24].mean(), frame.y[n : n + 24].mean()])


def test_arrays_and_tensors_with_series_ids():
    frame = pd.DataFrame(
        {"unique_id": ["a"] * 3 + ["b"] * 3, "ds": [0, 1, 2] * 2, "y": [1.0, 2.0, 3.0, 10.0, 30.0, 50.0]}
    )
    scaler = SeriesScaler("standard").fit(frame)
    loc, scale = scaler.loc_[:, 0], scaler.scale_[:, 0]
    values = np.arange(12.0).reshape(2, 3, 2)  # (n, L, C) windows of series b, a
    out = scaler.transform_array(values, ["b", "a"])
    np.testing.assert_allclose(out[0], (values[0] - loc[1]) / scale[1])
    np.testing.assert_allclose(out[1], (values[1] - loc[0]) / scale[0])
    np.testing.assert_allclose(scaler.inverse_transform_array(out, np.array([1, 0])), values)
    tensor = torch.tensor(values, dtype=torch.float32)
    t_out = scaler.transform_array(tensor, torch.tensor([1, 0]))
    assert isinstance(t_out, torch.Tensor) and t_out.dtype == torch.float32
    torch.testing.assert_close(scaler.inverse_transform_array(t_out, ["b", "a"]), tensor)
    mixed = np.arange(10.0).reshape(5, 2)  # (L, S): the last axis is the fitted series
    np.testing.assert_allclose(scaler.transform_array(mixed), (mixed - loc) / scale)
    with pytest.raises(ValueError, match="series not seen when the scaler was fitted: 'zz'"):
        scaler.transform_array(values, ["b", "zz"])
    with pytest.raises(ValueError, match=r"out of range \[0, 2\): 5"):
        scaler.transform_array(values, [5, 0])
    with pytest.raises(ValueError, match="last axis must enumerate the 2 fitted series"):
        scaler.transform_array(np.zeros((4, 3)))
    with pytest.raises(ValueError, match="need"):
        scaler.transform_array(values, ["a"])


def test_forecast_columns_and_state_dict_round_trip():
    frame = pd.DataFrame(
        {"unique_id": ["a"] * 4 + ["b"] * 4, "ds": list(range(4)) * 2, "y": [1.0, 2.0, 4.0, 8.0, -1.0, 0.0, 1.0, 5.0]}
    )
    scaler = SeriesScaler("robust").fit(frame)
    forecast = scaler.transform(frame).rename(columns={"y": "y_pred"}).assign(y_pred_q0_9=lambda f: f.y_pred + 1)
    original = copy.deepcopy(forecast)
    back = scaler.inverse_transform(forecast, columns=["y_pred", "y_pred_q0_9"])
    pd.testing.assert_frame_equal(forecast, original)
    np.testing.assert_allclose(back["y_pred"], frame["y"])
    np.testing.assert_allclose(back["y_pred_q0_9"], frame["y"] + scaler.scale_[[0] * 4 + [1] * 4, 0])
    buffer = io.BytesIO()
    torch.save(scaler.state_dict(), buffer)
    buffer.seek(0)
    restored = SeriesScaler.from_state_dict(torch.load(buffer, weights_only=True))
    np.testing.assert_array_equal(restored.loc_, scaler.loc_)
    np.testing.assert_array_equal(restored.scale_, scaler.scale_)
    pd.testing.assert_frame_equal(restored.transform(frame), scaler.transform(frame))


def test_scaler_errors():
    frame = pd.DataFrame({"unique_id": ["a", "a", "b"], "ds": [0, 1, 0], "y": [1.0, 2.0, np.nan]})
    with pytest.raises(ValueError, match="method must be one of"):
        SeriesScaler("minmax")
    with pytest.raises(ValueError, match="not fitted yet"):
        SeriesScaler().transform(frame)
    with pytest.raises(ValueError, match="series with no finite training values.*'b'"):
        SeriesScaler().fit(frame)
    with pytest.raises(ValueError, match=r"scaler columns \['price'\] not in the frame"):
        SeriesScaler(columns=["y", "price"]).fit(frame)
    fitted = SeriesScaler().fit(frame.iloc[:2])
    with pytest.raises(ValueError, match="series not seen when the scaler was fitted: 'b'"):
        fitted.transform(frame)
    with pytest.raises(ValueError, match="cannot fit a scaler on an empty frame"):
        SeriesScaler().fit(frame.iloc[:0])
