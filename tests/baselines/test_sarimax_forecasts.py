"""The forecast paths without statsmodels' prediction objects (issue #36): ARIMA's mean and variance from the raw
filter's last state (one array recursion a batch) equal statsmodels' ``get_forecast`` and its ``conf_int``; ETS's
exact intervals from the fitted results equal ``get_prediction`` on a pandas endog; the estimation without the
smoother gives the same fitted series; batched warnings and the cached BLAS limit behave as the per-series ones
did."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from statsmodels.tsa.exponential_smoothing.ets import ETSModel
from statsmodels.tsa.statespace.sarimax import SARIMAX
from threadpoolctl import threadpool_info

from ssmcast.baselines import ARIMAForecaster, AutoARIMAForecaster, ETSForecaster
from ssmcast.baselines._base import _fit_batch, _fit_task, _one_blas_thread
from ssmcast.baselines.arima import _stats, fit_sarimax, state_space_forecasts

LEVELS = [0.05, 0.1, 0.5, 0.9, 0.975]


def panel(n: int = 4, length: int = 80, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    t = np.arange(length)
    ds = pd.date_range("2021-01-01", periods=length, freq="MS")
    y = [20 + 0.05 * t + 3 * np.sin(2 * np.pi * t / 12) + rng.normal(size=length).cumsum() * 0.3 for _ in range(n)]
    return pd.DataFrame({"unique_id": np.repeat([f"s{i}" for i in range(n)], length), "ds": np.tile(ds, n),
                         "y": np.concatenate(y)})  # fmt: skip


def reference(fit, y: np.ndarray, h: int) -> tuple[np.ndarray, dict[float, np.ndarray]]:
    """statsmodels' own forecast of a fitted series: the model at the fitted parameters, get_forecast, conf_int."""
    forecast = SARIMAX(y, **fit.spec).filter(fit.params).get_forecast(h)
    mean = np.asarray(forecast.predicted_mean)
    bounds = {}
    for q in LEVELS:
        if q == 0.5:
            bounds[q] = mean
            continue
        ci = np.asarray(forecast.conf_int(alpha=2 * min(q, 1 - q)))
        bounds[q] = ci[:, 1] if q > 0.5 else ci[:, 0]
    return mean, bounds


