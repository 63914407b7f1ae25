"""Parameter-free baselines: naive, seasonal naive and the M4 Naive2 benchmark (see :mod:`.simple`)."""

from __future__ import annotations

import numpy as np
from sklearn.utils.validation import check_is_fitted

from ._base import BaselineForecaster, SeriesFit

__all__ = ["NaiveForecaster", "SeasonalNaiveForecaster", "Naive2Forecaster"]


class _ParameterFree(BaselineForecaster):
    has_parameters = False
    method = "naive"

    def __init__(self, season_length: int | None = None, horizon: int | None = None, n_jobs: int | None = 1,
                 verbose: bool = False):
        self.season_length = season_length
        self.horizon = horizon
        self.n_jobs = n_jobs
        self.verbose = verbose

    def _fit_series(self, y: np.ndarray, m: int) -> SeriesFit:
        return SeriesFit(name=self.method, method=self.method, season_length=m)

    def _parameter_free_fit(self) -> SeriesFit:
        return SeriesFit(name=self.method, method=self.method, season_length=self.season_length_)

    def _windows(self, context) -> tuple[np.ndarray, int]:
        """Checked ``context`` ``(n_windows, L, n_channels)`` and the horizon."""
        check_is_fitted(self, "models_")
        h = self._resolve_h(None)  # predict_windows forecasts the horizon parameter
        context = np.asarray(context, dtype=float)
        if context.ndim != 3 or 0 in context.shape:
            raise ValueError(f"context must have shape (n_windows, input_size, n_channels); got {context.shape}")
        return context, h


class NaiveForecaster(_ParameterFree):
    """Repeats each series' last value; random-walk prediction intervals (``se_h = sigma sqrt(h)``).

    ``season_length`` is unused (kept for a uniform signature). ``predict(h)`` needs ``h`` unless
    ``horizon`` is set. Series in ``predict(df=...)`` need not have been seen in ``fit``.
    """

    def predict_windows(self, context) -> np.ndarray:
        """Point forecasts of many windows at once: ``context`` ``(n_windows, L, n_channels)`` ->
        ``(n_windows, horizon, n_channels)``, each window's ``predict(df=window)`` (used by the long-horizon
        protocol, :func:`ssmcast.evaluation.evaluate_ltsf`)."""
        context, h = self._windows(context)
        return np.repeat(context[:, -1:], h, axis=1)


class SeasonalNaiveForecaster(_ParameterFree):
    """Repeats each series' last observed season (``season_length``, default from the data frequency:
    24 hourly, 7 daily, 52 weekly, 12 monthly; 1 for integer time stamps).

    A series shorter than ``2 * season_length`` falls back to the naive forecast (:class:`FallbackWarning`).
    """

    method = "seasonal_naive"

    def _fit_series(self, y: np.ndarray, m: int) -> SeriesFit:
        if len(y) < 2 * m:
            raise ValueError(f"series has {len(y)} values; the seasonal naive needs 2 * season_length = {2 * m}")
        return super()._fit_series(y, m)

    def _fallback_method(self, y: np.ndarray, m: int) -> str:
        return "naive"

    def _forecast(self, fit, y, h, levels, new_history=False):
        if fit.method == "seasonal_naive" and len(y) < 2 * fit.season_length:
            raise ValueError(
                f"a history of {len(y)} values is too short for the seasonal naive forecast "
                f"(needs 2 * season_length = {2 * fit.season_length})"
            )
        return super()._forecast(fit, y, h, levels, new_history)

    def predict_windows(self, context) -> np.ndarray:
        """Point forecasts of many windows at once: ``context`` ``(n_windows, L, n_channels)`` ->
        ``(n_windows, horizon, n_channels)``, each window's ``predict(df=window)`` (used by the long-horizon
        protocol, :func:`ssmcast.evaluation.evaluate_ltsf`). ``L`` must be at least ``2 * season_length``."""
        context, h = self._windows(context)
        m, L = self.season_length_, context.shape[1]
        if L < 2 * m:
            raise ValueError(f"windows of {L} values are too short for the seasonal naive forecast "
                             f"(needs 2 * season_length = {2 * m})")
        return context[:, L - m + np.arange(h) % m]  # (n_windows, h, n_channels)


class Naive2Forecaster(_ParameterFree):
    """The M4 Naive2 benchmark: the naive forecast of the seasonally adjusted series, re-seasonalised.

    A series is adjusted (multiplicative classical decomposition, centred moving average) only when the
    M4 90% autocorrelation seasonality test at lag ``season_length`` passes; otherwise Naive2 is naive.
    """

    method = "naive2"
