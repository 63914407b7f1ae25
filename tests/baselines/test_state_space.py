"""ARIMA, structural and ETS baselines against published figures and statsmodels' own results."""

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from statsmodels.datasets import nile
from statsmodels.tsa.exponential_smoothing.ets import ETSModel
from statsmodels.tsa.statespace.sarimax import SARIMAX
from threadpoolctl import threadpool_limits

from ssmcast.baselines import (
    ARIMAForecaster,
    ETSForecaster,
    FallbackWarning,
    LocalLevelForecaster,
    UnobservedComponentsForecaster,
)

# Box & Jenkins series G (public domain), monthly 1949-01 .. 1960-12
AIRLINE = [
    112, 118, 132, 129, 121, 135, 148, 148, 136, 119, 104, 118, 115, 126, 141, 135, 125, 149, 170, 170, 158, 133,
    114, 140, 145, 150, 178, 163, 172, 178, 199, 199, 184, 162, 146, 166, 171, 180, 193, 181, 183, 218, 230, 242,
    209, 191, 172, 194, 196, 196, 236, 235, 229, 243, 264, 272, 237, 211, 180, 201, 204, 188, 235, 227, 234, 264,
    302, 293, 259, 229, 203, 229, 242, 233, 267, 269, 270, 315, 364, 347, 312, 274, 237, 278, 284, 277, 317, 313,
    318, 374, 413, 405, 355, 306, 271, 306, 315, 301, 356, 348, 355, 422, 465, 467, 404, 347, 305, 336, 340, 318,
    362, 348, 363, 435, 491, 505, 404, 359, 310, 337, 360, 342, 406, 396, 420, 472, 548, 559, 463, 407, 362, 405,
    417, 391, 419, 461, 472, 535, 622, 606, 508, 461, 390, 432,
]


def airline(log=True):
    y = np.log(np.array(AIRLINE, float)) if log else np.array(AIRLINE, float)
    return pd.DataFrame({"unique_id": "air", "ds": pd.date_range("1949-01-01", periods=144, freq="MS"), "y": y})


def nile_frame():
    data = nile.load_pandas().data
    return pd.DataFrame({"unique_id": "nile", "ds": data["year"].astype(int), "y": data["volume"].astype(float)})


def ar_panel(n=80, seed=0):
    rng = np.random.default_rng(seed)
    frames = []
    for i, phi in enumerate((0.7, -0.4)):
        e = rng.normal(size=n)
        y = np.zeros(n)
        for t in range(1, n):
            y[t] = phi * y[t - 1] + e[t]
        frames.append(pd.DataFrame({"unique_id": f"ar{i}", "ds": np.arange(n), "y": y + 5}))
    return pd.concat(frames, ignore_index=True)


def test_airline_csv_matches_embedded_values(data_dir):
    csv = pd.read_csv(data_dir / "airline" / "Airline.csv")
    assert csv["Passengers"].tolist() == AIRLINE


def test_nile_local_level_matches_durbin_koopman():
    est = LocalLevelForecaster().fit(nile_frame())
    fit = est.models_["nile"]
    sigma2 = dict(zip(fit.param_names, fit.params))
    assert sigma2["sigma2.irregular"] == pytest.approx(15078.01, rel=1e-3)  # D&K: 15099
    assert sigma2["sigma2.level"] == pytest.approx(1478.81, rel=1e-3)  # D&K: 1469.1
    assert fit.stats["llf"] == pytest.approx(-632.538, abs=1e-3)
    out = est.predict(5, quantiles=[0.025, 0.975])
    assert out["ds"].tolist() == [1971, 1972, 1973, 1974, 1975]
    first = out.iloc[0]
    assert first["y_pred"] == pytest.approx(798.1, abs=0.05)
    assert first["y_pred_q0.025"] == pytest.approx(516.8, abs=0.05)
    assert first["y_pred_q0.975"] == pytest.approx(1079.4, abs=0.05)
    se = (first["y_pred_q0.975"] - first["y_pred"]) / norm.ppf(0.975)
    assert se == pytest.approx(143.5, abs=0.05)
    assert out.iloc[-1]["y_pred_q0.025"] == pytest.approx(479.0, abs=0.05)
    assert out.iloc[-1]["y_pred_q0.975"] == pytest.approx(1117.2, abs=0.05)


