"""``model=ensemble``: members picked from conf/model/ by name, trained and saved by ``ssmcast train``."""

from __future__ import annotations

import pandas as pd
import pytest
from cli_helpers import CONF_DIR, TINY_BACKBONES, TINY_RUN, csv_data, run_cli, run_dir, tiny_csv
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

import ssmcast
from ssmcast.baselines import ETSForecaster, NaiveForecaster
from ssmcast.config import build
from ssmcast.jobs import QUICK_TRAINER, build_model, model_config

TINY_MEMBERS = [f"++model.members.{member}.backbone.{k}={v}"
                for member, config in (("s4d", "S4DConfig"), ("s5", "S5Config"))
                for k, v in TINY_BACKBONES[config].items()]


def test_train_fits_saves_and_scores_an_ensemble(tmp_path):
    csv = tiny_csv(tmp_path)
    args = ["model=ensemble", "model.seeds=[0,1]", *csv_data(csv), *TINY_RUN, *TINY_MEMBERS, "baselines=[naive]",
            "tracking=none"]
    out = run_cli(["train", *run_dir(args, tmp_path / "run")], tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    run = tmp_path / "run"
    board = pd.read_csv(run / "leaderboard.csv")
    assert sorted(board["model"]) == ["ensemble", "naive"] and board["mae"].notna().all()
    loaded = ssmcast.load(run / "models" / "ensemble")
    assert list(loaded.members_) == ["s4d[seed=0]", "s4d[seed=1]", "s5[seed=0]", "s5[seed=1]"]
    assert loaded.members_["s5[seed=1]"].backbone.d_model == 8 and loaded.horizon == 4
    forecasts = pd.read_csv(run / "forecasts.csv")
    ours = forecasts[forecasts["model"] == "ensemble"].sort_values(["unique_id", "ds"])
    again = loaded.predict().sort_values(["unique_id", "ds"])
    assert ours["y_pred"].to_numpy() == pytest.approx(again["y_pred"].to_numpy(), rel=1e-5)
    assert (run / "epochs" / "s4d_seed_0" / "metrics.csv").exists()  # each member's epochs, apart


def compose_cfg(overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=overrides)


def test_members_are_picked_by_their_conf_model_names():
    cfg = compose_cfg(["model=ensemble", "model@model.members.s5=naive", "+model@model.members.ets=ets",
                       "model.seeds=[3]", "horizon=5"])
    est = build(OmegaConf.to_container(cfg.model, resolve=True))
    assert list(est.members) == ["s4d", "s5", "ets"]
    assert isinstance(est.members["s5"], NaiveForecaster) and isinstance(est.members["ets"], ETSForecaster)
    assert list(est._expand()) == ["s4d[seed=3]", "s5", "ets"]  # seeds apply to the members with a seed
    assert est.horizon == 5 and not hasattr(est, "save")  # a baseline member: stored as its config
    cfg = compose_cfg(["model=ensemble", "~model@model.members.s5"])
    assert list(build(OmegaConf.to_container(cfg.model, resolve=True)).members) == ["s4d"]


def test_compare_overrides_and_quick_reach_the_members():
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=["models=[ensemble]", "+overrides.ensemble.members.s5.max_epochs=3"])
        est = build_model(model_config("ensemble", cfg), quick=False)
        assert est.members["s5"].max_epochs == 3 and est.members["s4d"].max_epochs == 10
        quick = build_model(model_config("ensemble", cfg), quick=True)
    for member in quick.members.values():
        assert member.max_epochs == 1 and member.trainer_kwargs == QUICK_TRAINER