def assert_matches(out: pd.DataFrame, est, histories: dict, h: int) -> None:
    for uid, y in histories.items():
        rows = out[out.unique_id == uid]
        mean, bounds = reference(est.models_[uid], y, h)
        np.testing.assert_allclose(rows.y_pred.to_numpy(), mean, rtol=1e-10, atol=1e-10)
        for q in LEVELS:
            np.testing.assert_allclose(rows[f"y_pred_q{q}"].to_numpy(), bounds[q], rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("kwargs", [
    dict(order=(1, 1, 1)),
    dict(order=(1, 0, 1), seasonal_order=(0, 1, 1)),  # seasonal, m = 12 from the monthly stamps
    dict(order=(2, 1, 0), trend="c"),  # drift: time-varying intercept, statsmodels' get_forecast path
    dict(order=(1, 0, 0), trend="t"),
    dict(order=(0, 1, 0)),  # a random walk: nothing estimated
])
def test_forecasts_and_quantiles_equal_statsmodels_get_forecast(kwargs):
    df = panel()
    est = ARIMAForecaster(**kwargs).fit(df)
    assert not est.fallbacks_
    h = 15
    histories = {uid: g.y.to_numpy() for uid, g in df.groupby("unique_id")}
    assert_matches(est.predict(h, quantiles=LEVELS), est, histories, h)
    # a new history (predict(df=...)): the last 50 points of each series
    tail = df.groupby("unique_id").tail(50)
    histories = {uid: g.y.to_numpy() for uid, g in tail.groupby("unique_id")}
    assert_matches(est.predict(h, df=tail, quantiles=LEVELS), est, histories, h)


def test_auto_arima_batches_mixed_models_equal_statsmodels():
    df = panel(6, seed=3)
    df.loc[df.unique_id == "s1", "y"] = np.random.default_rng(1).normal(size=80)  # white noise: another model
    est = AutoARIMAForecaster(season_length=12).fit(df)
    histories = {uid: g.y.to_numpy() for uid, g in df.groupby("unique_id")}
    assert_matches(est.predict(9, quantiles=LEVELS), est, histories, 9)


def test_state_space_forecasts_of_models_of_different_sizes():
    rng = np.random.default_rng(5)
    y = rng.normal(size=120).cumsum()
    specs = [dict(order=(1, 1, 1)), dict(order=(2, 0, 1)), dict(order=(0, 1, 1), seasonal_order=(1, 0, 1, 4)),
             dict(order=(1, 1, 1))]  # fmt: skip
    params = [np.array([0.4, -0.3, 1.2]), np.array([0.5, 0.2, 0.3, 0.8]), np.array([-0.4, 0.3, 0.2, 1.1]),
              np.array([-0.2, 0.6, 0.7])]  # fmt: skip
    raw = [SARIMAX(y[i:], **spec).filter(p, return_ssm=True) for i, (spec, p) in enumerate(zip(specs, params))]
    mean, variance = state_space_forecasts(raw, 11)
    for i, (spec, p) in enumerate(zip(specs, params)):
        forecast = SARIMAX(y[i:], **spec).filter(p).get_forecast(11)
        np.testing.assert_allclose(mean[i], forecast.predicted_mean, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(np.sqrt(variance[i]), forecast.se_mean, rtol=1e-12)


@pytest.mark.parametrize("order, seasonal, trend", [((1, 1, 1), (0, 0, 0, 0), None), ((2, 0, 1), (1, 0, 0, 12), "c"),
                                                    ((0, 1, 0), (0, 0, 0, 0), None)])  # fmt: skip
def test_estimation_without_the_smoother_gives_the_same_fit(order, seasonal, trend):
    y = panel(1).y.to_numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. statsmodels' convergence warnings: the same in both
        smoothed = fit_sarimax(y, order, seasonal, trend, smooth=True)
        filtered = fit_sarimax(y, order, seasonal, trend, smooth=False)
    assert smoothed[0] == filtered[0]
    np.testing.assert_array_equal(smoothed[1], filtered[1])
    differenced = SARIMAX(y, simple_differencing=True, concentrate_scale=True, **smoothed[0])
    assert smoothed[2] == filtered[2] == [*differenced.param_names, "sigma2"] == SARIMAX(y, **smoothed[0]).param_names
    assert _stats(smoothed[3]) == _stats(filtered[3])


def test_results_keep_statsmodels_default_filter():
    df = panel(2)
    est = ARIMAForecaster(order=(1, 1, 1)).fit(df)
    fit, y = est.models_["s0"], df[df.unique_id == "s0"].y.to_numpy()
    results, expected = est.results("s0"), SARIMAX(y, **fit.spec).filter(fit.params)
    assert results.cov_type == expected.cov_type
    np.testing.assert_array_equal(results.bse, expected.bse)


def test_batched_fit_records_each_series_own_warnings_as_one_task_a_series():
    df = panel(5)
    series = [(uid, g.y.to_numpy()) for uid, g in df.groupby("unique_id")]
    series[2] = ("s2", series[2][1][:4])  # too short: falls back, no statsmodels warning
    est = ARIMAForecaster(order=(2, 1, 2), maxiter=2)  # 2 iterations: ConvergenceWarning on the others
    batched = _fit_batch(est, series, 12)
    alone = [_fit_task(est, uid, y, 12) for uid, y in series]
    for (uid, fit, notes), (uid2, fit2, notes2) in zip(batched, alone):
        assert uid == uid2 and fit.name == fit2.name and fit.fallback == fit2.fallback and notes == notes2
        if fit.params is not None:
            np.testing.assert_array_equal(fit.params, fit2.params)
    assert batched[2][1].fallback and not batched[2][2]
    assert all(any("ConvergenceWarning" in m for m in notes) for i, (_, _, notes) in enumerate(batched) if i != 2)


def test_cached_blas_limit_limits_and_restores():
    before = [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]
    for _ in range(2):  # the controller is built once, then reused
        with _one_blas_thread():
            assert all(lib["num_threads"] == 1 for lib in threadpool_info() if lib["user_api"] == "blas")
        assert [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"] == before


@pytest.mark.parametrize("kwargs", [dict(), dict(trend="add"), dict(trend="add", damped_trend=True),
                                    dict(seasonal="add"), dict(trend="add", seasonal="add"),
                                    dict(trend="add", damped_trend=True, seasonal="add")])  # the exact classes
def test_ets_exact_intervals_equal_statsmodels_get_prediction(kwargs):
    df = panel(2, length=72)
    est = ETSForecaster(**kwargs).fit(df)
    h = 14
    for frame, start in ((df, 0), (df.groupby("unique_id").tail(40), 32)):  # fitted histories, then new ones
        out = est.predict(h, df=None if start == 0 else frame, quantiles=LEVELS)
        for uid, g in frame.groupby("unique_id"):
            y = g.y.to_numpy()
            results = est.results(uid, df=None if start == 0 else frame)  # the parameters used (initial states)
            reference = ETSModel(pd.Series(y), **est.models_[uid].spec).smooth(results.params)
            prediction = reference.get_prediction(start=len(y), end=len(y) + h - 1)
            rows = out[out.unique_id == uid]
            np.testing.assert_allclose(rows.y_pred.to_numpy(), prediction.predicted_mean, rtol=1e-10)
            for q in LEVELS:
                if q == 0.5:
                    continue
                bounds = np.asarray(prediction.pred_int(alpha=2 * min(q, 1 - q)))
                np.testing.assert_allclose(rows[f"y_pred_q{q}"].to_numpy(), bounds[:, 1 if q > 0.5 else 0],
                                           rtol=1e-10)
