"""Data handling: the long-frame contract, time grids, temporal splits, scaling and windowed datasets.

Frames may be pandas, polars or pyarrow (:func:`to_pandas` converts the latter two); results are pandas.

``frames``, ``splits`` and ``scaling`` need only numpy/pandas; the torch ``WindowDataset``/``SeriesPanel``
and the Lightning ``WindowDataModule`` are imported lazily on first access.
"""

from ssmcast.data.frames import (
    FILL_POLICIES,
    as_offset,
    fill_gaps,
    future_timestamps,
    infer_freq,
    to_long,
    to_pandas,
    to_wide,
    validate,
)
from ssmcast.data.scaling import SCALERS, SeriesScaler
from ssmcast.data.splits import PARTS, TemporalSplit, select_rows

_LAZY = {
    "BatchedWindows": "ssmcast.data.windows",
    "collate_windows": "ssmcast.data.windows",
    "CHANNEL_MODES": "ssmcast.data.windows",
    "SeriesPanel": "ssmcast.data.windows",
    "WindowDataset": "ssmcast.data.windows",
    "window_counts": "ssmcast.data.windows",
    "WindowDataModule": "ssmcast.data.datamodule",
}

__all__ = [
    "FILL_POLICIES",
    "PARTS",
    "SCALERS",
    "SeriesScaler",
    "TemporalSplit",
    "as_offset",
    "fill_gaps",
    "future_timestamps",
    "infer_freq",
    "select_rows",
    "to_long",
    "to_pandas",
    "to_wide",
    "validate",
    *_LAZY,
]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'ssmcast.data' has no attribute {name!r}")
