"""Where a fit's per-epoch metrics go: the active MLflow run (in the background) and the CLI's run folder.

A fit asks :func:`active_run_logger` for its Lightning logger(s). Python API users opt in by opening an MLflow
run (``with mlflow.start_run(): est.fit(df)``); the CLI (``ssmcast.tracking.RunTracker``) opens one and also
sets the run folder, where a ``CSVLogger`` keeps the epoch metrics whatever happens to the server.

Uploads never block training: the MLflow logger hands each batch of metrics to one background thread
(:data:`UPLOADS`) and returns. When the fit ends, :func:`flush` waits for the queue to drain, at most
``SSMCAST_TRACKING_FLUSH_TIMEOUT_S`` seconds (default 15; the fit's ``fit_time_s_`` does not include the wait).
A server that fails or freezes costs that much at most: the run's tracking is marked failed, a
:class:`TrackingWarning` says so once, and later uploads for that run are dropped.

This module belongs to the training layer; ``ssmcast.tracking`` builds on it (never the other way round).
"""

from __future__ import annotations

import os
import queue
import re
import sys
import threading
import time
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["TrackingWarning", "active_run_logger", "metric_prefix", "flush", "UPLOADS"]

FLUSH_TIMEOUT_ENV = "SSMCAST_TRACKING_FLUSH_TIMEOUT_S"


class TrackingWarning(UserWarning):
    """MLflow tracking failed; the run continues and its outputs stay on the local disk."""


class _State:
    """Process-wide tracking context (set by ``ssmcast.tracking.RunTracker`` for the fits the CLI runs)."""

    def __init__(self):
        self.failed_runs: set[str | None] = set()
        self.local_dir: Path | None = None
        self.prefix = ""
        self.on_failure = None
        self.job_tracked = False  # a RunTracker started in the current job (reset by the CLI per job)
        self.sweep_failures: list[tuple[int, str]] = []  # (job number, error) of a --multirun's failed jobs


_STATE = _State()


def _fail(run_id: str | None, err: BaseException | str, what: str) -> None:
    """Mark ``run_id`` as failed and warn once; later calls for that run are skipped."""
    if run_id in _STATE.failed_runs:
        return
    _STATE.failed_runs.add(run_id)
    where = (
        f"the outputs are written locally to {_STATE.local_dir}"
        if _STATE.local_dir is not None
        else "nothing more is sent to MLflow for this run"
    )
    reason = err if isinstance(err, str) else f"{type(err).__name__}: {err}"
    message = f"MLflow tracking failed while {what} ({reason}); the run continues untracked and {where}"
    warnings.warn(message, TrackingWarning, stacklevel=3)
    if _STATE.on_failure is not None:
        _STATE.on_failure(message)


@contextmanager
def metric_prefix(prefix: str):
    """Per-epoch metric names become ``<prefix>/train_loss`` inside the block (several models in one run)."""
    old, _STATE.prefix = _STATE.prefix, prefix
    try:
        yield
    finally:
        _STATE.prefix = old


class _Uploads:
    """One daemon thread that runs tracking calls in order, so that no caller waits on the server.

    A call that raises marks its run failed (:func:`_fail`, warned from the thread that next waits or submits)
    and the run's queued calls are dropped. :meth:`flush` waits for the queue, up to a deadline.
    """

    def __init__(self):
        self._queue: queue.Queue = queue.Queue()
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._thread: threading.Thread | None = None
        self._pending = 0
        self._broken: set[str | None] = set()  # runs whose call failed in the worker: their queue is dropped
        self._errors: list[tuple[str | None, BaseException, str]] = []  # warned by the next caller (report)

    def submit(self, run_id: str | None, what: str, fn, *args, **kwargs) -> None:
        self.report()
        if run_id in _STATE.failed_runs:
            return
        with self._lock:
            self._pending += 1
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._work, name="ssmcast-tracking", daemon=True)
                self._thread.start()
        self._queue.put((run_id, what, fn, args, kwargs))

    def _work(self) -> None:
        while True:
            run_id, what, fn, args, kwargs = self._queue.get()
            try:
                if run_id not in _STATE.failed_runs and run_id not in self._broken:
                    fn(*args, **kwargs)
            except Exception as err:  # noqa: BLE001 - tracking must not stop training
                with self._lock:
                    self._broken.add(run_id)
                    self._errors.append((run_id, err, what))
            finally:
                with self._lock:
                    self._pending -= 1
                    self._idle.notify_all()

    def report(self) -> None:
        """Warn (in the calling thread, once a run) about calls that failed in the background."""
        with self._lock:
            errors, self._errors = self._errors, []
        for run_id, err, what in errors:
            _fail(run_id, err, what)

    def flush(self, timeout_s: float | None = None, run_id: str | None = None) -> bool:
        """Wait until every submitted call has run (True), or ``timeout_s`` has passed (False: ``run_id``'s
        tracking is then marked failed with a warning, and its queued calls are dropped)."""
        if timeout_s is None:
            timeout_s = float(os.environ.get(FLUSH_TIMEOUT_ENV, 15))
        deadline = time.monotonic() + timeout_s
        with self._lock:
            while self._pending and time.monotonic() < deadline:
                self._idle.wait(timeout=max(0.0, min(1.0, deadline - time.monotonic())))
            done = self._pending == 0
        self.report()
        if not done:
            _fail(run_id, f"the tracking server did not take the queued metrics within {timeout_s:g} s",
                  "uploading epoch metrics")  # fmt: skip
        return done