@pytest.mark.slow
def test_airline_arima_matches_box_jenkins_and_full_statsmodels_fit():
    est = ARIMAForecaster(order=(0, 1, 1), seasonal_order=(0, 1, 1)).fit(airline())
    assert est.season_length_ == 12 and est.freq_ == "MS"
    fit = est.models_["air"]
    params = dict(zip(fit.param_names, fit.params))
    assert fit.name == "ARIMA(0,1,1)(0,1,1)[12]"
    assert params["ma.L1"] == pytest.approx(-0.4019, abs=1e-3)
    assert params["ma.S.L12"] == pytest.approx(-0.5571, abs=1e-3)
    assert params["sigma2"] == pytest.approx(0.0013, abs=5e-5)
    assert fit.stats["llf"] == pytest.approx(244.696, abs=1e-3)
    # the reference: statsmodels' plain (undifferenced, non-concentrated) fit reaches the same optimum
    with threadpool_limits(limits=1, user_api="blas"):
        reference = SARIMAX(airline()["y"].to_numpy(), order=(0, 1, 1), seasonal_order=(0, 1, 1, 12)).fit(
            disp=False, cov_type="none")
    np.testing.assert_allclose(fit.params, reference.params, atol=5e-4)
    results = est.results("air")
    assert results.llf == pytest.approx(reference.llf, abs=1e-4)
    out = est.predict(12, quantiles=[0.05, 0.95])
    ref = reference.get_forecast(12)
    np.testing.assert_allclose(out["y_pred"], ref.predicted_mean, atol=2e-3)
    np.testing.assert_allclose(out["y_pred_q0.95"] - out["y_pred"], norm.ppf(0.95) * ref.se_mean, rtol=1e-2)
    assert out["ds"].iloc[0] == pd.Timestamp("1961-01-01")


def test_predict_with_new_history_equals_statsmodels_apply():
    df = ar_panel()
    est = ARIMAForecaster(order=(1, 0, 0), trend="c").fit(df)
    new = ar_panel(n=60, seed=5)  # different values, same ids
    out = est.predict(4, df=new, quantiles=[0.2, 0.8])
    for uid in ("ar0", "ar1"):
        applied = est.results(uid).apply(new.loc[new.unique_id == uid, "y"].to_numpy())
        forecast = applied.get_forecast(4)
        got = out[out.unique_id == uid]
        np.testing.assert_allclose(got["y_pred"], forecast.predicted_mean, rtol=1e-10)
        np.testing.assert_allclose(got["y_pred_q0.8"], forecast.predicted_mean + forecast.se_mean * norm.ppf(0.8),
                                   rtol=1e-10)
        assert got["ds"].tolist() == [60, 61, 62, 63]
        np.testing.assert_allclose(applied.params, est.models_[uid].params)  # no re-estimation
    with pytest.raises(ValueError, match="not seen in fit: 'stranger'"):
        est.predict(2, df=new.assign(unique_id="stranger").iloc[:60])


def test_local_level_refilter_equals_apply_and_ets_refilter_equals_smooth():
    frame = nile_frame()
    est = LocalLevelForecaster().fit(frame)
    tail = frame.iloc[50:]
    applied = est.results("nile").apply(tail["y"].to_numpy())
    out = est.predict(3, df=tail)
    np.testing.assert_allclose(out["y_pred"], applied.get_forecast(3).predicted_mean, rtol=1e-10)
    assert out["ds"].tolist() == [1971, 1972, 1973]



