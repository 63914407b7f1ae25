"""Automatic seasonal ARIMA: the stepwise search of Hyndman & Khandakar (2008), as in R's ``forecast::auto.arima``.

Per series:

1. ``D`` (at most ``max_D``) by the seasonal-strength heuristic of ``forecast::nsdiffs`` (its default): STL
   (``s.window = 11`` like ``mstl``) gives ``F_s = max(0, 1 - var(R) / var(S + R))``; difference while
   ``F_s > seasonal_threshold`` (0.64). Needs ``m > 1`` and at least ``2 m`` values.
2. ``d`` (at most ``max_d``) by repeated KPSS level-stationarity tests on the seasonally differenced series
   (lag truncation ``trunc(3 sqrt(n) / 13)`` as in ``forecast::ndiffs``): difference while the p-value is
   below ``alpha`` (0.05).
3. Start models ARIMA(2,d,2)(1,D,1), (0,d,0)(0,D,0), (1,d,0)(1,D,0), (0,d,1)(0,D,1) (seasonal parts only
   when m > 1), plus (0,d,0)(0,D,0) without constant; the constant (mean when d + D = 0, drift when
   d + D = 1) is included when d + D <= 1.
4. Stepwise: from the best model, try P - 1, Q - 1, P + 1, Q + 1, both together (4 ways), the same for p and q,
   and toggling the constant (R's order); move to the first neighbour with a lower information criterion and
   start again, until no neighbour improves or ``max_models`` (94) models were fitted. Neighbours respect
   ``max_p, max_q, max_P, max_Q`` and ``p + q + P + Q <= max_order`` (the start models are always tried).
   ``max_p``/``max_q`` are capped at ``n / 3`` and at ``m - 1`` when seasonal terms are allowed.
5. Models that fail, or whose AR/MA roots lie within 1.01 of the unit circle, are skipped (IC = inf).

With ``approximation`` (default: R's rule ``n > 150 or m > 12``) every candidate of steps 3-4 is fitted by
conditional sum of squares (:mod:`ssmcast.baselines.css`, milliseconds per model) and ranked by the CSS
information criterion of ``auto.arima`` (``offset + n* log(sigma2_css) + 2 k``, then the AICc/BIC terms);
step 5 applies to the CSS estimates. Then, as R, the candidates are refitted by exact MLE in increasing
order of that criterion (failed and rejected candidates last) and the first exact fit that succeeds and
passes the root check is the model. Without approximation every candidate is an exact-likelihood fit.
The summary records ``approximation``, ``n_models`` (candidates), ``n_exact_fits`` and ``css_rank`` (the
chosen model's position in the CSS ranking, 1 = best; absent without approximation). Warnings raised while
fitting the candidates (e.g. statsmodels ``ConvergenceWarning``) are recorded in ``fit_warnings_``.
"""

from __future__ import annotations

import warnings
from numbers import Integral

import numpy as np
from statsmodels.tsa.seasonal import STL
from statsmodels.tsa.statespace.sarimax import SARIMAX
from statsmodels.tsa.stattools import kpss

from ._base import BaselineForecaster, SeriesFit
from .arima import _stats, arima_name, fit_sarimax, sarimax_forecast_many
from .css import fit_css

__all__ = ["AutoARIMAForecaster", "ndiffs", "nsdiffs", "seasonal_strength"]

# (dp, dq, dP, dQ) in the order of forecast::auto.arima's stepwise loop
_SEASONAL_MOVES = [(0, 0, -1, 0), (0, 0, 0, -1), (0, 0, 1, 0), (0, 0, 0, 1),
                   (0, 0, -1, -1), (0, 0, -1, 1), (0, 0, 1, -1), (0, 0, 1, 1)]
_MOVES = _SEASONAL_MOVES + [(-1, 0, 0, 0), (0, -1, 0, 0), (1, 0, 0, 0), (0, 1, 0, 0),
                            (-1, -1, 0, 0), (-1, 1, 0, 0), (1, -1, 0, 0), (1, 1, 0, 0)]


def _is_constant(y: np.ndarray) -> bool:
    return len(y) == 0 or bool(np.all(y == y[0]))


def seasonal_strength(y: np.ndarray, m: int) -> float:
    """``F_s = max(0, min(1, 1 - var(remainder) / var(seasonal + remainder)))`` of an STL fit (period m)."""
    stl = STL(np.asarray(y, dtype=float), period=m, seasonal=11).fit()
    remainder = np.asarray(stl.resid)
    total = np.var(remainder + np.asarray(stl.seasonal), ddof=1)
    if total == 0:
        return 0.0
    return float(max(0.0, min(1.0, 1.0 - np.var(remainder, ddof=1) / total)))


