"""AutoARIMA: the unit-root tests, the stepwise search (with a scripted IC surface) and the airline model."""

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

import ssmcast.baselines.auto_arima as auto_arima
from ssmcast.baselines import ARIMAForecaster, AutoARIMAForecaster, FallbackWarning
from ssmcast.baselines.auto_arima import ndiffs, nsdiffs, seasonal_strength


def kpss_statistic(y, lags):
    """KPSS level statistic written out: partial sums of demeaned y over n^2 times the Bartlett LRV."""
    n = len(y)
    e = [v - sum(y) / n for v in y]
    partial, total = 0.0, 0.0
    for v in e:
        partial += v
        total += partial**2
    lrv = sum(v * v for v in e) / n
    for s in range(1, lags + 1):
        gamma = sum(e[t] * e[t - s] for t in range(s, n)) / n
        lrv += 2 * (1 - s / (lags + 1)) * gamma
    return total / (n * n * lrv)


def slow_ndiffs(y, max_d=2):
    d = 0
    while d < max_d and kpss_statistic(list(y), int(3 * np.sqrt(len(y)) / 13)) > 0.463:  # 5% critical value
        d += 1
        y = np.diff(y)
    return d


@pytest.mark.parametrize("integration", [0, 1, 2])
def test_ndiffs_matches_the_kpss_definition(integration):
    y = np.random.default_rng(integration).normal(size=150)
    for _ in range(integration):
        y = np.cumsum(y)
    assert ndiffs(y) == slow_ndiffs(y) == integration


def test_nsdiffs_by_seasonal_strength():
    rng = np.random.default_rng(0)
    t = np.arange(96)
    seasonal = 10 * np.sin(2 * np.pi * t / 12) + rng.normal(size=96)
    noise = rng.normal(size=96)
    assert seasonal_strength(seasonal, 12) > 0.64 and nsdiffs(seasonal, 12) == 1
    assert seasonal_strength(noise, 12) < 0.64 and nsdiffs(noise, 12) == 0
    assert nsdiffs(seasonal[:20], 12) == 0  # fewer than two seasons
    assert nsdiffs(np.ones(50), 12) == 0


def fake_fit(ic_of, log):
    """A stand-in for fit_sarimax whose AICc is ``ic_of(p, q, P, Q, constant)``."""

    def fit(y, order, seasonal_order, trend, **kwargs):
        p, _, q = order
        P, _, Q, _ = seasonal_order
        key = (p, q, P, Q, trend == "c")
        log.append(key)
        value = ic_of(*key)
        results = SimpleNamespace(aicc=value, aic=value, bic=value, llf=-value, nobs_effective=len(y), scale=1.0,
                                  model=SimpleNamespace(k_ar=0, k_ma=0))
        spec = dict(order=tuple(order), seasonal_order=tuple(seasonal_order), trend=trend)
        return spec, np.zeros(1), ["x"], results

    return fit


def series_frame(n=120, seed=0):
    y = np.random.default_rng(seed).normal(size=n) + 10
    return pd.DataFrame({"unique_id": "s", "ds": np.arange(n), "y": y})


def test_stepwise_search_walks_downhill_to_the_minimum(monkeypatch):
    target = (1, 3, 0, 1, False)

    def bowl(p, q, P, Q, constant):
        return (p - 1) ** 2 + (q - 3) ** 2 + (P - 0) ** 2 + (Q - 1) ** 2 + (0.5 if constant else 0.0)

    log = []
    monkeypatch.setattr(auto_arima, "fit_sarimax", fake_fit(bowl, log))
    est = AutoARIMAForecaster(season_length=4, d=0, D=0).fit(series_frame())
    stats = est.models_["s"].stats
    assert (stats["p"], stats["q"], stats["P"], stats["Q"], stats["constant"]) == target
    # Hyndman-Khandakar start models, in order, with the constant (d + D = 0)
    assert log[:5] == [(2, 2, 1, 1, True), (0, 0, 0, 0, True), (1, 0, 1, 0, True), (0, 1, 0, 1, True),
                       (0, 0, 0, 0, False)]
    assert len(log) == len(set(log)) == stats["n_models"]  # no model fitted twice
    assert all(p + q + P + Q <= 5 for p, q, P, Q, _ in log[5:])  # max_order bounds the moves