@pytest.mark.parametrize("error", ["add", "mul"])
def test_ets_on_a_new_history_reestimates_the_initial_states_as_r_does(error):
    frame = nile_frame()
    tail = frame.iloc[50:]
    ets = ETSForecaster(error=error, trend="add").fit(frame)
    fit = ets.models_["nile"]
    # the reference: statsmodels' own optimiser over the initial states, smoothing parameters fixed
    model = ETSModel(tail["y"].to_numpy(), **fit.spec)
    smoothing = {name: value for name, value in zip(fit.param_names, fit.params) if not name.startswith("initial_")}
    with warnings.catch_warnings(), model.fix_params(smoothing):
        warnings.simplefilter("ignore")
        refit = model.fit(disp=False, maxiter=5000)
    ours = ets.results("nile", df=tail)
    assert ours.llf >= refit.llf - 1e-6 * abs(refit.llf)  # least squares finds the optimum (additive error)
    np.testing.assert_allclose(ours.params, refit.params, rtol=1e-3, atol=1e-2)
    np.testing.assert_allclose(ets.predict(3, df=tail)["y_pred"], refit.forecast(3), rtol=1e-4)
    assert len(ets._state_solvers) == (1 if error == "add" else 0)  # kept across predict calls
    kept = ETSModel(tail["y"].to_numpy(), **fit.spec).smooth(fit.params)  # R's use.initial.values=TRUE
    out = ets.set_params(use_initial_values=True).predict(3, df=tail)["y_pred"]
    np.testing.assert_allclose(out, kept.forecast(3), rtol=1e-10)
    assert not np.allclose(out, refit.forecast(3), rtol=1e-3)  # the two semantics differ here
    # the fitted series itself, and its extensions, keep the fitted initial states
    ets.set_params(use_initial_values=False)
    pd.testing.assert_frame_equal(ets.predict(3, df=frame), ets.predict(3))
    np.testing.assert_allclose(ets.predict(3)["y_pred"],
                               ETSModel(frame["y"].to_numpy(), **fit.spec).smooth(fit.params).forecast(3), rtol=1e-10)


def test_ets_exact_intervals_match_statsmodels_and_simulated_are_seeded():
    df = airline(log=False)
    est = ETSForecaster(error="add", trend="add", seasonal="add").fit(df)
    out = est.predict(6, quantiles=[0.025, 0.975])
    fit = est.models_["air"]
    reference = ETSModel(pd.Series(df["y"].to_numpy()), **fit.spec).smooth(fit.params)
    frame = reference.get_prediction(start=144, end=149).summary_frame(alpha=0.05)
    np.testing.assert_allclose(out["y_pred"], frame["mean"], rtol=1e-10)
    np.testing.assert_allclose(out["y_pred_q0.025"], frame["pi_lower"], rtol=1e-10)
    np.testing.assert_allclose(out["y_pred_q0.975"], frame["pi_upper"], rtol=1e-10)

    mul = ETSForecaster(error="mul", trend="add", damped_trend=True, seasonal="mul", random_state=3,
                        simulate_repetitions=400).fit(df)
    a = mul.predict(6, quantiles=[0.1, 0.5, 0.9])
    b = mul.predict(6, quantiles=[0.1, 0.5, 0.9])
    pd.testing.assert_frame_equal(a, b)
    assert (a["y_pred_q0.1"] < a["y_pred_q0.5"]).all() and (a["y_pred_q0.5"] < a["y_pred_q0.9"]).all()
    assert mul.models_["air"].name == "ETS(MAdM)"


