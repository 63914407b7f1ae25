"""Tracking stores: which URI a run goes to, a local sqlite store created safely, an http server's health."""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from pathlib import Path

__all__ = ["tracking_uri", "prepare_store", "server_problem"]


def tracking_uri(uri: str | None = None) -> str:
    """``uri``, else ``$MLFLOW_TRACKING_URI``, else ``sqlite:///<cwd>/mlflow.db`` (MLflow 3's default store)."""
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return str(uri)
    return f"sqlite:///{Path.cwd() / 'mlflow.db'}"


def prepare_store(uri: str, experiment: str) -> str:
    """Create (or migrate) a local sqlite store and its experiment once, under an exclusive file lock; returns the
    experiment id. Two first runs started at once on a new store otherwise race in MLflow's schema migration
    ("duplicate column name", "expected to match one row"), and one of them ends untracked. Other stores: the
    experiment is looked up or created as before."""
    from mlflow import MlflowClient

    def ensure() -> str:
        client = MlflowClient(uri)
        found = client.get_experiment_by_name(experiment)
        return found.experiment_id if found is not None else client.create_experiment(experiment)

    if not uri.startswith("sqlite:///"):
        return ensure()
    import fcntl

    path = Path(uri.removeprefix("sqlite:///"))
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        return ensure()


def server_problem(uri: str, timeout_s: float = 5.0) -> str | None:
    """For an http(s) tracking URI, why its ``/health`` endpoint does not answer OK (None when it does)."""
    if not uri.startswith(("http://", "https://")):
        return None
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout_s) as response:  # noqa: S310
            body = response.read(64).decode(errors="replace").strip()
            return None if response.status == 200 else f"GET /health answered {response.status} {body!r}"
    except (urllib.error.URLError, OSError, ValueError) as err:
        return f"{type(err).__name__}: {getattr(err, 'reason', err)}"