UPLOADS = _Uploads()


def flush(timeout_s: float | None = None, run_id: str | None = None) -> bool:
    """Wait for the background uploads (see :class:`_Uploads`); False when they did not finish in time."""
    return UPLOADS.flush(timeout_s, run_id)


_LOGGER_CLASS = None


def _logger_class():
    """A Lightning logger into an MLflow run it does not own: its uploads go through :data:`UPLOADS` (training
    never waits on the server, errors warn instead of failing the fit) and ``finalize`` leaves the run open."""
    global _LOGGER_CLASS
    if _LOGGER_CLASS is not None:
        return _LOGGER_CLASS
    from lightning.fabric.utilities.logger import _convert_params, _flatten_dict
    from lightning.pytorch.loggers.logger import Logger
    from lightning.pytorch.utilities import rank_zero_only

    class ActiveRunMLFlowLogger(Logger):
        def __init__(self, run_id: str, tracking_uri: str, experiment_id: str | None = None, prefix: str = ""):
            super().__init__()
            self.run_id, self._tracking_uri, self._prefix = run_id, tracking_uri, prefix
            self._experiment_id = experiment_id
            self._client = None

        @property
        def name(self) -> str | None:
            return self._experiment_id

        @property
        def version(self) -> str:
            return self.run_id

        @property
        def experiment(self):
            if self._client is None:
                from mlflow import MlflowClient

                self._client = MlflowClient(self._tracking_uri)
            return self._client

        def _log_batch(self, what: str, **batch) -> None:
            UPLOADS.submit(self.run_id, what, lambda: self.experiment.log_batch(run_id=self.run_id, **batch))

        @rank_zero_only
        def log_hyperparams(self, params, *args, **kwargs) -> None:
            from mlflow.entities import Param

            flat = _flatten_dict(_convert_params(params))
            items = [Param(key=k, value=str(v)[:250]) for k, v in flat.items()]
            for i in range(0, len(items), 100):
                self._log_batch("logging hyper-parameters", params=items[i : i + 100])

        @rank_zero_only
        def log_metrics(self, metrics, step: int | None = None) -> None:
            from mlflow.entities import Metric

            stamp = int(time.time() * 1000)
            items = []
            for key, value in metrics.items():
                if isinstance(value, str):
                    continue
                key = re.sub("[^a-zA-Z0-9_/. -]+", "", f"{self._prefix}/{key}" if self._prefix else key)
                items.append(Metric(key=key, value=float(value), timestamp=stamp, step=step or 0))
            if items:
                self._log_batch("logging epoch metrics", metrics=items)

        def finalize(self, status: str = "success") -> None:
            return None  # the run's owner ends it; the fit flushes the uploads

    ActiveRunMLFlowLogger.__module__ = __name__
    _LOGGER_CLASS = ActiveRunMLFlowLogger
    return _LOGGER_CLASS


def active_run_logger() -> Any:
    """Lightning logger(s) for the current tracking context, or None.

    With an active MLflow run (``mlflow.active_run()``): a logger bound to that run and its tracking URI
    (per-epoch ``train_loss``/``val_loss``, uploaded in the background). Under the CLI also a ``CSVLogger`` into
    the run folder, so the epoch metrics survive a tracking server that goes away. Outside both: None.
    """
    loggers = []
    if "mlflow" in sys.modules:  # without mlflow imported there cannot be an active run
        import mlflow

        run = mlflow.active_run()
        if run is not None and run.info.run_id not in _STATE.failed_runs:
            loggers.append(_logger_class()(run_id=run.info.run_id, tracking_uri=mlflow.get_tracking_uri(),
                                           experiment_id=run.info.experiment_id, prefix=_STATE.prefix))
    if _STATE.local_dir is not None:
        from lightning.pytorch.loggers import CSVLogger

        name = f"epochs/{_STATE.prefix}" if _STATE.prefix else "epochs"
        loggers.append(CSVLogger(save_dir=str(_STATE.local_dir), name=name, version=""))
    if not loggers:
        return None
    return loggers[0] if len(loggers) == 1 else loggers


def flush_run(logger) -> None:
    """After a fit: wait (bounded) for the uploads of its MLflow logger(s), if it had any."""
    loggers = logger if isinstance(logger, list) else [logger]
    for each in loggers:
        if _LOGGER_CLASS is not None and isinstance(each, _LOGGER_CLASS):
            flush(run_id=each.run_id)
