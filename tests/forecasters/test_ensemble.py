"""EnsembleForecaster: the median/mean of its members, equal to the members fitted alone; the estimator contract."""

import copy

import numpy as np
import pandas as pd
import pytest
from panels_for_tests import make_panel
from sklearn.base import BaseEstimator, clone

import ssmcast
from ssmcast import EnsembleForecaster, S4DForecaster
from ssmcast.backbones.s4 import S4DConfig
from ssmcast.baselines import NaiveForecaster, SeasonalNaiveForecaster
from ssmcast.config import build, to_config
from ssmcast.evaluation import compare, evaluate_ltsf

SEEDS = [0, 1, 2]
PANEL = make_panel(n_series=2, length=60)
TRAIN = PANEL.groupby("unique_id").head(50).reset_index(drop=True)
NEW = PANEL.groupby("unique_id").nth(list(range(50, 55))).reset_index(drop=True)


def tiny_s4d(**kw):
    params = dict(input_size=12, horizon=4, max_epochs=1, batch_size=64, val_size=0, verbose=False,
                  accelerator="cpu", precision="32-true", backbone=S4DConfig(d_model=8, n_layers=1, d_state=8),
                  loss="gaussian")
    params.update(kw)
    return S4DForecaster(**params)


class PointOnly(BaseEstimator):
    """A member with fit/predict only: no quantiles, no update, no predict_windows, no save."""

    def __init__(self, horizon=4):
        self.horizon = horizon

    def fit(self, df):
        self.naive_ = NaiveForecaster(horizon=self.horizon).fit(df)
        return self

    def predict(self, h=None, df=None, quantiles=None):
        return self.naive_.predict(h=h, df=df)


class BrokenUpdate(NaiveForecaster):
    def update(self, df_new, h=None, quantiles=None):
        raise RuntimeError("disk on fire")


@pytest.fixture(scope="module")
def ensemble():
    return EnsembleForecaster(base=tiny_s4d(), seeds=SEEDS).fit(TRAIN)


@pytest.fixture(scope="module")
def alone():
    """The slow, obvious reference: each member fitted on its own with its seed."""
    return [tiny_s4d(seed=s).fit(TRAIN) for s in SEEDS]


def test_median_and_mean_are_the_members_fitted_alone(ensemble, alone):
    assert list(ensemble.members_) == [f"base[seed={s}]" for s in SEEDS]
    frames = [m.predict() for m in alone]
    stack = np.stack([f["y_pred"].to_numpy() for f in frames])
    pred = ensemble.predict()
    assert list(pred.columns) == ["unique_id", "ds", "y_pred"] and len(pred) == 2 * 4
    pd.testing.assert_frame_equal(pred[["unique_id", "ds"]], frames[0][["unique_id", "ds"]])
    np.testing.assert_allclose(pred["y_pred"], np.median(stack, axis=0), rtol=1e-6)
    assert not np.allclose(stack[0], stack[1])  # the seeds do give different members
    mean = copy.copy(ensemble).set_params(combine="mean").predict()
    np.testing.assert_allclose(mean["y_pred"], stack.mean(axis=0), rtol=1e-6)
    # forecasts from another history, as backtests ask for them
    history = PANEL.groupby("unique_id").head(40)
    np.testing.assert_allclose(ensemble.predict(df=history)["y_pred"],
                               np.median([m.predict(df=history)["y_pred"] for m in alone], axis=0), rtol=1e-6)


def test_quantiles_are_the_mean_of_the_members_quantiles(ensemble, alone):
    pred = ensemble.predict(quantiles=[0.9, 0.1])
    assert list(pred.columns) == ["unique_id", "ds", "y_pred", "y_pred_q0.1", "y_pred_q0.9"]
    for column in ("y_pred_q0.1", "y_pred_q0.9"):
        expected = np.mean([m.predict(quantiles=[0.1, 0.9])[column] for m in alone], axis=0)
        np.testing.assert_allclose(pred[column], expected, rtol=1e-6)
    assert (pred["y_pred_q0.1"] < pred["y_pred_q0.9"]).all()


def test_a_member_that_cannot_give_a_level_is_named():
    ens = EnsembleForecaster(members={"naive": NaiveForecaster(horizon=4), "points": PointOnly()}).fit(TRAIN)
    assert list(ens.predict(quantiles=None).columns) == ["unique_id", "ds", "y_pred"]
    with pytest.raises(ValueError, match=r"member 'points' \(PointOnly\) gives no quantile\(s\) \[0\.1\]"):
        ens.predict(quantiles=[0.1])
    huber = EnsembleForecaster(members=[tiny_s4d(loss="huber")]).fit(TRAIN)
    with pytest.raises(ValueError, match="ensemble member '0' \\(predict\\)"):
        huber.predict(quantiles=[0.1])