def test_stepwise_search_respects_bounds_and_budget(monkeypatch):
    log = []
    monkeypatch.setattr(auto_arima, "fit_sarimax", fake_fit(lambda p, q, P, Q, c: -(p + q + P + Q), log))
    est = AutoARIMAForecaster(season_length=4, d=1, D=0, max_p=2, max_q=1, max_P=1, max_Q=0, max_order=3).fit(
        series_frame())
    assert all(p <= 2 and q <= 1 and P <= 1 and Q == 0 for p, q, P, Q, _ in log)
    assert all(p + q + P + Q <= 3 for p, q, P, Q, _ in log[4:])
    stats = est.models_["s"].stats  # the start model (2,1,1)(1,0,0) is tried regardless of max_order, as in R
    assert (stats["p"], stats["q"], stats["P"], stats["Q"]) == (2, 1, 1, 0) and log[0][:4] == (2, 1, 1, 0)
    log.clear()
    AutoARIMAForecaster(season_length=4, d=0, D=0, max_models=7).fit(series_frame())
    assert len(log) == 7


def test_every_candidate_failing_falls_back(monkeypatch):
    def broken(*args, **kwargs):
        raise np.linalg.LinAlgError("LU decomposition error.")

    monkeypatch.setattr(auto_arima, "fit_sarimax", broken)
    with pytest.warns(FallbackWarning, match="'s'.*no ARIMA model could be fitted.*LinAlgError"):
        est = AutoARIMAForecaster(d=0).fit(series_frame())
    assert est.models_["s"].name == "naive" and "LinAlgError" in est.fallbacks_["s"]


def test_constant_series_forecasts_its_value():
    df = pd.DataFrame({"unique_id": "c", "ds": np.arange(30), "y": 4.0})
    out = AutoARIMAForecaster().fit(df).predict(3, quantiles=[0.1, 0.9])
    np.testing.assert_allclose(out[["y_pred", "y_pred_q0.1", "y_pred_q0.9"]].to_numpy(), 4.0)


@pytest.mark.slow
def test_ar1_series_gets_a_model_at_least_as_good_as_the_truth():
    rng = np.random.default_rng(4)
    y = np.zeros(100)
    for t in range(1, 100):
        y[t] = 0.6 * y[t - 1] + rng.normal()
    df = pd.DataFrame({"unique_id": "ar", "ds": np.arange(100), "y": y + 3})
    est = AutoARIMAForecaster().fit(df)
    stats = est.models_["ar"].stats
    truth = ARIMAForecaster(order=(1, 0, 0), trend="c").fit(df).models_["ar"].stats
    assert stats["d"] == 0 and stats["aicc"] <= truth["aicc"] + 1e-6
    out = est.predict(5, quantiles=[0.1, 0.9])
    assert (out["y_pred_q0.1"] < out["y_pred"]).all() and (out["y_pred"] < out["y_pred_q0.9"]).all()


@pytest.mark.parametrize("kwargs, match", [({"ic": "hqic"}, "ic"), ({"max_p": -1}, "max_p"), ({"d": 1.5}, "d"),
                                           ({"max_models": 0}, "max_models"), ({"alpha": 1.0}, "alpha")])
def test_invalid_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        AutoARIMAForecaster(**kwargs).fit(series_frame())


