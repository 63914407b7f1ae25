"""Calendar features: future-known covariates computed from the time stamps themselves."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ssmcast.data.frames import as_offset

# (name, period, accessor) in the order they are emitted; which ones apply depends on the frequency
_CYCLES = (
    ("minute_of_hour", 60, lambda ds: ds.minute),
    ("hour_of_day", 24, lambda ds: ds.hour),
    ("day_of_week", 7, lambda ds: ds.day_of_week),
    ("day_of_month", 31, lambda ds: ds.day - 1),
    ("day_of_year", 366, lambda ds: ds.day_of_year - 1),
    ("month_of_year", 12, lambda ds: ds.month - 1),
)
_SPAN_SECONDS = {"minute_of_hour": 3600, "hour_of_day": 86400, "day_of_week": 7 * 86400,
                 "day_of_month": 31 * 86400, "day_of_year": 366 * 86400, "month_of_year": 366 * 86400}


def calendar_cycles(freq) -> list[str]:
    """The cycles a frequency resolves: at least two steps per cycle (shorter cycles alias)."""
    offset = as_offset(freq)
    if isinstance(offset, int):
        return []
    try:
        step = pd.Timedelta(offset).total_seconds()
    except ValueError:  # non-fixed offsets: months, quarters, years, weeks anchored
        step = {"W": 7 * 86400, "M": 30 * 86400, "Q": 91 * 86400, "Y": 365 * 86400}.get(
            offset.rule_code[0], 365 * 86400
        ) * max(1, offset.n)
    return [name for name, _, _ in _CYCLES if 2 * step <= _SPAN_SECONDS[name]]


def calendar_features(ds, freq) -> np.ndarray:
    """sin/cos encodings ``(T, 2 * n_cycles)`` of the cycles :func:`calendar_cycles` selects."""
    names = calendar_cycles(freq)
    if not names:
        return np.zeros((len(ds), 0), dtype=np.float32)
    stamps = pd.DatetimeIndex(ds)
    columns = []
    for name, period, accessor in _CYCLES:
        if name in names:
            angle = 2 * np.pi * np.asarray(accessor(stamps), dtype=np.float64) / period
            columns += [np.sin(angle), np.cos(angle)]
    return np.stack(columns, axis=1).astype(np.float32)
