"""Conditional sum of squares (CSS) estimation of seasonal ARIMA(p,d,q)(P,D,Q)_m, as R's ``arima(method="CSS")``.

The series ``y`` (length n) is differenced, ``w = (1 - B)^d (1 - B^m)^D y`` (length ``n_star = n - d - D m``),
its mean ``mu`` is removed (only with ``constant``) and, with the expanded lag polynomials

    a(B) = phi(B) Phi(B^m) = (1 - sum_i phi_i B^i)(1 - sum_j Phi_j B^{jm})          degree p + P m
    b(B) = theta(B) Theta(B^m) = (1 + sum_i theta_i B^i)(1 + sum_j Theta_j B^{jm})  degree q + Q m,

the one-step residuals solve ``b(B) e_t = a(B) (w_t - mu)`` for ``t >= p + P m``, with ``e_t = 0`` before: R
conditions on the first ``d + D m + p + P m`` observations of y. The parameters minimise ``sum e_t^2``
(unconstrained, as R: non-stationary or non-invertible estimates are possible and left to the caller) by
Levenberg-Marquardt with the exact Jacobian; the residuals and all Jacobian columns are one ``lfilter``
call each. Starting values: zero ARMA coefficients and the sample mean, as R.

Statistics follow R: ``sigma2 = SSR / (n_star - p - P m)`` (the number of residuals), the CSS log-likelihood of
``arima(method="CSS")`` is ``-n_star / 2 (log(2 pi sigma2) + 1)``, and the information criteria are those
``forecast::auto.arima`` ranks approximated candidates by: ``aic = offset + n_star log(sigma2) + 2 k``
with ``k`` = coefficients + 1, ``aicc = aic + 2k(k+1)/(n_star - k - 1)``, ``bic = aic + k (log(n_star) - 2)``;
``offset = -2 llf_0 - n log(sigma2_0)`` comes from the exact Gaussian fit of white noise to ``w``
(ARIMA(0,d,0)(0,D,0), with a mean when d + D = 0), which is closed-form:
``offset = n_star (1 + log 2 pi) - (n - n_star) log(sigma2_0)``. The offset is the same for every candidate
of a series (fixed d, D), so it shifts the criteria without changing their ranking.
"""

from __future__ import annotations

from dataclasses import dataclass
from numbers import Integral

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy.optimize import least_squares
from scipy.signal import lfilter

__all__ = ["CSSResult", "css_offset", "css_residuals", "difference", "fit_css", "lag_polynomial"]

_HUGE = 1e100  # the residuals of an exploding MA filter: large and finite, so the optimiser backs off


def difference(y: np.ndarray, d: int = 0, D: int = 0, m: int = 1) -> np.ndarray:
    """``(1 - B)^d (1 - B^m)^D y``: ``len(y) - d - D m`` values."""
    w = np.asarray(y, dtype=float)
    for _ in range(D):
        w = w[m:] - w[:-m]
    for _ in range(d):
        w = w[1:] - w[:-1]
    return w


def lag_polynomial(short, seasonal, m: int, sign: float) -> np.ndarray:
    """Coefficients ``c_0 = 1, c_1, ...`` (by power of B) of
    ``(1 + sign sum_i short_i B^i)(1 + sign sum_j seasonal_j B^{jm})``.

    ``sign = -1`` gives the AR polynomial ``a(B)``, ``sign = +1`` the MA polynomial ``b(B)``.
    """
    short = np.asarray(short, dtype=float)
    seasonal = np.asarray(seasonal, dtype=float)
    short_poly = np.empty(len(short) + 1)
    short_poly[0], short_poly[1:] = 1.0, sign * short
    if not len(seasonal):
        return short_poly
    seasonal_poly = np.zeros(len(seasonal) * m + 1)
    seasonal_poly[0] = 1.0
    seasonal_poly[m::m] = sign * seasonal
    return np.convolve(short_poly, seasonal_poly)


def _lags(x: np.ndarray, k: int) -> np.ndarray:
    """``out[s, j] = x[s + k - j]``: row s holds lags 0..k of time ``s + k``."""
    return sliding_window_view(x, k + 1)[:, ::-1]  # (len(x) - k, k + 1)