def test_the_grid_expands_every_member_that_has_the_parameter():
    ens = EnsembleForecaster(members={"s4d": tiny_s4d(checkpoint_dir="/tmp/ckpt"), "naive": NaiveForecaster()},
                             seeds=[0, 1], input_sizes=[8, 12], losses=["huber", "mae"], horizon=6)
    members = ens._expand()
    assert len(members) == 2 * 2 * 2 + 1 and list(members)[-1] == "naive"
    assert list(members)[0] == "s4d[seed=0, input_size=8, loss=huber]"
    combos = {(m.seed, m.input_size, m.loss) for name, m in members.items() if name != "naive"}
    assert combos == {(s, i, loss) for s in (0, 1) for i in (8, 12) for loss in ("huber", "mae")}
    assert all(m.horizon == 6 for m in members.values())
    dirs = {m.checkpoint_dir for name, m in members.items() if name != "naive"}
    assert len(dirs) == 8 and all(d.startswith("/tmp/ckpt/s4d_seed_") for d in dirs)  # one folder each
    assert ens.members["s4d"].seed == 0 and ens.members["s4d"].horizon == 4  # the given ones stay as they were
    assert ens.input_size == 12
    grid = EnsembleForecaster(base=tiny_s4d(), grid={"learning_rate": [1e-3, 3e-4]})._expand()
    assert [m.learning_rate for m in grid.values()] == [1e-3, 3e-4]


def test_clone_get_params_and_set_params():
    s4d, naive = tiny_s4d(), NaiveForecaster()
    given = [s4d, naive]
    ens = EnsembleForecaster(members=given, seeds=[0, 1])
    params = ens.get_params()
    assert params["members"] is given and params["members__0"] is s4d and params["members__1"] is naive
    assert params["members__0__seed"] == 0 and params["members__0__backbone__d_model"] == 8
    assert params["members__1__season_length"] is None
    ens.set_params(members__0__learning_rate=0.01, members__0__backbone__d_model=16, combine="mean")
    assert s4d.learning_rate == 0.01 and s4d.backbone.d_model == 16 and ens.combine == "mean"
    other = SeasonalNaiveForecaster(season_length=12)
    ens.set_params(members__1=other)
    assert ens.members == [s4d, other] and given == [s4d, naive]  # a new list: the caller's is not modified
    with pytest.raises(ValueError, match="no member named '7'"):
        ens.set_params(members__7__seed=1)

    twin = clone(ens)
    assert twin.members[0] is not s4d and to_config(twin) == to_config(ens)
    assert twin.get_params(deep=False).keys() == ens.get_params(deep=False).keys()
    again = build(to_config(ens))  # the config route (conf/model/, the CLI) rebuilds the same ensemble
    assert type(again) is EnsembleForecaster and to_config(again) == to_config(ens)

    named = EnsembleForecaster(members={"a": NaiveForecaster()}, base=None)
    assert named.get_params()["members__a__horizon"] is None
    based = EnsembleForecaster(base=tiny_s4d(), seeds=[3])
    assert based.get_params()["base__seed"] == 0
    assert based.set_params(base__seed=5).base.seed == 5


def test_save_and_load_give_the_same_forecasts(ensemble, tmp_path):
    ensemble.save(tmp_path / "ens")
    assert (tmp_path / "ens" / "ensemble.json").is_file() and (tmp_path / "ens" / "members" / "002").is_dir()
    loaded = ssmcast.load(tmp_path / "ens")
    assert type(loaded) is EnsembleForecaster and list(loaded.members_) == list(ensemble.members_)
    assert to_config(loaded) == to_config(ensemble)
    pd.testing.assert_frame_equal(loaded.predict(quantiles=[0.1]), ensemble.predict(quantiles=[0.1]))
    pd.testing.assert_frame_equal(loaded.predict(df=PANEL), ensemble.predict(df=PANEL))
    ensemble.save(tmp_path / "ens")  # over an earlier saved ensemble
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="notes.txt"):
        ensemble.save(tmp_path / "other")

    mixed = EnsembleForecaster(members=[tiny_s4d(), NaiveForecaster()])
    assert not hasattr(mixed, "save")  # the CLI and MLflow then store its config, as for a baseline
    with pytest.raises(AttributeError, match=r"save\(\) needs every member.*'1' \(NaiveForecaster\)"):
        mixed.save(tmp_path / "mixed")


