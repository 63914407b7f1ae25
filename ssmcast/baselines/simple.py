"""Parameter-free forecasts on one series (NumPy in, NumPy out): naive, seasonal naive and the M4 Naive2.

Each ``*_forecast(y, h, ..., levels)`` returns ``(mean, quantiles)``: ``mean`` of shape ``(h,)`` and a dict
``{q: (h,) array}`` for the requested levels. Intervals follow Hyndman & Athanasopoulos (FPP3, section
5.5): ``sigma`` is the root mean square of the in-sample one-step (lag ``m`` for the seasonal naive)
forecast errors and the ``h``-step standard error is ``sigma * sqrt(h)`` for the naive forecast and
``sigma * sqrt(floor((h - 1) / m) + 1)`` for the seasonal naive one.
"""

from __future__ import annotations

import functools

import numpy as np
from scipy.stats import norm

__all__ = [
    "acf",
    "seasonality_test",
    "classical_seasonal_indices",
    "naive_forecast",
    "seasonal_naive_forecast",
    "naive2_forecast",
    "normal_quantile",
    "PanelError",
    "panel_naive",
    "panel_seasonal_naive",
    "panel_naive2",
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


@functools.lru_cache(maxsize=256)
def normal_quantile(q: float) -> float:
    """``Phi^-1(q)``, cached: scipy's ``norm.ppf`` costs ~0.5 ms a call, most of a per-series forecast's own time."""
    return float(norm.ppf(q))


def _quantiles(mean: np.ndarray, se: np.ndarray, levels) -> dict[float, np.ndarray]:
    return {q: mean + se * normal_quantile(q) for q in levels}


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


# ------------------------------------------------------------------------------------------ whole panels
# The same three forecasts over a panel at once (issue #36): the series' values concatenated in ``y`` (rows,),
# series ``k`` at ``y[starts[k] : starts[k] + lengths[k]]``. Returns ``(mean (k, h), {q: (k, h)})``, each row
# what the per-series function above returns for that series (which stays the reference the tests compare
# with). A series the per-series function would refuse raises ``PanelError`` naming its position.


class PanelError(ValueError):
    """A series of a panel cannot be forecast; ``position`` is its index in the panel."""

    def __init__(self, position: int, message: str):
        super().__init__(message)
        self.position = int(position)


def _segment_sums(values: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``values[a[k]:b[k]].sum()`` for every ``k`` (0 for an empty segment) by one ``np.add.reduceat``."""
    if len(a) == 0:
        return np.zeros(0)
    padded = np.append(values, 0.0)  # b[k] may be len(values)
    cuts = np.stack([a, b], axis=1).ravel()  # (2k,): each segment's start, then its end
    sums = np.add.reduceat(padded, cuts)[::2]  # reduceat(i, j) with i < j sums [i, j)
    sums[a >= b] = 0.0  # reduceat gives values[i] for an empty segment
    return sums


def _lag_rms(y: np.ndarray, starts: np.ndarray, lengths: np.ndarray, lag: int, levels) -> np.ndarray:
    """Per series: the root mean square of its lag-``lag`` differences (``sigma`` of :func:`_rms`); NaN when
    no quantiles are asked for; ``PanelError`` when they are and a series has no difference."""
    if not len(levels):
        return np.full(len(starts), np.nan)
    counts = lengths - lag
    bad = np.flatnonzero(counts <= 0)
    if len(bad):
        raise PanelError(bad[0], "prediction intervals need at least one in-sample forecast error (a longer series)")
    squared = (y[lag:] - y[:-lag]) ** 2  # squared[i] = (y[i + lag] - y[i])^2
    return np.sqrt(_segment_sums(squared, starts, starts + counts) / counts)


def _panel_quantiles(mean: np.ndarray, se: np.ndarray, levels) -> dict[float, np.ndarray]:
    return {q: mean + se * normal_quantile(q) for q in levels}


def panel_naive(y: np.ndarray, starts: np.ndarray, lengths: np.ndarray, h: int, levels=()):
    """:func:`naive_forecast` of every series of a panel."""
    last = y[starts + lengths - 1]  # (k,)
    mean = np.repeat(last[:, None], h, axis=1)  # (k, h)
    sigma = _lag_rms(y, starts, lengths, 1, levels)
    return mean, _panel_quantiles(mean, sigma[:, None] * np.sqrt(np.arange(1, h + 1)), levels)


def panel_seasonal_naive(y: np.ndarray, starts: np.ndarray, lengths: np.ndarray, m: int, h: int, levels=()):
    """:func:`seasonal_naive_forecast` of every series of a panel (season length ``m``)."""
    short = np.flatnonzero(lengths < m)
    if len(short):
        raise PanelError(short[0], f"seasonal naive needs at least season_length={m} values; "
                                   f"got {lengths[short[0]]}")
    steps = np.arange(h)
    ends = starts + lengths
    mean = y[ends[:, None] - m + steps % m]  # (k, h)
    sigma = _lag_rms(y, starts, lengths, m, levels)
    return mean, _panel_quantiles(mean, sigma[:, None] * np.sqrt(steps // m + 1), levels)


def _panel_acf(x: np.ndarray, nlags: int) -> np.ndarray:
    """:func:`acf` of each row of ``x`` (g, n) at lags ``1..nlags``: (g, nlags)."""
    x = x - x.mean(axis=1, keepdims=True)
    denom = np.einsum("gi,gi->g", x, x)
    n = x.shape[1]
    r = np.stack([np.einsum("gi,gi->g", x[:, k:], x[:, : n - k]) for k in range(1, nlags + 1)], axis=1)
    safe = np.where(denom == 0.0, 1.0, denom)
    return np.where(denom[:, None] == 0.0, 0.0, r / safe[:, None])


def _panel_seasonality_test(x: np.ndarray, m: int) -> np.ndarray:
    """:func:`seasonality_test` of each row of ``x`` (g, n): (g,) booleans."""
    g, n = x.shape
    if m < 2 or n < 3 * m:
        return np.zeros(g, bool)
    lag_max = min(int(np.floor(10 * np.log10(n))), n - 1)
    if lag_max < m:
        return np.zeros(g, bool)
    r = _panel_acf(x, lag_max)
    limit = 1.645 * np.sqrt((1.0 + 2.0 * np.sum(r[:, : m - 1] ** 2, axis=1)) / n)
    return np.abs(r[:, m - 1]) > limit


def _panel_seasonal_indices(x: np.ndarray, m: int) -> np.ndarray:
    """:func:`classical_seasonal_indices` of each row of ``x`` (g, n): (g, m)."""
    g, n = x.shape
    w = np.r_[0.5, np.ones(m - 1), 0.5] / m if m % 2 == 0 else np.ones(m) / m
    half, width = len(w) // 2, len(w)
    trend = np.full((g, n), np.nan)
    trend[:, half : n - half] = sum(w[j] * x[:, j : n - width + 1 + j] for j in range(width))  # centred MA
    ratio = x / trend
    figure = np.stack([np.nanmean(ratio[:, i::m], axis=1) for i in range(m)], axis=1)  # (g, m)
    return figure / figure.mean(axis=1, keepdims=True)


def panel_naive2(y: np.ndarray, starts: np.ndarray, lengths: np.ndarray, m: int, h: int, levels=()):
    """:func:`naive2_forecast` of every series of a panel: series of one length at a time as a matrix."""
    k = len(starts)
    mean = np.empty((k, h))
    quantiles = {q: np.empty((k, h)) for q in levels}
    if k and len(levels) and (lengths < 2).any():
        raise PanelError(np.flatnonzero(lengths < 2)[0],
                         "prediction intervals need at least one in-sample forecast error (a longer series)")
    for n in np.unique(lengths):
        rows = np.flatnonzero(lengths == n)
        x = y[starts[rows, None] + np.arange(n)]  # (g, n)
        adjusted, index_out = x, np.ones((len(rows), h))
        seasonal = _panel_seasonality_test(x, m) if m > 1 else np.zeros(len(rows), bool)
        if seasonal.any():
            figure = _panel_seasonal_indices(x[seasonal], m)  # (s, m)
            adjusted = x.copy()
            adjusted[seasonal] = x[seasonal] / figure[:, np.arange(n) % m]
            index_out[seasonal] = figure[:, np.arange(n, n + h) % m]
        flat = adjusted.ravel()
        inner = np.arange(len(rows)) * n
        mu, qs = panel_naive(flat, inner, np.full(len(rows), n), h, levels)
        mean[rows] = mu * index_out
        for q in levels:
            quantiles[q][rows] = qs[q] * index_out
    return mean, quantiles
