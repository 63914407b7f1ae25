import numpy as np
import pandas as pd
import pytest
from eval_estimators import LastValue
from sklearn.base import BaseEstimator

from ssmcast.evaluation import LTSFResult, evaluate_ltsf

SPLIT = ((0, 100), (100, 140), (140, 200))
WEIGHTS = {"zeta": 0.5, "alpha": 1.0, "mid": -2.0}  # channel order of the frame is not sorted on purpose


def synthetic(n=200, seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    data = {
        "zeta": 5 + np.sin(t / 5) + 0.1 * rng.normal(size=n),
        "alpha": 100 + rng.normal(size=n).cumsum(),
        "mid": -3 + 0.02 * t + rng.normal(size=n),
    }
    return pd.DataFrame(data, index=pd.DatetimeIndex(pd.date_range("2020-01-01", periods=n, freq="h"), name="ds"))


class ScaledLast(BaseEstimator):
    """predict_windows: each channel's last context value times a per-channel weight (found by name)."""

    def __init__(self, input_size=None, horizon=None):
        self.input_size, self.horizon = input_size, horizon

    def fit(self, df, val_df=None):
        self.channels_ = list(dict.fromkeys(df["unique_id"]))  # the order contexts arrive in
        self.train_df_, self.val_df_ = df, val_df
        return self

    def predict_windows(self, context):
        assert context.dtype == np.float32 and context.shape[2] == len(self.channels_)
        w = np.array([WEIGHTS[c] for c in self.channels_])
        return np.repeat(context[:, -1:, :] * w, self.horizon, axis=1)


def reference(wide, split, input_size, horizon, weights):
    """Window by window, in plain numpy: z-score on the train rows, forecast, error."""
    (a, b), _, (c, d) = split
    values = wide.to_numpy()
    z = (values - values[a:b].mean(0)) / values[a:b].std(0)
    w = np.array([weights[k] for k in wide.columns])
    sq, ab = [], []
    for start in range(c, d - horizon + 1):
        context, target = z[start - input_size : start], z[start : start + horizon]
        pred = np.repeat((context[-1] * w)[None, :], horizon, axis=0)
        sq.append((pred - target) ** 2)
        ab.append(np.abs(pred - target))
    return np.array(sq), np.array(ab)  # (n_windows, H, C)


@pytest.mark.parametrize("batch_size", [7, 1000])
def test_matches_a_window_by_window_reference(batch_size):
    wide = synthetic()
    res = evaluate_ltsf(ScaledLast(12, 6), wide, input_size=12, horizon=6, split=SPLIT, batch_size=batch_size)
    sq, ab = reference(wide, SPLIT, 12, 6, WEIGHTS)
    assert isinstance(res, LTSFResult) and res.predict_mode == "predict_windows"
    assert res.n_windows == len(sq) == 60 - 6 + 1  # every window, no drop_last
    assert res.mse == pytest.approx(sq.mean(), rel=1e-6)
    assert res.mae == pytest.approx(ab.mean(), rel=1e-6)
    np.testing.assert_allclose(res.mse_per_step, sq.mean(axis=(0, 2)), rtol=1e-6)
    np.testing.assert_allclose(res.mae_per_step, ab.mean(axis=(0, 2)), rtol=1e-6)
    assert list(res.mse_per_channel.index) == ["zeta", "alpha", "mid"] == res.channels
    np.testing.assert_allclose(res.mse_per_channel, sq.mean(axis=(0, 1)), rtol=1e-6)
    np.testing.assert_allclose(res.mae_per_channel, ab.mean(axis=(0, 1)), rtol=1e-6)
    assert res.fit_time_s >= 0 and res.predict_time_s > 0
    assert res.to_dict()["mse"] == res.mse and len(res.to_dict()["mse_per_step"]) == 6


def test_fit_gets_the_normalised_train_and_val_rows():
    wide = synthetic()
    est = ScaledLast(12, 6)
    res = evaluate_ltsf(est, wide, input_size=12, horizon=6, split=SPLIT)
    assert not hasattr(est, "channels_")  # a clone was fitted
    model = res.estimator
    train, val = model.train_df_, model.val_df_
    assert list(train.columns) == ["unique_id", "ds", "y"] and model.channels_ == ["alpha", "mid", "zeta"]
    assert train.groupby("unique_id").size().eq(100).all()
    stats = train.groupby("unique_id")["y"].agg(["mean", lambda v: v.std(ddof=0)])
    np.testing.assert_allclose(stats.to_numpy(), [[0, 1]] * 3, atol=1e-12)
    assert val.groupby("unique_id").size().eq(40).all()
    assert val.ds.min() == wide.index[100] and val.ds.max() == wide.index[139]
    alpha = wide["alpha"].to_numpy()
    expected = (alpha[100:140] - alpha[:100].mean()) / alpha[:100].std()
    np.testing.assert_allclose(val[val.unique_id == "alpha"].y, expected)


class StrictLastValue(LastValue):
    """A model with per-series parameters: refuses ids it was not fitted on (like the ARIMA baselines)."""

    def predict(self, h=None, df=None, quantiles=None):
        if df is not None and not set(df["unique_id"]) <= set(self.state_):
            raise ValueError("unknown unique_id")
        return super().predict(h=h, df=df, quantiles=quantiles)


@pytest.mark.parametrize(
    ("estimator", "mode"), [(LastValue(), "predict_batched_ids"), (StrictLastValue(), "predict_per_window")]
)
def test_predict_fallback_equals_the_reference(estimator, mode):
    wide = synthetic(120)
    split = ((0, 60), (60, 90), (90, 120))
    res = evaluate_ltsf(estimator, wide, input_size=8, horizon=5, split=split, batch_size=10)
    sq, ab = reference(wide, split, 8, 5, {c: 1.0 for c in wide.columns})
    assert res.predict_mode == mode and res.n_windows == 26
    assert res.mse == pytest.approx(sq.mean(), rel=1e-6) and res.mae == pytest.approx(ab.mean(), rel=1e-6)


def test_channels_subset_and_ds_column():
    wide = synthetic().reset_index()
    res = evaluate_ltsf(
        ScaledLast(12, 3),
        wide,
        12,
        3,
        split={"train": (0, 100), "val": (100, 140), "test": (140, 200)},
        channels=["mid", "zeta"],
    )
    sq, _ = reference(synthetic()[["mid", "zeta"]], SPLIT, 12, 3, WEIGHTS)
    assert res.channels == ["mid", "zeta"] and res.mse == pytest.approx(sq.mean(), rel=1e-6)


class BadShape(ScaledLast):
    def predict_windows(self, context):
        return super().predict_windows(context)[:, :-1]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"split": ((0, 100), (100, 140), (140, 260))}, r"test=\(140, 260\) is not a non-empty row range"),
        ({"split": ((0, 100), (100, 140))}, "split must give train, val and test"),
        ({"split": None}, "split is required"),
        ({"input_size": 120}, "reaches before row 0 from the val start"),
        ({"horizon": 61}, "longer than the 60 test rows"),
        ({"channels": ["nope"]}, r"unknown channel\(s\) \['nope'\]"),
        ({"estimator": ScaledLast(24, 6)}, "input_size=24 differs"),
        ({"estimator": BadShape(12, 6)}, r"shape \(\d+, 5, 3\); expected \(\d+, 6, 3\)"),
        ({"batch_size": 0}, "batch_size must be"),
    ],
)
def test_errors(kwargs, message):
    args = {"estimator": ScaledLast(12, 6), "dataset": synthetic(), "input_size": 12, "horizon": 6, "split": SPLIT}
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        evaluate_ltsf(**args)


