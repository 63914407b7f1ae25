"""Classical baselines on statsmodels' Kalman filter (ARIMA, AutoARIMA, structural, ETS) and the naive family.

All share the ssmcast forecaster API (:mod:`ssmcast.forecasting`): ``fit(df)``, ``predict(h, df=None,
quantiles=None)``; one model per series, fitted in parallel (``n_jobs`` local processes, or the workers of a
Dask cluster with ``backend="dask"``: :mod:`ssmcast.baselines.parallel`), with documented fallbacks.
"""

from ._base import BaselineForecaster, FallbackWarning, SeriesFit
from .arima import ARIMAForecaster
from .auto_arima import AutoARIMAForecaster
from .ets import ETSForecaster
from .naive import Naive2Forecaster, NaiveForecaster, SeasonalNaiveForecaster
from .structural import LocalLevelForecaster, UnobservedComponentsForecaster

__all__ = [
    "ARIMAForecaster",
    "AutoARIMAForecaster",
    "BaselineForecaster",
    "ETSForecaster",
    "FallbackWarning",
    "LocalLevelForecaster",
    "Naive2Forecaster",
    "NaiveForecaster",
    "SeasonalNaiveForecaster",
    "SeriesFit",
    "UnobservedComponentsForecaster",
]
