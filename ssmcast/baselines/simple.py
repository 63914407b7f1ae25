"""Parameter-free forecasts on one series (NumPy in, NumPy out): naive, seasonal naive and the M4 Naive2.

Each ``*_forecast(y, h, ..., levels)`` returns ``(mean, quantiles)``: ``mean`` of shape ``(h,)`` and a dict
``{q: (h,) array}`` for the requested levels. Intervals follow Hyndman & Athanasopoulos (FPP3, section
5.5): ``sigma`` is the root mean square of the in-sample one-step (lag ``m`` for the seasonal naive)
forecast errors and the ``h``-step standard error is ``sigma * sqrt(h)`` for the naive forecast and
``sigma * sqrt(floor((h - 1) / m) + 1)`` for the seasonal naive one.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import norm

__all__ = [
    "acf",
    "seasonality_test",
    "classical_seasonal_indices",
    "naive_forecast",
    "seasonal_naive_forecast",
    "naive2_forecast",
]


def acf(y: np.ndarray, nlags: int) -> np.ndarray:
    """Sample autocorrelations at lags ``1..nlags`` (the biased estimator of R's ``acf``)."""
    x = np.asarray(y, dtype=float) - np.mean(y)
    denom = np.dot(x, x)
    if denom == 0.0:
        return np.zeros(nlags)
    return np.array([np.dot(x[k:], x[: len(x) - k]) / denom for k in range(1, nlags + 1)])


def seasonality_test(y: np.ndarray, m: int) -> bool:
    """The M4 90% seasonality test (``SeasonalityTest`` of M4-methods "Benchmarks and Evaluation.R").

    Seasonal when ``|acf_m| > 1.645 * sqrt((1 + 2 * sum_{k<m} acf_k^2) / n)``. As in R, the series needs
    ``n >= 3 m`` and ``acf`` only reaches lag ``floor(10 log10 n)``: a lag ``m`` beyond it is not seasonal.
    """
    n = len(y)
    if m < 2 or n < 3 * m:
        return False
    lag_max = min(int(np.floor(10 * np.log10(n))), n - 1)
    if lag_max < m:
        return False
    r = acf(y, lag_max)
    limit = 1.645 * np.sqrt((1.0 + 2.0 * np.sum(r[: m - 1] ** 2)) / n)
    return bool(abs(r[m - 1]) > limit)


def classical_seasonal_indices(y: np.ndarray, m: int) -> np.ndarray:
    """Multiplicative seasonal indices of R's ``decompose`` (centred moving average), shape ``(m,)``.

    Index ``i`` belongs to positions ``i, i + m, i + 2m, ...`` of ``y``; the indices average to 1.
    """
    y = np.asarray(y, dtype=float)
    n = len(y)
    if n < 2 * m:
        raise ValueError(f"classical decomposition needs at least 2 seasons ({2 * m} values); got {n}")
    w = np.r_[0.5, np.ones(m - 1), 0.5] / m if m % 2 == 0 else np.ones(m) / m  # (m+1,) or (m,)
    half = len(w) // 2
    trend = np.full(n, np.nan)  # (n,)
    trend[half : n - half] = np.convolve(y, w, mode="valid")
    ratio = y / trend  # (n,)
    figure = np.array([np.nanmean(ratio[i::m]) for i in range(m)])  # (m,)
    return figure / figure.mean()


def _quantiles(mean: np.ndarray, se: np.ndarray, levels) -> dict[float, np.ndarray]:
    return {q: mean + se * norm.ppf(q) for q in levels}


def _rms(errors: np.ndarray, levels) -> float:
    if len(levels) and len(errors) == 0:
        raise ValueError("prediction intervals need at least one in-sample forecast error (a longer series)")
    return float(np.sqrt(np.mean(errors**2))) if len(errors) else float("nan")


def naive_forecast(y: np.ndarray, h: int, levels=()) -> tuple[np.ndarray, dict[float, np.ndarray]]:
    """Last value repeated; ``se_h = sigma * sqrt(h)`` (random walk)."""
    y = np.asarray(y, dtype=float)
    mean = np.full(h, y[-1])  # (h,)
    sigma = _rms(np.diff(y), levels)
    return mean, _quantiles(mean, sigma * np.sqrt(np.arange(1, h + 1)), levels)


def seasonal_naive_forecast(y: np.ndarray, m: int, h: int, levels=()) -> tuple[np.ndarray, dict]:
    """Value of the same season in the last observed cycle; ``se_h = sigma * sqrt(floor((h-1)/m) + 1)``."""
    y = np.asarray(y, dtype=float)
    if len(y) < m:
        raise ValueError(f"seasonal naive needs at least season_length={m} values; got {len(y)}")
    steps = np.arange(h)
    mean = y[len(y) - m + steps % m]  # (h,)
    sigma = _rms(y[m:] - y[:-m], levels)
    return mean, _quantiles(mean, sigma * np.sqrt(steps // m + 1), levels)


def naive2_forecast(y: np.ndarray, m: int, h: int, levels=()) -> tuple[np.ndarray, dict]:
    """The M4 Naive2 benchmark: naive forecast of the seasonally adjusted series, re-seasonalised.

    The series is adjusted with multiplicative classical-decomposition indices only when
    :func:`seasonality_test` passes (``m > 1``); otherwise Naive2 is the naive forecast. Quantiles are the
    random-walk quantiles of the adjusted series times the seasonal index.
    """
    y = np.asarray(y, dtype=float)
    n = len(y)
    if m > 1 and seasonality_test(y, m):
        figure = classical_seasonal_indices(y, m)
        adjusted = y / figure[np.arange(n) % m]  # (n,)
        index_out = figure[np.arange(n, n + h) % m]  # (h,)
    else:
        adjusted, index_out = y, np.ones(h)
    mean, quantiles = naive_forecast(adjusted, h, levels)
    return mean * index_out, {q: v * index_out for q, v in quantiles.items()}