@pytest.mark.slow
def test_airline_model_on_log_air_passengers():
    from test_state_space import airline

    df = airline()
    est = AutoARIMAForecaster().fit(df)
    chosen = est.models_["air"]
    reference = ARIMAForecaster(order=(0, 1, 1), seasonal_order=(0, 1, 1)).fit(df).models_["air"]
    assert (chosen.stats["d"], chosen.stats["D"]) == (1, 1)
    assert chosen.name == "ARIMA(0,1,1)(0,1,1)[12]" or chosen.stats["aicc"] <= reference.stats["aicc"] + 1e-6
    assert chosen.stats["aicc"] == pytest.approx(reference.stats["aicc"], abs=0.01)


# ---------------------------------------------------------------- CSS estimation (ssmcast.baselines.css)


def expanded(short, seasonal, m, sign):
    """Coefficients of B^1..B^K of (1 + sign sum short_i B^i)(1 + sign sum seasonal_j B^jm), by a double loop."""
    coefs = [0.0] * (len(short) + len(seasonal) * m)
    for i in range(len(short) + 1):
        for j in range(len(seasonal) + 1):
            ci = 1.0 if i == 0 else sign * short[i - 1]
            cj = 1.0 if j == 0 else sign * seasonal[j - 1]
            if i + j * m:
                coefs[i + j * m - 1] += ci * cj
    return coefs


def r_css_residuals(y, phi, Phi, theta, Theta, d, D, m, mu=0.0):
    """R's ARIMA_CSS (stats/src/arima.c) as a loop: difference in place, condition on d + D m + p + P m values."""
    ar = [-c for c in expanded(phi, Phi, m, -1.0)]  # x_t = sum_k ar_k x_{t-k} + ...
    ma = expanded(theta, Theta, m, 1.0)
    n, w = len(y), list(y)
    for _ in range(d):
        for t in range(n - 1, 0, -1):
            w[t] -= w[t - 1]
    for _ in range(D):
        for t in range(n - 1, m - 1, -1):
            w[t] -= w[t - m]
    n_cond = d + D * m + len(ar)
    resid = [0.0] * n
    for t in range(n_cond, n):
        value = w[t] - mu
        for k in range(len(ar)):
            value -= ar[k] * (w[t - k - 1] - mu)
        for k in range(min(t - n_cond, len(ma))):
            value -= ma[k] * resid[t - k - 1]
        resid[t] = value
    return np.array(resid[n_cond:])


CSS_CASES = [  # (phi, Phi, theta, Theta, d, D, m, mu)
    ([0.5], [], [], [], 0, 0, 1, 0.3),
    ([0.4, -0.2], [0.3], [0.5], [-0.4], 0, 1, 4, 0.1),
    ([], [], [0.3, 0.2], [0.6], 1, 1, 5, 0.0),
    ([0.7], [-0.5, 0.2], [-0.3], [], 2, 0, 3, 0.0),
    ([], [0.4], [], [-0.7, 0.1], 1, 0, 6, -0.2),
]


def test_lag_polynomial_and_difference_match_loops():
    from ssmcast.baselines.css import difference, lag_polynomial

    for phi, Phi, theta, Theta, d, D, m, _ in CSS_CASES:
        np.testing.assert_allclose(lag_polynomial(phi, Phi, m, -1.0)[1:], expanded(phi, Phi, m, -1.0), atol=1e-15)
        np.testing.assert_allclose(lag_polynomial(theta, Theta, m, 1.0)[1:], expanded(theta, Theta, m, 1.0),
                                   atol=1e-15)
        y = np.random.default_rng(m).normal(size=40).cumsum()
        w = list(y)
        for _ in range(D):
            w = [w[t] - w[t - m] for t in range(m, len(w))]
        for _ in range(d):
            w = [w[t] - w[t - 1] for t in range(1, len(w))]
        np.testing.assert_allclose(difference(y, d, D, m), w, atol=1e-12)


