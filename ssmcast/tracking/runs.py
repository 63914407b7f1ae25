"""CLI runs in MLflow: :class:`RunTracker` (one run, every call guarded, everything also kept in the run folder)
and the ``--multirun`` parent run."""

from __future__ import annotations

import os
import platform
import subprocess
import warnings
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback

from ssmcast.tracking.record import LocalRecord
from ssmcast.tracking.store import prepare_store, server_problem, tracking_uri
from ssmcast.training.loggers import _STATE, UPLOADS, TrackingWarning, _fail

__all__ = ["RunTracker", "MultirunParentRun", "record_sweep_failure", "sweep_failures", "untracked_runs",
           "reset_job", "flatten", "git_commit", "device_name", "PARENT_ENV"]

PARENT_ENV = "SSMCAST_MLFLOW_PARENT_RUN_ID"


class _Runs:
    """What the CLI asks at the end: which jobs failed, which runs ended untracked."""

    def __init__(self):
        self.job_tracked = False  # a RunTracker started in the current job (reset by the CLI per job)
        self.sweep_failures: list[tuple[int, str]] = []  # (job number, error) of a --multirun's failed jobs
        self.untracked: list[tuple[Path, str, bool]] = []  # (run folder, tracking URI, tracking required)


_RUNS = _Runs()


def reset_job() -> None:
    """The CLI starts a job (one per run, several in a --multirun)."""
    _RUNS.job_tracked = False


def untracked_runs() -> list[tuple[Path, str, bool]]:
    """``(run folder, URI, required)`` of the runs of this process that ended not (fully) tracked."""
    return list(_RUNS.untracked)


def flatten(tree: Any, prefix: str = "") -> dict[str, str]:
    """``{"model": {"backbone": {"d_model": 8}}}`` -> ``{"model.backbone.d_model": "8"}`` (lists as text)."""
    out: dict[str, str] = {}
    if isinstance(tree, dict):
        for key, value in tree.items():
            out.update(flatten(value, f"{prefix}{key}."))
        return out
    out[prefix[:-1]] = str(tree)[:6000]
    return out


def git_commit(path: str | Path | None = None) -> str:
    """The git commit of the ssmcast checkout (``+dirty`` with local changes), or "unknown"."""
    where = Path(path) if path is not None else Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=5)
        if commit.returncode != 0:
            return "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=where,
                               capture_output=True, text=True, timeout=5)
        return commit.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def device_name() -> str:
    """``cuda:<GPU name>`` when torch sees a GPU, else ``cpu:<processor> x<threads>``."""
    import torch

    if torch.cuda.is_available():
        return f"cuda:{torch.cuda.get_device_name(0)} x{torch.cuda.device_count()}"
    return f"cpu:{platform.processor() or platform.machine()} x{torch.get_num_threads()}"


# ------------------------------------------------------------------------------------------ CLI runs


