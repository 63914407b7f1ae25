"""``ssmcast train ... explain=true``: the explanation figures in the run folder and as MLflow artifacts."""

from __future__ import annotations

import pytest
from cli_helpers import TINY_RUN, csv_data, run_cli, run_dir, tiny_csv, tiny_model


def test_train_explain_logs_kernels_spectrum_and_attribution_to_mlflow(tmp_path):
    csv = tiny_csv(tmp_path)
    args = ["model=s4d", *csv_data(csv), *TINY_RUN, *tiny_model("S4DConfig"), "baselines=[]", "explain=true",
            "tracking.log_model=false"]  # fmt: skip
    out = run_cli(["train", *run_dir(args, tmp_path / "run")], tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    names = ["attribution.png", "kernels.png", "spectrum.png"]
    assert sorted(p.name for p in (tmp_path / "run" / "explain").iterdir()) == names
    assert all((tmp_path / "run" / "explain" / n).stat().st_size > 1000 for n in names)
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("ssmcast").experiment_id])
    assert run.data.params["explain"] == "True"
    assert sorted(a.path for a in client.list_artifacts(run.info.run_id, "explain")) == [f"explain/{n}" for n in names]


def test_explain_of_a_model_that_is_not_neural_fails_before_any_data_is_read(tmp_path):
    args = ["model=naive", "explain=true", "data=csv", "data.path=missing.csv", "tracking=none"]
    out = run_cli(["train", *run_dir(args, tmp_path / "r")], tmp_path)
    assert out.returncode == 1 and "explain=true explains a neural forecaster" in out.stderr, out.stderr[-2000:]
    assert "model=naive is a NaiveForecaster" in out.stderr


def test_explain_must_be_a_boolean():
    from omegaconf import OmegaConf

    from ssmcast.forecasters import S4DForecaster
    from ssmcast.jobs import JobError, _check_explain

    assert _check_explain(OmegaConf.create({}), S4DForecaster(), "s4d") is False
    with pytest.raises(JobError, match="explain must be true or false; got 'maybe'"):
        _check_explain(OmegaConf.create({"explain": "maybe"}), S4DForecaster(), "s4d")