def test_update_equals_the_members_updated_one_by_one(ensemble):
    ens, members = copy.deepcopy(ensemble), copy.deepcopy(ensemble).members_
    out = ens.update(NEW, quantiles=[0.1])
    frames = [m.update(NEW, quantiles=[0.1]) for m in members.values()]
    np.testing.assert_allclose(out["y_pred"], np.median([f["y_pred"] for f in frames], axis=0), rtol=1e-6)
    np.testing.assert_allclose(out["y_pred_q0.1"], np.mean([f["y_pred_q0.1"] for f in frames], axis=0), rtol=1e-6)
    assert out["ds"].min() == NEW["ds"].max() + pd.Timedelta(hours=1)
    pd.testing.assert_frame_equal(ens.predict(quantiles=[0.1]), out)


def test_update_is_atomic_when_a_member_fails():
    ens = EnsembleForecaster(members=[tiny_s4d(revin=False), NaiveForecaster(horizon=4), BrokenUpdate(horizon=4)])
    ens.fit(TRAIN)
    before = ens.predict()
    histories = [copy.copy(m.history_) for m in ens.members_.values()]
    with pytest.raises(RuntimeError, match=r"ensemble member '2' \(update\): disk on fire"):
        ens.update(NEW)
    for member, history in zip(ens.members_.values(), histories):
        assert member.history_.keys() == history.keys()
        assert all(member.history_[k] is history[k] for k in history)  # nothing appended
    assert ens.members_["0"].stream_ == {}
    pd.testing.assert_frame_equal(ens.predict(), before)

    without = EnsembleForecaster(members=[NaiveForecaster(horizon=4), PointOnly()]).fit(TRAIN)
    assert not hasattr(without, "update") and not hasattr(without, "predict_windows")
    with pytest.raises(AttributeError, match=r"update\(\) needs every member to have update\(\); '1' \(PointOnly\)"):
        without.update(NEW)


def test_compare_and_evaluate_ltsf_take_an_ensemble():
    ens = EnsembleForecaster(members=[NaiveForecaster(), SeasonalNaiveForecaster(season_length=12)], combine="mean")
    board = compare({"ensemble": ens, "naive": NaiveForecaster()}, PANEL, horizon=4, n_windows=2, metrics=["mae"])
    row = board.table.set_index("model").loc["ensemble"]
    assert row["error"] == "" and np.isfinite(row["mae"]) and row["n_fits"] == 1
    naive = board.forecasts["naive"]["y_pred"].to_numpy()
    seasonal = compare({"s": SeasonalNaiveForecaster(season_length=12)}, PANEL, horizon=4, n_windows=2,
                       metrics=["mae"]).forecasts["s"]["y_pred"].to_numpy()
    np.testing.assert_allclose(board.forecasts["ensemble"]["y_pred"], (naive + seasonal) / 2)

    wide = PANEL.pivot(index="ds", columns="unique_id", values="y")
    result = evaluate_ltsf(ens, wide, input_size=24, horizon=4, split=((0, 36), (36, 48), (48, 60)))
    assert result.predict_mode == "predict_windows" and np.isfinite(result.mse)
    fitted = result.estimator
    assert all(m.horizon == 4 for m in fitted.members_.values())  # the protocol set the ensemble's horizon
    context = np.random.default_rng(0).normal(size=(3, 24, 2))
    manual = np.mean([m.predict_windows(context) for m in fitted.members_.values()], axis=0)
    np.testing.assert_allclose(fitted.predict_windows(context), manual)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({}, "needs members"),
        ({"members": []}, "members is empty"),
        ({"members": [NaiveForecaster()], "base": NaiveForecaster()}, "not both"),
        ({"members": [NaiveForecaster], "combine": "mean"}, "pass an instance"),
        ({"members": {"a__b": NaiveForecaster()}}, "without '__'"),
        ({"members": [NaiveForecaster()], "combine": "max"}, "combine must be one of"),
        ({"members": [NaiveForecaster()], "seeds": [0]}, "seeds: no member has a parameter 'seed'"),
        ({"base": tiny_s4d(), "seeds": []}, "seeds is empty"),
        ({"base": tiny_s4d(), "seeds": [1, 1]}, "seeds repeats"),
        ({"base": tiny_s4d(), "losses": ["bogus"]}, r"ensemble member 'base\[loss=bogus\]'"),
        ({"base": tiny_s4d(), "seeds": [0], "grid": {"seed": [1]}}, "repeats seeds="),
        ({"base": tiny_s4d(), "horizon": 0}, "horizon must be a positive integer"),
    ],
)
def test_bad_arguments_are_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        EnsembleForecaster(**kwargs).fit(TRAIN)


