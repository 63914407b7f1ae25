"""The local record of a tracked run, and ``ssmcast sync``: push a run folder into a tracking store later.

Every CLI run with tracking on keeps, beside its outputs, ``tracking/run.json``: what it logs or would log to
MLflow (run name, experiment, parameters, tags, metrics with their steps, the artifacts' paths in the run folder,
the pyfunc models saved under ``tracking/models/<name>``, the status) and whether it all reached the server.
The per-epoch metrics are in ``epochs/**/metrics.csv``. A run whose server was unreachable, died or froze is
complete on the disk, and ``ssmcast sync <run dir>`` (:func:`sync_run`) creates it in a store afterwards.
"""

from __future__ import annotations

import csv
import json
import math
import os
import time
from pathlib import Path
from typing import Any

__all__ = ["LocalRecord", "sync_run", "SyncError"]

RECORD = Path("tracking") / "run.json"
_FORMAT = 1


class SyncError(ValueError):
    """A run folder cannot be pushed (no record, still running, already pushed...)."""


class LocalRecord:
    """``<run dir>/tracking/run.json``, rewritten atomically after every change."""

    def __init__(self, run_dir: str | Path, data: dict[str, Any] | None = None):
        self.run_dir = Path(run_dir)
        self.data = data if data is not None else {
            "format": _FORMAT, "run_name": None, "experiment": None, "uri": None, "run_id": None,
            "parent_run_id": None, "status": "RUNNING", "tracked": False, "start_ms": int(time.time() * 1000),
            "end_ms": None, "params": {}, "tags": {}, "metrics": [], "artifacts": [], "models": [], "synced": [],
        }  # fmt: skip

    @property
    def path(self) -> Path:
        return self.run_dir / RECORD

    @classmethod
    def read(cls, run_dir: str | Path) -> LocalRecord:
        path = Path(run_dir) / RECORD
        if not path.is_file():
            raise SyncError(f"{run_dir} has no {RECORD}: it is not the folder of an ssmcast run with tracking on")
        try:
            data = json.loads(path.read_text())
        except ValueError as err:
            raise SyncError(f"{path} is not valid JSON ({err})") from None
        if data.get("format") != _FORMAT:
            raise SyncError(f"{path}: unsupported record format {data.get('format')!r}")
        return cls(run_dir, data)

    def write(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(self.data, indent=1))
        os.replace(tmp, self.path)  # a crash leaves the old record or the new one, never half of one

    # what a run logs -------------------------------------------------------------------------------------
    def params(self, params: dict[str, str]) -> None:
        self.data["params"].update(params)
        self.write()

    def tags(self, tags: dict[str, str]) -> None:
        self.data["tags"].update(tags)
        self.write()

    def metrics(self, metrics: dict[str, float], step: int | None) -> None:
        stamp = int(time.time() * 1000)
        self.data["metrics"] += [[k, v, int(step or 0), stamp] for k, v in metrics.items()]
        self.write()

    def artifact(self, path: str | Path, artifact_path: str | None) -> None:
        self.data["artifacts"].append([self._relative(path), artifact_path])
        self.write()

    def model(self, name: str, path: str | Path) -> None:
        self.data["models"].append({"name": name, "path": self._relative(path)})
        self.write()

    def _relative(self, path: str | Path) -> str:
        path = Path(path).resolve()
        try:
            return str(path.relative_to(self.run_dir.resolve()))
        except ValueError:
            return str(path)


def _epoch_metrics(run_dir: Path) -> list[tuple[str, float, int]]:
    """``(key, value, step)`` from the run's ``epochs/**/metrics.csv`` (a model's prefix is its sub-folder)."""
    out = []
    root = run_dir / "epochs"
    for path in sorted(root.rglob("metrics.csv")) if root.is_dir() else []:
        prefix = str(path.parent.relative_to(root))
        prefix = "" if prefix == "." else prefix + "/"
        with open(path, newline="") as handle:
            for row in csv.DictReader(handle):
                step = int(float(row.get("step") or 0))
                for key, value in row.items():
                    if key in ("step", None) or value in ("", None):
                        continue
                    number = float(value)
                    if math.isfinite(number):
                        out.append((prefix + key, number, step))
    return out