def css_residuals(w: np.ndarray, ar_poly: np.ndarray, ma_poly: np.ndarray, mu: float = 0.0) -> np.ndarray:
    """Conditional residuals ``e_t``, ``t = n_cond .. len(w) - 1`` with ``n_cond = len(ar_poly) - 1``.

    ``b(B) e_t = a(B) (w_t - mu)`` with ``e_t = 0`` for ``t < n_cond``; ``ar_poly``/``ma_poly`` as returned by
    :func:`lag_polynomial` (leading 1).
    """
    n_cond = len(ar_poly) - 1
    v = _lags(np.asarray(w, dtype=float) - mu, n_cond) @ ar_poly  # (N - n_cond,)
    return lfilter([1.0], ma_poly, v)


def css_offset(y: np.ndarray, d: int, D: int, m: int) -> float:
    """``forecast::auto.arima``'s constant ``-2 llf - n log(sigma2)`` of the exact white-noise fit to the
    differenced series (a mean when d + D = 0); see the module docstring."""
    y = np.asarray(y, dtype=float)
    w = difference(y, d, D, m)
    centred = w - w.mean() if d + D == 0 else w
    sigma2 = float(np.mean(centred**2))
    n, n_star = len(y), len(w)
    if sigma2 <= 0.0:
        return float(n_star * (1.0 + np.log(2 * np.pi)))
    return float(n_star * (1.0 + np.log(2 * np.pi)) - (n - n_star) * np.log(sigma2))


@dataclass(frozen=True)
class CSSResult:
    """A CSS fit. ``params`` are ``ar.L*``, ``ar.S.L*``, ``ma.L*``, ``ma.S.L*`` then ``mean`` (d + D = 0),
    ``drift`` (slope per time step, d + D = 1) or ``constant`` (d + D > 1), named in ``param_names``.
    ``mu`` is the mean of the differenced series (``drift`` times ``m^D``). ``residuals`` are the
    ``len(y) - n_cond`` conditional residuals (``n_cond = d + D m + p + P m``, R's ``ncond``); ``nobs`` is
    ``n_star``; ``llf``, ``aic``, ``aicc``, ``bic``, ``sigma2`` as in the module docstring."""

    order: tuple[int, int, int]
    seasonal_order: tuple[int, int, int, int]
    constant: bool
    params: np.ndarray
    param_names: list[str]
    phi: np.ndarray
    Phi: np.ndarray
    theta: np.ndarray
    Theta: np.ndarray
    mu: float
    residuals: np.ndarray
    sigma2: float
    nobs: int
    n_cond: int
    llf: float
    aic: float
    aicc: float
    bic: float
    converged: bool
    nfev: int

    @property
    def ar_poly(self) -> np.ndarray:
        return lag_polynomial(self.phi, self.Phi, self.seasonal_order[3], -1.0)

    @property
    def ma_poly(self) -> np.ndarray:
        return lag_polynomial(self.theta, self.Theta, self.seasonal_order[3], 1.0)

    def min_root(self) -> float:
        """Smallest modulus of the roots of ``a(z)`` and ``b(z)`` (inf without AR/MA terms).

        Computed per factor: the roots of ``Phi(z^m)`` have modulus ``|root of Phi|^(1/m)``."""
        m = self.seasonal_order[3]
        smallest = np.inf
        for coefs, sign, power in ((self.phi, -1.0, 1), (self.Phi, -1.0, m), (self.theta, 1.0, 1),
                                   (self.Theta, 1.0, m)):
            if len(coefs) and np.any(np.abs(coefs) > 1e-8):
                roots = np.roots(np.r_[1.0, sign * coefs][::-1])  # highest power first
                smallest = min(smallest, float(np.min(np.abs(roots))) ** (1.0 / power))
        return smallest