class RunTracker:
    """One MLflow run of the CLI, robust to the tracking server: every call is guarded, and everything it logs
    is also kept in the run folder (``tracking/run.json``, the pyfunc models under ``tracking/models``) so that a
    run the server did not (fully) get can be pushed later with ``ssmcast sync <run dir>``.

    ``settings`` is the ``tracking`` config (enabled, uri, experiment, run_name, log_model, health_timeout_s,
    required). ``local_dir`` holds every output anyway; failures say so in a TrackingWarning.
    """

    def __init__(self, settings: dict, local_dir: str | Path, run_name: str, tags: dict | None = None,
                 parent_run_id: str | None = None):
        self.settings = dict(settings)
        self.local_dir = Path(local_dir)
        self.run_name = self.settings.get("run_name") or run_name
        self.tags = dict(tags or {})
        self.parent_run_id = parent_run_id
        self.uri = tracking_uri(self.settings.get("uri"))
        self.run_id: str | None = None
        self.problems: list[str] = []
        self.finished = False
        self.record: LocalRecord | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.settings.get("enabled", True))

    @property
    def active(self) -> bool:
        UPLOADS.report()  # a background upload that failed marks the run failed
        return self.run_id is not None and not self.finished and self.run_id not in _STATE.failed_runs

    def start(self) -> RunTracker:
        _STATE.local_dir = self.local_dir
        _STATE.on_failure = self.problems.append
        _RUNS.job_tracked = True
        if not self.enabled:
            return self
        self.record = LocalRecord(self.local_dir)
        self.record.data.update(run_name=self.run_name, experiment=self.settings.get("experiment") or "ssmcast",
                                uri=self.uri, parent_run_id=self.parent_run_id)  # fmt: skip
        self.record.tags({k: str(v) for k, v in self.tags.items()})
        problem = server_problem(self.uri, float(self.settings.get("health_timeout_s", 5)))
        if problem is not None:
            _fail(None, f"{self.uri} is unreachable: {problem}", "starting the run")
            _STATE.failed_runs.discard(None)
            return self
        try:
            import mlflow

            mlflow.set_tracking_uri(self.uri)
            mlflow.set_experiment(experiment_id=prepare_store(self.uri, self.record.data["experiment"]))
            tags = dict(self.tags)
            if self.parent_run_id:
                tags["mlflow.parentRunId"] = self.parent_run_id
            run = mlflow.start_run(run_name=self.run_name, tags={k: str(v) for k, v in tags.items()})
            self.run_id = run.info.run_id
            self.record.data["run_id"] = self.run_id
            self.record.write()
        except Exception as err:  # noqa: BLE001
            _fail(None, err, f"starting a run at {self.uri}")
            _STATE.failed_runs.discard(None)
            self.run_id = None
        return self

    def _call(self, what: str, fn, *args, **kwargs):
        if not self.active:
            return None
        try:
            return fn(*args, **kwargs)
        except Exception as err:  # noqa: BLE001 - tracking must not stop the run
            _fail(self.run_id, err, what)
            return None

    def _mlflow(self, what: str, name: str, *args, **kwargs):
        """``mlflow.<name>(...)`` through :meth:`_call`; mlflow is imported only for an active run, so untracked
        runs (``tracking=none``) never pay its import."""
        if not self.active:
            return None
        import mlflow

        return self._call(what, getattr(mlflow, name), *args, **kwargs)

    def log_params(self, params: dict[str, Any]) -> None:
        params = {k: str(v)[:6000] for k, v in params.items()}
        if self.record is not None:
            self.record.params(params)
        self._mlflow("logging parameters", "log_params", params)

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        import math

        clean = {k: float(v) for k, v in metrics.items() if v is not None and math.isfinite(float(v))}
        if self.record is not None:
            self.record.metrics(clean, step)
        self._mlflow("logging metrics", "log_metrics", clean, step=step)

    def set_tags(self, tags: dict[str, Any]) -> None:
        tags = {k: str(v) for k, v in tags.items()}
        if self.record is not None:
            self.record.tags(tags)
        self._mlflow("setting tags", "set_tags", tags)

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        if self.record is not None:
            self.record.artifact(path, artifact_path)
        self._mlflow(f"uploading {Path(path).name}", "log_artifact", str(path), artifact_path)

    def log_model(self, estimator, history, name: str = "model", scaling: dict | None = None) -> str | None:
        """The fitted estimator as a pyfunc model, saved in the run folder (``tracking/models/<name>``) and logged
        from there (see :func:`ssmcast.tracking.log_forecaster`); returns its model URI when it was logged."""
        if not (self.enabled and self.settings.get("log_model", True)):
            return None
        from ssmcast.tracking.pyfunc import log_saved_model, save_forecaster

        path = self.local_dir / "tracking" / "models" / name
        try:
            save_forecaster(estimator, history, path, scaling=scaling)
        except Exception as err:  # noqa: BLE001 - the run's other outputs are written; say what is missing
            message = f"the {name} model could not be saved as an MLflow pyfunc model ({type(err).__name__}: {err})"
            warnings.warn(message, TrackingWarning, stacklevel=2)
            self.problems.append(message)
            return None
        self.record.model(name, path)
        info = self._call(f"logging the {name} model", log_saved_model, path, name)
        return None if info is None else info.model_uri

    @property
    def tracked(self) -> bool:
        """Everything this run logged reached the tracking store (so far)."""
        return self.enabled and self.run_id is not None and not self.problems and self.active

    def finish(self, failed: bool = False, error: BaseException | None = None) -> None:
        """End the run (FINISHED, or FAILED when the job raised: ``error`` then goes into the run folder as
        ``error.txt`` and into the run as the tag ``ssmcast.error`` and that artifact) and restore the process
        state. A run that ends not fully tracked (with tracking on) is listed by :func:`untracked_runs`."""
        try:
            if error is not None:
                text = f"{type(error).__name__}: {error}"
                self.local_dir.mkdir(parents=True, exist_ok=True)
                (self.local_dir / "error.txt").write_text(text + "\n")
                self.set_tags({"ssmcast.error": text[:5000]})
                self.log_artifact(self.local_dir / "error.txt")
            UPLOADS.flush(run_id=self.run_id)  # the epoch metrics still on their way (bounded)
            status = "FAILED" if failed else "FINISHED"
            if self.run_id is not None:
                import mlflow

                if self.active:
                    self._call("ending the run", mlflow.end_run, status)
                else:  # the server went away: forget the run locally without calling it
                    mlflow.tracking.fluent._active_run_stack.get().clear()
            if self.record is not None:
                tracked = self.run_id is not None and not self.problems and self.run_id not in _STATE.failed_runs
                self.record.data.update(status=status, end_ms=_now_ms(), tracked=tracked)
                self.record.write()
        finally:
            if self.enabled and (self.problems or self.run_id is None):
                required = bool(self.settings.get("required", True))
                _RUNS.untracked.append((self.local_dir, self.uri, required))
                warnings.warn(
                    f"this run was not (fully) tracked in MLflow at {self.uri}; its model, metrics, forecasts "
                    f"and figures are in {self.local_dir}; push them later with: ssmcast sync {self.local_dir}",
                    TrackingWarning,
                    stacklevel=2,
                )
            self.finished = True
            _STATE.local_dir = None
            _STATE.on_failure = None
            _STATE.failed_runs.discard(self.run_id)


