"""Fault injection (issue #32): what a run survives, and what it says when it cannot.

| fault | where tested |
|---|---|
| tracking server killed mid-run, restarted, run pushed with ``ssmcast sync`` | here |
| tracking server frozen (SIGSTOP) during a fit | here |
| tracking server never started (unreachable) | here (exit 3 / ``required=false``) and tests/tracking |
| two first runs at once on a new sqlite store | tests/tracking/test_tracking.py |
| fit killed (SIGKILL) mid-epoch, resumed | tests/forecasters/test_training_processes.py |
| corrupt / truncated checkpoint on resume | here |
| disk full while saving a model, or while writing the run record | here (patched writers) |
"""

from __future__ import annotations

import errno
import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import mlflow
import numpy as np
import pytest
from cli_helpers import TINY_RUN, csv_data, run_cli, run_dir, tiny_csv, tiny_frame, tiny_model
from mlflow import MlflowClient

from ssmcast import MambaForecaster, S4DForecaster, load
from ssmcast.backbones.mamba import MambaConfig
from ssmcast.tracking import LocalRecord, RunTracker, TrackingWarning, load_logged_model


def long_frame():
    return tiny_frame().rename(columns={"series": "unique_id", "date": "ds", "value": "y"})


def tiny_mamba(**kwargs) -> MambaForecaster:
    settings = dict(input_size=12, horizon=4, backbone=MambaConfig(d_model=8, n_layers=1, d_state=4), max_epochs=2,
                    verbose=False, accelerator="cpu", precision="32-true")
    settings.update(kwargs)
    return MambaForecaster(**settings)


