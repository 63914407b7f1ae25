"""The naive family over a whole panel at once (issue #36) against the per-series functions (the reference),
and the forecasters' vectorised path against their per-series path."""

import warnings

import numpy as np
import pandas as pd
import pytest

from ssmcast.baselines import FallbackWarning, Naive2Forecaster, NaiveForecaster, SeasonalNaiveForecaster
from ssmcast.baselines.simple import (
    PanelError,
    naive2_forecast,
    naive_forecast,
    panel_naive,
    panel_naive2,
    panel_seasonal_naive,
    seasonal_naive_forecast,
)

LEVELS = [0.05, 0.5, 0.9]


def random_panel(lengths, m, seed, seasonal=0.0):
    rng = np.random.default_rng(seed)
    series = [50 + seasonal * np.sin(2 * np.pi * np.arange(n) / max(m, 1)) * (1 + rng.random())
              + rng.normal(size=n) for n in lengths]  # fmt: skip
    starts = np.r_[0, np.cumsum(lengths)[:-1]].astype(np.int64)
    return series, np.concatenate(series), starts, np.asarray(lengths, np.int64)


def assert_rows(out, reference):
    mean, quantiles = out
    for j, (mu, qs) in enumerate(reference):
        np.testing.assert_allclose(mean[j], mu, rtol=1e-12, atol=1e-12)
        for q in LEVELS:
            np.testing.assert_allclose(quantiles[q][j], qs[q], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("seed", range(3))
def test_panel_naive_and_seasonal_naive_equal_the_per_series_functions(seed):
    rng = np.random.default_rng(seed)
    m = int(rng.choice([1, 4, 7, 24]))
    lengths = rng.integers(m + 1, 120, size=25)
    series, y, starts, lengths = random_panel(lengths, m, seed)
    order = rng.permutation(len(starts))  # any series order (the panel need not be sorted by position)
    h = int(rng.integers(1, 40))
    assert_rows(panel_naive(y, starts[order], lengths[order], h, LEVELS),
                [naive_forecast(series[j], h, LEVELS) for j in order])
    assert_rows(panel_seasonal_naive(y, starts[order], lengths[order], m, h, LEVELS),
                [seasonal_naive_forecast(series[j], m, h, LEVELS) for j in order])
    mean, quantiles = panel_naive(y, starts, lengths, h)  # no levels: no intervals computed
    assert quantiles == {} and mean.shape == (len(starts), h)


@pytest.mark.parametrize("m", [4, 12])
def test_panel_naive2_equals_the_per_series_function_seasonal_or_not(m):
    lengths = [3 * m + 5, 60, 60, 5, 200, 200, 2 * m, 37, 37, 37]
    series, y, starts, lengths = random_panel(lengths, m, seed=m, seasonal=8.0)
    tested = [bool(np.any(panel_naive2(y, starts[[j]], lengths[[j]], m, 3)[0] != y[starts[j] + lengths[j] - 1]))
              for j in range(len(series))]  # fmt: skip
    assert any(tested) and not all(tested)  # both branches: adjusted (seasonal) and plain naive
    assert_rows(panel_naive2(y, starts, lengths, m, 30, LEVELS),
                [naive2_forecast(s, m, 30, LEVELS) for s in series])


def test_panel_errors_name_the_series_position():
    _, y, starts, lengths = random_panel([10, 1, 8], 1, seed=0)
    with pytest.raises(PanelError, match="in-sample forecast error") as info:
        panel_naive(y, starts, lengths, 3, [0.9])
    assert info.value.position == 1
    with pytest.raises(PanelError, match="season_length=4") as info:
        panel_seasonal_naive(y, starts, lengths, 4, 3)
    assert info.value.position == 1


def long_frame(lengths, m=24, seed=0, start="2024-01-01"):
    rng = np.random.default_rng(seed)
    parts = []
    for i, n in enumerate(lengths):
        ds = pd.date_range(start, periods=n, freq="h") + pd.Timedelta(hours=int(rng.integers(0, 3)))
        y = 20 + 5 * np.sin(2 * np.pi * np.arange(n) / m) + rng.normal(size=n)
        parts.append(pd.DataFrame({"unique_id": f"id{i:02d}", "ds": ds, "y": y}))
    return pd.concat(parts, ignore_index=True)


@pytest.mark.parametrize("cls", [NaiveForecaster, SeasonalNaiveForecaster, Naive2Forecaster])
def test_the_forecasters_vectorised_path_equals_their_per_series_path(cls):
    """Fit, predict (with quantiles), predict(df=...) with new ids, update: the same frames and fallbacks as
    the per-series tasks (the vectorised path switched off on one instance)."""
    df = long_frame([100, 30, 75, 75, 90, 12, 100])  # 30 and 12 < 2 * 24: the seasonal naive falls back
    other = long_frame([80, 50, 60], seed=5).assign(unique_id=lambda d: d.unique_id.str.replace("id", "new"))
    results = []
    for vectorised in (True, False):
        est = cls(season_length=24)
        est._vectorised = vectorised  # an instance attribute: the class keeps its default
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            est.fit(df)
        got = [est.predict(36, quantiles=LEVELS), est.predict(5, df=df.iloc[::1].query("unique_id != 'id05'"))]
        if cls is not SeasonalNaiveForecaster:
            got.append(est.predict(7, df=other, quantiles=[0.2]))
        got.append(est.update(_continuation(df), h=4, quantiles=[0.5]))
        results.append((got, est.fallbacks_, [str(w.message) for w in caught if w.category is FallbackWarning]))
    (fast, fast_fallbacks, fast_warnings), (slow, slow_fallbacks, slow_warnings) = results
    for a, b in zip(fast, slow):
        pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-12, atol=1e-12)
    assert fast_fallbacks == slow_fallbacks and fast_warnings == slow_warnings
    if cls is SeasonalNaiveForecaster:
        assert set(fast_fallbacks) == {"id01", "id05"}


def _continuation(df):
    last = df.groupby("unique_id").tail(1)
    return last.assign(ds=last.ds + pd.Timedelta(hours=1), y=last.y + 1.0)


def test_a_series_that_cannot_be_forecast_is_named():
    df = long_frame([60, 1, 60])
    est = NaiveForecaster().fit(df)
    with pytest.raises(ValueError, match="series 'id01'.*in-sample forecast error"):
        est.predict(3, quantiles=[0.9])
    sn = SeasonalNaiveForecaster(season_length=24).fit(long_frame([60, 60]))
    with pytest.raises(ValueError, match="series 'id00'.*too short for the seasonal naive"):
        sn.predict(3, df=long_frame([30]))
