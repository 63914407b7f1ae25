"""The main job that ``make run`` / ``ssmcast train`` runs on the embedded default dataset."""

from __future__ import annotations

import numpy as np
import pandas as pd


def load_co2() -> pd.DataFrame:
    """statsmodels' weekly Mauna Loa CO2 (1958-2001) as a long frame; it has NaNs and missing weeks."""
    from statsmodels.datasets import co2

    data = co2.load_pandas().data["co2"]
    frame = data.rename_axis("ds").reset_index(name="y")
    frame.insert(0, "unique_id", "co2")
    return frame


def main_job(horizon: int = 52, quick: bool = False) -> pd.DataFrame:
    raw = load_co2()
    series = raw.set_index("ds")["y"].asfreq("W-SAT").interpolate(limit_direction="both")
    train, test = series.iloc[:-horizon], series.iloc[-horizon:]
    season = 52
    snaive = np.resize(train.iloc[-season:].to_numpy(), horizon)
    naive = np.repeat(train.iloc[-1], horizon)
    rows = []
    for name, pred in [("Naive", naive), ("SeasonalNaive", snaive)]:
        err = test.to_numpy() - pred
        rows.append({"model": name, "mae": np.abs(err).mean(), "rmse": np.sqrt((err**2).mean())})
    board = pd.DataFrame(rows).sort_values("mae").reset_index(drop=True)
    n_missing = int(raw["y"].isna().sum()) + (len(series) - len(raw))
    print(f"co2 weekly: {len(series)} weeks ({n_missing} missing or NaN filled by interpolation), "
          f"holding out the last {horizon}")
    print(board.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    return board