def test_nan_in_used_rows_is_rejected_and_caller_frame_kept():
    wide = synthetic()
    wide.iloc[150, 1] = np.nan
    before = wide.copy()
    with pytest.raises(ValueError, match="NaN/inf"):
        evaluate_ltsf(ScaledLast(12, 6), wide, 12, 6, split=SPLIT)
    pd.testing.assert_frame_equal(wide, before)


class RepeatLast(BaseEstimator):
    def fit(self, df):
        return self

    def predict_windows(self, context):
        return np.repeat(context[:, -1:, :], 96, axis=1)


def test_etth1_every_window_matches_numpy(data_dir):
    raw = pd.read_csv(data_dir / "ett" / "ETTh1.csv")
    values = raw.drop(columns="date").to_numpy(float)
    z = (values - values[:8640].mean(0)) / values[:8640].std(0)
    n = 2880 - 96 + 1
    sq = ab = 0.0
    for j in range(96):  # step j of every window at once: target row 11520 + i + j, last context row 11519 + i
        err = z[11520 + j : 11520 + j + n] - z[11519 : 11519 + n]
        sq, ab = sq + (err**2).sum(), ab + np.abs(err).sum()
    res = evaluate_ltsf(RepeatLast(), "ETTh1", input_size=96, horizon=96, data_dir=data_dir, batch_size=512)
    assert res.n_windows == n == 2785
    assert res.channels == ["HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL", "OT"]
    assert res.mse == pytest.approx(sq / (n * 96 * 7), rel=1e-6)
    assert res.mae == pytest.approx(ab / (n * 96 * 7), rel=1e-6)
    assert res.settings["split"]["test"] == (11520, 14400)
    # Zeng et al. 2023 (DLinear), "Repeat" on ETTh1-96: 1.295 / 0.713. Their test loader drops the last
    # window (drop_last, batch 32: 2784 windows give 1.29460); over all 2785 windows it is 1.29437.
    assert res.mse == pytest.approx(1.295, abs=1e-3) and res.mae == pytest.approx(0.713, abs=1e-3)


