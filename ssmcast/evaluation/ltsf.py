"""The long-horizon (LTSF) benchmark protocol of Informer / Autoformer / Time-Series-Library.

* Splits: the standard row ranges (``ssmcast.datasets.ltsf_split(name)``): ETTh 8640/2880/2880,
  ETTm x4, the custom 70/10/20 split for Weather, Exchange, ILI.
* Scaling: a z-score per channel fitted on the training rows only (population std, as sklearn's
  ``StandardScaler``; a constant channel gets scale 1) and applied to the whole series; MSE and MAE are
  reported on these normalised values, over all channels (multivariate, ``features=M``).
* Windows: EVERY test window, ``n = n_test_rows - horizon + 1`` (2785 for ETTh1 at H=96), whatever
  ``input_size``; the context of a window may reach back into the validation rows. Nothing is dropped
  (Time-Series-Library's test loader with ``drop_last=True`` loses the last partial batch; not here).

The estimator (a clone; the caller's is left untouched) is fitted on the normalised training rows as a
long frame (``unique_id`` = channel name), with ``val_df=`` (the normalised validation rows, which
continue the training rows: the contexts of the first validation windows reach back into the training
rows, as in Time-Series-Library) when its ``fit`` takes that argument. Test windows go to
``predict_windows(context)`` in batches when the estimator has it (the neural forecasters and every
classical baseline; a ``horizon`` parameter left at None is set to ``horizon``); ``context`` is
float32 ``(batch, input_size, n_channels)`` with the channels in the order of the ``unique_id`` values of
the training frame (sorted, as :func:`ssmcast.data.to_wide` lays them out). Otherwise each window's
context becomes its own series, ``f"{channel}@{window}"``, for ``predict(h=horizon, df=...)``; an
estimator that refuses unknown ids is then called once per window with the channel names. The classical
baselines' ``predict_windows`` forecasts a linear model's windows by its affine map, so it needs about
``input_size`` Kalman filters per channel, not one per window.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view
from sklearn.base import clone

from ssmcast.evaluation.backtest import _positive_int
from ssmcast.forecasting import quantile_column

__all__ = ["evaluate_ltsf", "LTSFResult"]


@dataclass
class LTSFResult:
    """Scores of one estimator under the long-horizon protocol (normalised scale)."""

    dataset: str
    input_size: int
    horizon: int
    channels: list[str]
    n_windows: int
    mse: float
    mae: float
    mse_per_step: np.ndarray  # (horizon,)
    mae_per_step: np.ndarray  # (horizon,)
    mse_per_channel: pd.Series
    mae_per_channel: pd.Series
    fit_time_s: float
    predict_time_s: float
    predict_mode: str
    settings: dict = field(default_factory=dict)
    estimator: object = None
    quantiles: list = field(default_factory=list)  # the levels scored, if any
    probabilistic: dict = field(default_factory=dict)  # crps and coverage_<central %> with quantiles

    def to_dict(self) -> dict:
        """Plain JSON-friendly values (no estimator)."""
        out = {k: v for k, v in asdict(self).items() if k != "estimator"}
        out["mse_per_step"] = [float(v) for v in self.mse_per_step]
        out["mae_per_step"] = [float(v) for v in self.mae_per_step]
        out["mse_per_channel"] = {str(k): float(v) for k, v in self.mse_per_channel.items()}
        out["mae_per_channel"] = {str(k): float(v) for k, v in self.mae_per_channel.items()}
        return out


def _as_split(split) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
    if split is None:
        raise ValueError("split is required with a DataFrame dataset: (train, val, test) row ranges")
    if isinstance(split, dict):
        parts = [split.get(k) for k in ("train", "val", "test")]
    elif all(hasattr(split, k) for k in ("train", "val", "test")):
        parts = [split.train, split.val, split.test]
    else:
        parts = list(split)
    if len(parts) != 3 or any(p is None or len(p) != 2 for p in parts):
        raise ValueError(f"split must give train, val and test as (start, stop) row ranges; got {split!r}")
    return tuple((int(a), int(b)) for a, b in parts)


def _wide_data(dataset, data_dir, split):
    """``(name, wide frame with a time index, (train, val, test))``."""
    if isinstance(dataset, str):
        from ssmcast.datasets import dataset_info, load_wide, ltsf_split

        info = dataset_info(dataset)
        split = ltsf_split(info.name) if split is None else split
        return info.name, load_wide(info.name, data_dir=data_dir), _as_split(split)
    from ssmcast.data.frames import to_pandas

    try:
        dataset = to_pandas(dataset)  # a polars or pyarrow wide frame -> pandas
    except TypeError as err:
        raise TypeError(f"dataset must be a dataset name or a wide frame: {err}") from None
    if isinstance(dataset, pd.DataFrame):
        wide = dataset.set_index("ds") if "ds" in dataset.columns else dataset
        wide = wide.copy()
        wide.columns = [str(c) for c in wide.columns]
        return "custom", wide, _as_split(split)
    raise TypeError(f"dataset must be a dataset name or a wide DataFrame; got {type(dataset).__name__}")


def _check_ranges(n_rows: int, parts, input_size: int, horizon: int) -> None:
    for name, (a, b) in zip(("train", "val", "test"), parts):
        if not 0 <= a < b <= n_rows:
            raise ValueError(f"split {name}=({a}, {b}) is not a non-empty row range inside the {n_rows} rows")
    for name, (a, b) in zip(("val", "test"), parts[1:]):
        if a - input_size < 0:
            raise ValueError(f"input_size={input_size} reaches before row 0 from the {name} start {a}")
        if b - a < horizon and name == "test":
            raise ValueError(f"horizon={horizon} is longer than the {b - a} test rows")


def _long(values: np.ndarray, ds: pd.Index, channels: list[str]) -> pd.DataFrame:
    """Long frame of a ``(T, C)`` block, sorted by (unique_id, ds)."""
    T = len(ds)
    order = np.argsort(channels, kind="stable")
    return pd.DataFrame(
        {
            "unique_id": np.repeat(np.array(channels, dtype=object)[order], T),
            "ds": np.tile(np.asarray(ds), len(channels)),
            "y": values[:, order].T.reshape(-1),
        }
    )


def evaluate_ltsf(
    estimator,
    dataset: str | pd.DataFrame,
    input_size: int,
    horizon: int,
    data_dir=None,
    channels: Sequence[str] | None = None,
    batch_size: int = 256,
    split=None,
    quantiles=None,
) -> LTSFResult:
    """Fit ``estimator`` and score it on every test window of the long-horizon protocol.

    ``dataset`` is a name (``"etth1"``, ``"weather"``...; loaded with :func:`ssmcast.datasets.load_wide`
    from ``data_dir``) or a wide frame (time index or ``ds`` column, one column per channel) with
    ``split=(train, val, test)`` row ranges. ``channels`` picks a subset (default: every column).
    ``batch_size`` windows go to the model per call. ``quantiles`` (levels): the model's quantiles of every test
    window are scored too, on the same normalised scale: ``crps`` (twice the mean pinball loss over the levels,
    as :func:`ssmcast.evaluation.crps`) and ``coverage`` of each symmetric pair of levels (``coverage_80`` for
    0.1/0.9), over every window, step and channel. Returns an :class:`LTSFResult`.
    """
    from ssmcast.forecasting import check_quantiles

    levels = check_quantiles(quantiles)
    input_size = _positive_int(input_size, "input_size")
    horizon = _positive_int(horizon, "horizon")
    batch_size = _positive_int(batch_size, "batch_size")
    if not (hasattr(estimator, "fit") and (hasattr(estimator, "predict_windows") or hasattr(estimator, "predict"))):
        raise TypeError(f"estimator needs fit and predict_windows or predict; got {type(estimator).__name__}")
    name, wide, parts = _wide_data(dataset, data_dir, split)
    if channels is not None:
        channels = [str(c) for c in ([channels] if isinstance(channels, str) else channels)]
        unknown = [c for c in channels if c not in wide.columns]
        if unknown:
            raise ValueError(f"unknown channel(s) {unknown}; {name} has {list(wide.columns)}")
        if not channels or len(set(channels)) != len(channels):
            raise ValueError(f"channels must be non-empty and distinct; got {channels}")
        wide = wide[channels]
    channels = list(wide.columns)
    try:
        values = wide.to_numpy(dtype=float)  # (T, C)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: every channel must be numeric") from None
    _check_ranges(len(values), parts, input_size, horizon)
    (tr0, tr1), (va0, va1), (te0, te1) = parts
    if not np.all(np.isfinite(values[min(tr0, va0 - input_size) : max(tr1, va1, te1)])):
        raise ValueError(f"{name}: NaN/inf values inside the rows the protocol uses")
    _check_params(estimator, input_size, horizon)

    mean = values[tr0:tr1].mean(axis=0)  # (C,)
    std = values[tr0:tr1].std(axis=0)  # (C,)
    std = np.where(std > 0, std, 1.0)
    z = (values - mean) / std  # (T, C)
    ds = wide.index
    train_df = _long(z[tr0:tr1], ds[tr0:tr1], channels)
    val_df = _long(z[va0:va1], ds[va0:va1], channels)

    model = clone(estimator, safe=False)
    if callable(getattr(model, "get_params", None)) and model.get_params(deep=False).get("horizon", 0) is None:
        model.set_params(horizon=horizon)  # the protocol fixes it (e.g. for a baseline's predict_windows)
    tic = time.perf_counter()
    if "val_df" in inspect.signature(model.fit).parameters:
        model.fit(train_df, val_df=val_df)
    else:
        model.fit(train_df)
    fit_time = getattr(model, "fit_time_s_", None) or time.perf_counter() - tic  # the fit alone (no tracking waits)

    order = np.argsort(channels, kind="stable")  # model channel k = channels[order[k]]
    n_windows = te1 - te0 - horizon + 1
    block = z[te0 - input_size : te1][:, order]  # (L + n_test, C) in model order
    windows = sliding_window_view(block, input_size + horizon, axis=0)  # (n_windows, C, L + H), a view
    C = len(channels)
    sq = np.zeros((horizon, C))
    ab = np.zeros((horizon, C))
    predictor = _WindowPredictor(model, input_size, horizon, [channels[i] for i in order], ds, te0, levels)
    pinball = np.zeros(len(levels))  # summed over windows, steps, channels
    pairs = _symmetric_pairs(levels)
    inside = np.zeros(len(pairs))
    tic = time.perf_counter()
    for i in range(0, n_windows, batch_size):
        j = min(i + batch_size, n_windows)
        pair = windows[i:j].transpose(0, 2, 1)  # (b, L + H, C)
        context = np.ascontiguousarray(pair[:, :input_size], dtype=np.float32)  # (b, L, C)
        target = pair[:, input_size:]  # (b, H, C)
        pred, q = predictor(context, i)  # (b, H, C), (b, H, C, Q)
        err = pred - target
        sq += (err**2).sum(axis=0)
        ab += np.abs(err).sum(axis=0)
        if levels:
            diff = target[..., None] - q  # (b, H, C, Q)
            tau = np.asarray(levels)
            pinball += np.maximum(tau * diff, (tau - 1) * diff).sum(axis=(0, 1, 2))
            for k, (lo, hi, _) in enumerate(pairs):
                inside[k] += ((target >= q[..., lo]) & (target <= q[..., hi])).sum()
    predict_time = time.perf_counter() - tic
    count = n_windows * horizon * len(channels)
    probabilistic = {}
    if levels:
        probabilistic["crps"] = float(2.0 * (pinball / count).mean())
        probabilistic.update({label: float(inside[k] / count) for k, (_, _, label) in enumerate(pairs)})

    inverse = np.argsort(order)  # back to the frame's channel order
    sq, ab = sq[:, inverse], ab[:, inverse]
    return LTSFResult(
        dataset=name,
        input_size=input_size,
        horizon=horizon,
        channels=channels,
        n_windows=n_windows,
        mse=float(sq.sum() / (n_windows * horizon * C)),
        mae=float(ab.sum() / (n_windows * horizon * C)),
        mse_per_step=sq.sum(axis=1) / (n_windows * C),
        mae_per_step=ab.sum(axis=1) / (n_windows * C),
        mse_per_channel=pd.Series(sq.sum(axis=0) / (n_windows * horizon), index=channels, name="mse"),
        mae_per_channel=pd.Series(ab.sum(axis=0) / (n_windows * horizon), index=channels, name="mae"),
        fit_time_s=fit_time,
        predict_time_s=predict_time,
        predict_mode=predictor.mode,
        settings={
            "split": {"train": parts[0], "val": parts[1], "test": parts[2]},
            "batch_size": batch_size,
            "scaler_mean": dict(zip(channels, mean.tolist())),
            "scaler_std": dict(zip(channels, std.tolist())),
            "estimator": type(estimator).__name__,
        },
        estimator=model,
        quantiles=levels,
        probabilistic=probabilistic,
    )


def _symmetric_pairs(levels: list[float]) -> list[tuple[int, int, str]]:
    """``(index of q, index of 1 - q, "coverage_<central %>")`` per symmetric pair (as :func:`score` names them)."""
    from ssmcast.evaluation.metrics import _interval_pairs

    return [(levels.index(lo), levels.index(hi), label) for lo, hi, label in _interval_pairs(levels)]


def _check_params(estimator, input_size: int, horizon: int) -> None:
    get_params = getattr(estimator, "get_params", None)
    params = get_params(deep=False) if callable(get_params) else {}
    for key, value in (("input_size", input_size), ("horizon", horizon)):
        if params.get(key) is not None and params[key] != value:
            raise ValueError(f"the estimator's {key}={params[key]} differs from evaluate_ltsf's {key}={value}")


def _takes_quantiles(fn) -> bool:
    try:
        return "quantiles" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


class _WindowPredictor:
    """Forecasts a batch of normalised windows with ``predict_windows`` or the ``predict(df=)`` fallback; with
    ``levels``, quantiles too (``predict_windows(context, quantiles=)`` where it takes them)."""

    def __init__(self, model, input_size: int, horizon: int, channels: list[str], ds: pd.Index, test_start: int,
                 levels: list[float] | None = None):
        self.model, self.L, self.H, self.channels = model, input_size, horizon, channels
        self.ds, self.test_start, self.levels = ds, test_start, list(levels or [])
        windows = getattr(model, "predict_windows", None)
        usable = callable(windows) and (not self.levels or _takes_quantiles(windows))
        self.mode = "predict_windows" if usable else "predict_batched_ids"

    def __call__(self, context: np.ndarray, first: int) -> tuple[np.ndarray, np.ndarray | None]:
        """``(point (b, H, C), quantiles (b, H, C, Q) or None)``."""
        b, _, C = context.shape
        q = None
        if self.mode == "predict_windows":
            if self.levels:
                pred, q = self.model.predict_windows(context, quantiles=self.levels)
            else:
                pred = self.model.predict_windows(context)
        elif self.mode == "predict_batched_ids":
            try:
                pred, q = self._predict_frame(context, first, batched=True)
            except ValueError:
                if first != 0:
                    raise
                self.mode = "predict_per_window"
                return self(context, first)
        else:
            parts = [self._predict_frame(context[w : w + 1], first + w, batched=False) for w in range(b)]
            pred = np.concatenate([p for p, _ in parts])
            q = np.concatenate([p for _, p in parts]) if self.levels else None
        pred = np.asarray(pred, dtype=float)
        if pred.shape != (b, self.H, C):
            raise ValueError(f"the model returned forecasts of shape {pred.shape}; expected {(b, self.H, C)}")
        if not np.all(np.isfinite(pred)):
            raise ValueError(f"the model returned NaN/inf forecasts for test windows {first}..{first + b - 1}")
        if self.levels:
            q = np.asarray(q, dtype=float)
            if q.shape != (b, self.H, C, len(self.levels)):
                raise ValueError(f"the model returned quantiles of shape {q.shape}; expected "
                                 f"{(b, self.H, C, len(self.levels))}")
            if not np.all(np.isfinite(q)):
                raise ValueError(f"the model returned NaN/inf quantiles for test windows {first}..{first + b - 1}")
        return pred, q

    def _predict_frame(self, context: np.ndarray, first: int, batched: bool) -> np.ndarray:
        b, L, C = context.shape
        windows = first + np.arange(b)  # (b,)
        if batched:
            ids = np.array([[f"{ch}@{w}" for ch in self.channels] for w in windows], dtype=object)  # (b, C)
        else:
            ids = np.array([self.channels], dtype=object)  # (1, C)
        rows = (self.test_start - L + windows)[:, None] + np.arange(L)  # (b, L)
        stamps = np.asarray(self.ds)[rows]  # (b, L)
        history = pd.DataFrame(
            {
                "unique_id": np.repeat(ids.reshape(-1), L),
                "ds": np.broadcast_to(stamps[:, None, :], (b, C, L)).reshape(-1),
                "y": context.transpose(0, 2, 1).reshape(-1).astype(float),
            }
        )
        kwargs = {"quantiles": self.levels} if self.levels else {}
        forecast = self.model.predict(h=self.H, df=history, **kwargs)
        expected = ids.reshape(-1)  # (b * C,) in (window, channel) order
        codes = pd.Categorical(forecast["unique_id"].astype(str), categories=expected).codes
        counts = np.bincount(codes[codes >= 0], minlength=len(expected))
        wrong = np.flatnonzero(counts != self.H)
        if wrong.size or (codes < 0).any():
            detail = f"{counts[wrong[0]]} rows for series {expected[wrong[0]]!r}" if wrong.size else "unknown ids"
            raise ValueError(f"predict returned {detail}; expected {self.H} rows for each of {list(expected[:3])}...")
        order = np.lexsort((forecast["ds"].to_numpy(), codes))
        values = forecast["y_pred"].to_numpy(float)[order].reshape(b, C, self.H)  # (b, C, H)
        q = None
        if self.levels:
            missing = [quantile_column(v) for v in self.levels if quantile_column(v) not in forecast.columns]
            if missing:
                raise ValueError(f"predict(quantiles={self.levels}) returned no column(s) {missing}")
            q = np.stack([forecast[quantile_column(v)].to_numpy(float)[order] for v in self.levels], -1)
            q = q.reshape(b, C, self.H, len(self.levels)).transpose(0, 2, 1, 3)  # (b, H, C, Q)
        return values.transpose(0, 2, 1), q  # (b, H, C)