@pytest.mark.parametrize("case", CSS_CASES)
def test_css_residuals_match_the_r_recursion(case):
    from ssmcast.baselines.css import css_residuals, difference, lag_polynomial

    phi, Phi, theta, Theta, d, D, m, mu = case
    y = np.random.default_rng(len(phi) + m).normal(size=90).cumsum() * 0.3
    fast = css_residuals(difference(y, d, D, m), lag_polynomial(phi, Phi, m, -1.0),
                         lag_polynomial(theta, Theta, m, 1.0), mu)
    np.testing.assert_allclose(fast, r_css_residuals(y, phi, Phi, theta, Theta, d, D, m, mu), rtol=1e-10,
                               atol=1e-10)


@pytest.mark.parametrize("case", CSS_CASES[1:])
def test_css_jacobian_matches_finite_differences_of_the_loop(case):
    from ssmcast.baselines.css import _CSSProblem, difference

    phi, Phi, theta, Theta, d, D, m, mu = case
    y = np.random.default_rng(7).normal(size=70).cumsum() * 0.3
    problem = _CSSProblem(difference(y, d, D, m), len(phi), len(theta), len(Phi), len(Theta), m, constant=True)
    x = np.array([*phi, *Phi, *theta, *Theta, mu])

    def loop(x):
        p, P, q = len(phi), len(Phi), len(theta)
        return r_css_residuals(y, x[:p], x[p:p + P], x[p + P:p + P + q], x[p + P + q:-1], d, D, m, x[-1])

    np.testing.assert_allclose(problem.residuals(x), loop(x), atol=1e-10)
    step = 1e-6
    numeric = np.column_stack([(loop(x + step * e) - loop(x - step * e)) / (2 * step) for e in np.eye(len(x))])
    np.testing.assert_allclose(problem.jacobian(x), numeric, rtol=1e-5, atol=1e-6)


def test_css_of_an_autoregression_is_least_squares():
    from ssmcast.baselines.css import fit_css

    rng = np.random.default_rng(3)
    y = np.zeros(300)
    for t in range(2, 300):
        y[t] = 0.5 * y[t - 1] - 0.3 * y[t - 2] + rng.normal()
    y = y + 4.0
    fit = fit_css(y, (2, 0, 0), constant=True)
    X = np.column_stack([np.ones(298), y[1:-1], y[:-2]])
    beta, ssr, *_ = np.linalg.lstsq(X, y[2:], rcond=None)
    assert fit.param_names == ["ar.L1", "ar.L2", "mean"]
    np.testing.assert_allclose(fit.params, [beta[1], beta[2], beta[0] / (1 - beta[1] - beta[2])], rtol=1e-6)
    assert fit.sigma2 == pytest.approx(ssr[0] / 298, rel=1e-8) and fit.converged
    np.testing.assert_allclose(fit.residuals, y[2:] - X @ beta, atol=1e-6)


def test_css_recovers_seasonal_arima_parameters():
    from scipy.signal import lfilter

    from ssmcast.baselines.css import fit_css, lag_polynomial

    rng = np.random.default_rng(1)
    n, m = 1200, 12
    x = lfilter(lag_polynomial([0.3], [-0.5], m, 1.0), lag_polynomial([0.6], [], m, -1.0), rng.normal(size=n + 300))
    y = x[300:] + 5.0
    for t in range(m, n):  # (1 - B^12) y = ARMA
        y[t] += y[t - m] - 5.0
    fit = fit_css(y, (1, 0, 1), (0, 1, 1, m), constant=True)
    assert fit.param_names == ["ar.L1", "ma.L1", "ma.S.L12", "drift"]
    np.testing.assert_allclose(fit.params, [0.6, 0.3, -0.5, 0.0], atol=0.06)
    assert fit.sigma2 == pytest.approx(1.0, abs=0.1)
    assert fit.nobs == n - m and len(fit.residuals) == n - fit.n_cond and fit.n_cond == m + 1


