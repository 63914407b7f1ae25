"""MLflow tracking against a real server over HTTP, offline fallback, and the Python API opt-in."""

from __future__ import annotations

import json
import shlex
import warnings
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from cli_helpers import TINY_RUN, csv_data, free_port, run_cli, run_dir, tiny_csv, tiny_frame, tiny_model
from mlflow import MlflowClient

import ssmcast
import ssmcast.baselines
from ssmcast import MambaForecaster, load
from ssmcast.backbones.mamba import MambaConfig
from ssmcast.tracking import (
    RunTracker,
    TrackingWarning,
    active_run_logger,
    load_logged_model,
    log_forecaster,
    metric_prefix,
)


def long_frame(**kwargs) -> pd.DataFrame:
    return tiny_frame(**kwargs).rename(columns={"series": "unique_id", "date": "ds", "value": "y"})


def tiny_mamba(**kwargs) -> MambaForecaster:
    settings = dict(input_size=12, horizon=4, backbone=MambaConfig(d_model=8, n_layers=1, d_state=4), max_epochs=2,
                    verbose=False, accelerator="cpu", precision="32-true")
    settings.update(kwargs)
    return MambaForecaster(**settings)


@pytest.fixture
def sqlite_uri(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment("python-api")  # not an experiment id cached from another store
    yield uri
    while mlflow.active_run() is not None:
        mlflow.end_run()


def test_a_cli_training_is_fully_tracked_on_a_real_server(mlflow_server, tmp_path):
    csv = tiny_csv(tmp_path)
    args = ["model=mamba", *csv_data(csv), *TINY_RUN, *tiny_model("MambaConfig"), "baselines=[naive]",
            f"tracking.uri={mlflow_server}", "tracking.experiment=cli-test"]
    out = run_cli(["train", *run_dir(args, tmp_path / "run")], tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "TrackingWarning" not in out.stderr

    client = MlflowClient(mlflow_server)
    (run,) = client.search_runs([client.get_experiment_by_name("cli-test").experiment_id])
    assert run.info.status == "FINISHED"
    params, metrics, tags = run.data.params, run.data.metrics, run.data.tags
    assert params["model._target_"] == "ssmcast.MambaForecaster" and params["model.backbone.d_model"] == "8"
    assert params["data.path"] == str(csv) and params["horizon"] == "4"
    board = pd.read_csv(tmp_path / "run" / "leaderboard.csv").set_index("model")
    assert metrics["test_mae"] == pytest.approx(board.loc["mamba", "mae"])
    assert metrics["naive/test_mae"] == pytest.approx(board.loc["naive", "mae"])
    assert [m.step for m in client.get_metric_history(run.info.run_id, "train_loss")] == [1]  # epoch metrics
    assert tags["dataset"] == "tiny" and len(tags["dataset.sha256"]) == 64 and tags["device"].startswith("cpu")
    assert tags["git_commit"]
    assert tags["ssmcast.command_line"] == shlex.join(["ssmcast", "train", *args])  # what reproduces the run
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config.yaml", "leaderboard.csv", "forecasts.csv", "metrics.json", "figures"} <= artifacts
    figures = {a.path for a in client.list_artifacts(run.info.run_id, "figures")}
    assert figures == {"figures/forecasts.png", "figures/metrics.png"}

    history = long_frame()
    mlflow.set_tracking_uri(mlflow_server)
    model = mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/model")
    forecast = model.predict(history)
    local = load(tmp_path / "run" / "models" / "mamba").predict(h=4, df=history)
    pd.testing.assert_frame_equal(forecast.reset_index(drop=True), local, check_dtype=False)
    assert len(model.predict(history, params={"h": 2})) == 2 * 2
    assert model.metadata.signature is not None and model.metadata.signature.params.to_dict()[0]["name"] == "h"
    naive = mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/naive").predict(history)
    last = history.groupby("unique_id")["y"].last()
    assert np.allclose(naive["y_pred"], naive["unique_id"].map(last))


def test_an_unreachable_server_loses_nothing(tmp_path):
    port = free_port()  # nothing listens there
    csv = tiny_csv(tmp_path)
    args = ["model=mamba", *csv_data(csv), *TINY_RUN, *tiny_model("MambaConfig"), "baselines=[]",
            f"tracking.uri=http://127.0.0.1:{port}", "tracking.health_timeout_s=2"]
    out = run_cli(["train", *run_dir(args, tmp_path / "run")], tmp_path)
    assert out.returncode == 3, out.stderr[-3000:]  # tracking.required (the default): the run says it is untracked
    assert "TrackingWarning" in out.stderr and f"127.0.0.1:{port} is unreachable" in out.stderr
    assert f"ssmcast sync {tmp_path / 'run'}" in out.stderr  # says where the outputs are and how to push them
    run = tmp_path / "run"
    assert (run / "models" / "mamba" / "weights.pt").exists() and (run / "leaderboard.csv").exists()
    assert (run / "metrics.json").exists() and (run / "epochs" / "metrics.csv").exists()
    record = json.loads((run / "tracking" / "run.json").read_text())  # everything the run would have logged
    assert record["status"] == "FINISHED" and not record["tracked"] and record["run_id"] is None
    assert {"git_commit", "dataset.sha256", "device", "dataset"} <= set(record["tags"])
    assert record["params"]["model.backbone.d_model"] == "8"
    assert {m[0] for m in record["metrics"]} >= {"test_mae", "fit_time_s"}
    assert {Path(a).name for a, _ in record["artifacts"]} >= {"config.yaml", "leaderboard.csv", "forecasts.csv"}
    assert record["models"] == [{"name": "model", "path": "tracking/models/model"}]
    assert (run / "tracking" / "models" / "model" / "MLmodel").exists()

    optional = ["model=naive", *csv_data(csv), "horizon=4", "baselines=[]", f"tracking.uri=http://127.0.0.1:{port}",
                "tracking.health_timeout_s=2", "tracking.required=false"]
    optional = run_cli(["train", *run_dir(optional, tmp_path / "run2")], tmp_path)
    assert optional.returncode == 0, optional.stderr[-3000:]
    assert "TrackingWarning" in optional.stderr


def test_a_server_that_dies_mid_run_warns_once_and_the_run_goes_on(tmp_path, monkeypatch):
    import os
    import signal
    import subprocess
    import sys
    import time
    import urllib.request

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{tmp_path / 'db.sqlite'}",
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        cwd=tmp_path, env=dict(os.environ, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false"),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    uri = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):
            try:
                urllib.request.urlopen(f"{uri}/health", timeout=1).close()
                break
            except OSError:
                time.sleep(0.5)
        tracker = RunTracker({"uri": uri, "experiment": "dies"}, tmp_path / "local", "dying").start()
        assert tracker.active
        tracker.log_metrics({"before": 1.0})
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    with pytest.warns(TrackingWarning) as caught:
        tracker.log_metrics({"after": 2.0})
        tracker.log_params({"a": 1})  # skipped: no second warning for the same failure
        tracker.finish()
    messages = [str(w.message) for w in caught]
    assert sum("failed while logging metrics" in m for m in messages) == 1
    assert any(str(tmp_path / "local") in m for m in messages)
    assert not tracker.active and mlflow.active_run() is None


def test_no_logger_outside_a_run_and_an_mlflow_logger_bound_to_the_active_run(sqlite_uri):
    assert active_run_logger() is None
    with mlflow.start_run() as run:
        logger = active_run_logger()
        assert logger.run_id == run.info.run_id and logger._tracking_uri == sqlite_uri
        with metric_prefix("mamba"):
            assert active_run_logger()._prefix == "mamba"
    assert active_run_logger() is None


def test_python_api_fits_log_epoch_metrics_only_inside_a_run(sqlite_uri):
    df = long_frame()
    client = MlflowClient(sqlite_uri)
    with mlflow.start_run() as run:
        tiny_mamba(max_epochs=3, early_stopping_patience=None).fit(df)
    history = client.get_metric_history(run.info.run_id, "train_loss")
    assert len(history) == 3 and len(client.get_metric_history(run.info.run_id, "val_loss")) == 3
    assert client.get_run(run.info.run_id).info.status == "FINISHED"  # the logger did not end it early
    n_runs = len(client.search_runs([run.info.experiment_id]))
    tiny_mamba().fit(df)  # outside a run: nothing is logged anywhere
    assert len(client.search_runs([run.info.experiment_id])) == n_runs


def test_two_first_runs_at_once_on_a_new_sqlite_store_are_both_tracked(tmp_path):
    """Issue #32, item 4: MLflow's schema migration of a new sqlite store races between two processes; the store
    is now created under a file lock, so both runs are recorded and neither warns of being untracked."""
    import subprocess
    import sys

    csv = tiny_csv(tmp_path)
    uri = f"sqlite:///{tmp_path / 'new.db'}"
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "ssmcast.cli", "train", "model=naive", *csv_data(csv), "horizon=4", "baselines=[]",
             f"tracking.uri={uri}", "tracking.log_model=false", f"hydra.run.dir={tmp_path / f'run{i}'}"],
            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={k: v for k, v in __import__("os").environ.items() if k != "MLFLOW_TRACKING_URI"},
        )
        for i in range(2)
    ]  # fmt: skip
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err[-2000:]
        assert "TrackingWarning" not in err, err[-2000:]
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("ssmcast").experiment_id])
    assert len(runs) == 2 and all(r.info.status == "FINISHED" for r in runs)