class _CSSProblem:
    """Residuals and Jacobian of the CSS least-squares problem in ``x = (phi, Phi, theta, Theta[, mu])``."""

    def __init__(self, w: np.ndarray, p: int, q: int, P: int, Q: int, m: int, constant: bool):
        self.w, self.p, self.q, self.P, self.Q, self.m, self.constant = w, p, q, P, Q, m, constant
        self.n_cond = p + P * m
        self.n_ma = q + Q * m
        self._last: tuple[bytes, np.ndarray] | None = None  # (x, residuals): the Jacobian reuses them

    def unpack(self, x: np.ndarray):
        p, q, P, Q = self.p, self.q, self.P, self.Q
        phi, Phi = x[:p], x[p:p + P]
        theta, Theta = x[p + P:p + P + q], x[p + P + q:p + P + q + Q]
        mu = float(x[-1]) if self.constant else 0.0
        return phi, Phi, theta, Theta, mu

    def polynomials(self, x: np.ndarray):
        phi, Phi, theta, Theta, mu = self.unpack(x)
        return lag_polynomial(phi, Phi, self.m, -1.0), lag_polynomial(theta, Theta, self.m, 1.0), mu

    def residuals(self, x: np.ndarray) -> np.ndarray:
        ar_poly, ma_poly, mu = self.polynomials(x)
        with np.errstate(all="ignore"):
            e = css_residuals(self.w, ar_poly, ma_poly, mu)  # (N - n_cond,)
        if not np.all(np.isfinite(e)) or np.max(np.abs(e), initial=0.0) > _HUGE:
            e = np.full(len(e), _HUGE)
        self._last = (x.tobytes(), e)
        return e

    def jacobian(self, x: np.ndarray) -> np.ndarray:
        """``de/dx``: each column is ``b(B)^-1`` applied to the derivative of the driving terms."""
        p, q, P, Q, m = self.p, self.q, self.P, self.Q, self.m
        phi, Phi, theta, Theta, mu = self.unpack(x)
        ar_poly, ma_poly, _ = self.polynomials(x)
        phi_poly = lag_polynomial(phi, [], m, -1.0)
        Phi_poly = lag_polynomial([], Phi, m, -1.0)
        theta_poly = lag_polynomial(theta, [], m, 1.0)
        Theta_poly = lag_polynomial([], Theta, m, 1.0)
        e = self._last[1] if self._last is not None and self._last[0] == x.tobytes() else self.residuals(x)  # (S,)
        with np.errstate(all="ignore"):
            columns = []
            if p + P:
                dA = np.zeros((self.n_cond + 1, p + P))  # d a(B) / d (phi, Phi), by power of B
                for i in range(1, p + 1):
                    dA[i:i + len(Phi_poly), i - 1] = -Phi_poly
                for j in range(1, P + 1):
                    dA[j * m:j * m + len(phi_poly), p + j - 1] = -phi_poly
                columns.append(_lags(self.w - mu, self.n_cond) @ dA)  # (S, p + P)
            if q + Q:
                dB = np.zeros((self.n_ma + 1, q + Q))  # d b(B) / d (theta, Theta)
                for i in range(1, q + 1):
                    dB[i:i + len(Theta_poly), i - 1] = Theta_poly
                for j in range(1, Q + 1):
                    dB[j * m:j * m + len(theta_poly), q + j - 1] = theta_poly
                e_padded = np.r_[np.zeros(self.n_ma), e]  # e_t = 0 before the conditioning point
                columns.append(-(_lags(e_padded, self.n_ma) @ dB))  # (S, q + Q)
            if self.constant:
                columns.append(np.full((len(e), 1), -ar_poly.sum()))  # (S, 1)
            G = np.concatenate(columns, axis=1)  # (S, k)
            J = lfilter([1.0], ma_poly, G, axis=0)  # (S, k)
        return np.where(np.isfinite(J), J, 0.0)


def _check_orders(order, seasonal_order) -> tuple[tuple[int, int, int], tuple[int, int, int, int]]:
    ok = (isinstance(order, (tuple, list)) and len(order) == 3 and isinstance(seasonal_order, (tuple, list))
          and len(seasonal_order) == 4
          and all(isinstance(v, Integral) and not isinstance(v, bool) and v >= 0 for v in (*order, *seasonal_order)))
    if not ok:
        raise ValueError(f"order must be (p, d, q) and seasonal_order (P, D, Q, m) of non-negative integers; "
                         f"got {order!r}, {seasonal_order!r}")
    P, D, Q, m = seasonal_order
    if P + D + Q > 0 and m < 2:
        raise ValueError(f"seasonal_order={tuple(seasonal_order)} needs a period m >= 2")
    return tuple(int(v) for v in order), tuple(int(v) for v in seasonal_order)