def test_css_matches_r_on_usaccdeaths():
    """R's ?arima example: arima(USAccDeaths, c(0,1,1), seasonal = c(0,1,1), method = "CSS") gives
    ma1 = -0.3732, sma1 = -0.4549."""
    from ssmcast.baselines.css import fit_css

    y = np.array([9007, 8106, 8928, 9137, 10017, 10826, 11317, 10744, 9713, 9938, 9161, 8927, 7750, 6981, 8038,
                  8422, 8714, 9512, 10120, 9823, 8743, 9129, 8710, 8680, 8162, 7306, 8124, 7870, 9387, 9556, 10093,
                  9620, 8285, 8466, 8160, 8034, 7717, 7461, 7767, 7925, 8623, 8945, 10078, 9179, 8037, 8488, 7874,
                  8647, 7792, 6957, 7726, 8106, 8890, 9299, 10625, 9302, 8314, 8850, 8265, 8796, 7836, 6892, 7791,
                  8192, 9115, 9434, 10484, 9827, 9110, 9070, 8633, 9240], dtype=float)
    fit = fit_css(y, (0, 1, 1), (0, 1, 1, 12))
    np.testing.assert_allclose(fit.params, [-0.3732, -0.4549], atol=1e-4)


def test_css_information_criteria_follow_auto_arima():
    """llf of arima(method="CSS"); aic = offset + n* log(sigma2) + 2k with auto.arima's offset, which is
    -2 llf - n log(sigma2) of the exact white-noise fit (checked against statsmodels' Kalman filter)."""
    from statsmodels.tsa.statespace.sarimax import SARIMAX

    from ssmcast.baselines.css import css_offset, fit_css

    rng = np.random.default_rng(5)
    y = np.cumsum(rng.normal(size=120)) + np.tile(np.arange(4.0), 30)
    fit = fit_css(y, (1, 1, 1), (1, 1, 0, 4))
    n_star, k = 120 - 1 - 4, 4
    assert fit.nobs == n_star and fit.n_cond == 1 + 4 + 1 + 4
    assert fit.sigma2 == pytest.approx(np.sum(fit.residuals**2) / (120 - fit.n_cond))
    assert fit.llf == pytest.approx(-0.5 * n_star * (np.log(2 * np.pi * fit.sigma2) + 1))
    white = SARIMAX(y, order=(0, 1, 0), seasonal_order=(0, 1, 0, 4), simple_differencing=True).fit(disp=False)
    offset = -2 * white.llf - 120 * np.log(white.params[-1])
    assert css_offset(y, 1, 1, 4) == pytest.approx(offset, rel=1e-6)
    assert fit.aic == pytest.approx(offset + n_star * np.log(fit.sigma2) + 2 * k, rel=1e-6)
    assert fit.aicc == pytest.approx(fit.aic + 2 * k * (k + 1) / (n_star - k - 1))
    assert fit.bic == pytest.approx(fit.aic + k * (np.log(n_star) - 2))


def test_css_min_root_matches_the_expanded_polynomial():
    from ssmcast.baselines.css import fit_css

    y = np.random.default_rng(2).normal(size=200).cumsum()
    fit = fit_css(y, (2, 1, 1), (1, 0, 1, 6))
    roots = np.r_[np.roots(fit.ar_poly[::-1]), np.roots(fit.ma_poly[::-1])]
    assert fit.min_root() == pytest.approx(np.abs(roots).min(), rel=1e-8)
    assert fit_css(y, (0, 1, 0)).min_root() == np.inf


@pytest.mark.parametrize("args, kwargs, match", [
    ((np.ones(30), (1, 0)), {}, "order"),
    ((np.ones(30), (1, 0, 0), (1, 0, 0, 1)), {}, "period"),
    ((np.r_[np.ones(29), np.nan], (1, 0, 0)), {}, "finite"),
    ((np.arange(20.0), (1, 0, 1), (1, 1, 0, 12)), {}, "too short"),
])
def test_css_rejects_bad_input(args, kwargs, match):
    from ssmcast.baselines.css import fit_css

    with pytest.raises(ValueError, match=match):
        fit_css(*args, **kwargs)


