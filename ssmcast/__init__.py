"""ssmcast: time-series forecasting with structured state space models.

The top-level names are imported lazily, so ``import ssmcast`` (and the CLI's ``--help``) stay fast::

    from ssmcast import MambaForecaster, load_dataset
"""

from __future__ import annotations

import importlib
import os

# torch's OpenMP workers spin-wait between parallel regions by default; the SSM scans issue many small ops,
# and on a busy machine spinning threads made training up to 8x slower (benchmarks/README numbers). Takes
# effect when ssmcast is imported before torch; set OMP_WAIT_POLICY yourself to choose otherwise.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"

_EXPORTS = {
    "load": "ssmcast.forecasters",
    "NeuralForecaster": "ssmcast.forecasters",
    "S4Forecaster": "ssmcast.forecasters",
    "S4DForecaster": "ssmcast.forecasters",
    "LiquidS4Forecaster": "ssmcast.forecasters",
    "S5Forecaster": "ssmcast.forecasters",
    "MambaForecaster": "ssmcast.forecasters",
    "Mamba2Forecaster": "ssmcast.forecasters",
    "JambaForecaster": "ssmcast.forecasters",
    "LSTMForecaster": "ssmcast.forecasters",
    "GRUForecaster": "ssmcast.forecasters",
    "DLinearForecaster": "ssmcast.forecasters",
    "PatchTSTForecaster": "ssmcast.forecasters",
    "EnsembleForecaster": "ssmcast.forecasters",
    "load_dataset": "ssmcast.datasets",
    "list_datasets": "ssmcast.datasets",
    "dataset_info": "ssmcast.datasets",
    "to_long": "ssmcast.data",
    "to_wide": "ssmcast.data",
    "validate": "ssmcast.data",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'ssmcast' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