def nsdiffs(y: np.ndarray, m: int, max_D: int = 1, threshold: float = 0.64) -> int:
    """Number of seasonal differences by the seasonal-strength heuristic (``forecast::nsdiffs``, test "seas")."""
    y = np.asarray(y, dtype=float)
    D = 0
    while D < max_D and m > 1 and len(y) >= 2 * m and not _is_constant(y):
        if seasonal_strength(y, m) <= threshold:
            break
        D += 1
        y = y[m:] - y[:-m]
    return D


def _kpss_rejects(y: np.ndarray, alpha: float) -> bool:
    nlags = int(3 * np.sqrt(len(y)) / 13)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # InterpolationWarning: p-value beyond the table (0.01 / 0.1)
        pvalue = kpss(y, regression="c", nlags=nlags)[1]
    return bool(pvalue < alpha)


def ndiffs(y: np.ndarray, alpha: float = 0.05, max_d: int = 2) -> int:
    """Number of first differences by repeated KPSS tests (``forecast::ndiffs`` with ``test="kpss"``)."""
    y = np.asarray(y, dtype=float)
    d = 0
    while d < max_d and len(y) > 3 and not _is_constant(y) and _kpss_rejects(y, alpha):
        d += 1
        y = np.diff(y)
    return d


def _min_root(results) -> float:
    roots = np.r_[np.abs(results.arroots) if results.model.k_ar else [],
                  np.abs(results.maroots) if results.model.k_ma else []]
    return float(roots.min()) if roots.size else np.inf


