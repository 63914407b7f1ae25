"""Seasonal ARIMA on statsmodels ``SARIMAX`` (Kalman filter, exact Gaussian likelihood), one model per series.

Estimation runs on the differenced series (``simple_differencing=True``) with the scale concentrated out:
with the diffuse initialisation of the integrated states the exact likelihood of ARIMA(p,d,q)(P,D,Q)_m is
the likelihood of the differenced series, so this is the same MLE with ``d + m D`` fewer states (several
times faster for m = 24). The estimates are then put into the undifferenced model, which is what is
filtered, forecast and re-filtered on new histories (``SARIMAX(...).filter(params)``, the operation
behind statsmodels' ``results.apply``).

Forecasts need the mean and the variance of each step only: the filter's raw output (``filter(params,
return_ssm=True)``: no results object, no parameter covariance) gives the last predicted state and its
covariance, and for a time-invariant model (no time trend or drift) the remaining steps are the Kalman filter's
prediction step over missing observations, the recursion statsmodels' ``get_forecast`` runs, done here for a
batch of series at once (:func:`state_space_forecasts`).
"""

from __future__ import annotations

from numbers import Integral

import numpy as np
from statsmodels.tsa.statespace.sarimax import SARIMAX

from ._base import BaselineForecaster, SeriesFit
from .simple import normal_quantile

__all__ = ["ARIMAForecaster", "arima_name", "fit_sarimax", "state_space_forecasts"]

_TRENDS = (None, "n", "c", "t", "ct")


def arima_name(order, seasonal_order, trend) -> str:
    """``"ARIMA(0,1,1)(0,1,1)[12]"``, with ``" with drift"``/``" with mean"``/``" with trend 'ct'"``."""
    p, d, q = order
    P, D, Q, m = seasonal_order
    name = f"ARIMA({p},{d},{q})" + (f"({P},{D},{Q})[{m}]" if m > 1 and P + D + Q > 0 else "")
    if trend == "c":
        name += " with drift" if d + D == 1 else (" with mean" if d + D == 0 else " with constant")
    elif trend not in (None, "n"):
        name += f" with trend {trend!r}"
    return name


def fit_sarimax(y: np.ndarray, order, seasonal_order, trend=None, *, method: str = "lbfgs", maxiter: int = 50,
                enforce_stationarity: bool = True, enforce_invertibility: bool = True, smooth: bool = True):
    """MLE of one SARIMAX model. Returns ``(spec, params, param_names, estimation_results)``.

    ``spec`` builds the undifferenced model (``SARIMAX(y, **spec)``); ``params`` includes ``sigma2`` last.
    ``smooth=False``: the results are those of the Kalman filter at the estimates (the same parameters,
    likelihood and information criteria; no smoothed states, which the forecasters never read), as
    ``statsmodels`` ``fit(return_params=True)`` then ``filter``; ``smooth=True`` is ``fit``'s own smoothed results.
    Raises ``RuntimeError`` when the optimum is not finite.
    """
    spec = dict(order=tuple(order), seasonal_order=tuple(seasonal_order), trend=trend,
                enforce_stationarity=enforce_stationarity, enforce_invertibility=enforce_invertibility)
    differenced = trend in (None, "n", "c")  # a time trend would be re-indexed by the differencing
    model = SARIMAX(y, simple_differencing=differenced, concentrate_scale=True, **spec)
    if model.k_params == 0:  # e.g. a random walk: nothing to estimate once the scale is concentrated out
        results = model.filter(np.zeros(0), **({} if smooth else {"cov_type": "none"}))
    elif smooth:
        results = model.fit(disp=False, method=method, maxiter=maxiter, cov_type="none")
    else:  # the optimum's parameters, then one filter (fit's own path smooths as well)
        estimates = model.fit(disp=False, method=method, maxiter=maxiter, return_params=True)
        results = model.filter(estimates, cov_type="none")
    params = np.r_[results.params, results.scale]
    if not (np.isfinite(results.llf) and np.all(np.isfinite(params))):
        raise RuntimeError(f"non-finite likelihood or parameters (llf={results.llf})")
    # the names the filter stored (model.param_names rebuilds them from the lag polynomials on every read)
    names = results.model.data.param_names
    return spec, params, [*(model.param_names if names is None else names), "sigma2"], results


def _stats(results) -> dict:
    return {"aicc": float(results.aicc), "aic": float(results.aic), "bic": float(results.bic),
            "llf": float(results.llf), "nobs": int(results.nobs_effective), "sigma2": float(results.scale)}