def test_log_forecaster_round_trips_a_model_fitted_on_scaled_data(sqlite_uri):
    df = long_frame()
    stats = df.groupby("unique_id")["y"].agg(["mean", "std"])
    scaled = df.assign(y=(df["y"] - df["unique_id"].map(stats["mean"])) / df["unique_id"].map(stats["std"]))
    est = tiny_mamba(max_epochs=1).fit(scaled)
    scaling = {uid: (row["mean"], row["std"]) for uid, row in stats.iterrows()}
    with mlflow.start_run():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # mlflow's own notes on the model environment
            info = log_forecaster(est, scaled, scaling=scaling)
    forecast = mlflow.pyfunc.load_model(info.model_uri).predict(df)
    expected = est.predict(h=4, df=scaled)
    expected["y_pred"] = expected["y_pred"] * expected["unique_id"].map(stats["std"]) + expected["unique_id"].map(
        stats["mean"])
    np.testing.assert_allclose(forecast["y_pred"], expected["y_pred"], rtol=1e-5)
    # a model from code: loading it imports ssmcast and unpickles nothing
    local = Path(mlflow.artifacts.download_artifacts(info.model_uri))
    assert not list(local.rglob("*.pkl")), sorted(p.name for p in local.rglob("*"))
    assert "ForecasterModel" in (local / "ssmcast_pyfunc.py").read_text()
    with pytest.raises(ValueError, match="active MLflow run"):
        log_forecaster(est, scaled)