def sync_run(run_dir: str | Path, uri: str | None = None, experiment: str | None = None, force: bool = False) -> str:
    """Create the run recorded in ``run_dir`` in the tracking store ``uri`` (default: the one it was meant for);
    returns the new run's id.

    Parameters, tags, metrics, per-epoch metrics, artifacts and pyfunc models are logged from the folder and the
    run ends with its recorded status. The run the server may hold from before it failed (left RUNNING, partly
    logged) is ended as KILLED with the tag ``ssmcast.superseded_by``. A run that is still running, or already
    complete in that store (tracked or synced), is refused unless ``force``.
    """
    import mlflow
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param

    from ssmcast.tracking.pyfunc import log_saved_model
    from ssmcast.tracking.store import prepare_store, server_problem, tracking_uri

    record = LocalRecord.read(run_dir)
    data = record.data
    uri = tracking_uri(uri or data.get("uri"))
    if data["status"] == "RUNNING" and not force:
        raise SyncError(f"{run_dir}: the run has not finished (status RUNNING; it may still be running, or it was "
                        "killed): pass --force to push it as KILLED")  # fmt: skip
    done = [s for s in data["synced"] if s["uri"] == uri]
    if not force and (done or (data["tracked"] and data.get("uri") == uri)):
        run_id = done[-1]["run_id"] if done else data["run_id"]
        raise SyncError(f"{run_dir} is already complete at {uri} as run {run_id} (--force pushes it again)")
    problem = server_problem(uri)
    if problem is not None:
        raise SyncError(f"the tracking server {uri} does not answer ({problem}); nothing was pushed")
    status = data["status"] if data["status"] != "RUNNING" else "KILLED"
    experiment_id = prepare_store(uri, experiment or data.get("experiment") or "ssmcast")
    client = MlflowClient(uri)
    tags = dict(data["tags"])
    tags["ssmcast.synced_from"] = str(record.run_dir.resolve())
    if data.get("run_id"):
        tags["ssmcast.first_run_id"] = data["run_id"]
    parent = data.get("parent_run_id")
    if parent and _exists(client, parent):
        tags["mlflow.parentRunId"] = parent
    run = client.create_run(experiment_id, start_time=data.get("start_ms"), run_name=data.get("run_name"),
                            tags={k: str(v)[:5000] for k, v in tags.items()})  # fmt: skip
    run_id = run.info.run_id
    try:
        params = [Param(k, str(v)[:6000]) for k, v in data["params"].items()]
        for i in range(0, len(params), 100):
            client.log_batch(run_id, params=params[i : i + 100])
        metrics = [Metric(k, float(v), int(ts), int(step)) for k, v, step, ts in data["metrics"]]
        stamp = data.get("end_ms") or int(time.time() * 1000)
        metrics += [Metric(k, v, stamp, step) for k, v, step in _epoch_metrics(record.run_dir)]
        for i in range(0, len(metrics), 1000):
            client.log_batch(run_id, metrics=metrics[i : i + 1000])
        for path, artifact_path in data["artifacts"]:
            full = record.run_dir / path
            if full.exists():
                client.log_artifact(run_id, str(full), artifact_path)
        if data["models"]:
            previous = mlflow.get_tracking_uri()
            mlflow.set_tracking_uri(uri)
            try:
                with mlflow.start_run(run_id=run_id):
                    for model in data["models"]:
                        log_saved_model(record.run_dir / model["path"], model["name"])
            finally:
                mlflow.set_tracking_uri(previous)
        client.set_terminated(run_id, status, end_time=data.get("end_ms"))
    except BaseException:
        client.set_terminated(run_id, "FAILED")
        client.set_tag(run_id, "ssmcast.sync_error", "the push did not complete; see the sync's output")
        raise
    first = data.get("run_id")
    if first and data.get("uri") == uri and _exists(client, first):
        if client.get_run(first).info.status == "RUNNING":
            client.set_terminated(first, "KILLED")
        client.set_tag(first, "ssmcast.superseded_by", run_id)
    data["synced"].append({"uri": uri, "run_id": run_id, "at_ms": int(time.time() * 1000)})
    record.write()
    return run_id


def _exists(client, run_id: str) -> bool:
    try:
        client.get_run(run_id)
        return True
    except Exception:  # noqa: BLE001 - MLflow raises its own types for an unknown run
        return False