def cli_env(**extra) -> dict:
    import os

    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "HYDRA_FULL_ERROR")}
    env.update({"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "5", "OMP_NUM_THREADS": "1"})
    env.update(extra)
    return env


@pytest.mark.slow
def test_server_killed_mid_run_then_restarted_and_the_run_pushed_with_sync(server, tmp_path):
    server.start()
    csv = tiny_csv(tmp_path)
    out_dir = tmp_path / "run"
    args = ["model=mamba", *csv_data(csv), *TINY_RUN, *tiny_model("MambaConfig"), "baselines=[naive]",
            "trainer.max_epochs=3", f"tracking.uri={server.uri}", "tracking.experiment=faults"]
    cmd = [sys.executable, "-m", "ssmcast.cli", "train", *run_dir(args, out_dir)]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)  # fmt: skip
    client = MlflowClient(server.uri)
    killed = threading.Event()

    def kill_once_the_run_exists():
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            experiment = client.get_experiment_by_name("faults")
            if experiment is not None and client.search_runs([experiment.experiment_id]):
                server.kill()
                killed.set()
                return
            time.sleep(0.2)

    watcher = threading.Thread(target=kill_once_the_run_exists)
    watcher.start()
    stdout, stderr = proc.communicate(timeout=600)
    watcher.join()
    assert killed.is_set(), "the run ended before the server could be killed"
    assert proc.returncode == 3, stderr[-3000:]  # finished, outputs complete, not tracked: says so
    assert f"ssmcast sync {out_dir}" in stderr
    record = json.loads((out_dir / "tracking" / "run.json").read_text())
    assert record["status"] == "FINISHED" and not record["tracked"] and record["run_id"]
    first = record["run_id"]

    server.start()  # same store, same port
    client = MlflowClient(server.uri)
    assert client.get_run(first).info.status == "RUNNING"  # what the server was left with
    synced = run_cli(["sync", str(out_dir)], tmp_path)
    assert synced.returncode == 0, synced.stderr[-3000:]
    run_id = synced.stdout.split("pushed as run ")[1].split()[0]
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == record["run_name"]
    for tag in ("git_commit", "dataset.sha256", "device", "dataset"):
        assert run.data.tags[tag] == record["tags"][tag]
    assert run.data.params["model.backbone.d_model"] == "8"
    assert {"test_mae", "fit_time_s", "naive/test_mae"} <= set(run.data.metrics)
    epochs = client.get_metric_history(run_id, "train_loss")
    assert len(epochs) == 3  # the per-epoch metrics, from the run folder's epochs/metrics.csv
    artifacts = {a.path for a in client.list_artifacts(run_id)}
    assert {"config.yaml", "leaderboard.csv", "forecasts.csv", "metrics.json"} <= artifacts
    est = load_logged_model(f"runs:/{run_id}/model", tracking_uri=server.uri)
    saved = load(out_dir / "models" / "mamba")
    assert np.allclose(est.predict()["y_pred"], saved.predict()["y_pred"])
    old = client.get_run(first)
    assert old.info.status == "KILLED" and old.data.tags["ssmcast.superseded_by"] == run_id

    again = run_cli(["sync", str(out_dir)], tmp_path)  # no duplicate
    assert again.returncode == 1 and "already complete" in again.stderr
    assert len(client.search_runs([run.info.experiment_id])) == 2


def test_a_frozen_server_does_not_hold_up_training(server, tmp_path, monkeypatch):
    """Issue #32, item 5: per-epoch uploads run in the background and ``fit_time_s_`` is the fit alone; a frozen
    server costs the bounded flush (here 2 s), not a request timeout per epoch."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "4")
    monkeypatch.setenv("SSMCAST_TRACKING_FLUSH_TIMEOUT_S", "2")
    df = long_frame()
    reference = tiny_mamba(max_epochs=4, early_stopping_patience=None).fit(df)  # untracked
    server.start()
    tracker = RunTracker({"uri": server.uri, "experiment": "frozen"}, tmp_path / "local", "frozen").start()
    assert tracker.active
    server.signal(signal.SIGSTOP)
    try:
        with pytest.warns(TrackingWarning) as caught:
            tic = time.perf_counter()
            est = tiny_mamba(max_epochs=4, early_stopping_patience=None).fit(df)
            wall = time.perf_counter() - tic
            tracker.log_metrics({"test_mae": 1.0})  # skipped: the run is marked failed, no wait
            tic = time.perf_counter()
            tracker.finish()
            finish_wall = time.perf_counter() - tic
    finally:
        server.signal(signal.SIGCONT)
    # blocking uploads would have cost >= 4 s per epoch (4 epochs, a 4 s request timeout)
    assert est.fit_time_s_ < reference.fit_time_s_ + 3.0, (est.fit_time_s_, reference.fit_time_s_)
    assert wall < est.fit_time_s_ + 2.0 + 4.0  # the fit, the 2 s flush, slack for the imports and the machine
    assert finish_wall < 3.0
    messages = [str(w.message) for w in caught]
    assert any("did not take the queued metrics within 2 s" in m for m in messages)
    record = LocalRecord.read(tmp_path / "local").data
    assert not record["tracked"] and record["metrics"][0][:2] == ["test_mae", 1.0]
    assert np.allclose(est.predict()["y_pred"], reference.predict()["y_pred"])  # tracking changed nothing


def test_sync_refuses_what_it_cannot_push(tmp_path):
    empty = run_cli(["sync", str(tmp_path)], tmp_path)
    assert empty.returncode == 1 and "has no tracking/run.json" in empty.stderr
    record = LocalRecord(tmp_path / "killed")  # a run killed before it finished: RUNNING
    record.write()
    running = run_cli(["sync", str(tmp_path / "killed"), "--tracking-uri", f"sqlite:///{tmp_path / 'x.db'}"],
                      tmp_path)  # fmt: skip
    assert running.returncode == 1 and "has not finished" in running.stderr and "--force" in running.stderr
    assert not (tmp_path / "x.db").exists()  # nothing was created


def test_a_corrupt_checkpoint_is_refused_by_name(tmp_path):
    df = long_frame()
    ckpt = tmp_path / "ckpt"
    tiny_mamba(checkpoint_dir=str(ckpt), max_epochs=1).fit(df)
    last = ckpt / "last.ckpt"
    data = last.read_bytes()
    for corrupt in (data[: len(data) // 2], b"not a checkpoint"):
        last.write_bytes(corrupt)
        with pytest.raises(ValueError, match="last.ckpt") as err:
            tiny_mamba(checkpoint_dir=str(ckpt), max_epochs=2).fit(df, resume=True)
        assert "corrupt" in str(err.value) or "cannot be read" in str(err.value)


def test_disk_full_while_saving_keeps_the_previous_model(tmp_path, monkeypatch):
    import torch

    df = long_frame()
    est = S4DForecaster(input_size=12, horizon=4, max_epochs=1, verbose=False, accelerator="cpu",
                        precision="32-true").fit(df)  # fmt: skip
    path = tmp_path / "model"
    est.save(path)
    before = load(path).predict()
    refit = S4DForecaster(input_size=12, horizon=4, max_epochs=2, seed=1, verbose=False, accelerator="cpu",
                          precision="32-true").fit(df)  # fmt: skip

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(OSError, match="No space left"):
        refit.save(path)
    monkeypatch.undo()
    assert np.allclose(load(path).predict()["y_pred"], before["y_pred"])  # the old model, whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # no half-written folder left behind
    refit.save(path)  # and a later save replaces it
    assert np.allclose(load(path).predict()["y_pred"], refit.predict()["y_pred"])


def test_disk_full_while_writing_the_run_record_keeps_the_last_one(tmp_path, monkeypatch):
    record = LocalRecord(tmp_path)
    record.params({"a": "1"})
    original = Path.write_text

    def full(self, *args, **kwargs):
        if self.name.endswith(".tmp"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", full)
    with pytest.raises(OSError):
        record.params({"b": "2"})
    monkeypatch.undo()
    assert LocalRecord.read(tmp_path).data["params"] == {"a": "1"}


def test_python_api_run_gets_epoch_metrics_through_the_background_uploads(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment("bg")
    with mlflow.start_run() as run:
        est = tiny_mamba(max_epochs=3, early_stopping_patience=None).fit(long_frame())
    history = MlflowClient(uri).get_metric_history(run.info.run_id, "train_loss")
    assert len(history) == 3 and est.n_epochs_ == 3  # all there when fit() returned