def test_ets_auto_picks_the_lowest_aicc():
    df = nile_frame()
    est = ETSForecaster(auto=True).fit(df)
    chosen = est.models_["nile"]
    y = df["y"].to_numpy()
    candidates = est._candidates(y, 1)
    assert {(c["error"], c["trend"], c["damped_trend"], c["seasonal"]) for c in candidates} == {
        (e, t, d, None) for e in ("add", "mul") for t, d in ((None, False), ("add", False), ("add", True))}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        aiccs = [ETSModel(y, **spec).fit(disp=False).aicc for spec in candidates]
    assert chosen.stats["aicc"] == pytest.approx(min(aiccs), rel=1e-9)
    seasonal = est._candidates(np.arange(1.0, 49.0), 12)  # positive, 4 seasons: 15 models (no A-error x M-season)
    assert len(seasonal) == 15 and not any(c["error"] == "add" and c["seasonal"] == "mul" for c in seasonal)


@pytest.mark.parametrize(
    "est",
    [
        ARIMAForecaster(order=(1, 0, 1), trend="c"),
        UnobservedComponentsForecaster(level="lltrend"),
        ETSForecaster(trend="add", damped_trend=True),
    ],
    ids=["arima", "uc", "ets"],
)
def test_state_space_api_contract(est):
    df = ar_panel()
    before = df.copy(deep=True)
    with pytest.raises(NotFittedError):
        est.predict(2)
    twin = clone(est)
    assert twin.get_params() == est.get_params() and not hasattr(twin, "models_")
    est.fit(df)
    pd.testing.assert_frame_equal(df, before)
    levels = [0.05, 0.25, 0.5, 0.75, 0.95]
    out = est.predict(8, quantiles=levels)
    values = out[[f"y_pred_q{q}" for q in levels]].to_numpy()
    assert np.all(np.diff(values, axis=1) > 0)  # monotone in q
    np.testing.assert_allclose(out["y_pred_q0.5"], out["y_pred"], rtol=1e-9)
    widths = out["y_pred_q0.95"] - out["y_pred_q0.05"]
    assert (widths.groupby(out["unique_id"]).diff().dropna() >= -1e-9).all()  # intervals do not shrink
    assert est.set_params(horizon=3).predict().shape[0] == 6
    assert set(est.summary()["unique_id"]) == {"ar0", "ar1"}


@pytest.mark.slow
def test_parallel_fit_equals_serial():
    df = ar_panel()
    serial = ARIMAForecaster(order=(1, 0, 0)).fit(df).predict(3, quantiles=[0.1])
    parallel = ARIMAForecaster(order=(1, 0, 0), n_jobs=2).fit(df).predict(3, quantiles=[0.1])
    pd.testing.assert_frame_equal(serial, parallel)


def test_fallbacks_are_warned_recorded_and_forecast():
    df = pd.concat([ar_panel(), pd.DataFrame({"unique_id": "tiny", "ds": np.arange(4), "y": [1.0, 2, 3, 2]})])
    with pytest.warns(FallbackWarning, match="'tiny'.*too short.*naive"):
        est = ARIMAForecaster(order=(2, 0, 2)).fit(df)
    assert list(est.fallbacks_) == ["tiny"] and est.models_["tiny"].name == "naive"
    out = est.predict(2, quantiles=[0.5])
    np.testing.assert_allclose(out[out.unique_id == "tiny"]["y_pred"], 2.0)
    assert out[out.unique_id != "tiny"]["y_pred"].notna().all()
    with pytest.raises(ValueError, match="parameter-free"):
        est.results("tiny")


def test_fallback_on_estimation_error(monkeypatch):
    def broken_fit(self, *args, **kwargs):
        raise np.linalg.LinAlgError("Schur decomposition solver error.")

    monkeypatch.setattr(SARIMAX, "fit", broken_fit)
    df = airline()
    with pytest.warns(FallbackWarning, match="'air'.*LinAlgError.*seasonal_naive"):
        est = ARIMAForecaster(order=(0, 1, 1), seasonal_order=(0, 1, 1)).fit(df)
    assert "LinAlgError" in est.fallbacks_["air"]
    np.testing.assert_allclose(est.predict(12)["y_pred"], df["y"].to_numpy()[-12:])


