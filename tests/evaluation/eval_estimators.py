"""Tiny forecasters following the ssmcast API, for the evaluation tests (no dependency on other helpers)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import norm
from sklearn.base import BaseEstimator

from ssmcast.data.frames import future_timestamps, infer_freq, to_long
from ssmcast.forecasting import check_quantiles, forecast_frame


class LastValue(BaseEstimator):
    """Repeats each series' last value; quantiles from a random walk with the in-sample step std."""

    def __init__(self, drift: bool = False):
        self.drift = drift

    def _state(self, df):
        data = to_long(df)
        freq = infer_freq(data)
        state = {}
        for uid, g in data.groupby("unique_id", sort=True):
            y = g["y"].to_numpy(float)
            steps = np.diff(y)
            slope = float(steps.mean()) if (self.drift and steps.size) else 0.0
            sigma = float(steps.std()) if steps.size > 1 else 1.0
            state[uid] = (g["ds"].iloc[-1], y[-1], slope, max(sigma, 1e-3))
        return state, freq

    def fit(self, df):
        self.state_, self.freq_ = self._state(df)
        return self

    def predict(self, h=None, df=None, quantiles=None):
        if not hasattr(self, "state_"):
            raise RuntimeError("not fitted")
        state, freq = self._state(df) if df is not None else (self.state_, self.freq_)
        levels = check_quantiles(quantiles)
        ids, ds, mean, qs = [], [], [], {q: [] for q in levels}
        steps = np.arange(1, h + 1)
        for uid, (last_ds, last_y, slope, sigma) in state.items():
            path = last_y + slope * steps
            ids += [uid] * h
            ds += list(future_timestamps(last_ds, freq, h))
            mean.append(path)
            for q in levels:
                qs[q].append(path + sigma * np.sqrt(steps) * norm.ppf(q))
        return forecast_frame(ids, ds, np.concatenate(mean), {q: np.concatenate(v) for q, v in qs.items()})


class Spy(LastValue):
    """A LastValue that records the last time stamp it was shown in every fit and predict call."""

    log: list = []

    def fit(self, df):
        Spy.log.append(("fit", to_long(df).groupby("unique_id")["ds"].max().to_dict()))
        return super().fit(df)

    def predict(self, h=None, df=None, quantiles=None):
        if df is not None:
            Spy.log.append(("predict", to_long(df).groupby("unique_id")["ds"].max().to_dict()))
        return super().predict(h=h, df=df, quantiles=quantiles)


class Broken(BaseEstimator):
    """Fails in fit, for the compare error path."""

    def fit(self, df):
        raise RuntimeError("deliberate failure")

    def predict(self, h=None, df=None, quantiles=None):
        raise RuntimeError("never fitted")


def panel(lengths=(40, 30), start="2024-01-01", freq="h", seed=0) -> pd.DataFrame:
    """A long panel of random walks ``s0, s1, ...`` sharing the start date (so the ends differ)."""
    rng = np.random.default_rng(seed)
    frames = []
    for i, n in enumerate(lengths):
        ds = pd.date_range(start, periods=n, freq=freq)
        frames.append(pd.DataFrame({"unique_id": f"s{i}", "ds": ds, "y": 10 + rng.normal(size=n).cumsum()}))
    return pd.concat(frames, ignore_index=True)
