"""The ``ssmcast`` command line, run as a subprocess like a user would (tracking off or a local sqlite store)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from cli_helpers import TINY_RUN, csv_data, run_cli, run_dir, tiny_csv, tiny_model


def test_help_is_fast_and_imports_no_heavy_library():
    code = ("import sys, ssmcast.cli; heavy = [m for m in ('torch', 'lightning', 'mlflow', 'statsmodels') "
            "if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    script = Path(sys.executable).parent / "ssmcast"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "ssmcast.cli"]
    tic = time.perf_counter()
    out = subprocess.run([*command, "--help"], capture_output=True, text=True, timeout=60)
    elapsed = time.perf_counter() - tic
    assert out.returncode == 0 and "train" in out.stdout and "compare" in out.stdout and "ui" in out.stdout
    assert elapsed < 3.0, f"ssmcast --help took {elapsed:.2f} s"


def test_unknown_command_is_an_error(tmp_path):
    out = run_cli(["fit"], tmp_path)
    assert out.returncode == 2 and "unknown command 'fit'" in out.stderr


@pytest.mark.parametrize("command", ["train", "compare"])
def test_cfg_job_prints_the_composed_config_with_the_flag_after_the_overrides(command, tmp_path):
    out = run_cli([command, "model=naive", "models=[naive,ets]", "horizon=5", "--cfg", "job"], tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert f"command: {command}" in out.stdout and "horizon: 5" in out.stdout and "- ets" in out.stdout
    assert not (tmp_path / "outputs").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["model=nope"], "Could not find 'model/nope'"),
        (["data=csv", "data.path=/no/such/file.csv", "tracking=none"], "data.path='/no/such/file.csv': no such file"),
        (["horizon=[1"], "no viable alternative at input"),
        (["data=csv", "tracking=none"], "full_key: data.path"),
    ],
    ids=["unknown-option", "missing-file", "bad-override", "missing-value"],
)
def test_config_errors_give_a_clear_message_not_a_traceback(args, message, tmp_path):
    out = run_cli(["train", *run_dir(args, tmp_path / "run")], tmp_path)
    assert out.returncode != 0
    assert message in out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize(
    "command, args, message",
    [
        ("train", ["horizon=0"], "horizon must be a positive integer; got 0"),
        ("compare", ["horizon=0"], "horizon must be a positive integer; got 0"),
        ("train", ["trainer.max_epochs=abc"], "max_epochs must be a positive integer; got 'abc'"),
        ("train", ["trainer.max_epochs=abc", "quick=true"], "max_epochs must be a positive integer; got 'abc'"),
        ("compare", ["trainer.max_epochs=abc", "quick=true"], "max_epochs must be a positive integer; got 'abc'"),
    ],
    ids=["train-horizon-0", "compare-horizon-0", "train-epochs-abc", "train-epochs-abc-quick",
         "compare-epochs-abc-quick"],
)
def test_bad_arguments_fail_before_any_data_is_read(command, args, message, tmp_path):
    """Issue #32, item 11: the composed config is checked first. The data path does not exist, so an error about
    the argument (not the file) shows the check ran before loading; quick=true no longer hides a bad value.
    (``compare`` keeps failing a model with bad arguments of its own in its leaderboard row, the others run.)"""
    data = ["data=csv", "data.path=/no/such/file.csv", "tracking=none"]
    models = ["models=[mamba]"] if command == "compare" else []
    out = run_cli([command, *run_dir([*data, *models, *args], tmp_path / "run")], tmp_path)
    assert out.returncode != 0
    assert message in out.stderr, out.stderr
    assert "no such file" not in out.stderr and "Traceback" not in out.stderr


def test_train_writes_forecasts_metrics_figures_and_models(tmp_path):
    csv = tiny_csv(tmp_path)
    args = ["model=mamba", *csv_data(csv), *TINY_RUN, *tiny_model("MambaConfig"), "baselines=[naive]",
            "tracking=none"]
    out = run_cli(["train", *run_dir(args, tmp_path / "run")], tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    run = tmp_path / "run"
    board = pd.read_csv(run / "leaderboard.csv")
    assert sorted(board["model"]) == ["mamba", "naive"]
    assert {"mae", "rmse", "smape", "mase", "fit_time_s"} <= set(board.columns)
    forecasts = pd.read_csv(run / "forecasts.csv")
    assert len(forecasts) == 2 * 2 * 4 and forecasts["y"].notna().all()  # 2 models x 2 series x horizon 4
    data = pd.read_csv(csv)
    last = data.groupby("series").tail(4).sort_values(["series", "date"])["value"].to_numpy()
    naive = forecasts[forecasts["model"] == "naive"].sort_values(["unique_id", "ds"])
    assert naive["y"].to_numpy() == pytest.approx(last)  # the test part is the last horizon rows
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["naive"]["mae"] == pytest.approx(board.set_index("model").loc["naive", "mae"])
    assert (run / "forecasts.png").stat().st_size > 0 and (run / "metrics.png").stat().st_size > 0
    assert (run / "models" / "mamba" / "weights.pt").exists()
    assert (run / "models" / "naive" / "config.yaml").exists()
    assert (run / "epochs" / "metrics.csv").exists()  # per-epoch metrics, also without MLflow
    assert "mamba" in out.stdout and "naive" in out.stdout and str(run) in out.stdout
    assert not (tmp_path / "mlflow.db").exists()


def test_compare_backtests_every_model_and_saves_the_leaderboard(tmp_path):
    csv = tiny_csv(tmp_path)
    args = [*csv_data(csv), *TINY_RUN, "models=[naive,seasonal_naive,mamba]", "n_windows=2",
            *[a.replace("model.", "overrides.mamba.") for a in tiny_model("MambaConfig")], "tracking=none"]
    out = run_cli(["compare", *run_dir(args, tmp_path / "run")], tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    board = pd.read_csv(tmp_path / "run" / "leaderboard.csv")
    assert sorted(board["model"]) == ["mamba", "naive", "seasonal_naive"]
    assert board["mae"].is_monotonic_increasing and (board["n_fits"] == 1).all()
    forecasts = pd.read_csv(tmp_path / "run" / "forecasts.csv")
    assert forecasts.groupby("model")["cutoff"].nunique().eq(2).all()
    assert (tmp_path / "run" / "forecasts.png").exists() and (tmp_path / "run" / "metrics.png").exists()


def test_compare_in_which_every_model_fails_is_an_error_and_a_failed_run(tmp_path):
    csv = tiny_csv(tmp_path)
    args = [*csv_data(csv), "horizon=4", "n_windows=2", "models=[seasonal_naive,arima]",
            "+overrides.seasonal_naive.season_length=-1", "+overrides.arima.order=[-1,0,0]"]
    out = run_cli(["compare", *run_dir(args, tmp_path / "run")], tmp_path)
    assert out.returncode == 1
    assert "every model failed (seasonal_naive, arima)" in out.stderr
    board = pd.read_csv(tmp_path / "run" / "leaderboard.csv")  # the errors are kept for the user
    assert board.set_index("model")["error"].str.contains("season_length|order").all()
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("ssmcast").experiment_id])
    assert run.info.status == "FAILED"


def _sweep_runs(tmp_path):
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("ssmcast").experiment_id])
    (parent,) = [r for r in runs if r.data.tags.get("ssmcast.sweep") == "parent"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    return parent, sorted(children, key=lambda r: r.info.start_time)


def test_a_failing_multirun_job_does_not_stop_the_sweep(tmp_path):
    """Issue #32, item 3: job #0 fails (horizon=0, before its own run starts), job #1 runs; the failure is a
    FAILED child run carrying the error, the parent run ends FAILED, the exit code is 1 with a summary line."""
    csv = tiny_csv(tmp_path)
    args = ["--multirun", "model=naive", *csv_data(csv), "horizon=0,4", "baselines=[]",
            f"hydra.sweep.dir={tmp_path / 'sweep'}"]
    out = run_cli(["train", *args], tmp_path)
    assert out.returncode == 1
    assert "ssmcast: error: job #0: JobError: horizon must be a positive integer; got 0" in out.stderr
    assert "1 job(s) of the sweep failed: #0 JobError: horizon must be a positive integer" in out.stderr
    parent, children = _sweep_runs(tmp_path)
    assert parent.info.status == "FAILED"
    assert [c.info.status for c in children] == ["FAILED", "FINISHED"]
    assert "horizon must be a positive integer" in children[0].data.tags["ssmcast.error"]
    assert "test_mae" in children[1].data.metrics
    assert (tmp_path / "sweep" / "0" / "error.txt").exists() and (tmp_path / "sweep" / "1" / "leaderboard.csv").exists()


def test_a_sweep_whose_every_job_fails_runs_them_all(tmp_path):
    """The issue's case: every model of a compare fails in both jobs; both run and both are recorded, with the
    error the job raised inside its own run."""
    csv = tiny_csv(tmp_path)
    args = ["--multirun", *csv_data(csv), "horizon=4", "n_windows=2", "models=[seasonal_naive,arima]",
            "+overrides.seasonal_naive.season_length=-1", "+overrides.arima.order=[1,2]", "seed=0,1",
            f"hydra.sweep.dir={tmp_path / 'sweep'}"]
    out = run_cli(["compare", *args], tmp_path)
    assert out.returncode == 1
    assert "2 job(s) of the sweep failed: #0" in out.stderr and "#1" in out.stderr
    parent, children = _sweep_runs(tmp_path)
    assert parent.info.status == "FAILED"
    assert [c.info.status for c in children] == ["FAILED", "FAILED"]
    assert all("every model failed" in c.data.tags["ssmcast.error"] for c in children)
    assert all((tmp_path / "sweep" / str(j) / "leaderboard.csv").exists() for j in (0, 1))


def test_multirun_is_one_parent_run_with_a_child_run_per_job(tmp_path):
    csv = tiny_csv(tmp_path)
    args = ["--multirun", "model=naive,seasonal_naive", *csv_data(csv), "horizon=4", "baselines=[]",
            f"hydra.sweep.dir={tmp_path / 'sweep'}"]
    out = run_cli(["train", *args], tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("ssmcast")
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if r.data.tags.get("ssmcast.sweep") == "parent"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    assert sorted(r.data.params["model._target_"] for r in children) == [
        "ssmcast.baselines.NaiveForecaster", "ssmcast.baselines.SeasonalNaiveForecaster"]
    assert all("test_mae" in r.data.metrics and r.info.status == "FINISHED" for r in children)
    assert len(runs) == 3
    assert (tmp_path / "sweep" / "0" / "leaderboard.csv").exists() and (tmp_path / "sweep" / "1").is_dir()


@pytest.mark.slow
def test_the_default_main_job_runs_quick_on_co2_with_mlflow(tmp_path):
    """``ssmcast train`` with no overrides (plus quick=true): Mamba vs the seasonal ARIMA on weekly CO2."""
    out = run_cli(["train", "quick=true", "verbose=false", f"hydra.run.dir={tmp_path / 'run'}"], tmp_path,
                  timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    board = pd.read_csv(tmp_path / "run" / "leaderboard.csv")
    assert sorted(board["model"]) == ["arima", "mamba"]
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("ssmcast").experiment_id])
    assert run.data.tags["dataset"] == "co2" and "arima/test_mae" in run.data.metrics
    assert {"model", "arima"} <= {m.name for m in client.search_logged_models([run.info.experiment_id])}


@pytest.mark.slow
def test_optuna_sweep_runs_trials_as_child_runs(tmp_path):
    """``hydra/sweeper=tune``: Optuna proposes the learning rate and backbone size; each trial is a child run."""
    csv = tiny_csv(tmp_path)
    args = ["--multirun", "hydra/sweeper=tune", "hydra.sweeper.n_trials=2", *csv_data(csv), *TINY_RUN,
            "baselines=[]", f"hydra.sweep.dir={tmp_path / 'sweep'}"]
    out = run_cli(["train", *args], tmp_path, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Best parameters" in out.stdout + out.stderr
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("ssmcast").experiment_id])
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(children) == 2 and all("test_mae" in r.data.metrics for r in children)
    learning_rates = {r.data.params["model.learning_rate"] for r in children}
    assert len(learning_rates) == 2  # the sampler really varied the searched parameter


@pytest.mark.slow
def test_ui_serves_the_store_on_localhost(tmp_path):
    """``ssmcast ui`` starts the MLflow server on 127.0.0.1 against ./mlflow.db; stopped by its process group."""
    import os
    import signal
    import socket
    import urllib.request

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    proc = subprocess.Popen([sys.executable, "-m", "ssmcast.cli", "ui", "--port", str(port)], cwd=tmp_path,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline, health = time.time() + 120, None
        while time.time() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
                    health = response.read().decode()
                break
            except OSError:
                time.sleep(0.5)
        assert health == "OK", proc.stdout.read1().decode() if proc.poll() is not None else "server never healthy"
        assert (tmp_path / "mlflow.db").exists()
        with socket.socket() as sock:  # bound to loopback only: no listener on another local address
            assert sock.connect_ex(("127.0.0.1", port)) == 0
        # issue #32, item 10: SIGTERM to the ``ssmcast ui`` process alone stops the server and its workers
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
        deadline = time.time() + 30
        while time.time() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) != 0:
                    break
            time.sleep(0.5)
        with socket.socket() as sock:
            assert sock.connect_ex(("127.0.0.1", port)) != 0, "the MLflow server still listens"
        assert "kill -TERM" in proc.stdout.read().decode()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=60)
        proc.stdout.close()


def test_train_scores_owa_against_naive2_as_compare_does(tmp_path):
    """``train experiment=m4_hourly`` reports OWA (Naive2 fitted on the same training part), equal to compare's."""
    csv = tiny_csv(tmp_path)
    common = [*csv_data(csv), *TINY_RUN, "metrics=[smape,mase,owa]", "tracking=none"]
    out = run_cli(["train", *run_dir([*common, "model=naive", "baselines=[naive2,seasonal_naive]"], tmp_path / "t")],
                  tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    trained = pd.read_csv(tmp_path / "t" / "leaderboard.csv").set_index("model")
    assert trained.loc["naive2", "owa"] == pytest.approx(1.0)
    b = trained.loc["naive2"]
    for name in ("naive", "seasonal_naive"):  # the M4 formula on the printed sMAPE and MASE
        row = trained.loc[name]
        assert row["owa"] == pytest.approx(0.5 * (row["smape"] / b["smape"] + row["mase"] / b["mase"]))
        assert row["owa"] != pytest.approx(1.0)
    out = run_cli(["compare", *run_dir([*common, "models=[naive,seasonal_naive]", "n_windows=1"], tmp_path / "c")],
                  tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    compared = pd.read_csv(tmp_path / "c" / "leaderboard.csv").set_index("model")
    for name in ("naive", "seasonal_naive"):
        assert compared.loc[name, "owa"] == pytest.approx(trained.loc[name, "owa"], rel=1e-9)


def test_compare_scores_owa_against_naive2_on_the_same_windows(tmp_path):
    """The m4_hourly experiment's metrics: OWA needs Naive2's forecasts, which the job computes once."""
    csv = tiny_csv(tmp_path)
    args = [*csv_data(csv), *TINY_RUN, "models=[naive,naive2]", "n_windows=2", "metrics=[smape,mase,owa]",
            "tracking=none"]
    out = run_cli(["compare", *run_dir(args, tmp_path / "run")], tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    board = pd.read_csv(tmp_path / "run" / "leaderboard.csv").set_index("model")
    assert board["error"].isna().all() or (board["error"].fillna("") == "").all(), board["error"]
    assert board.loc["naive2", "owa"] == pytest.approx(1.0)
    assert board.loc["naive", "owa"] > 0 and board.loc["naive", "owa"] != pytest.approx(1.0)


def test_a_training_stopped_by_sigterm_exits_non_zero_and_is_marked_failed(tmp_path):
    """Lightning turns SIGTERM into a SystemExit without a code: the run must exit 143, not 0 (as if it finished)."""
    import os
    import signal

    csv = tiny_csv(tmp_path)
    args = ["model=mamba", *csv_data(csv), *TINY_RUN, *tiny_model("MambaConfig"), "baselines=[]", "tracking=none",
            "trainer.max_epochs=100000", "++model.early_stopping_patience=null"]
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "HYDRA_FULL_ERROR")}
    proc = subprocess.Popen([sys.executable, "-m", "ssmcast.cli", "train", *run_dir(args, tmp_path / "run")],
                            cwd=tmp_path, env={**env, "OMP_NUM_THREADS": "1"}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        epochs = tmp_path / "run" / "epochs"
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:  # training has logged an epoch: it is in fit
            if any(len(f.read_text().splitlines()) > 2 for f in epochs.rglob("metrics.csv")):
                break
            time.sleep(0.2)
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, err[-3000:]
    assert "stopped by SIGTERM" in err
    assert "SIGTERM" in (tmp_path / "run" / "error.txt").read_text()
    assert not (tmp_path / "run" / "leaderboard.csv").exists()