def test_css_does_not_modify_its_input():
    from ssmcast.baselines.css import fit_css

    y = np.random.default_rng(0).normal(size=80)
    before = y.copy()
    fit_css(y, (1, 0, 1), constant=True)
    np.testing.assert_array_equal(y, before)


# ---------------------------------------------------------------- the approximated (CSS) search


def fake_css(ic_of, log, min_root=2.0):
    """A stand-in for fit_css whose IC is ``ic_of(p, q, P, Q, constant)``."""

    def fit(y, order, seasonal_order, constant, **kwargs):
        p, _, q = order
        P, _, Q, _ = seasonal_order
        key = (p, q, P, Q, bool(constant))
        log.append(key)
        value = ic_of(*key)
        return SimpleNamespace(aicc=value, aic=value, bic=value, min_root=lambda: min_root)

    return fit


@pytest.mark.parametrize("n, m, approximation, expected", [
    (150, 4, None, False), (151, 4, None, True), (100, 13, None, True), (100, 12, None, False),
    (100, 4, True, True), (300, 24, False, False),
])
def test_approximation_follows_r_rule(monkeypatch, n, m, approximation, expected):
    css_log, exact_log = [], []
    def ic(p, q, P, Q, constant):
        return p + q + P + Q + 0.1 * constant

    monkeypatch.setattr(auto_arima, "fit_css", fake_css(ic, css_log))
    monkeypatch.setattr(auto_arima, "fit_sarimax", fake_fit(ic, exact_log))
    df = series_frame(n)
    est = AutoARIMAForecaster(season_length=m, d=0, D=0, approximation=approximation).fit(df)
    stats = est.models_["s"].stats
    assert stats["approximation"] is expected
    if expected:
        assert stats["n_exact_fits"] == len(exact_log) == 1 and len(css_log) == stats["n_models"]
        assert exact_log == [(0, 0, 0, 0, False)] and stats["css_rank"] == 1
    else:
        assert not css_log and len(exact_log) == stats["n_models"] == stats["n_exact_fits"]


def test_approximated_search_refits_down_the_css_ranking(monkeypatch):
    def bowl(p, q, P, Q, constant):
        return (p - 1) ** 2 + (q - 3) ** 2 + (P - 0) ** 2 + (Q - 1) ** 2 + (0.5 if constant else 0.0)

    css_log, exact_log = [], []
    monkeypatch.setattr(auto_arima, "fit_css", fake_css(bowl, css_log))
    failing = {(1, 3, 0, 1, False), (1, 3, 0, 1, True)}  # the two best CSS models fail their exact fit
    exact = fake_fit(lambda *key: -100.0, exact_log)

    def exact_or_fail(y, order, seasonal_order, trend, **kwargs):
        key = (order[0], order[2], seasonal_order[0], seasonal_order[2], trend == "c")
        if key in failing:
            exact_log.append(key)
            raise np.linalg.LinAlgError("Schur decomposition solver error.")
        return exact(y, order, seasonal_order, trend, **kwargs)

    monkeypatch.setattr(auto_arima, "fit_sarimax", exact_or_fail)
    est = AutoARIMAForecaster(season_length=4, d=0, D=0, approximation=True).fit(series_frame())
    stats = est.models_["s"].stats
    ranking = sorted(dict.fromkeys(css_log), key=lambda key: bowl(*key))  # stable: ties in search order
    assert exact_log == ranking[:3]
    assert (stats["p"], stats["q"], stats["P"], stats["Q"], stats["constant"]) == ranking[2]
    assert stats["css_rank"] == stats["n_exact_fits"] == 3 and stats["css_aicc"] == bowl(*ranking[2])
    assert stats["aicc"] == -100.0  # the reported IC is the exact one


