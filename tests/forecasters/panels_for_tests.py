import numpy as np
import pandas as pd


def make_panel(n_series=2, length=120, freq="h", seed=0, covariates=False):
    rng = np.random.default_rng(seed)
    frames = []
    for i in range(n_series):
        t = np.arange(length)
        ds = pd.date_range("2021-01-01", periods=length, freq=freq)
        y = 10 * i + np.sin(2 * np.pi * t / 12 + i) + 0.1 * rng.normal(size=length)
        frame = pd.DataFrame({"unique_id": f"s{i}", "ds": ds, "y": y})
        if covariates:
            frame["temp"] = rng.normal(size=length)
            frame["promo"] = (t % 7 == 0).astype(float)
            frame["size"] = float(i + 1)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)