def _now_ms() -> int:
    import time

    return int(time.time() * 1000)


class MultirunParentRun(Callback):
    """Hydra callback: a ``--multirun`` sweep is one MLflow parent run, each job a child run of it."""

    def __init__(self):
        self.run_id: str | None = None
        self.uri: str | None = None

    def on_multirun_start(self, config, **kwargs) -> None:
        _RUNS.sweep_failures.clear()
        self._start_parent(config)

    def _start_parent(self, config) -> None:
        settings = config.get("tracking") or {}
        if not settings.get("enabled", True):
            return
        self.uri = tracking_uri(settings.get("uri"))
        problem = server_problem(self.uri, float(settings.get("health_timeout_s", 5)))
        if problem is not None:
            warnings.warn(f"MLflow at {self.uri} is unreachable ({problem}): the sweep has no parent run",
                          TrackingWarning, stacklevel=2)
            return
        try:
            from mlflow import MlflowClient

            experiment_id = prepare_store(self.uri, settings.get("experiment") or "ssmcast")  # first: it may migrate
            client = MlflowClient(self.uri)
            overrides = " ".join(config.hydra.overrides.task)
            run = client.create_run(
                experiment_id,
                run_name=f"sweep-{config.get('command', 'train')}",
                tags={"ssmcast.sweep": "parent", "ssmcast.overrides": overrides[:5000], "git_commit": git_commit()},
            )
            self.run_id = run.info.run_id
            os.environ[PARENT_ENV] = self.run_id
        except Exception as err:  # noqa: BLE001
            warnings.warn(f"MLflow at {self.uri} failed to create the sweep's parent run ({err})",
                          TrackingWarning, stacklevel=2)

    def on_multirun_end(self, config, **kwargs) -> None:
        os.environ.pop(PARENT_ENV, None)
        if self.run_id is None:
            return
        try:
            from mlflow import MlflowClient

            MlflowClient(self.uri).set_terminated(self.run_id, "FAILED" if _RUNS.sweep_failures else "FINISHED")
        except Exception as err:  # noqa: BLE001
            warnings.warn(f"could not close the sweep's parent run {self.run_id} ({err})", TrackingWarning,
                          stacklevel=2)


def record_sweep_failure(cfg, job: int, error: BaseException, local_dir: str | Path) -> None:
    """A ``--multirun`` job failed: remember it for the sweep's summary and parent run, and make sure it has a
    FAILED child run carrying the error (the job's own, or a new one when it failed before starting it)."""
    text = f"{type(error).__name__}: {error}"
    _RUNS.sweep_failures.append((job, text))
    if _RUNS.job_tracked:  # the job's RunTracker already ended its run as FAILED, with the error
        return
    from omegaconf import OmegaConf

    settings = OmegaConf.to_container(cfg.tracking, resolve=True) if cfg.get("tracking") is not None else {}
    tracker = RunTracker(settings, local_dir, f"{cfg.get('command', 'train')}-job{job}-failed",
                         {"ssmcast.command": cfg.get("command", "train"), "git_commit": git_commit()},
                         parent_run_id=os.environ.get(PARENT_ENV))  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TrackingWarning)  # the job's own failure is what the user must see
        tracker.start().finish(failed=True, error=error)


def sweep_failures() -> list[tuple[int, str]]:
    """``(job number, error)`` of the failed jobs of the last ``--multirun`` in this process."""
    return list(_RUNS.sweep_failures)


# ------------------------------------------------------------------------------------------ pyfunc model


