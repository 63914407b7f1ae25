import pickle

import numpy as np
import pandas as pd
import pytest
from panels_for_tests import make_panel
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

import ssmcast
from ssmcast.backbones.mamba import MambaConfig
from ssmcast.backbones.s4 import S4DConfig
from ssmcast.forecasters import MambaForecaster
from ssmcast.training.module import NonFiniteLossError

TINY = dict(input_size=24, horizon=6, max_epochs=2, batch_size=64, verbose=False, revin=False)


def tiny(**kw):
    params = dict(TINY)
    params["backbone"] = MambaConfig(d_model=8, n_layers=1, d_state=4)
    params.update(kw)
    return MambaForecaster(**params)


@pytest.fixture(scope="module")
def fitted():
    return tiny(quantiles=[0.1, 0.9]).fit(make_panel())


def test_sklearn_params_and_clone():
    est = MambaForecaster(input_size=24, horizon=6)
    params = est.get_params()
    assert params["backbone"] is None and params["backbone__d_state"] == MambaConfig().d_state
    est.set_params(backbone__d_state=8, max_epochs=3)
    assert est.backbone.d_state == 8 and est.max_epochs == 3
    assert MambaForecaster().get_params()["backbone__d_state"] == MambaConfig().d_state  # default not mutated
    twin = clone(est)
    assert twin.backbone is not est.backbone and twin.backbone == est.backbone
    assert twin.get_params() == est.get_params()
    with pytest.raises(ValueError, match="invalid parameter 'width'"):
        est.set_params(backbone__width=3)


def test_fit_predict_frame(fitted):
    pred = fitted.predict()
    assert list(pred.columns) == ["unique_id", "ds", "y_pred", "y_pred_q0.1", "y_pred_q0.9"]
    assert pred.groupby("unique_id").size().to_dict() == {"s0": 6, "s1": 6}
    last = make_panel().groupby("unique_id")["ds"].max()
    first = pred.groupby("unique_id")["ds"].min()
    assert (first == last + pd.Timedelta(hours=1)).all()
    assert (pred["y_pred_q0.1"] <= pred["y_pred_q0.9"]).all()
    # series levels differ by 10: a global model with per-series scaling keeps them apart
    means = pred.groupby("unique_id")["y_pred"].mean()
    assert abs(means["s1"] - means["s0"] - 10) < 3
    assert len(fitted.predict(h=3)) == 6 and fitted.predict(quantiles=[]).shape[1] == 3


def test_recursive_rollout_extends_direct(fitted):
    direct = fitted.predict(h=6, quantiles=[])
    long = fitted.predict(h=15, quantiles=[])
    assert long.groupby("unique_id").size().tolist() == [15, 15]
    head = long.groupby("unique_id").head(6).reset_index(drop=True)
    pd.testing.assert_frame_equal(head, direct)
    # the second block is the model applied to history + its own first block
    s0 = make_panel().query("unique_id == 's0'")
    fed = pd.concat([s0, direct.query("unique_id == 's0'").rename(columns={"y_pred": "y"})], ignore_index=True)
    again = fitted.predict(df=fed, quantiles=[])
    np.testing.assert_allclose(again["y_pred"], long.query("unique_id == 's0'")["y_pred"].iloc[6:12], rtol=1e-4)


def test_predict_with_history_df(fitted):
    panel = make_panel()
    cut = panel.groupby("unique_id").head(100)
    pred = fitted.predict(df=cut, quantiles=[])
    assert (pred.groupby("unique_id")["ds"].min() == cut.groupby("unique_id")["ds"].max() + pd.Timedelta(hours=1)).all()
    only_s1 = fitted.predict(df=cut[cut.unique_id == "s1"], quantiles=[])
    pd.testing.assert_frame_equal(only_s1, pred[pred.unique_id == "s1"].reset_index(drop=True))


def test_same_seed_same_forecast():
    a = tiny(seed=3).fit(make_panel()).predict()
    b = tiny(seed=3).fit(make_panel()).predict()
    pd.testing.assert_frame_equal(a, b)


