"""Exponential smoothing state space models (ETS) on statsmodels ``ETSModel``, one per series.

Prediction intervals: exact (Gaussian, ``mean +- se Phi^-1(q)``) for the linear classes ANN, AAN, AAdN,
ANA, AAA, AAdA via statsmodels ``get_prediction``; otherwise empirical quantiles of ``simulate_repetitions``
simulated future paths (``results.simulate``, seeded by ``random_state``).

The fitted initial states belong to the start of the fitted series: they serve that series and its
extensions (``predict()``, ``update``). On a history that starts elsewhere (``predict(df=...)``, the windows
of the long-horizon protocol) the initial states are re-estimated with the smoothing parameters fixed, as
``forecast::ets(y, model=fit)`` does in R: exactly by linear least squares for additive-error models without
multiplicative components (their sum of squared errors is quadratic in the initial states), by statsmodels'
optimiser otherwise. ``use_initial_values=True`` keeps the fitted initial states everywhere.
"""

from __future__ import annotations

from itertools import product
from numbers import Integral

import numpy as np
from statsmodels.tsa.exponential_smoothing.ets import ETSModel

from ._base import BaselineForecaster, SeriesFit
from .simple import normal_quantile

__all__ = ["ETSForecaster"]

_EXACT = ("ANN", "AAN", "AAdN", "ANA", "AAA", "AAdA")


def _short(error: str, trend: str | None, damped: bool, seasonal: str | None) -> str:
    letter = {"add": "A", "mul": "M", None: "N"}
    return letter[error] + letter[trend] + ("d" if damped and trend else "") + letter[seasonal]


