"""``save`` stores evenly spaced time stamps as start, step and length (issue #36: every stamp of every series
made meta.json 87 MB at 10k series); irregular calendars keep every value; format-1 folders still load."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from ssmcast import S4DForecaster, load
from ssmcast.backbones.s4 import S4DConfig
from ssmcast.forecasters.persistence import _stamps_from_json, _stamps_to_json


@pytest.mark.parametrize("ds", [
    pd.date_range("2020-01-01", periods=50, freq="h").to_numpy(),
    pd.date_range("2020-01-01", periods=50, freq="MS").to_numpy(),  # months: uneven in seconds
    pd.date_range("2020-01-06", periods=50, freq="B").to_numpy(),  # business days skip weekends
    np.arange(3, 103, 2, dtype=np.int64),
    pd.date_range("2020-01-01", periods=1, freq="D").to_numpy(),
    pd.date_range("2020-01-01", periods=5, freq="D").to_numpy().astype("datetime64[s]"),
])  # fmt: skip
def test_stamps_round_trip_exactly(ds):
    data = json.loads(json.dumps(_stamps_to_json(ds)))
    back = _stamps_from_json(data)
    assert back.dtype == ds.dtype and np.array_equal(back, ds)
    regular = len(ds) > 1 and len(set(np.diff(ds.astype(np.int64)))) == 1
    assert ("values" not in data) == regular


def test_saved_model_meta_is_small_and_old_folders_still_load(tmp_path):
    ds = pd.date_range("2020-01-01", periods=60, freq="h")
    df = pd.DataFrame({"unique_id": np.repeat(["a", "b", "c"], 60), "ds": np.tile(ds, 3),
                       "y": np.sin(np.arange(180) / 5.0) + 3})  # fmt: skip
    est = S4DForecaster(input_size=12, horizon=4, max_epochs=1, verbose=False, accelerator="cpu",
                        precision="32-true", backbone=S4DConfig(d_model=8, n_layers=1)).fit(df)  # fmt: skip
    est.save(tmp_path / "m")
    meta = json.loads((tmp_path / "m" / "meta.json").read_text())
    assert meta["format"] == 2 and all("values" not in u["ds"] for u in meta["units"])
    want = est.predict()
    pd.testing.assert_frame_equal(load(tmp_path / "m").predict(), want)
    for unit in meta["units"]:  # the format-1 layout: every stamp
        unit["ds"] = {"kind": "datetime", "unit": unit["ds"]["unit"],
                      "values": _stamps_from_json(unit["ds"]).astype(np.int64).tolist()}  # fmt: skip
    meta["format"] = 1
    (tmp_path / "m" / "meta.json").write_text(json.dumps(meta))
    pd.testing.assert_frame_equal(load(tmp_path / "m").predict(), want)
    meta["format"] = 99
    (tmp_path / "m" / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="unsupported saved-model format 99"):
        load(tmp_path / "m")