def test_update_equals_full_context_predict():
    panel = make_panel(length=140)
    train = panel.groupby("unique_id").head(110)
    est = tiny(val_size=0).fit(train)
    new1 = panel.groupby("unique_id").nth(list(range(110, 125)))
    new2 = panel.groupby("unique_id").nth(list(range(125, 140)))
    est.update(new1)
    streamed = est.update(new2)
    reference = est.predict(df=panel, context="full")
    pd.testing.assert_frame_equal(streamed, reference, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="continue series"):
        est.update(new1)  # stale rows: not right after the last stamp


def test_update_converts_the_new_rows_to_long_once(monkeypatch):
    import ssmcast.data.frames as frames
    import ssmcast.forecasters.preparation as preparation

    panel = make_panel(length=120)
    est = tiny(val_size=0).fit(panel.groupby("unique_id").head(110))
    calls, original = [], frames.to_long

    def counted(df, **kw):
        calls.append(len(df))
        return original(df, **kw)

    monkeypatch.setattr(frames, "to_long", counted)
    monkeypatch.setattr(preparation, "to_long", counted)
    est.update(panel.groupby("unique_id").nth([110, 111]))
    assert calls == [4]  # one conversion to the long frame (there were two)


def test_failed_update_absorbs_nothing():
    panel = make_panel(length=140)
    train = panel.groupby("unique_id").head(110)
    new = panel.groupby("unique_id").nth(list(range(110, 125)))
    est = tiny(val_size=0).fit(train)
    for bad in (dict(h=0), dict(quantiles=[0.1]), dict(h=2.5)):
        with pytest.raises(ValueError):
            est.update(new, **bad)
    assert all(len(u["X"]) == 110 for u in est.history_.values())
    streamed = est.update(new)  # the same rows again, now accepted
    pd.testing.assert_frame_equal(streamed, est.predict(df=panel.groupby("unique_id").head(125), context="full"),
                                  rtol=1e-4, atol=1e-5)


def test_save_load_identical(tmp_path, fitted):
    fitted.save(tmp_path / "model")
    loaded = ssmcast.load(tmp_path / "model")
    pd.testing.assert_frame_equal(loaded.predict(), fitted.predict())
    assert loaded.get_params() == fitted.get_params()
    pd.testing.assert_frame_equal(loaded.predict(context="full"), fitted.predict(context="full"))


def test_load_refuses_foreign_class(tmp_path, fitted):
    fitted.save(tmp_path / "m")
    params = (tmp_path / "m" / "params.json").read_text().replace("ssmcast.forecasters.neural.MambaForecaster",
                                                                   "os.system")
    (tmp_path / "m" / "params.json").write_text(params)
    with pytest.raises(ValueError, match="only name ssmcast classes"):
        ssmcast.load(tmp_path / "m")
    with pytest.raises(ValueError, match="not a saved ssmcast model"):
        ssmcast.load(tmp_path / "nothing")


def test_pickle_round_trip(fitted):
    clone_ = pickle.loads(pickle.dumps(fitted))
    pd.testing.assert_frame_equal(clone_.predict(), fitted.predict())


