"""The parameter-free building blocks against slow, literal transcriptions of their definitions."""

import numpy as np
import pytest
from scipy.stats import norm

from ssmcast.baselines.simple import (
    acf,
    classical_seasonal_indices,
    naive2_forecast,
    naive_forecast,
    seasonal_naive_forecast,
    seasonality_test,
)


def seasonal_series(n=120, m=12, seed=0, amplitude=0.3):
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return 50 + 0.1 * t + 10 * amplitude * np.sin(2 * np.pi * t / m) + rng.normal(size=n)


def slow_acf(y, k):
    mean = sum(y) / len(y)
    num = sum((y[t] - mean) * (y[t - k] - mean) for t in range(k, len(y)))
    den = sum((v - mean) ** 2 for v in y)
    return num / den


def slow_decompose_figure(y, m):
    """R's decompose(type="multiplicative")$figure, written out with loops (filter sides=2, then means)."""
    n = len(y)
    weights = [0.5 / m] + [1.0 / m] * (m - 1) + [0.5 / m] if m % 2 == 0 else [1.0 / m] * m
    half = len(weights) // 2
    trend = [None] * n
    for i in range(half, n - half):
        trend[i] = sum(w * y[i - half + j] for j, w in enumerate(weights))
    figure = []
    for i in range(m):
        ratios = [y[t] / trend[t] for t in range(i, n, m) if trend[t] is not None]
        figure.append(sum(ratios) / len(ratios))
    mean = sum(figure) / m
    return np.array([f / mean for f in figure])


def test_acf_matches_loop():
    y = seasonal_series(50)
    np.testing.assert_allclose(acf(y, 5), [slow_acf(y, k) for k in range(1, 6)], rtol=1e-12)


@pytest.mark.parametrize("m", [4, 7, 12])
def test_classical_indices_match_loop(m):
    y = seasonal_series(10 * m + 3, m=m, seed=m)
    np.testing.assert_allclose(classical_seasonal_indices(y, m), slow_decompose_figure(y, m), rtol=1e-12)


def test_seasonality_test_formula():
    m = 12
    strong, flat = seasonal_series(120, m, amplitude=1.0), np.random.default_rng(1).normal(size=120) + 10
    for y, expected in ((strong, True), (flat, False)):
        r = [slow_acf(y, k) for k in range(1, m + 1)]
        limit = 1.645 * np.sqrt((1 + 2 * sum(v**2 for v in r[:-1])) / len(y))
        assert (abs(r[-1]) > limit) == expected
        assert seasonality_test(y, m) == expected
    assert not seasonality_test(strong[: 3 * m - 1], m)  # fewer than 3 seasons
    # R's acf stops at lag floor(10 log10 n): n = 72, m = 24 -> lag 18 < 24 -> not seasonal
    hourly = 10 + np.sin(2 * np.pi * np.arange(72) / 24)
    assert not seasonality_test(hourly, 24)


def test_seasonal_naive_matches_loop_and_interval_widths():
    y, m, h = seasonal_series(50, 12), 12, 30
    mean, qs = seasonal_naive_forecast(y, m, h, [0.1, 0.9])
    n = len(y)
    expected = []
    for step in range(1, h + 1):
        k = (step - 1) // m + 1
        expected.append(y[n + step - 1 - k * m])
    np.testing.assert_allclose(mean, expected)
    sigma = np.sqrt(np.mean([(y[t] - y[t - m]) ** 2 for t in range(m, n)]))
    se = sigma * np.sqrt([(s - 1) // m + 1 for s in range(1, h + 1)])
    np.testing.assert_allclose(qs[0.9] - mean, se * norm.ppf(0.9))
    assert np.all(qs[0.1] < mean) and np.all(mean < qs[0.9])


def test_naive_intervals_grow_like_sqrt_h():
    y = np.array([1.0, 3.0, 2.0, 4.0])
    mean, qs = naive_forecast(y, 4, [0.975])
    sigma = np.sqrt(np.mean(np.diff(y) ** 2))
    np.testing.assert_allclose(mean, 4.0)
    np.testing.assert_allclose(qs[0.975], 4.0 + norm.ppf(0.975) * sigma * np.sqrt([1, 2, 3, 4]))
    with pytest.raises(ValueError, match="in-sample forecast error"):
        naive_forecast(np.array([1.0]), 2, [0.5])


def test_naive2_reseasonalises_the_adjusted_last_value():
    m, h = 12, 15
    y = seasonal_series(96, m, amplitude=1.0)
    assert seasonality_test(y, m)
    figure = slow_decompose_figure(y, m)
    n = len(y)
    last_adjusted = y[-1] / figure[(n - 1) % m]
    expected = [last_adjusted * figure[(n + j) % m] for j in range(h)]
    mean, _ = naive2_forecast(y, m, h)
    np.testing.assert_allclose(mean, expected, rtol=1e-12)
    flat = np.random.default_rng(3).normal(size=96) + 20  # not seasonal -> plain naive
    np.testing.assert_allclose(naive2_forecast(flat, m, 5)[0], flat[-1])