class ARIMAForecaster(BaselineForecaster):
    """Seasonal ARIMA(p,d,q)(P,D,Q)_m by exact maximum likelihood (statsmodels ``SARIMAX``), per series.

    Parameters
    ----------
    order : (p, d, q).
    seasonal_order : (P, D, Q) with ``m = season_length``, or (P, D, Q, m) with an explicit period.
    trend : None/"n" (none), "c" (a constant in the differenced equation: the mean when d + D = 0, the
        drift when d + D = 1), "t" or "ct" (statsmodels ``SARIMAX`` semantics).
    season_length : seasonal period m; default from the data frequency (24 hourly, 12 monthly, ...; 1 for
        integer time stamps).
    enforce_stationarity, enforce_invertibility, method, maxiter : passed to statsmodels.
    horizon : default ``h`` of :meth:`predict` (else ``h`` is required).
    n_jobs : joblib workers for fitting/forecasting the series (``backend="local"``).
    backend : ``"local"`` (joblib over ``n_jobs`` processes) or ``"dask"`` (the current ``dask.distributed``
        client's workers; see :mod:`ssmcast.baselines.parallel`). verbose : a tqdm progress bar.

    A series whose fit fails (exception, non-finite likelihood, too short) falls back to the seasonal naive
    forecast (naive when m = 1 or the series is shorter than 2 m) with a :class:`FallbackWarning`.
    Fitted: ``models_``, ``fallbacks_``, ``fit_warnings_``, ``freq_``, ``season_length_``;
    :meth:`summary` and :meth:`results` give per-series statistics and statsmodels results.
    """

    def __init__(self, order=(1, 0, 0), seasonal_order=(0, 0, 0), trend=None, season_length: int | None = None,
                 enforce_stationarity: bool = True, enforce_invertibility: bool = True, method: str = "lbfgs",
                 maxiter: int = 50, horizon: int | None = None, n_jobs: int | None = 1, backend: str = "local",
                 verbose: bool = False):
        self.order = order
        self.seasonal_order = seasonal_order
        self.trend = trend
        self.season_length = season_length
        self.enforce_stationarity = enforce_stationarity
        self.enforce_invertibility = enforce_invertibility
        self.method = method
        self.maxiter = maxiter
        self.horizon = horizon
        self.n_jobs = n_jobs
        self.backend = backend
        self.verbose = verbose

    def _check_params(self) -> None:
        _check_orders(self.order, "order", (3,))
        _check_orders(self.seasonal_order, "seasonal_order", (3, 4))
        if self.trend not in _TRENDS:
            raise ValueError(f"trend must be one of {_TRENDS}; got {self.trend!r}")
        if isinstance(self.maxiter, bool) or not isinstance(self.maxiter, Integral) or self.maxiter < 1:
            raise ValueError(f"maxiter must be a positive integer; got {self.maxiter!r}")

    def _seasonal(self, m: int) -> tuple[int, int, int, int]:
        P, D, Q = self.seasonal_order[:3]
        period = self.seasonal_order[3] if len(self.seasonal_order) == 4 else m
        return (int(P), int(D), int(Q), int(period)) if P + D + Q > 0 else (0, 0, 0, 0)

    def _check_season_length(self, m: int) -> None:
        P, D, Q = self.seasonal_order[:3]
        period = self.seasonal_order[3] if len(self.seasonal_order) == 4 else m
        if P + D + Q > 0 and period < 2:
            raise ValueError(
                f"seasonal_order={tuple(self.seasonal_order)} needs a seasonal period >= 2; got {period} "
                "(pass season_length=..., or a 4-tuple (P, D, Q, m))"
            )

    def _fit_series(self, y: np.ndarray, m: int) -> SeriesFit:
        order = tuple(int(v) for v in self.order)
        seasonal = self._seasonal(m)
        p, d, q = order
        P, D, Q, s = seasonal
        n_params = p + q + P + Q + {None: 0, "n": 0, "c": 1, "t": 1, "ct": 2}[self.trend] + 1
        usable = len(y) - d - D * s
        if usable < n_params + 2:
            raise ValueError(f"series too short: {len(y)} values leave {usable} after differencing "
                             f"for {n_params} parameters")
        spec, params, names, results = fit_sarimax(
            y, order, seasonal, self.trend, method=self.method, maxiter=self.maxiter,
            enforce_stationarity=self.enforce_stationarity, enforce_invertibility=self.enforce_invertibility,
            smooth=False)
        return SeriesFit(name=arima_name(order, seasonal, self.trend), spec=spec, params=params,
                         param_names=names, season_length=m, stats=_stats(results))

    def _filter(self, fit: SeriesFit, y: np.ndarray, new_history: bool = False):
        return SARIMAX(y, **fit.spec).filter(fit.params)

    def _is_linear(self, fit: SeriesFit) -> bool:
        return True

    def _forecast(self, fit: SeriesFit, y: np.ndarray, h: int, levels: list[float], new_history: bool = False):
        return sarimax_forecast_many(self, [(fit, y, new_history)], h, levels)[0]

    def _forecast_many(self, batch: list, h: int, levels: list[float]) -> list:
        return sarimax_forecast_many(self, batch, h, levels)


