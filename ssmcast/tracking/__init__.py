"""MLflow tracking: per-epoch metrics for fits inside an MLflow run, CLI runs, and pyfunc models.

Python API users opt in by opening a run; outside a run nothing is logged::

    with mlflow.start_run():
        est.fit(df)                      # train_loss / val_loss per epoch go to the active run
        log_forecaster(est, history=df)  # the fitted model as an MLflow pyfunc model

``mlflow.pyfunc.load_model(uri).predict(history_df)`` then returns the forecast frame after the end of
each series of ``history_df`` (``params={"h": 12}`` for another horizon). The pyfunc wraps the
``est.save(dir)`` artifacts and :func:`ssmcast.load`; a model without ``save`` (the classical baselines)
is stored as its config and refitted on the history it is given. Nothing is pickled.

Security: MLflow's models-from-code design means ``mlflow.pyfunc.load_model`` *runs* the model's stored
``ssmcast_pyfunc.py``, so a tampered model folder runs its code. Load models from stores you trust that way; for
anything else use :func:`load_logged_model`, which downloads only the weights-only folder ``est.save`` wrote
(``<model>/artifacts/model``) and reads it with :func:`ssmcast.load` (JSON and ``torch.load(weights_only=True)``):
no code from the store runs.

Tracking never stops a run, and never makes training wait: epoch metrics are uploaded in the background
(``ssmcast.training.loggers``), and when the server is unreachable, fails or freezes midway a
:class:`TrackingWarning` says so once and where the outputs are written locally, and the rest of the run goes on
untracked. A CLI run keeps everything it logs in its run folder as well (``tracking/run.json``, the pyfunc models),
so ``ssmcast sync <run dir>`` (:func:`sync_run`) can push it into a store later; with ``tracking.required=true``
(the default) such a run exits with status 3.

Layout: ``store.py`` (which store, a safe sqlite store, server health), ``runs.py`` (CLI runs and sweeps),
``record.py`` (the run folder's record and ``sync``), ``pyfunc.py`` (models). mlflow, lightning and torch are
imported only inside the functions that need them.
"""


from __future__ import annotations

from ssmcast.tracking.pyfunc import load_logged_model, log_forecaster, log_saved_model, save_forecaster
from ssmcast.tracking.record import LocalRecord, SyncError, sync_run
from ssmcast.tracking.runs import (
    PARENT_ENV,
    MultirunParentRun,
    RunTracker,
    device_name,
    flatten,
    git_commit,
    record_sweep_failure,
    reset_job,
    sweep_failures,
    untracked_runs,
)
from ssmcast.tracking.store import prepare_store, server_problem, tracking_uri
from ssmcast.training.loggers import TrackingWarning, active_run_logger, metric_prefix

__all__ = [
    "TrackingWarning",
    "tracking_uri",
    "prepare_store",
    "server_problem",
    "active_run_logger",
    "metric_prefix",
    "RunTracker",
    "MultirunParentRun",
    "log_forecaster",
    "save_forecaster",
    "log_saved_model",
    "load_logged_model",
    "sync_run",
    "SyncError",
    "LocalRecord",
    "flatten",
    "git_commit",
    "device_name",
    "record_sweep_failure",
    "sweep_failures",
    "untracked_runs",
    "reset_job",
    "PARENT_ENV",
]


def __getattr__(name: str):
    if name == "ForecasterModel":  # what stored pyfunc models import; built on first use (it imports mlflow)
        from ssmcast.tracking import pyfunc

        cls = pyfunc._forecaster_model_class()
        globals()[name] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
