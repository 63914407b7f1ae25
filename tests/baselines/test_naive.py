"""The naive family through the estimator API, and the M4 Hourly Naive2 row."""

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from ssmcast.baselines import FallbackWarning, Naive2Forecaster, NaiveForecaster, SeasonalNaiveForecaster


def panel(lengths=(60, 50), freq="h", seed=0):
    rng = np.random.default_rng(seed)
    frames = []
    for i, n in enumerate(lengths):
        ds = pd.date_range("2024-01-01", periods=n, freq=freq)
        y = 20 + np.sin(2 * np.pi * np.arange(n) / 24) * 5 + rng.normal(size=n)
        frames.append(pd.DataFrame({"unique_id": f"s{i}", "ds": ds, "y": y}))
    return pd.concat(frames, ignore_index=True)


@pytest.mark.parametrize("cls", [NaiveForecaster, SeasonalNaiveForecaster, Naive2Forecaster])
def test_api_contract(cls):
    df = panel()
    before = df.copy(deep=True)
    est = cls(n_jobs=1)
    with pytest.raises(NotFittedError):
        est.predict(3)
    assert clone(est).get_params() == est.get_params()
    est.fit(df)
    pd.testing.assert_frame_equal(df, before)  # caller's frame untouched
    out = est.predict(5, quantiles=[0.9, 0.1, 0.5])
    assert list(out.columns) == ["unique_id", "ds", "y_pred", "y_pred_q0.1", "y_pred_q0.5", "y_pred_q0.9"]
    assert len(out) == 10 and out["unique_id"].tolist() == ["s0"] * 5 + ["s1"] * 5
    last = df.groupby("unique_id")["ds"].max()
    first = out.groupby("unique_id")["ds"].min()
    assert (first - last == pd.Timedelta("1h")).all()
    assert (out["y_pred_q0.1"] <= out["y_pred_q0.5"]).all() and (out["y_pred_q0.5"] <= out["y_pred_q0.9"]).all()
    np.testing.assert_allclose(out["y_pred_q0.5"], out["y_pred"])
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="h must be a positive integer"):
            est.predict(bad)
    with pytest.raises(ValueError, match="h is required"):
        est.predict()
    with pytest.raises(ValueError, match="quantiles"):
        est.predict(2, quantiles=[1.5])


def test_naive_values_and_parameter_free_new_ids():
    df = panel()
    est = NaiveForecaster(horizon=3).fit(df)
    out = est.predict()  # h from horizon
    expected = df.groupby("unique_id")["y"].last()
    np.testing.assert_allclose(out.groupby("unique_id")["y_pred"].first(), expected)
    new = df[df.unique_id == "s0"].assign(unique_id="brand_new").iloc[:40]
    out_new = est.predict(2, df=new)
    assert out_new["unique_id"].unique().tolist() == ["brand_new"]
    np.testing.assert_allclose(out_new["y_pred"], new["y"].iloc[-1])
    assert out_new["ds"].iloc[0] == new["ds"].iloc[-1] + pd.Timedelta("1h")


def test_wide_and_series_input():
    df = panel(lengths=(48, 48))
    wide = df.pivot(index="ds", columns="unique_id", values="y")
    a = SeasonalNaiveForecaster().fit(df).predict(4)
    b = SeasonalNaiveForecaster().fit(wide).predict(4)
    pd.testing.assert_frame_equal(a, b)
    series = wide["s0"].rename("only")
    c = SeasonalNaiveForecaster().fit(series).predict(4)
    np.testing.assert_allclose(c["y_pred"], a[a.unique_id == "s0"]["y_pred"])


def test_seasonal_naive_short_series_falls_back():
    df = panel(lengths=(60, 30))  # s1 has fewer than 2 * 24 values
    with pytest.warns(FallbackWarning, match="'s1'.*naive"):
        est = SeasonalNaiveForecaster().fit(df)
    assert list(est.fallbacks_) == ["s1"] and est.season_length_ == 24
    out = est.predict(3)
    np.testing.assert_allclose(out[out.unique_id == "s1"]["y_pred"], df[df.unique_id == "s1"]["y"].iloc[-1])