def fit_css(y, order=(0, 0, 0), seasonal_order=(0, 0, 0, 0), constant: bool = False, *,
            max_nfev: int | None = None) -> CSSResult:
    """CSS estimate of ARIMA ``order`` x ``seasonal_order`` (P, D, Q, m) on ``y`` (see the module docstring).

    ``constant`` adds the mean of the differenced series (the mean when d + D = 0, the drift when d + D = 1).
    ``max_nfev`` bounds the residual evaluations (default: scipy's ``100 k`` for k coefficients). Raises
    ``ValueError`` on non-finite ``y`` or too few residuals for the number of coefficients.
    """
    (p, d, q), (P, D, Q, m) = _check_orders(order, seasonal_order)
    m = m if P + D + Q > 0 else 1
    y = np.asarray(y, dtype=float)
    if y.ndim != 1 or not np.all(np.isfinite(y)):
        raise ValueError(f"y must be a 1-d array of finite values; got shape {y.shape}")
    w = difference(y, d, D, m)
    n_cond = p + P * m
    k = p + P + q + Q + int(constant)
    if len(w) - n_cond <= k + 1:
        raise ValueError(f"series too short for CSS: {len(y)} values leave {len(w) - n_cond} residuals after "
                         f"differencing (d={d}, D={D}, m={m}) and conditioning on {n_cond}, for {k} coefficients")

    scale = float(np.sqrt(np.mean(w**2)))
    scale = scale if scale > 0 else 1.0
    problem = _CSSProblem(w / scale, p, q, P, Q, m, constant)
    x0 = np.zeros(k)
    if constant:
        x0[-1] = float(np.mean(w)) / scale
    if k:
        solution = least_squares(problem.residuals, x0, jac=problem.jacobian, method="lm",
                                 max_nfev=max_nfev)
        x, converged, nfev = solution.x, bool(solution.status > 0), int(solution.nfev)
    else:
        x, converged, nfev = x0, True, 1
    e = problem.residuals(x) * scale
    phi, Phi, theta, Theta, mu = problem.unpack(x)
    mu *= scale

    n_star, n_resid = len(w), len(e)
    sigma2 = float(np.sum(e**2) / n_resid)
    n_par = k + 1
    with np.errstate(divide="ignore"):
        log_sigma2 = float(np.log(sigma2)) if np.isfinite(sigma2) else np.inf
    llf = -0.5 * n_star * (np.log(2 * np.pi) + log_sigma2 + 1.0)
    aic = css_offset(y, d, D, m) + n_star * log_sigma2 + 2 * n_par
    aicc = aic + 2 * n_par * (n_par + 1) / (n_star - n_par - 1) if n_star - n_par - 1 > 0 else np.inf
    bic = aic + n_par * (np.log(n_star) - 2)

    names = ([f"ar.L{i}" for i in range(1, p + 1)] + [f"ar.S.L{j * m}" for j in range(1, P + 1)]
             + [f"ma.L{i}" for i in range(1, q + 1)] + [f"ma.S.L{j * m}" for j in range(1, Q + 1)])
    values = [*phi, *Phi, *theta, *Theta]
    if constant:
        names.append({0: "mean", 1: "drift"}.get(d + D, "constant"))
        values.append(mu / m if (d, D) == (0, 1) else mu)
    return CSSResult(order=(p, d, q), seasonal_order=(P, D, Q, m), constant=bool(constant),
                     params=np.asarray(values, dtype=float), param_names=names, phi=phi.copy(), Phi=Phi.copy(),
                     theta=theta.copy(), Theta=Theta.copy(), mu=mu, residuals=e, sigma2=sigma2, nobs=n_star,
                     n_cond=d + D * m + n_cond, llf=float(llf), aic=float(aic), aicc=float(aicc), bic=float(bic),
                     converged=converged, nfev=nfev)