class AutoARIMAForecaster(BaselineForecaster):
    """Seasonal ARIMA with orders chosen per series by the Hyndman-Khandakar stepwise AICc search.

    Parameters (defaults of ``forecast::auto.arima``): ``d``, ``D`` fix the differencing (None: tests);
    ``max_p=5, max_q=5, max_P=2, max_Q=2, max_order=5, max_d=2, max_D=1``; start orders
    ``start_p=2, start_q=2, start_P=1, start_Q=1``; ``seasonal`` (False: non-seasonal models only);
    ``ic`` in {"aicc", "aic", "bic"}; ``allow_drift``, ``allow_mean``; ``max_models=94``; ``alpha`` (KPSS
    level) and ``seasonal_threshold`` (0.64); ``approximation`` (None: CSS search when the series has more
    than 150 values or ``season_length > 12``, as R; True/False to force); ``method``/``maxiter`` of each
    exact statsmodels fit;
    ``season_length`` (default from the data frequency), ``horizon``, ``n_jobs``, ``backend``, ``verbose``.
    See the module docstring for the algorithm. A constant series gets its constant (zero-width intervals);
    a series where every candidate fails falls back to the seasonal naive/naive forecast with a
    :class:`FallbackWarning`. ``models_[uid].stats`` and ``summary()`` give each series' chosen model, its
    exact IC, whether the CSS approximation was used (``approximation``), the number of candidates
    (``n_models``) and of exact MLE fits (``n_exact_fits``), and with approximation ``css_rank`` and the
    chosen model's CSS criterion (``css_aicc``/``css_aic``/``css_bic``).
    """

    def __init__(self, season_length: int | None = None, d: int | None = None, D: int | None = None,
                 max_p: int = 5, max_q: int = 5, max_P: int = 2, max_Q: int = 2, max_order: int = 5,
                 max_d: int = 2, max_D: int = 1, start_p: int = 2, start_q: int = 2, start_P: int = 1,
                 start_Q: int = 1, seasonal: bool = True, ic: str = "aicc", allow_drift: bool = True,
                 allow_mean: bool = True, max_models: int = 94, alpha: float = 0.05,
                 seasonal_threshold: float = 0.64, approximation: bool | None = None, method: str = "lbfgs",
                 maxiter: int = 50, horizon: int | None = None, n_jobs: int | None = 1, backend: str = "local",
                 verbose: bool = False):
        self.season_length = season_length
        self.d = d
        self.D = D
        self.max_p = max_p
        self.max_q = max_q
        self.max_P = max_P
        self.max_Q = max_Q
        self.max_order = max_order
        self.max_d = max_d
        self.max_D = max_D
        self.start_p = start_p
        self.start_q = start_q
        self.start_P = start_P
        self.start_Q = start_Q
        self.seasonal = seasonal
        self.ic = ic
        self.allow_drift = allow_drift
        self.allow_mean = allow_mean
        self.max_models = max_models
        self.alpha = alpha
        self.seasonal_threshold = seasonal_threshold
        self.approximation = approximation
        self.method = method
        self.maxiter = maxiter
        self.horizon = horizon
        self.n_jobs = n_jobs
        self.backend = backend
        self.verbose = verbose

    def _check_params(self) -> None:
        for name in ("max_p", "max_q", "max_P", "max_Q", "max_order", "max_d", "max_D", "start_p", "start_q",
                     "start_P", "start_Q"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, Integral) or value < 0:
                raise ValueError(f"{name} must be a non-negative integer; got {value!r}")
        for name in ("d", "D"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, Integral) or value < 0):
                raise ValueError(f"{name} must be a non-negative integer or None; got {value!r}")
        for name in ("max_models", "maxiter"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, Integral) or value < 1:
                raise ValueError(f"{name} must be a positive integer; got {value!r}")
        if self.ic not in ("aicc", "aic", "bic"):
            raise ValueError(f"ic must be 'aicc', 'aic' or 'bic'; got {self.ic!r}")
        if not 0.0 < float(self.alpha) < 1.0:
            raise ValueError(f"alpha must lie in (0, 1); got {self.alpha!r}")
        if not 0.0 <= float(self.seasonal_threshold) <= 1.0:
            raise ValueError(f"seasonal_threshold must lie in [0, 1]; got {self.seasonal_threshold!r}")
        if self.approximation is not None and not isinstance(self.approximation, (bool, np.bool_)):
            raise ValueError(f"approximation must be None, True or False; got {self.approximation!r}")

    def _fit_series(self, y: np.ndarray, m: int) -> SeriesFit:
        n = len(y)
        if _is_constant(y):
            return SeriesFit(name="constant", method="constant", season_length=m, stats={"n_models": 0})
        m_s = m if (self.seasonal and m > 1) else 1
        max_p, max_q = min(self.max_p, n // 3), min(self.max_q, n // 3)
        max_P, max_Q = (min(self.max_P, n // 3 // m_s), min(self.max_Q, n // 3 // m_s)) if m_s > 1 else (0, 0)

        if m_s == 1:
            D = 0
        else:
            D = self.D if self.D is not None else nsdiffs(y, m_s, self.max_D, self.seasonal_threshold)
        dx = y
        for _ in range(D):
            dx = dx[m_s:] - dx[:-m_s]
        d = self.d if self.d is not None else ndiffs(dx, self.alpha, self.max_d)
        if m_s > 1:
            max_p = min(max_p, m_s - 1) if max_P > 0 else max_p
            max_q = min(max_q, m_s - 1) if max_Q > 0 else max_q
        allow_constant = (self.allow_drift and d + D == 1) or (self.allow_mean and d + D == 0)
        if n - d - D * m_s < 3:
            raise ValueError(f"series too short ({n} values) for d={d}, D={D}, m={m_s}")

        approximation = (n > 150 or m > 12) if self.approximation is None else bool(self.approximation)
        search = _Search(y, d, D, m_s, self.ic, self.method, self.maxiter, approximation)
        constant = allow_constant
        start_P, start_Q = (min(self.start_P, max_P), min(self.start_Q, max_Q)) if m_s > 1 else (0, 0)
        starts = [(min(self.start_p, max_p), min(self.start_q, max_q), start_P, start_Q, constant),
                  (0, 0, 0, 0, constant)]
        if max_p > 0 or max_P > 0:
            starts.append((int(max_p > 0), 0, int(m_s > 1 and max_P > 0), 0, constant))
        if max_q > 0 or max_Q > 0:
            starts.append((0, int(max_q > 0), 0, int(m_s > 1 and max_Q > 0), constant))
        if constant:
            starts.append((0, 0, 0, 0, False))
        for candidate in starts:
            if len(search.tried) < self.max_models:
                search.evaluate(candidate)

        improved = True
        while improved and len(search.tried) < self.max_models:
            improved = False
            p, q, P, Q, constant = search.best
            moves = [(p + a, q + b, P + c, Q + e, constant) for a, b, c, e in _MOVES]
            if allow_constant:
                moves.append((p, q, P, Q, not constant))
            for cand in moves:
                cp, cq, cP, cQ, _ = cand
                if not (0 <= cp <= max_p and 0 <= cq <= max_q and 0 <= cP <= max_P and 0 <= cQ <= max_Q):
                    continue
                if cp + cq + cP + cQ > self.max_order or cand in search.tried:
                    continue
                if len(search.tried) >= self.max_models:
                    break
                if search.evaluate(cand):
                    improved = True
                    break

        css_rank = search.refit() if approximation else None
        if search.best_fit is None:
            errors = "; ".join(sorted(set(search.errors))[:3]) or "every candidate had a root near the unit circle"
            stage = f", {search.n_exact_fits} refitted exactly" if approximation else ""
            raise RuntimeError(f"no ARIMA model could be fitted ({len(search.tried)} tried{stage}: {errors})")
        spec, params, names, results = search.best_fit
        p, q, P, Q, constant = search.best
        stats = _stats(results)
        stats.update({"p": p, "d": d, "q": q, "P": P, "D": D, "Q": Q, "m": m_s, "constant": constant,
                      "n_models": len(search.tried), "approximation": approximation,
                      "n_exact_fits": search.n_exact_fits})
        if approximation:
            stats.update({"css_rank": css_rank, f"css_{self.ic}": search.tried[search.best]})
        return SeriesFit(name=arima_name((p, d, q), spec["seasonal_order"], spec["trend"]), spec=spec,
                         params=params, param_names=names, season_length=m, stats=stats)

    def _filter(self, fit: SeriesFit, y: np.ndarray, new_history: bool = False):
        return SARIMAX(y, **fit.spec).filter(fit.params)

    def _forecast(self, fit: SeriesFit, y: np.ndarray, h: int, levels: list[float], new_history: bool = False):
        return sarimax_forecast_many(self, [(fit, y, new_history)], h, levels)[0]

    def _forecast_many(self, batch: list, h: int, levels: list[float]) -> list:
        return sarimax_forecast_many(self, batch, h, levels)

    def _is_linear(self, fit: SeriesFit) -> bool:
        return True


class _Search:
    """The candidates of one stepwise search: their IC (exact, or CSS with ``approximation``) and the best one."""

    def __init__(self, y, d, D, m, ic, method, maxiter, approximation=False):
        self.y, self.d, self.D, self.m = y, d, D, m
        self.ic, self.method, self.maxiter, self.approximation = ic, method, maxiter, approximation
        self.tried: dict[tuple, float] = {}
        self.errors: list[str] = []
        self.best: tuple | None = None
        self.best_ic = np.inf
        self.best_fit = None  # the exact fit (spec, params, names, results) of the chosen model
        self.n_exact_fits = 0
        self.n_css_fitted = 0  # CSS fits that did not raise

    def _seasonal(self, P: int, Q: int) -> tuple[int, int, int, int]:
        return (P, self.D, Q, self.m) if self.m > 1 and P + self.D + Q > 0 else (0, 0, 0, 0)

    def _exact(self, candidate: tuple):
        """``(ic, fit)`` of the exact MLE of ``candidate``; ``(inf, None)`` on failure or a near-unit root."""
        p, q, P, Q, constant = candidate
        self.n_exact_fits += 1
        try:
            fitted = fit_sarimax(self.y, (p, self.d, q), self._seasonal(P, Q), "c" if constant else None,
                                 method=self.method, maxiter=self.maxiter)
        except Exception as err:  # noqa: BLE001 - a failing candidate is skipped, as in auto.arima
            self.errors.append(f"{type(err).__name__}: {err}")
            return np.inf, None
        value = float(getattr(fitted[3], self.ic)) if _min_root(fitted[3]) >= 1.01 else np.inf
        return (value, fitted) if np.isfinite(value) else (np.inf, None)

    def _css(self, candidate: tuple) -> float:
        """The CSS information criterion of ``candidate``; inf on failure or a near-unit root."""
        p, q, P, Q, constant = candidate
        try:
            fitted = fit_css(self.y, (p, self.d, q), self._seasonal(P, Q), constant)
        except Exception as err:  # noqa: BLE001
            self.errors.append(f"CSS {type(err).__name__}: {err}")
            return np.inf
        self.n_css_fitted += 1
        value = float(getattr(fitted, self.ic)) if fitted.min_root() >= 1.01 else np.inf
        return value if np.isfinite(value) else np.inf

    def evaluate(self, candidate: tuple) -> bool:
        """Fit one candidate ``(p, q, P, Q, constant)``; True when it becomes the best model."""
        if self.approximation:
            value, fitted = self._css(candidate), None
        else:
            value, fitted = self._exact(candidate)
        self.tried[candidate] = value
        if self.best is None:
            self.best = candidate
        if value < self.best_ic:
            self.best, self.best_ic, self.best_fit = candidate, value, fitted
            return True
        return False

    def refit(self) -> int | None:
        """Exact MLE of the candidates in increasing CSS IC (ties in search order), up to the first that fits.

        Sets ``best``/``best_ic``/``best_fit`` to it and returns its 1-based rank; None (and no best fit) when
        no exact fit succeeds, or when no CSS fit succeeded at all (R stops there too)."""
        self.best_ic, self.best_fit = np.inf, None
        if self.n_css_fitted == 0:
            return None
        ranked = sorted(self.tried, key=self.tried.__getitem__)  # stable: ties keep the search order
        for rank, candidate in enumerate(ranked, start=1):
            value, fitted = self._exact(candidate)
            if fitted is not None:
                self.best, self.best_ic, self.best_fit = candidate, value, fitted
                return rank
        return None