def test_mixed_channel_mode_and_predict_windows():
    panel = make_panel(n_series=3)
    est = tiny(channel_mode="mixed").fit(panel)
    pred = est.predict()
    assert pred.groupby("unique_id").size().tolist() == [6, 6, 6]
    wide = panel.pivot(index="ds", columns="unique_id", values="y")
    ctx = np.stack([wide.to_numpy()[-24:], wide.to_numpy()[-30:-6]])
    out = est.predict_windows(ctx)
    assert out.shape == (2, 6, 3)
    np.testing.assert_allclose(out[0].T.ravel(), pred["y_pred"].to_numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("channel_mode", ["independent", "mixed"])
def test_predict_windows_equals_predict_on_raw_scale_data(channel_mode):
    """On series far from unit scale (levels ~1000), ``predict_windows`` applies each series' fitted scaler as
    ``predict(df=window)`` does, in every channel mode (issue #32: the independent mode ignored it)."""
    panel = make_panel(n_series=2)
    panel["y"] = panel["y"] * 100 + 1000 + 500 * (panel["unique_id"] == "s1")
    est = tiny(channel_mode=channel_mode, revin=False).fit(panel)
    wide = panel.pivot(index="ds", columns="unique_id", values="y")  # columns in the order of ids_
    starts = [40, 70, 96]
    ctx = np.stack([wide.to_numpy()[s : s + 24] for s in starts])  # (3, 24, 2)
    out = est.predict_windows(ctx)
    for k, s in enumerate(starts):
        window = panel[panel.groupby("unique_id").cumcount().between(s, s + 23)]
        pred = est.predict(df=window)
        for j, uid in enumerate(est.ids_):
            np.testing.assert_allclose(out[k, :, j], pred[pred.unique_id == uid]["y_pred"], rtol=1e-4, atol=1e-3)
    if channel_mode == "independent":
        with pytest.raises(ValueError, match="one channel per fitted series"):
            est.predict_windows(ctx[:, :, :1])
        single = tiny(revin=False).fit(panel[panel.unique_id == "s1"])
        one = single.predict_windows(ctx)  # one fitted series: its scaler serves any number of channels
        last = panel.groupby("unique_id").cumcount().between(96, 119)
        ref = single.predict(df=panel[(panel.unique_id == "s1") & last])
        np.testing.assert_allclose(one[2, :, 1], ref["y_pred"], rtol=1e-4, atol=1e-3)


def finite_or_error_naming(fn, series: str):
    """The invariant of issue #32: a forecast is finite, or the call raises an error naming the series."""
    try:
        out = fn()
    except ValueError as err:
        assert f"'{series}'" in str(err) and ("not finite" in str(err) or "float32" in str(err)), str(err)
        return "error"
    values = out.drop(columns=["unique_id", "ds"]).to_numpy() if isinstance(out, pd.DataFrame) else out
    assert np.isfinite(values).all()
    return "finite"


@pytest.mark.parametrize("revin", [False, True])
def test_no_forecast_is_non_finite_without_an_error(revin):
    """Values far outside what the fitted scaling can carry (a series x1e20 or x1e38, one value of 1e30): every
    forecast is finite or the call raises an error naming the series and the cause (issue #32)."""
    panel = make_panel(n_series=2)
    est = tiny(revin=revin).fit(panel)
    huge = panel.copy()
    huge.loc[huge.unique_id == "s1", "y"] *= 1e38  # beyond float32 once scaled
    with pytest.raises(ValueError, match=r"series \['s1'\]: values that, scaled .* exceed float32's range"):
        est.predict(df=huge)
    outcomes = set()
    for factor in (1e20, 1e30):
        big = panel.copy()
        big.loc[big.unique_id == "s1", "y"] *= factor
        outcomes.add(finite_or_error_naming(lambda big=big: est.predict(df=big), "s1"))
        spike = panel.copy()
        spike.loc[spike.index[-1], "y"] = factor  # the last row of s1
        outcomes.add(finite_or_error_naming(lambda spike=spike: est.predict(df=spike), "s1"))
        wide = spike.pivot(index="ds", columns="unique_id", values="y").to_numpy()
        try:
            assert np.isfinite(est.predict_windows(wide[None, -24:])).all()
        except ValueError as err:
            assert "not finite" in str(err)
    if revin:  # RevIN's statistics overflow: these cases do raise
        assert "error" in outcomes
    assert np.isfinite(est.predict(df=panel)["y_pred"]).all()


def test_s4d_at_its_defaults_raises_instead_of_forecasting_inf():
    """The issue's case: S4D at its defaults forecast all-inf for a series x1e20; now an error names it."""
    panel = make_panel(n_series=2)
    est = ssmcast.S4DForecaster(input_size=24, horizon=6, max_epochs=1, batch_size=32, verbose=False, val_size=0,
                                backbone=S4DConfig(d_model=8, n_layers=1, d_state=4)).fit(panel)
    big = panel.copy()
    big.loc[big.unique_id == "s1", "y"] *= 1e20
    assert finite_or_error_naming(lambda: est.predict(df=big), "s1") == "error"


def test_update_that_would_make_a_state_non_finite_raises_and_changes_nothing(monkeypatch):
    panel = make_panel(n_series=2)
    est = tiny(revin=False).fit(panel)
    before = est.predict(context="full")  # also fills the cache of states over the training history
    stream, history = dict(est.stream_), {k: dict(v) for k, v in est.history_.items()}
    new = pd.DataFrame({"unique_id": ["s0", "s1"], "ds": [panel.ds.max() + pd.Timedelta("1h")] * 2,
                        "y": [10.0, 11.0]})  # fmt: skip
    real_step = est.net_.step

    def step_poisoning_s1(x, state):  # s1 is the second unit of the batch: its state turns NaN
        z, state = real_step(x, state)
        z = z.clone()
        z[1] = float("nan")
        return z, state

    monkeypatch.setattr(est.net_, "step", step_poisoning_s1)
    with pytest.raises(ValueError, match=r"recurrent state of series \['s1'\] non-finite.*Nothing was absorbed"):
        est.update(new)
    monkeypatch.undo()
    assert est.stream_.keys() == stream.keys() and all(est.stream_[k] is stream[k] for k in stream)
    assert all(len(est.history_[k]["X"]) == len(history[k]["X"]) for k in history)
    pd.testing.assert_frame_equal(est.predict(context="full"), before)
    assert np.isfinite(est.update(new)["y_pred"]).all()


def test_update_with_rows_in_another_time_zone_says_so():
    """Issue #32, item 8: a model fitted on naive stamps, rows in UTC: the error names the two time zones."""
    panel = make_panel(n_series=1)
    est = tiny(max_epochs=1).fit(panel)
    new = pd.DataFrame({"unique_id": ["s0"], "ds": [panel.ds.max() + pd.Timedelta("1h")], "y": [1.0]})
    with pytest.raises(ValueError, match=r"time zone UTC, the model's in none \(naive\).*tz_localize\(None\)"):
        est.update(new.assign(ds=new.ds.dt.tz_localize("UTC")))
    assert np.isfinite(est.update(new)["y_pred"]).all()


def test_covariates_future_and_static():
    panel = make_panel(covariates=True)
    est = tiny(past_covariates=["temp"], future_covariates=["promo"], static_features=["size"],
               calendar_features=True).fit(panel)
    stamps = pd.date_range(panel.ds.max() + pd.Timedelta(hours=1), periods=6, freq="h")
    future = pd.concat([pd.DataFrame({"unique_id": u, "ds": stamps, "promo": 1.0}) for u in ("s0", "s1")])
    pred = est.predict(future_df=future)
    assert len(pred) == 12
    pd.testing.assert_frame_equal(est.predict(future_df=future.sample(frac=1, random_state=0)), pred)  # row order
    other = est.predict(future_df=future.assign(promo=np.where(future.unique_id == "s1", 0.0, 1.0)))
    pd.testing.assert_frame_equal(other[other.unique_id == "s0"], pred[pred.unique_id == "s0"])  # each its own rows
    assert not np.allclose(other.loc[other.unique_id == "s1", "y_pred"], pred.loc[pred.unique_id == "s1", "y_pred"])
    with pytest.raises(ValueError, match="future_df"):
        est.predict()
    with pytest.raises(ValueError, match=r"lacks the future covariate column\(s\) \['promo'\]"):
        est.predict(future_df=future.drop(columns="promo"))
    with pytest.raises(ValueError, match="long DataFrame with columns unique_id, ds, promo"):
        est.predict(future_df=future.to_numpy())
    with pytest.raises(ValueError, match="misses future covariate values"):
        est.predict(future_df=future.iloc[:3])
    with pytest.raises(ValueError, match="lacks the covariate column"):
        est.predict(df=panel.drop(columns="temp"), future_df=future)
    with pytest.raises(ValueError, match="past_covariates"):
        est.predict(h=12, future_df=future)


def test_update_with_covariates_needs_future_values_and_keeps_rows_on_error():
    panel = make_panel(length=130, covariates=True)
    train, new = panel.groupby("unique_id").head(120), panel.groupby("unique_id").tail(10)
    est = tiny(past_covariates=["temp"], future_covariates=["promo"], static_features=["size"], val_size=0).fit(train)
    stamps = pd.date_range(panel.ds.max() + pd.Timedelta(hours=1), periods=6, freq="h")
    future = pd.concat([pd.DataFrame({"unique_id": u, "ds": stamps, "promo": 1.0}) for u in ("s0", "s1")])
    with pytest.raises(ValueError, match="pass future_df"):
        est.update(new)
    with pytest.raises(ValueError, match="misses future covariate values"):
        est.update(new, future_df=future.iloc[:3])
    streamed = est.update(new, future_df=future)
    reference = est.predict(df=panel, context="full", future_df=future)
    pd.testing.assert_frame_equal(streamed, reference, rtol=1e-4, atol=1e-5)


def test_bad_input_errors(fitted):
    with pytest.raises(NotFittedError):
        tiny().predict()
    with pytest.raises(ValueError, match="unknown unique_id"):
        fitted.predict(df=make_panel(n_series=3).query("unique_id == 's2'"))
    with pytest.raises(ValueError, match="shorter than input_size"):
        fitted.predict(df=make_panel().groupby("unique_id").head(10))
    for bad in (0, -2, 1.5):
        with pytest.raises(ValueError, match="h must be a positive integer"):
            fitted.predict(h=bad)
    with pytest.raises(ValueError, match="not trained"):
        fitted.predict(quantiles=[0.3])
    with pytest.raises(ValueError, match="input_size must be a positive integer"):
        tiny(input_size=0).fit(make_panel())
    with pytest.raises(ValueError, match="shorter than input_size"):
        tiny(input_size=200).fit(make_panel())
    with pytest.raises(ValueError, match="channel_mode"):
        tiny(channel_mode="both").fit(make_panel())
    with pytest.raises(ValueError, match="linear_skip must be True or False"):
        tiny(linear_skip="yes").fit(make_panel())


def test_revin_default_streams_by_window_and_full_context_needs_it_off():
    assert MambaForecaster().revin is True
    est = tiny(revin=True, max_epochs=1).fit(make_panel())
    assert est.predict().shape == (12, 3)
    new = make_panel(length=121).groupby("unique_id").tail(1)
    streamed = est.update(new)  # with RevIN: the forecast from the last window of the updated history
    full = pd.concat([make_panel(), new], ignore_index=True)
    pd.testing.assert_frame_equal(streamed, est.predict(df=full), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="revin=False"):
        est.predict(context="full")


def test_recurrent_rollout_from_the_state_feeds_its_blocks_back():
    """``context="full"`` with ``h > horizon``: each further block steps the recurrent state over the point
    forecasts of the block before, as a full-context forecast from the extended history does."""
    est = tiny(val_size=0, max_epochs=1).fit(make_panel())
    first = est.predict(context="full", quantiles=[])
    long = est.predict(h=3 * est.horizon, context="full", quantiles=[])
    assert long.groupby("unique_id").size().tolist() == [18, 18]
    pd.testing.assert_frame_equal(long.groupby("unique_id").head(6).reset_index(drop=True), first)
    fed = pd.concat([make_panel(), first.rename(columns={"y_pred": "y"})]).sort_values(["unique_id", "ds"])
    second = est.predict(df=fed, context="full", quantiles=[])
    np.testing.assert_allclose(long.groupby("unique_id").nth(list(range(6, 12)))["y_pred"], second["y_pred"],
                               rtol=1e-4, atol=1e-5)
    pd.testing.assert_frame_equal(est.predict(context="full", quantiles=[]), first)  # the cached states stay


@pytest.mark.parametrize("linear_skip", [True, False])
def test_recurrent_forecast_over_one_window_equals_the_parallel_one(linear_skip):
    """``context="full"`` (step by step, then the head and the skip) on exactly ``input_size`` observations
    is the parallel forward over that window."""
    est = tiny(linear_skip=linear_skip, quantiles=[0.2, 0.8], max_epochs=1).fit(make_panel())
    assert (est.net_.skip is not None) is linear_skip
    window = make_panel().groupby("unique_id").tail(est.input_size)
    pd.testing.assert_frame_equal(est.predict(df=window, context="full"), est.predict(df=window),
                                  rtol=1e-4, atol=1e-5)
    shorter = window.groupby("unique_id").tail(est.input_size - 5)  # the skip sees zeros for missing history
    assert est.predict(df=shorter, context="full")["y_pred"].notna().all()


def test_linear_skip_is_the_default_and_old_saves_without_it_load(tmp_path):
    assert MambaForecaster().linear_skip is True
    est = tiny(linear_skip=False, max_epochs=1).fit(make_panel())
    est.save(tmp_path / "m")
    params_file = tmp_path / "m" / "params.json"
    params_file.write_text(params_file.read_text().replace('"linear_skip": false,', ""))
    assert "linear_skip" not in params_file.read_text()
    loaded = ssmcast.load(tmp_path / "m")
    assert loaded.linear_skip is False
    pd.testing.assert_frame_equal(loaded.predict(), est.predict())


def test_caller_frame_unchanged():
    panel = make_panel().sample(frac=1.0, random_state=0)
    before = panel.copy(deep=True)
    tiny(max_epochs=1).fit(panel)
    pd.testing.assert_frame_equal(panel, before)


def test_nan_loss_is_named():
    panel = make_panel()
    panel["y"] = panel["y"] * 1e30  # unscaled, the squared errors overflow float32
    with pytest.raises(NonFiniteLossError, match="learning rate"):
        tiny(scaler=None, loss="mse").fit(panel)


def assert_fitted_weights_are(est, path) -> dict:
    """The fitted net's weights equal the checkpoint's exactly; returns the checkpoint."""
    import torch

    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    weights = {k.removeprefix("net."): v for k, v in ckpt["state_dict"].items() if k.startswith("net.")}
    assert weights.keys() == est.net_.state_dict().keys()
    for name, value in est.net_.state_dict().items():
        torch.testing.assert_close(value, weights[name], rtol=0, atol=0)
    return ckpt


def test_fit_keeps_the_best_validation_weights(tmp_path):
    est = tiny(max_epochs=3, checkpoint_dir=str(tmp_path)).fit(make_panel())
    assert {p.name for p in tmp_path.iterdir()} == {"best.ckpt", "last.ckpt"}
    assert_fitted_weights_are(est, tmp_path / "best.ckpt")


@pytest.mark.parametrize("checkpoint", [False, True])
def test_training_cut_short_mid_epoch_with_a_validation_set(tmp_path, checkpoint):
    """``trainer_kwargs={"max_steps": n}`` stops before any validation: no early-stopping or checkpoint error,
    the last weights stay, and with a checkpoint_dir a last.ckpt (no best.ckpt: no val_loss was ever judged)."""
    est = tiny(max_epochs=3, trainer_kwargs={"max_steps": 2}, checkpoint_dir=str(tmp_path) if checkpoint else None)
    est.fit(make_panel())
    assert est.n_epochs_ == 1 and est.predict()["y_pred"].notna().all()  # the first epoch, cut short
    if checkpoint:
        assert {p.name for p in tmp_path.iterdir()} == {"last.ckpt"}
        assert assert_fitted_weights_are(est, tmp_path / "last.ckpt")["global_step"] == 2


def test_calendar_features_follow_each_series_own_stamps():
    """Series over the same stamps share one calendar computation; each unit still gets its own stamps' rows."""
    from ssmcast.forecasters.features import calendar_features

    panel = make_panel(n_series=4, length=80)
    shifted = panel.assign(ds=panel.ds + pd.to_timedelta(np.where(panel.unique_id.isin(["s2", "s3"]), 7, 0), unit="h"))
    shifted = shifted[~((shifted.unique_id == "s3") & (shifted.ds < shifted.ds.min() + pd.Timedelta(hours=12)))]
    est = tiny(calendar_features=True, val_size=0, max_epochs=1).fit(shifted)
    C = est.n_targets_
    for unit in est.history_.values():
        np.testing.assert_array_equal(unit["X"][:, C:], calendar_features(unit["ds"], est.freq_))
    pred = est.predict(quantiles=[])
    for uid, group in pred.groupby("unique_id"):
        last = shifted.loc[shifted.unique_id == uid, "ds"].max()
        assert group["ds"].iloc[0] == last + pd.Timedelta(hours=1)
        alone = est.predict(df=shifted[shifted.unique_id == uid], quantiles=[])  # its future calendar alone
        pd.testing.assert_frame_equal(alone, group.reset_index(drop=True), rtol=1e-5, atol=1e-6)