def _probabilistic_reference(est, wide, split, input_size, horizon, levels):
    """Window by window with predict(df=window, quantiles=levels), scored by ssmcast.evaluation's crps/coverage."""
    from ssmcast.evaluation import coverage, crps

    (a, b), _, (c, d) = split
    values = wide.to_numpy()
    z = (values - values[a:b].mean(0)) / values[a:b].std(0)
    ys, qs = [], {q: [] for q in levels}
    for start in range(c, d - horizon + 1):
        history = pd.DataFrame({
            "unique_id": np.repeat(wide.columns.to_numpy(), input_size),
            "ds": np.tile(wide.index[start - input_size : start], len(wide.columns)),
            "y": z[start - input_size : start].T.reshape(-1),
        })  # fmt: skip
        pred = est.predict(h=horizon, df=history, quantiles=levels).sort_values(["unique_id", "ds"])
        rows = slice(start, start + horizon)
        target = pd.DataFrame(z[rows], columns=wide.columns, index=wide.index[rows])
        ys.append(target.rename_axis("ds").reset_index().melt("ds", var_name="unique_id", value_name="y")
                  .sort_values(["unique_id", "ds"])["y"].to_numpy())
        for q in levels:
            qs[q].append(pred[f"y_pred_q{q!r}"].to_numpy())
    y = np.concatenate(ys)
    q = {k: np.concatenate(v) for k, v in qs.items()}
    return crps(y, q), coverage(y, q[levels[0]], q[levels[-1]])


@pytest.mark.parametrize("kind", ["neural", "baseline"])
def test_quantiles_give_crps_and_coverage_of_every_window(kind):
    """evaluate_ltsf(quantiles=): the neural path (predict_windows with quantiles) and a baseline's predict(df=)
    path both equal a window-by-window reference built from predict(df=window, quantiles=) and the metrics'
    crps/coverage."""
    from ssmcast import S4DForecaster
    from ssmcast.backbones.s4 import S4DConfig
    from ssmcast.baselines import NaiveForecaster

    wide = synthetic()
    levels = [0.1, 0.5, 0.9]
    if kind == "neural":
        est = S4DForecaster(input_size=12, horizon=6, loss="gaussian", max_epochs=1, batch_size=64, val_size=0,
                            backbone=S4DConfig(d_model=8, n_layers=1, d_state=4), verbose=False, seed=0,
                            accelerator="cpu")
    else:
        est = NaiveForecaster(horizon=6)
    res = evaluate_ltsf(est, wide, input_size=12, horizon=6, split=SPLIT, batch_size=16, quantiles=levels)
    assert res.quantiles == levels and set(res.probabilistic) == {"crps", "coverage_80"}
    assert res.predict_mode == ("predict_windows" if kind == "neural" else "predict_batched_ids")
    want_crps, want_cov = _probabilistic_reference(res.estimator, wide, SPLIT, 12, 6, levels)
    assert res.probabilistic["crps"] == pytest.approx(want_crps, rel=1e-5)
    assert res.probabilistic["coverage_80"] == pytest.approx(want_cov, abs=1e-12)
    assert 0 < res.probabilistic["coverage_80"] < 1
    plain = evaluate_ltsf(est, wide, input_size=12, horizon=6, split=SPLIT, batch_size=16)
    assert plain.probabilistic == {} and plain.mse == pytest.approx(res.mse, rel=1e-6)


def test_quantiles_a_model_cannot_give_are_an_error():
    from ssmcast import S4DForecaster
    from ssmcast.backbones.s4 import S4DConfig

    est = S4DForecaster(input_size=12, horizon=6, loss="mse", max_epochs=1, val_size=0, verbose=False,
                        backbone=S4DConfig(d_model=8, n_layers=1, d_state=4), accelerator="cpu")
    with pytest.raises(ValueError, match="gaussian"):
        evaluate_ltsf(est, synthetic(), input_size=12, horizon=6, split=SPLIT, quantiles=[0.1, 0.9])
