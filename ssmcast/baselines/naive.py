"""Parameter-free baselines: naive, seasonal naive and the M4 Naive2 benchmark (see :mod:`.simple`)."""

from __future__ import annotations

import numpy as np
from sklearn.utils.validation import check_is_fitted

from ._base import BaselineForecaster, SeriesFit, _Panel
from .simple import PanelError, panel_naive, panel_naive2, panel_seasonal_naive

__all__ = ["NaiveForecaster", "SeasonalNaiveForecaster", "Naive2Forecaster"]


class _ParameterFree(BaselineForecaster):
    has_parameters = False
    method = "naive"

    def __init__(self, season_length: int | None = None, horizon: int | None = None, n_jobs: int | None = 1,
                 backend: str = "local", verbose: bool = False):
        self.season_length = season_length
        self.horizon = horizon
        self.n_jobs = n_jobs
        self.backend = backend
        self.verbose = verbose

    def _fit_series(self, y: np.ndarray, m: int) -> SeriesFit:
        return SeriesFit(name=self.method, method=self.method, season_length=m)

    def _parameter_free_fit(self) -> SeriesFit:
        return SeriesFit(name=self.method, method=self.method, season_length=self.season_length_)

    # the whole panel at once (issue #36): the per-series methods above stay the reference (tests compare)
    _vectorised = True

    def _too_short(self, n: int, m: int) -> str | None:
        """Why a series of ``n`` values cannot have this method (None: it can)."""
        return None

    def _fit_panel(self, panel: _Panel, m: int) -> list[SeriesFit]:
        shared = SeriesFit(name=self.method, method=self.method, season_length=m)  # one object for all
        fits = [shared] * len(panel.ids)
        for j, n in enumerate(panel.lengths):
            reason = self._too_short(int(n), m)
            if reason is not None:
                y = panel.y[panel.starts[j] : panel.starts[j] + n]
                fits[j] = self._fallback(y, m, f"ValueError: {reason}")
        return fits

    def _forecast_panel(self, fits: list[SeriesFit], panel: _Panel, h: int, levels: list[float]):
        methods = np.array([fit.method for fit in fits], dtype=object)
        mean = np.empty((len(fits), h))
        columns = {q: np.empty((len(fits), h)) for q in levels}
        m = self.season_length_
        for method in dict.fromkeys(methods):
            rows = np.flatnonzero(methods == method)
            starts, lengths = panel.starts[rows], panel.lengths[rows]
            try:
                if method in ("naive", "constant"):
                    out = panel_naive(panel.y, starts, lengths, h, levels)
                elif method == "seasonal_naive":
                    short = np.flatnonzero(lengths < 2 * m)
                    if len(short):
                        raise PanelError(short[0], f"a history of {lengths[short[0]]} values is too short for "
                                                   f"the seasonal naive forecast (needs 2 * season_length = {2 * m})")
                    out = panel_seasonal_naive(panel.y, starts, lengths, m, h, levels)
                elif method == "naive2":
                    out = panel_naive2(panel.y, starts, lengths, m, h, levels)
                else:
                    raise ValueError(f"unknown method {method!r}")
            except PanelError as err:
                raise ValueError(f"series {panel.ids[rows[err.position]]!r}: {err}") from None
            mean[rows] = out[0]
            for q in levels:
                columns[q][rows] = out[1][q]
        return mean, columns

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

    def _too_short(self, n: int, m: int) -> str | None:
        if n < 2 * m:
            return f"series has {n} values; the seasonal naive needs 2 * season_length = {2 * m}"
        return None

    def _fit_series(self, y: np.ndarray, m: int) -> SeriesFit:
        reason = self._too_short(len(y), m)
        if reason is not None:
            raise ValueError(reason)
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