def test_load_logged_model_reads_the_weights_only_folder_and_runs_no_stored_code(sqlite_uri, monkeypatch):
    """Issue #32, item 12: the safe way to load a logged model: only ``artifacts/model`` (est.save's JSON and
    weights) is read; a tampered ``ssmcast_pyfunc.py`` in the store never runs."""
    df = long_frame()
    est = tiny_mamba(max_epochs=1).fit(df)
    with mlflow.start_run():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # mlflow's own notes on the model environment
            info = log_forecaster(est, df)
            naive_info = log_forecaster(ssmcast.baselines.NaiveForecaster().fit(df), df, name="naive")
    # tamper with the stored code (every copy in the store): loading it the pyfunc way now runs it
    root = Path(mlflow.get_experiment_by_name("python-api").artifact_location.removeprefix("file://"))
    stored = list(root.rglob("ssmcast_pyfunc.py"))
    assert stored, root
    for path in stored:
        path.write_text("raise RuntimeError('stored code ran')\n")
    with pytest.raises(Exception, match="stored code ran"):
        mlflow.pyfunc.load_model(info.model_uri)
    monkeypatch.setattr(mlflow.pyfunc, "load_model", lambda *a, **k: pytest.fail("load_model must not be used"))
    loaded = load_logged_model(info.model_uri)
    pd.testing.assert_frame_equal(loaded.predict(df=df), est.predict(df=df))
    with pytest.raises(ValueError, match="no weights-only model folder"):
        load_logged_model(naive_info.model_uri)


def test_log_forecaster_takes_every_series_as_the_example_of_a_mixed_channel_model(sqlite_uri):
    df = long_frame()
    est = tiny_mamba(max_epochs=1, channel_mode="mixed").fit(df)
    with mlflow.start_run():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # mlflow's own notes on the model environment
            info = log_forecaster(est, df)
    forecast = mlflow.pyfunc.load_model(info.model_uri).predict(df)
    expected = est.predict(h=4, df=df)
    assert sorted(forecast["unique_id"].unique()) == sorted(df["unique_id"].unique())
    np.testing.assert_allclose(forecast["y_pred"], expected["y_pred"], rtol=1e-5)


def test_an_untracked_run_never_imports_mlflow(tmp_path):
    """``tracking=none``: every RunTracker call is a no-op, so the run does not pay mlflow's import."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from ssmcast.tracking import RunTracker\n"
        f"t = RunTracker({{'enabled': False}}, {str(tmp_path)!r}, 'run').start()\n"
        "t.log_params({'a': 1}); t.log_metrics({'m': 1.0}); t.set_tags({'t': 'x'})\n"
        f"t.log_artifact({str(tmp_path / 'f')!r}); t.log_model(None, None); t.finish()\n"
        "assert not t.active and t.run_id is None\n"
        "print('mlflow' in sys.modules)\n"
    )
    (tmp_path / "f").write_text("x")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_logging_a_baseline_does_not_repeat_fallback_warnings_of_its_example_fits(sqlite_uri):
    """Issue #32: the pyfunc's example predictions refit the baseline on a few rows (8 here, shorter than two
    seasons of the airline model), which raised its FallbackWarning twice while logging; the model's own fit is
    what matters and logging is quiet (filterwarnings=error turns any warning into a failure here)."""
    from ssmcast.baselines import ARIMAForecaster

    df = long_frame(length=60)
    est = ARIMAForecaster(order=(0, 1, 1), seasonal_order=(0, 1, 1), season_length=12, horizon=4).fit(df)
    assert not est.fallbacks_
    with mlflow.start_run():
        info = log_forecaster(est, df, horizon=4)
    assert info.model_uri