class ETSForecaster(BaselineForecaster):
    """ETS(error, trend, seasonal) by maximum likelihood (statsmodels ``ETSModel``), per series.

    Parameters
    ----------
    error : "add" or "mul".  trend : None, "add" or "mul".  damped_trend : damp the trend.
    seasonal : None, "add" or "mul" (period ``season_length``, default from the data frequency).
    auto : choose per series by AICc among error {A, M}, trend {N, A, Ad}, seasonal {N, A, M} (multiplicative
        parts only for strictly positive series; seasonal only when ``season_length > 1`` and the series has
        two full seasons; additive error with multiplicative seasonality excluded, as in ``forecast::ets``);
        ``error``/``trend``/``damped_trend``/``seasonal`` are then ignored.
    maxiter : optimiser iterations. simulate_repetitions, random_state : simulated intervals.
    use_initial_values : keep the fitted initial states on histories that start elsewhere than the fitted
        series (R's ``use.initial.values``); by default they are re-estimated there (module docstring).
    season_length, horizon, n_jobs, backend, verbose : as in :class:`ARIMAForecaster`.

    A series whose fit fails (e.g. multiplicative components on non-positive data, too few values for the
    initial states) falls back to the naive forecast with a :class:`FallbackWarning`.
    """

    _caches = ("_state_solvers",)

    def __init__(self, error: str = "add", trend: str | None = None, damped_trend: bool = False,
                 seasonal: str | None = None, season_length: int | None = None, auto: bool = False,
                 maxiter: int = 1000, simulate_repetitions: int = 1000, random_state: int | None = None,
                 use_initial_values: bool = False, horizon: int | None = None, n_jobs: int | None = 1,
                 backend: str = "local", verbose: bool = False):
        self.error = error
        self.trend = trend
        self.damped_trend = damped_trend
        self.seasonal = seasonal
        self.season_length = season_length
        self.auto = auto
        self.maxiter = maxiter
        self.simulate_repetitions = simulate_repetitions
        self.random_state = random_state
        self.use_initial_values = use_initial_values
        self.horizon = horizon
        self.n_jobs = n_jobs
        self.backend = backend
        self.verbose = verbose

    def _check_params(self) -> None:
        if self.error not in ("add", "mul"):
            raise ValueError(f"error must be 'add' or 'mul'; got {self.error!r}")
        for name in ("trend", "seasonal"):
            if getattr(self, name) not in (None, "add", "mul"):
                raise ValueError(f"{name} must be None, 'add' or 'mul'; got {getattr(self, name)!r}")
        if not isinstance(self.use_initial_values, (bool, np.bool_)):
            raise ValueError(f"use_initial_values must be True or False; got {self.use_initial_values!r}")
        if self.damped_trend and self.trend is None and not self.auto:
            raise ValueError("damped_trend=True needs a trend ('add' or 'mul')")
        for name in ("maxiter", "simulate_repetitions"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, Integral) or value < 1:
                raise ValueError(f"{name} must be a positive integer; got {value!r}")

    def _check_season_length(self, m: int) -> None:
        if self.seasonal is not None and not self.auto and m < 2:
            raise ValueError(f"seasonal={self.seasonal!r} needs season_length >= 2; got {m} "
                             "(pass season_length=...)")

    def _fallback_method(self, y: np.ndarray, m: int) -> str:
        return "naive"

    def _candidates(self, y: np.ndarray, m: int) -> list[dict]:
        if not self.auto:
            return [dict(error=self.error, trend=self.trend, damped_trend=bool(self.damped_trend and self.trend),
                         seasonal=self.seasonal, seasonal_periods=m if self.seasonal else None)]
        positive = bool(np.all(y > 0))
        seasonal_ok = m > 1 and len(y) >= 2 * m
        errors = ["add", "mul"] if positive else ["add"]
        trends = [(None, False), ("add", False), ("add", True)]
        seasonals = ([None, "add"] + (["mul"] if positive else [])) if seasonal_ok else [None]
        out = []
        for error, (trend, damped), seasonal in product(errors, trends, seasonals):
            if error == "add" and seasonal == "mul":
                continue
            out.append(dict(error=error, trend=trend, damped_trend=damped, seasonal=seasonal,
                            seasonal_periods=m if seasonal else None))
        return out

    def _fit_series(self, y: np.ndarray, m: int) -> SeriesFit:
        best, best_aicc, errors = None, np.inf, []
        for spec in self._candidates(y, m):
            try:
                results = ETSModel(y, **spec).fit(disp=False, maxiter=self.maxiter)
            except Exception as err:  # noqa: BLE001 - a failing candidate is skipped; all failing -> fallback
                errors.append(f"{_short(spec['error'], spec['trend'], spec['damped_trend'], spec['seasonal'])}: "
                              f"{type(err).__name__}: {err}")
                continue
            aicc = float(results.aicc)
            if np.isfinite(aicc) and np.all(np.isfinite(results.params)) and aicc < best_aicc:
                best, best_aicc = (spec, results), aicc
        if best is None:
            raise RuntimeError("no ETS model could be fitted" + (f" ({'; '.join(errors[:3])})" if errors else ""))
        spec, results = best
        short = _short(spec["error"], spec["trend"], spec["damped_trend"], spec["seasonal"])
        stats = {"aicc": best_aicc, "aic": float(results.aic), "bic": float(results.bic),
                 "llf": float(results.llf), "nobs": int(results.nobs)}
        return SeriesFit(name=f"ETS({short})", spec=spec, params=np.asarray(results.params, dtype=float),
                         param_names=list(results.model.param_names), season_length=m, stats=stats)

    def _filter(self, fit: SeriesFit, y: np.ndarray, new_history: bool = False):
        model = ETSModel(y, **fit.spec)
        if not new_history or self.use_initial_values:
            return model.smooth(fit.params)
        free = [i for i, name in enumerate(fit.param_names) if name.startswith("initial_")]
        if fit.spec["seasonal"]:
            free = free[:-1]  # the last initial seasonal state stays fixed (0, or 1 if multiplicative), as in fit
        params = fit.params.copy()
        if fit.spec["error"] == "add" and self._additive_components(fit):
            params[free] = 0.0
            r0 = model.smooth(params).resid  # (n,): residuals are affine in the initial states, r0 + M x0
            key = (params.tobytes(), len(y))
            cache = self.__dict__.setdefault("_state_solvers", {})
            if key not in cache:  # M (n, k) depends on the parameters and n only, not on y
                M = np.stack([model.smooth(params + np.eye(len(params))[i]).resid - r0 for i in free], axis=1)
                if len(cache) >= 64:
                    cache.clear()
                cache[key] = np.linalg.pinv(M)  # (k, n)
            params[free] = -cache[key] @ r0
            return model.smooth(params)
        fixed = {name: params[i] for i, name in enumerate(fit.param_names) if i not in free}
        with model.fix_params(fixed):
            results = model.fit(start_params=params, disp=False, maxiter=self.maxiter)
        return model.smooth(np.asarray(results.params, dtype=float))

    @staticmethod
    def _additive_components(fit: SeriesFit) -> bool:
        return fit.spec["trend"] in (None, "add") and fit.spec["seasonal"] in (None, "add")

    def _is_linear(self, fit: SeriesFit) -> bool:
        # with additive components the recursions are linear in y given the initial states, which are either
        # kept or re-estimated by linear least squares (additive error); a multiplicative error's re-estimate
        # is not linear in y
        return self._additive_components(fit) and (fit.spec["error"] == "add" or self.use_initial_values)

    def _model_forecast(self, results, h: int, levels: list[float]):
        mean = np.asarray(results.forecast(h), dtype=float)
        if not levels:
            return mean, {}
        if results.model.short_name in _EXACT:
            # statsmodels' exact forecast variance of the h steps after the sample, as its get_prediction(start=n,
            # end=n + h - 1) computes it (mse times the relative variance of steps 1..h), from these results: its
            # get_prediction needs a pandas endog (its numpy path breaks on pandas 3), and a second model on one,
            # smoothed again, cost more than the rest of a forecast (issue #36)
            variance = np.asarray(results.mse * results._relative_forecast_variance(np.arange(1.0, h + 1)),
                                  dtype=float)
            se = np.sqrt(variance)
            return mean, {q: mean + se * normal_quantile(q) for q in levels}
        rng = np.random.default_rng(self.random_state)
        paths = results.simulate(h, anchor="end", repetitions=self.simulate_repetitions, rng=rng)  # (h, R)
        paths = np.asarray(paths, dtype=float).reshape(h, -1)
        return mean, {q: np.quantile(paths, q, axis=1) for q in levels}
