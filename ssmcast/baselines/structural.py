"""Structural time series (unobserved components) on statsmodels ``UnobservedComponents``, one per series."""

from __future__ import annotations

from numbers import Integral

import numpy as np
from statsmodels.tsa.statespace.structural import UnobservedComponents

from ._base import BaselineForecaster, SeriesFit

__all__ = ["UnobservedComponentsForecaster", "LocalLevelForecaster"]

LEVELS = ("irregular", "fixed intercept", "deterministic constant", "dconstant", "local level", "llevel",
          "random walk", "rwalk", "fixed slope", "deterministic trend", "dtrend", "local linear deterministic trend",
          "lldtrend", "random walk with drift", "rwdrift", "local linear trend", "lltrend",
          "smooth trend", "strend", "random trend", "rtrend")


class UnobservedComponentsForecaster(BaselineForecaster):
    """A structural model (level/trend + seasonal + cycle + AR + irregular) by MLE, per series.

    Parameters
    ----------
    level : the trend specification of statsmodels ``UnobservedComponents`` ("llevel" local level,
        "lltrend" local linear trend, "rwalk", "rwdrift", "strend", "dtrend", ...).
    seasonal : None (no seasonal component), an int period, or "auto" (the ``season_length``; no seasonal
        component when it is 1). ``stochastic_seasonal``: a time-varying seasonal pattern.
    cycle, stochastic_cycle, damped_cycle : an (optionally stochastic, damped) cycle.
    autoregressive : order of an AR component of the irregular, or None.
    season_length, method, maxiter, horizon, n_jobs, backend, verbose : as in :class:`ARIMAForecaster`.

    Prediction intervals come from the Kalman filter (mean + se * Phi^-1(q)). A series whose fit fails falls
    back to the naive forecast with a :class:`FallbackWarning`.
    """

    def __init__(self, level: str = "llevel", seasonal: int | str | None = None, stochastic_seasonal: bool = True,
                 cycle: bool = False, stochastic_cycle: bool = False, damped_cycle: bool = False,
                 autoregressive: int | None = None, season_length: int | None = None, method: str = "lbfgs",
                 maxiter: int = 200, horizon: int | None = None, n_jobs: int | None = 1, backend: str = "local",
                 verbose: bool = False):
        self.level = level
        self.seasonal = seasonal
        self.stochastic_seasonal = stochastic_seasonal
        self.cycle = cycle
        self.stochastic_cycle = stochastic_cycle
        self.damped_cycle = damped_cycle
        self.autoregressive = autoregressive
        self.season_length = season_length
        self.method = method
        self.maxiter = maxiter
        self.horizon = horizon
        self.n_jobs = n_jobs
        self.backend = backend
        self.verbose = verbose

    def _check_params(self) -> None:
        if self.level not in LEVELS:
            raise ValueError(f"level must be one of {LEVELS}; got {self.level!r}")
        seasonal = self.seasonal
        if not (seasonal is None or seasonal == "auto" or (
                isinstance(seasonal, Integral) and not isinstance(seasonal, bool) and seasonal >= 2)):
            raise ValueError(f"seasonal must be None, 'auto' or an integer period >= 2; got {seasonal!r}")
        ar = self.autoregressive
        if ar is not None and (isinstance(ar, bool) or not isinstance(ar, Integral) or ar < 1):
            raise ValueError(f"autoregressive must be None or a positive integer; got {ar!r}")
        if isinstance(self.maxiter, bool) or not isinstance(self.maxiter, Integral) or self.maxiter < 1:
            raise ValueError(f"maxiter must be a positive integer; got {self.maxiter!r}")

    def _fallback_method(self, y: np.ndarray, m: int) -> str:
        return "naive"

    def _spec(self, m: int) -> dict:
        period = m if self.seasonal == "auto" else self.seasonal
        spec = dict(level=self.level, cycle=self.cycle, stochastic_cycle=self.stochastic_cycle,
                    damped_cycle=self.damped_cycle, autoregressive=self.autoregressive)
        if period is not None and period > 1:
            spec.update(seasonal=int(period), stochastic_seasonal=self.stochastic_seasonal)
        return spec

    def _fit_series(self, y: np.ndarray, m: int) -> SeriesFit:
        spec = self._spec(m)
        model = UnobservedComponents(y, **spec)
        if len(y) < model.k_states + model.k_params + 1:
            raise ValueError(f"series too short: {len(y)} values for {model.k_states} states and "
                             f"{model.k_params} parameters")
        results = model.fit(disp=False, method=self.method, maxiter=self.maxiter, cov_type="none")
        params = np.asarray(results.params, dtype=float)
        if not (np.isfinite(results.llf) and np.all(np.isfinite(params))):
            raise RuntimeError(f"non-finite likelihood or parameters (llf={results.llf})")
        name = f"UC({self.level}" + (f", seasonal={spec['seasonal']}" if "seasonal" in spec else "") + \
            (", cycle" if self.cycle else "") + (f", AR({self.autoregressive})" if self.autoregressive else "") + ")"
        stats = {"aicc": float(results.aicc), "aic": float(results.aic), "bic": float(results.bic),
                 "llf": float(results.llf), "nobs": int(results.nobs_effective)}
        return SeriesFit(name=name, spec=spec, params=params, param_names=list(model.param_names),
                         season_length=m, stats=stats)

    def _filter(self, fit: SeriesFit, y: np.ndarray, new_history: bool = False):
        return UnobservedComponents(y, **fit.spec).filter(fit.params)

    def _is_linear(self, fit: SeriesFit) -> bool:
        return True


class LocalLevelForecaster(UnobservedComponentsForecaster):
    """The local level model ``y_t = mu_t + eps_t, mu_{t+1} = mu_t + eta_t`` by MLE (Durbin & Koopman ch. 2).

    Same as ``UnobservedComponentsForecaster(level="llevel")``; see it for the other parameters.
    """

    level = "llevel"
    seasonal = None
    stochastic_seasonal = True
    cycle = stochastic_cycle = damped_cycle = False
    autoregressive = None
    season_length = None

    def __init__(self, method: str = "lbfgs", maxiter: int = 200, horizon: int | None = None,
                 n_jobs: int | None = 1, backend: str = "local", verbose: bool = False):
        self.method = method
        self.maxiter = maxiter
        self.horizon = horizon
        self.n_jobs = n_jobs
        self.backend = backend
        self.verbose = verbose
