"""Fixtures for the data tests: small synthetic panels (no benchmark data needed)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest


def _make_panel(
    lengths: dict[str, int],
    *,
    freq: str | int = "h",
    start="2021-01-01",
    seed: int = 0,
    covariates: tuple[str, ...] = (),
) -> pd.DataFrame:
    """Long frame ``unique_id, ds, y[, covariates]``; every series starts at ``start`` on the grid ``freq``."""
    rng = np.random.default_rng(seed)
    pieces = []
    for uid, n in lengths.items():
        if isinstance(freq, int):
            ds = (0 if isinstance(start, str) else int(start)) + freq * np.arange(n)
        else:
            ds = pd.date_range(start, periods=n, freq=freq)
        piece = pd.DataFrame({"unique_id": uid, "ds": ds, "y": rng.normal(size=n).cumsum() + 10.0})
        for col in covariates:
            piece[col] = rng.normal(size=n)
        pieces.append(piece)
    frame = pd.concat(pieces, ignore_index=True)
    frame["unique_id"] = frame["unique_id"].astype(str)
    return frame


@pytest.fixture
def make_panel():
    """Builder of synthetic long panels: ``make_panel({"a": 10, "b": 7}, freq="h", covariates=("x",))``."""
    return _make_panel
