"""Temporal train/val/test splits without leakage: each series is cut in time, never shuffled.

A :class:`TemporalSplit` says *how* to cut (by row counts or fractions, or by timestamps); applied to a
validated long frame it yields, per series, the half-open row ranges ``[lo, hi)`` of each part
(:meth:`TemporalSplit.ranges`). Targets of a window must lie entirely inside one part; contexts of
val/test windows may reach back into the previous part (the long-horizon protocol of Informer/Autoformer).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ssmcast.data.frames import ID, TIME, _bounds, _quote

__all__ = ["PARTS", "TemporalSplit", "select_rows"]

PARTS = ("train", "val", "test")


def _check_count(name: str, value) -> None:
    if value is None:
        return
    if isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be a row count, a fraction in (0, 1) or None; got {value!r}")
    if isinstance(value, (int, np.integer)):
        if value < 0:
            raise ValueError(f"{name} must be a non-negative row count; got {value}")
        return
    if isinstance(value, (float, np.floating)):
        if not 0.0 < value < 1.0:
            raise ValueError(f"{name} as a fraction must lie strictly between 0 and 1; got {value}")
        return
    raise ValueError(f"{name} must be a row count, a fraction in (0, 1) or None; got {value!r}")


@dataclass(frozen=True)
class TemporalSplit:
    """How to cut each series into consecutive train, val and test parts.

    By rows (:meth:`by_rows`): ``n_train``, ``n_val``, ``n_test`` are per-series row counts (int) or
    fractions of the series length (float, floored like Time-Series-Library's ``int(0.7 * n)``); at most one
    may be ``None`` and takes the remainder. Parts are laid out train, val, test from the first row; rows
    after the test part are unused. By time (:meth:`by_time`): train is ``ds < val_start``, val is
    ``val_start <= ds < test_start``, test is ``test_start <= ds < test_end`` (``test_end=None``: to the end;
    ``val_start=None``: no val part).
    """

    n_train: int | float | None = None
    n_val: int | float | None = None
    n_test: int | float | None = None
    val_start: object = None
    test_start: object = None
    test_end: object = None

    @classmethod
    def by_rows(cls, n_train=None, n_val=None, n_test=None) -> TemporalSplit:
        """Split by per-series row counts or fractions (one may be ``None``: the remainder; all ``None``:
        every row is training)."""
        for name, value in (("n_train", n_train), ("n_val", n_val), ("n_test", n_test)):
            _check_count(name, value)
        if sum(v is None for v in (n_train, n_val, n_test)) == 2:
            raise ValueError("at most one of n_train, n_val, n_test may be None (it takes the remainder)")
        return cls(n_train=n_train, n_val=n_val, n_test=n_test)

    @classmethod
    def by_time(cls, *, test_start, val_start=None, test_end=None) -> TemporalSplit:
        """Split at stamps (datetime or int): train < val_start <= val < test_start <= test < test_end."""
        if test_start is None:
            raise ValueError("by_time needs test_start")
        stamps = [s for s in (val_start, test_start, test_end) if s is not None]
        try:
            ordered = all(a < b for a, b in zip(stamps, stamps[1:]))
        except TypeError:
            raise ValueError(f"split stamps are not comparable: {stamps!r}") from None
        if not ordered:
            raise ValueError(
                f"split stamps must increase: val_start={val_start!r} < test_start={test_start!r}"
                f" < test_end={test_end!r}"
            )
        return cls(val_start=val_start, test_start=test_start, test_end=test_end)

    @property
    def is_by_time(self) -> bool:
        return self.test_start is not None

    def _counts(self, length: int) -> tuple[int, int, int] | None:
        parts = [self.n_train, self.n_val, self.n_test]
        if self.n_train is None and self.n_val is None and self.n_test is None:
            return length, 0, 0
        rows = [None if p is None else int(p) if isinstance(p, (int, np.integer)) else int(p * length)
                for p in parts]
        if None in rows:
            k = rows.index(None)
            rows[k] = length - sum(r for r in rows if r is not None)
        if min(rows) < 0 or sum(rows) > length:
            return None
        return tuple(rows)

    def ranges(self, df: pd.DataFrame) -> dict[str, np.ndarray]:
        """Per-series row ranges of each part of a validated, sorted long frame.

        Returns ``{"train": (n_series, 2), "val": ..., "test": ...}`` int64 arrays of ``[lo, hi)`` row
        positions *within* each series (series in :func:`validate`'s order). ``ValueError`` names the series
        whose length cannot hold the requested counts.
        """
        starts, lengths = _bounds(df)
        out = {part: np.zeros((len(starts), 2), dtype=np.int64) for part in PARTS}
        if self.is_by_time:
            ds = df[TIME].to_numpy()
            for s, (start, length) in enumerate(zip(starts, lengths)):
                stamps = pd.Index(ds[start : start + length])
                cut = [
                    0 if self.val_start is None else _position(stamps, self.val_start),
                    _position(stamps, self.test_start),
                    length if self.test_end is None else _position(stamps, self.test_end),
                ]
                if self.val_start is None:
                    cut[0] = cut[1]
                out["train"][s] = (0, cut[0])
                out["val"][s] = (cut[0], cut[1])
                out["test"][s] = (cut[1], cut[2])
            return out
        bad = []
        for s, length in enumerate(lengths):
            counts = self._counts(int(length))
            if counts is None:
                bad.append(f"{df[ID].iat[starts[s]]!r} ({length} rows)")
                continue
            n_train, n_val, n_test = counts
            out["train"][s] = (0, n_train)
            out["val"][s] = (n_train, n_train + n_val)
            out["test"][s] = (n_train + n_val, n_train + n_val + n_test)
        if bad:
            raise ValueError(
                f"series too short for n_train={self.n_train}, n_val={self.n_val}, n_test={self.n_test}: "
                f"{_quote(bad)}"
            )
        return out


def _position(stamps: pd.Index, stamp) -> int:
    """Number of stamps strictly before ``stamp``."""
    if pd.api.types.is_datetime64_any_dtype(stamps.dtype):
        stamp = pd.Timestamp(stamp)
        if (stamp.tz is None) != (stamps.tz is None):
            raise ValueError(f"split stamp {stamp} and the series' ds disagree on time zones")
    elif isinstance(stamp, (str, pd.Timestamp)):
        raise ValueError(f"integer ds needs integer split stamps; got {stamp!r}")
    return int(stamps.searchsorted(stamp, side="left"))


def select_rows(df: pd.DataFrame, ranges: np.ndarray, *, reach_back: int = 0) -> pd.DataFrame:
    """The rows of each series in ``ranges`` (``(n_series, 2)``, from :meth:`TemporalSplit.ranges`).

    ``reach_back`` rows before each range are included too (clipped at the series start): the context a
    model may look at before forecasting the part. Returns a new frame with a fresh index.
    """
    starts, lengths = _bounds(df)
    ranges = np.asarray(ranges, dtype=np.int64)
    if ranges.shape != (len(starts), 2):
        raise ValueError(f"ranges must have shape ({len(starts)}, 2), one row per series; got {ranges.shape}")
    if reach_back < 0:
        raise ValueError(f"reach_back must be >= 0; got {reach_back}")
    lo = np.maximum(ranges[:, 0] - reach_back, 0)
    hi = np.minimum(ranges[:, 1], lengths)
    keep = np.zeros(len(df), dtype=bool)
    for start, a, b in zip(starts, lo, hi):
        keep[start + a : start + max(a, b)] = True
    return df.loc[keep].reset_index(drop=True)