def test_ets_multiplicative_on_negative_data_falls_back_to_naive():
    df = ar_panel()
    df.loc[df.unique_id == "ar1", "y"] -= 20  # negative values: no multiplicative error model
    with pytest.warns(FallbackWarning, match="'ar1'"):
        est = ETSForecaster(error="mul").fit(df)
    assert list(est.fallbacks_) == ["ar1"] and est.models_["ar0"].name == "ETS(MNN)"


@pytest.mark.parametrize(
    "est, match",
    [
        (ARIMAForecaster(order=(1, 0)), "order"),
        (ARIMAForecaster(order=(1, -1, 0)), "order"),
        (ARIMAForecaster(seasonal_order=(1, 0, 0, 1, 2)), "seasonal_order"),
        (ARIMAForecaster(seasonal_order=(1, 1, 0)), "seasonal period >= 2"),
        (ARIMAForecaster(trend="quadratic"), "trend"),
        (ARIMAForecaster(maxiter=0), "maxiter"),
        (UnobservedComponentsForecaster(level="wiggly"), "level"),
        (UnobservedComponentsForecaster(seasonal=1), "seasonal"),
        (ETSForecaster(error="both"), "error"),
        (ETSForecaster(seasonal="add"), "season_length >= 2"),
        (ETSForecaster(damped_trend=True), "damped_trend"),
    ],
)
def test_invalid_arguments_raise_in_fit(est, match):
    with pytest.raises(ValueError, match=match):
        est.fit(ar_panel())  # integer ds: season_length 1


@pytest.mark.parametrize(
    "est",
    [ARIMAForecaster(order=(1, 0, 1), trend="c"), LocalLevelForecaster(), ETSForecaster(trend="add")],
    ids=["arima", "local_level", "ets"],
)
def test_update_appends_and_equals_predict_on_the_full_history(est):
    full = ar_panel(n=100)
    train, new = full[full.ds < 80], full[full.ds >= 80]
    est.fit(train)
    params = {uid: fit.params.copy() for uid, fit in est.models_.items()}
    first, second = new[new.ds < 90], new[new.ds >= 90]
    est.update(first.query("unique_id == 'ar0'"), h=2)  # one series may run ahead of the others
    est.update(first.query("unique_id == 'ar1'"), h=2)
    out = est.update(second, h=5, quantiles=[0.1, 0.9])
    expected = est.predict(5, df=full, quantiles=[0.1, 0.9])
    pd.testing.assert_frame_equal(out, expected)
    assert out.groupby("unique_id")["ds"].min().tolist() == [100, 100]
    pd.testing.assert_frame_equal(est.predict(5, quantiles=[0.1, 0.9]), expected)
    for uid, fit in est.models_.items():
        np.testing.assert_array_equal(fit.params, params[uid])  # no re-estimation


def test_update_equals_statsmodels_append_and_bad_input_absorbs_nothing():
    full = ar_panel(n=100)
    train, new = full[full.ds < 80], full[full.ds >= 80]
    est = ARIMAForecaster(order=(1, 0, 0), trend="c", horizon=3).fit(train)
    reference = est.results("ar1").append(new.loc[new.unique_id == "ar1", "y"].to_numpy()).get_forecast(3)
    for bad, match in [
        (dict(df_new=new, h=0), "h must be a positive integer"),
        (dict(df_new=new, quantiles=[1.5]), "strictly between 0 and 1"),
        (dict(df_new=new[new.ds > 80]), r"continue series 'ar0' right after its last stamp 79 \(expected 80\)"),
        (dict(df_new=new.assign(unique_id="stranger").iloc[:20]), "not seen in fit: 'stranger'"),
        (dict(df_new=new.assign(y=np.nan)), "NaN"),
    ]:
        with pytest.raises(ValueError, match=match):
            est.update(**bad)
        assert [len(y) for y, _ in est.history_.values()] == [80, 80]
    out = est.update(new, quantiles=[0.8]).query("unique_id == 'ar1'")
    np.testing.assert_allclose(out["y_pred"], reference.predicted_mean, rtol=1e-10)
    np.testing.assert_allclose(out["y_pred_q0.8"], reference.predicted_mean + reference.se_mean * norm.ppf(0.8),
                               rtol=1e-10)
    with pytest.raises(NotFittedError):
        ARIMAForecaster().update(new)


