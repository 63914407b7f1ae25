"""The data layer on the real long-horizon files (needs the shared benchmark data: see tests/conftest.py)."""

import numpy as np
import pandas as pd
import pytest

from ssmcast.data import TemporalSplit, WindowDataModule, infer_freq, validate


def read_wide(path):
    return pd.read_csv(path).rename(columns={"date": "ds"})


@pytest.mark.parametrize(
    "name, split, freq, n_test_rows",
    [
        ("ett/ETTh1.csv", TemporalSplit.by_rows(8640, 2880, 2880), "h", 2880),
        ("exchange_rate/exchange_rate.csv", TemporalSplit.by_rows(0.7, None, 0.2), "D", 1517),
    ],
)
def test_long_horizon_protocol_window_counts(data_dir, name, split, freq, n_test_rows):
    wide = read_wide(data_dir / name)
    original = wide.copy(deep=True)
    assert infer_freq(wide) == freq
    horizon = 96
    dm = WindowDataModule(wide, input_size=336, horizon=horizon, split=split, scaler="standard", channel_mode="mixed")
    dm.setup()
    pd.testing.assert_frame_equal(wide, original)
    # Informer/Autoformer protocol: n_test_rows - H + 1 test windows whatever the look-back
    assert len(dm.test_dataset) == n_test_rows - horizon + 1
    assert dm.n_channels == wide.shape[1] - 1
    assert list(dm.scaler.ids_) == dm.panel.series_ids  # channel order == scaler order
    # z-scores use train rows only: train part has mean 0 / std 1 per channel, the test part does not
    n_train = int(dm.ranges["train"][0, 1])
    train = dm.panel.values[:n_train].double()
    np.testing.assert_allclose(train.mean(0).numpy(), 0.0, atol=1e-5)
    np.testing.assert_allclose(train.std(0, unbiased=False).numpy(), 1.0, atol=1e-4)
    first = dm.test_dataset[0]
    assert int(first["start"]) == int(dm.ranges["test"][0, 0]) - 336


def test_m4_hourly_ragged_panel_validates(data_dir):
    raw = pd.read_csv(data_dir / "m4" / "Hourly-train.csv")
    # one row per series -> ragged wide frame (series in columns, trailing NaN padding), integer stamps
    wide = raw.set_index("V1").T.reset_index(drop=True)
    frame = validate(wide, min_length=700)
    lengths = frame.groupby("unique_id").size()
    assert len(lengths) == 414 and lengths.min() == 700 and lengths.max() == 960
    assert frame.attrs["freq"] == 1
