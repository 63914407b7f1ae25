"""Neural forecasters: scikit-learn-style estimators over the SSM backbones, trained by Lightning; and
:class:`EnsembleForecaster`, which combines any ssmcast forecasters."""

from ssmcast.forecasters.base import NeuralForecaster
from ssmcast.forecasters.ensemble import EnsembleForecaster
from ssmcast.forecasters.neural import (
    DLinearForecaster,
    GRUForecaster,
    JambaForecaster,
    LiquidS4Forecaster,
    LSTMForecaster,
    Mamba2Forecaster,
    MambaForecaster,
    PatchTSTForecaster,
    S4DForecaster,
    S4Forecaster,
    S5Forecaster,
)
from ssmcast.forecasters.persistence import load

__all__ = [
    "NeuralForecaster",
    "S4Forecaster",
    "S4DForecaster",
    "LiquidS4Forecaster",
    "S5Forecaster",
    "MambaForecaster",
    "Mamba2Forecaster",
    "JambaForecaster",
    "LSTMForecaster",
    "GRUForecaster",
    "DLinearForecaster",
    "PatchTSTForecaster",
    "EnsembleForecaster",
    "load",
]