def _window_reference(est, context, ids):
    """Each window forecast by its own ``predict(df=window)`` call: the slow, obvious reference. The windows
    start after the training series (as test windows do), so they are new histories."""
    out = []
    for window in context:
        L = len(window)
        frame = pd.DataFrame({"unique_id": np.repeat(ids, L), "ds": np.tile(1000 + np.arange(L), len(ids)),
                              "y": window.T.reshape(-1)})
        pred = est.predict(df=frame)
        out.append(np.stack([pred.loc[pred.unique_id == uid, "y_pred"].to_numpy() for uid in ids], axis=1))
    return np.stack(out)


@pytest.mark.parametrize(
    ("est", "affine"),
    [
        (ARIMAForecaster(order=(1, 1, 1), trend="c"), True),
        (UnobservedComponentsForecaster(level="lltrend"), True),
        (ETSForecaster(error="add", trend="add", damped_trend=True, seasonal="add", season_length=4), True),
        (ETSForecaster(error="mul", trend="add", use_initial_values=True), True),
        (ETSForecaster(error="mul", trend="add"), False),
        (ETSForecaster(error="add", seasonal="mul", season_length=4), False),
    ],
    ids=["arima", "uc", "ets_additive", "ets_mul_error_kept_states", "ets_mul_error", "ets_mul_season"],
)
def test_predict_windows_equals_a_predict_call_per_window(est, affine, monkeypatch):
    est.set_params(horizon=4).fit(ar_panel())
    context = 5 + np.random.default_rng(1).normal(size=(30, 12, 2))  # (windows, L, series)
    calls = []
    forecast = type(est)._forecast
    monkeypatch.setattr(type(est), "_forecast", lambda self, *args: calls.append(1) or forecast(self, *args))
    first = est.predict_windows(context[:20])  # 20 windows > L + 1: the map is built on the first call
    assert len(calls) == 2 * (14 if affine else 20)  # per series: a window, 12 perturbations, a check; or each window
    rest = est.predict_windows(context[20:])
    assert len(calls) == 2 * (14 if affine else 30)  # the map is kept
    monkeypatch.undo()
    reference = _window_reference(est, context, ["ar0", "ar1"])
    np.testing.assert_allclose(np.concatenate([first, rest]), reference, rtol=1e-8, atol=1e-8)
    assert first.shape == (20, 4, 2)


def test_predict_windows_checks_the_affine_map_and_its_input(monkeypatch):
    est = ETSForecaster(error="add", seasonal="mul", season_length=4, horizon=3).fit(ar_panel())
    monkeypatch.setattr(ETSForecaster, "_is_linear", lambda self, fit: True)  # a wrong claim of linearity
    context = 5 + np.random.default_rng(2).normal(size=(20, 8, 2))
    out = est.predict_windows(context)
    assert all(entry["map"] is False for entry in est._window_maps.values())  # the check rejected the maps
    np.testing.assert_allclose(out, _window_reference(est, context, ["ar0", "ar1"]), rtol=1e-8)
    with pytest.raises(ValueError, match="fitted on 2"):
        est.predict_windows(context[:, :, :1])
    with pytest.raises(ValueError, match="shape"):
        est.predict_windows(context[0])
    with pytest.raises(ValueError, match="NaN"):
        est.predict_windows(np.full((2, 8, 2), np.nan))
    est.fit(ar_panel(seed=3))
    assert est._window_maps == {}  # a refit drops the maps of the old parameters