def sarimax_forecast_many(estimator, batch: list, h: int, levels: list[float]) -> list:
    """``BaselineForecaster._forecast_many`` of the SARIMAX forecasters: each series' model filtered once
    (raw filter output), the forecasts of the time-invariant ones from one batched recursion
    (:func:`state_space_forecasts`); a time-varying model (a trend) forecasts through statsmodels'
    ``get_forecast``, as the base class does."""
    out: list = [None] * len(batch)
    filtered, rows = [], []
    for i, (fit, y, new) in enumerate(batch):
        if fit.method != "model":
            out[i] = BaselineForecaster._forecast(estimator, fit, y, h, levels, new)
            continue
        raw = None
        if fit.spec.get("trend") in (None, "n"):
            raw = SARIMAX(y, **fit.spec).filter(fit.params, return_ssm=True)
        if raw is None or not raw.time_invariant or raw.filter_concentrated:
            # statsmodels' forecast (no parameter covariance: forecasts do not use it)
            results = SARIMAX(y, **fit.spec).filter(fit.params, cov_type="none")
            out[i] = estimator._model_forecast(results, h, levels)
            continue
        filtered.append(raw)
        rows.append(i)
    if filtered:
        mean, variance = state_space_forecasts(filtered, h)
        se = np.sqrt(variance)
        bounds = {q: mean + se * normal_quantile(q) for q in levels}
        for j, i in enumerate(rows):
            out[i] = (mean[j], {q: values[j] for q, values in bounds.items()})
    return out


def state_space_forecasts(filtered: list, h: int) -> tuple[np.ndarray, np.ndarray]:
    """Means and variances ``(n, h)`` of the ``h`` forecasts after the sample of ``n`` statsmodels Kalman filter
    outputs (``FilterResults`` of time-invariant univariate models, scale not concentrated).

    From each filter's last predicted state ``a`` and covariance ``P`` (of the first step after the sample), step
    after step: mean ``Z a + d``, variance ``Z P Z' + H``, then ``a <- T a + c``, ``P <- T P T' + R Q R'``
    (symmetrised), the prediction step of statsmodels' filter over the missing observations of the forecast
    period (``get_forecast``: ``predicted_mean``, ``se_mean ** 2``). Models of different state dimensions are
    grouped; each group is one array recursion.
    """
    mean = np.empty((len(filtered), h))
    variance = np.empty((len(filtered), h))
    groups: dict[int, list[int]] = {}
    for i, raw in enumerate(filtered):
        groups.setdefault(raw.k_states, []).append(i)
    for index in groups.values():
        group = [filtered[i] for i in index]
        a = np.stack([raw.predicted_state[:, -1] for raw in group])  # (b, k)
        P = np.stack([raw.predicted_state_cov[:, :, -1] for raw in group])  # (b, k, k)
        T = np.stack([raw.transition[:, :, 0] for raw in group])
        c = np.stack([raw.state_intercept[:, 0] for raw in group])
        Z = np.stack([raw.design[0, :, 0] for raw in group])  # (b, k)
        d = np.array([raw.obs_intercept[0, 0] for raw in group])
        H = np.array([raw.obs_cov[0, 0, 0] for raw in group])
        R = np.stack([raw.selection[:, :, 0] for raw in group])
        Q = np.stack([raw.state_cov[:, :, 0] for raw in group])
        RQR = R @ Q @ R.transpose(0, 2, 1)
        Tt = T.transpose(0, 2, 1)
        for step in range(h):
            mean[index, step] = np.einsum("bk,bk->b", Z, a) + d
            variance[index, step] = np.einsum("bk,bkl,bl->b", Z, P, Z) + H
            if step + 1 < h:
                a = np.einsum("bkl,bl->bk", T, a) + c
                P = T @ P @ Tt + RQR
                P = (P + P.transpose(0, 2, 1)) / 2
    return mean, variance


def _check_orders(value, name: str, lengths: tuple[int, ...]) -> None:
    ok = isinstance(value, (tuple, list)) and len(value) in lengths and all(
        isinstance(v, Integral) and not isinstance(v, bool) and v >= 0 for v in value)
    if not ok:
        shape = " or ".join(f"{n} non-negative integers" for n in lengths)
        raise ValueError(f"{name} must be a tuple of {shape}; got {value!r}")