def test_a_member_that_fails_to_fit_is_named_and_the_ensemble_is_unchanged():
    ens = EnsembleForecaster(members={"ok": NaiveForecaster(), "long": tiny_s4d(input_size=200)})
    with pytest.raises(ValueError, match=r"ensemble member 'long' \(fit\): every series is shorter"):
        ens.fit(TRAIN)
    assert not hasattr(ens, "members_")


def test_a_saved_ensemble_is_an_mlflow_pyfunc_model(ensemble, tmp_path):
    mlflow = pytest.importorskip("mlflow")
    from ssmcast.tracking.pyfunc import save_forecaster

    path = save_forecaster(ensemble, TRAIN, tmp_path / "pyfunc", horizon=4)
    assert (path / "artifacts" / "model" / "ensemble.json").is_file()  # weights-only members, not a refit config
    history = PANEL.groupby("unique_id").head(40)
    out = mlflow.pyfunc.load_model(str(path)).predict(history)
    np.testing.assert_allclose(out["y_pred"], ensemble.predict(df=history)["y_pred"], rtol=1e-6)


def _mixture_quantile(mus, sigmas, q):
    """The slow, obvious reference: solve mean_m Phi((x - mu_m) / sigma_m) = q by bisection."""
    from scipy.stats import norm

    lo, hi = min(mus) - 10 * max(sigmas), max(mus) + 10 * max(sigmas)
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if np.mean([norm.cdf((mid - m) / s) for m, s in zip(mus, sigmas)]) < q:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def test_pooled_quantiles_are_those_of_the_members_mixture():
    """quantile_combine="pool": the quantiles of the equal-weight mixture of the members' (here normal) predictive
    distributions, against bisection on the mixture's CDF; wider than averaging where the members disagree."""

    members = [NaiveForecaster(horizon=4), SeasonalNaiveForecaster(horizon=4, season_length=7)]
    pool = EnsembleForecaster(members=members, quantile_combine="pool").fit(TRAIN)
    average = EnsembleForecaster(members=members).fit(TRAIN)
    levels = [0.05, 0.1, 0.5, 0.9, 0.95]
    got = pool.predict(quantiles=levels)
    fits = [m.fit(TRAIN).predict(quantiles=[0.5, 0.8413447460685429]) for m in members]  # mu and mu + sigma
    mus = [f["y_pred_q0.5"].to_numpy() for f in fits]
    sigmas = [f["y_pred_q0.8413447460685429"].to_numpy() - mu for f, mu in zip(fits, mus)]
    assert all((s > 0).all() for s in sigmas) and not np.allclose(mus[0], mus[1])
    for q in levels:
        want = [_mixture_quantile([m[i] for m in mus], [s[i] for s in sigmas], q) for i in range(len(got))]
        scale = np.maximum(sigmas[0], sigmas[1])
        assert np.abs(got[f"y_pred_q{q!r}"].to_numpy() - want).max() < 0.02 * scale.min(), q
    width_pool = got["y_pred_q0.95"] - got["y_pred_q0.05"]
    width_avg = average.predict(quantiles=levels).pipe(lambda f: f["y_pred_q0.95"] - f["y_pred_q0.05"])
    assert (width_pool >= width_avg - 1e-9).all() and (width_pool > width_avg + 1e-6).any()
    pd.testing.assert_series_equal(got["y_pred"], average.predict()["y_pred"])  # the point forecast is unchanged
    # one member twice: the pooled quantiles are that member's own
    same = EnsembleForecaster(members=[members[0], clone(members[0])], quantile_combine="pool").fit(TRAIN)
    own = members[0].fit(TRAIN).predict(quantiles=levels)
    for q in levels:
        error = np.abs(same.predict(quantiles=levels)[f"y_pred_q{q!r}"] - own[f"y_pred_q{q!r}"]).to_numpy()
        assert (error < 0.01 * sigmas[0]).all(), q  # the 100-level reading's interpolation error only


def test_pooling_needs_members_that_give_any_level_and_a_known_choice():
    quantile_member = tiny_s4d(loss="quantile", quantiles=[0.1, 0.5, 0.9])
    ens = EnsembleForecaster(members=[quantile_member, NaiveForecaster(horizon=4)], quantile_combine="pool").fit(TRAIN)
    with pytest.raises(ValueError, match="member '0'"):
        ens.predict(quantiles=[0.1, 0.9])
    assert list(ens.predict(quantiles=[]).columns) == ["unique_id", "ds", "y_pred"]
    with pytest.raises(ValueError, match="quantile_combine must be one of"):
        EnsembleForecaster(members=[NaiveForecaster()], quantile_combine="vote").fit(TRAIN)
    assert clone(ens).get_params()["quantile_combine"] == "pool"
