"""The per-series baselines run their series in batches (one task, one BLAS limit per batch; issue #36): the
results are those of one task a series, in the panel's order, with each series' own fallback and warnings."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ssmcast.baselines import ARIMAForecaster, FallbackWarning, SeasonalNaiveForecaster
from ssmcast.baselines._base import _batches


def panel(n: int, length: int = 60) -> pd.DataFrame:
    ds = pd.date_range("2021-01-01", periods=length, freq="D")
    rng = np.random.default_rng(0)
    return pd.DataFrame({"unique_id": np.repeat([f"s{i:03d}" for i in range(n)], length), "ds": np.tile(ds, n),
                         "y": rng.normal(size=n * length).cumsum() + 50})  # fmt: skip


def test_batches_cover_every_item_once_in_order():
    items = list(range(1001))
    for n_jobs in (1, 2, -1, None):
        batches = _batches(items, n_jobs)
        assert [x for b in batches for x in b] == items and max(map(len, batches)) <= 256
    assert _batches([], 1) == []


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_batched_fits_and_forecasts_equal_one_series_at_a_time(n_jobs):
    df = panel(40)
    est = SeasonalNaiveForecaster(season_length=7, horizon=5, n_jobs=n_jobs).fit(df)
    forecast = est.predict()
    for uid in ["s000", "s017", "s039"]:
        alone = SeasonalNaiveForecaster(season_length=7, horizon=5).fit(df[df.unique_id == uid]).predict()
        np.testing.assert_allclose(forecast[forecast.unique_id == uid].y_pred.to_numpy(), alone.y_pred.to_numpy())
    assert list(pd.unique(forecast.unique_id)) == [f"s{i:03d}" for i in range(40)]


def test_a_failing_series_in_a_batch_falls_back_alone():
    df = panel(30)
    df.loc[df.unique_id == "s007", "y"] = 1e308  # overflows ARIMA's likelihood: this series alone falls back
    with pytest.warns(FallbackWarning, match="s007"):
        est = ARIMAForecaster(order=(1, 0, 0)).fit(df)
    assert set(est.fallbacks_) == {"s007"}
    assert est.predict(h=3).y_pred.notna().all()