def test_bad_constructor_arguments():
    df = panel()
    for kwargs in ({"season_length": 0}, {"season_length": 2.5}, {"horizon": 0}, {"n_jobs": "two"}):
        with pytest.raises(ValueError, match=next(iter(kwargs))):
            NaiveForecaster(**kwargs).fit(df)
    with pytest.raises(TypeError):
        NaiveForecaster().fit(np.arange(10))


def read_m4(path):
    raw = pd.read_csv(path)
    frames = []
    for row in raw.itertuples(index=False):
        values = np.asarray(row[1:], dtype=float)
        values = values[~np.isnan(values)]
        frames.append(pd.DataFrame({"unique_id": row[0], "ds": np.arange(len(values)), "y": values}))
    return pd.concat(frames, ignore_index=True)


@pytest.mark.slow
def test_m4_hourly_naive2_reproduces_the_official_row(data_dir):
    from ssmcast.evaluation.metrics import mase, smape

    train = read_m4(data_dir / "m4" / "Hourly-train.csv")
    test = read_m4(data_dir / "m4" / "Hourly-test.csv")
    assert train["unique_id"].nunique() == 414
    forecast = Naive2Forecaster(season_length=24).fit(train).predict(48)
    smapes, mases = [], []
    for uid, actual in test.groupby("unique_id"):
        f = forecast.loc[forecast.unique_id == uid, "y_pred"].to_numpy()
        history = train.loc[train.unique_id == uid, "y"].to_numpy()
        smapes.append(smape(actual["y"].to_numpy(), f))
        mases.append(mase(actual["y"].to_numpy(), f, history, season_length=24))
    assert round(float(np.mean(smapes)), 3) == 18.383
    assert round(float(np.mean(mases)), 3) == 2.395


@pytest.mark.parametrize("cls", [NaiveForecaster, SeasonalNaiveForecaster])
def test_predict_windows_equals_predict_on_each_window(cls):
    model = cls(horizon=30).fit(panel(lengths=(120, 100)))  # horizon > season: the season repeats
    rng = np.random.default_rng(1)
    context = rng.normal(size=(4, 50, 3))  # (windows, L, channels), L >= 2 * 24
    fast = model.predict_windows(context)
    assert fast.shape == (4, 30, 3)
    ds = pd.date_range("2030-01-01", periods=50, freq="h")
    for w in range(4):
        frame = pd.concat([pd.DataFrame({"unique_id": f"c{c}", "ds": ds, "y": context[w, :, c]}) for c in range(3)])
        slow = model.predict(df=frame)
        for c in range(3):
            np.testing.assert_allclose(fast[w, :, c], slow.loc[slow.unique_id == f"c{c}", "y_pred"], rtol=1e-12)


def test_predict_windows_errors():
    with pytest.raises(NotFittedError):
        NaiveForecaster(horizon=3).predict_windows(np.zeros((1, 5, 1)))
    with pytest.raises(ValueError, match="horizon parameter"):
        NaiveForecaster().fit(panel()).predict_windows(np.zeros((1, 5, 1)))
    with pytest.raises(ValueError, match="context must have shape"):
        NaiveForecaster(horizon=3).fit(panel()).predict_windows(np.zeros((5, 1)))
    with pytest.raises(ValueError, match="needs 2 \\* season_length = 48"):
        SeasonalNaiveForecaster(horizon=3).fit(panel()).predict_windows(np.zeros((2, 47, 1)))


def test_parameter_free_update_continues_the_history():
    ds = pd.date_range("2024-01-01", periods=72, freq="h")
    df = pd.DataFrame({"unique_id": "a", "ds": ds, "y": np.arange(72.0) % 24 + np.arange(72) / 10})
    est = SeasonalNaiveForecaster().fit(df.iloc[:48])
    out = est.update(df.iloc[48:60], h=24)
    pd.testing.assert_frame_equal(out, est.predict(24, df=df.iloc[:60]))
    np.testing.assert_allclose(out["y_pred"], df["y"].iloc[36:60].to_numpy())
    assert out["ds"].iloc[0] == ds[60]
    naive = NaiveForecaster(horizon=2).fit(df.iloc[:48])
    with pytest.raises(ValueError, match="continue series 'a'"):
        naive.update(df.iloc[50:52])
    assert naive.update(df.iloc[48:50])["y_pred"].tolist() == [df["y"].iloc[49]] * 2