def test_approximated_search_skips_css_models_near_the_unit_circle(monkeypatch):
    css_log, exact_log = [], []
    monkeypatch.setattr(auto_arima, "fit_css", fake_css(lambda *key: float(sum(key[:4])), css_log, min_root=1.005))
    monkeypatch.setattr(auto_arima, "fit_sarimax", fake_fit(lambda *key: 1.0, exact_log))
    est = AutoARIMAForecaster(season_length=4, d=0, D=0, approximation=True).fit(series_frame())
    # every CSS IC is inf, so the refit goes through the candidates in search order, as R does
    assert exact_log == css_log[:1] and est.models_["s"].stats["css_aicc"] == np.inf


def test_approximated_search_falls_back_when_every_exact_fit_fails(monkeypatch):
    def broken(*args, **kwargs):
        raise ValueError("non-stationary starting autoregressive parameters")

    css_log = []
    monkeypatch.setattr(auto_arima, "fit_css", fake_css(lambda *key: float(sum(key[:4])), css_log))
    monkeypatch.setattr(auto_arima, "fit_sarimax", broken)
    with pytest.warns(FallbackWarning, match=r"'s'.*refitted exactly.*non-stationary"):
        est = AutoARIMAForecaster(season_length=4, d=0, D=0, approximation=True).fit(series_frame())
    assert est.models_["s"].name == "seasonal_naive"


def count_exact_fits(monkeypatch):
    calls = []
    real = auto_arima.fit_sarimax

    def spy(*args, **kwargs):
        calls.append(args[1:3])
        return real(*args, **kwargs)

    monkeypatch.setattr(auto_arima, "fit_sarimax", spy)
    return calls


def test_approximation_makes_few_exact_fits(monkeypatch):
    rng = np.random.default_rng(11)
    y = np.zeros(400)
    for t in range(1, 400):
        y[t] = 0.7 * y[t - 1] + rng.normal()
    df = pd.DataFrame({"unique_id": "ar", "ds": np.arange(400), "y": y + 2.0})
    calls = count_exact_fits(monkeypatch)
    approx = AutoARIMAForecaster().fit(df).models_["ar"].stats  # n = 400 > 150: approximated by default
    n_approx = len(calls)
    calls.clear()
    exact = AutoARIMAForecaster(approximation=False).fit(df).models_["ar"].stats
    assert approx["approximation"] and not exact["approximation"]
    assert n_approx == approx["n_exact_fits"] == approx["css_rank"] <= 2
    assert len(calls) == exact["n_exact_fits"] == exact["n_models"] >= 4 * n_approx
    assert approx["d"] == exact["d"] == 0 and approx["aicc"] <= exact["aicc"] + 2.0


@pytest.mark.slow
def test_approximated_search_on_log_air_passengers(monkeypatch):
    """R's default (n = 144, m = 12) is the exact search, which picks the airline model (test above). Forced,
    the CSS criterion prefers two seasonal AR terms (it conditions on p + 12 P more observations); the exact
    refit still lands within a few AICc units of the airline model."""
    from test_state_space import airline

    df = airline()
    calls = count_exact_fits(monkeypatch)
    chosen = AutoARIMAForecaster(approximation=True).fit(df).models_["air"]
    stats = chosen.stats
    reference = ARIMAForecaster(order=(0, 1, 1), seasonal_order=(0, 1, 1)).fit(df).models_["air"]
    assert (stats["d"], stats["D"], stats["q"]) == (1, 1, 1) and stats["approximation"]
    assert len(calls) == stats["n_exact_fits"] == stats["css_rank"] <= 3 < stats["n_models"]
    assert stats["aicc"] <= reference.stats["aicc"] + 5.0


def test_invalid_approximation():
    with pytest.raises(ValueError, match="approximation"):
        AutoARIMAForecaster(approximation="yes").fit(series_frame())
