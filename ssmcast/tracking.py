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

Tracking never stops a run: when the server is unreachable or fails midway, a :class:`TrackingWarning`
says so once and where the outputs are written locally, and the rest of the run goes on untracked.
mlflow, lightning and torch are imported only inside the functions that need them.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import subprocess
import tempfile
import urllib.error
import urllib.request
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd  # module level: MLflow resolves the ``pd.DataFrame`` hints of ForecasterModel.predict
from hydra.experimental.callback import Callback

__all__ = [
    "TrackingWarning",
    "tracking_uri",
    "server_problem",
    "active_run_logger",
    "metric_prefix",
    "RunTracker",
    "MultirunParentRun",
    "log_forecaster",
    "flatten",
    "git_commit",
    "device_name",
]

PARENT_ENV = "SSMCAST_MLFLOW_PARENT_RUN_ID"


class TrackingWarning(UserWarning):
    """MLflow tracking failed; the run continues and its outputs stay on the local disk."""


class _State:
    """Process-wide tracking context set by :class:`RunTracker` (the CLI) for the fits it runs."""

    def __init__(self):
        self.failed_runs: set[str] = set()
        self.local_dir: Path | None = None
        self.prefix = ""
        self.on_failure = None
        self.job_tracked = False  # a RunTracker started in the current job (reset by the CLI per job)
        self.sweep_failures: list[tuple[int, str]] = []  # (job number, error) of a --multirun's failed jobs


_STATE = _State()


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


_LOGGER_CLASS = None


def _logger_class():
    """An ``MLFlowLogger`` that logs into a run it does not own: errors warn instead of failing the fit,
    and ``finalize`` leaves the run open (its owner ends it)."""
    global _LOGGER_CLASS
    if _LOGGER_CLASS is not None:
        return _LOGGER_CLASS
    from lightning.pytorch.loggers import MLFlowLogger

    class ActiveRunMLFlowLogger(MLFlowLogger):
        def _guard(self, what: str, fn, *args, **kwargs):
            if self._run_id in _STATE.failed_runs:
                return None
            try:
                return fn(*args, **kwargs)
            except Exception as err:  # noqa: BLE001 - tracking must not stop training
                _fail(self._run_id, err, what)
                return None

        def log_metrics(self, metrics, step=None):
            self._guard("logging epoch metrics", super().log_metrics, metrics, step)

        def log_hyperparams(self, params):
            self._guard("logging hyper-parameters", super().log_hyperparams, params)

        def after_save_checkpoint(self, checkpoint_callback):
            return None

        def finalize(self, status: str = "success") -> None:
            return None

    ActiveRunMLFlowLogger.__module__ = __name__
    _LOGGER_CLASS = ActiveRunMLFlowLogger
    return _LOGGER_CLASS


def active_run_logger():
    """Lightning logger(s) for the current tracking context, or None.

    With an active MLflow run (``mlflow.active_run()``): an ``MLFlowLogger`` bound to that run and its
    tracking URI (per-epoch ``train_loss``/``val_loss``). Under the CLI also a ``CSVLogger`` into the run
    directory, so the epoch metrics survive a tracking server that goes away. Outside both: None.
    """
    import sys

    loggers = []
    if "mlflow" in sys.modules:  # without mlflow imported there cannot be an active run
        import mlflow

        run = mlflow.active_run()
        if run is not None and run.info.run_id not in _STATE.failed_runs:
            loggers.append(
                _logger_class()(
                    run_id=run.info.run_id,
                    tracking_uri=mlflow.get_tracking_uri(),
                    prefix=_STATE.prefix,
                )
            )
    if _STATE.local_dir is not None:
        from lightning.pytorch.loggers import CSVLogger

        name = f"epochs/{_STATE.prefix}" if _STATE.prefix else "epochs"
        loggers.append(CSVLogger(save_dir=str(_STATE.local_dir), name=name, version=""))
    if not loggers:
        return None
    return loggers[0] if len(loggers) == 1 else loggers


# ------------------------------------------------------------------------------------------ run metadata


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
    """One MLflow run of the CLI, robust to the tracking server: every call is guarded.

    ``settings`` is the ``tracking`` config (enabled, uri, experiment, run_name, log_model,
    health_timeout_s). ``local_dir`` holds every output anyway; failures say so in a TrackingWarning.
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

    @property
    def active(self) -> bool:
        return self.run_id is not None and not self.finished and self.run_id not in _STATE.failed_runs

    def start(self) -> RunTracker:
        _STATE.local_dir = self.local_dir
        _STATE.on_failure = self.problems.append
        _STATE.job_tracked = True
        if not self.settings.get("enabled", True):
            return self
        problem = server_problem(self.uri, float(self.settings.get("health_timeout_s", 5)))
        if problem is not None:
            _fail(None, f"{self.uri} is unreachable: {problem}", "starting the run")
            _STATE.failed_runs.discard(None)
            return self
        try:
            import mlflow

            mlflow.set_tracking_uri(self.uri)
            mlflow.set_experiment(experiment_id=prepare_store(self.uri, self.settings.get("experiment") or "ssmcast"))
            tags = dict(self.tags)
            if self.parent_run_id:
                tags["mlflow.parentRunId"] = self.parent_run_id
            run = mlflow.start_run(run_name=self.run_name, tags={k: str(v) for k, v in tags.items()})
            self.run_id = run.info.run_id
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
        self._mlflow("logging parameters", "log_params", {k: str(v)[:6000] for k, v in params.items()})

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        import math

        clean = {k: float(v) for k, v in metrics.items() if v is not None and math.isfinite(float(v))}
        self._mlflow("logging metrics", "log_metrics", clean, step=step)

    def set_tags(self, tags: dict[str, Any]) -> None:
        self._mlflow("setting tags", "set_tags", {k: str(v) for k, v in tags.items()})

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        self._mlflow(f"uploading {Path(path).name}", "log_artifact", str(path), artifact_path)

    def log_model(self, estimator, history, name: str = "model", scaling: dict | None = None) -> str | None:
        """The fitted estimator as a pyfunc model (see :func:`log_forecaster`); returns its model URI."""
        if not self.settings.get("log_model", True):
            return None
        info = self._call(f"logging the {name} model", log_forecaster, estimator, history, name=name,
                          scaling=scaling)
        return None if info is None else info.model_uri

    def finish(self, failed: bool = False, error: BaseException | None = None) -> None:
        """End the run (FINISHED, or FAILED when the job raised: ``error`` then goes into the run folder as
        ``error.txt`` and into the run as the tag ``ssmcast.error`` and that artifact) and restore the process
        state."""
        try:
            if error is not None:
                text = f"{type(error).__name__}: {error}"
                self.local_dir.mkdir(parents=True, exist_ok=True)
                (self.local_dir / "error.txt").write_text(text + "\n")
                self.set_tags({"ssmcast.error": text[:5000]})
                self.log_artifact(self.local_dir / "error.txt")
            if self.run_id is not None:
                import mlflow

                status = "FAILED" if failed else "FINISHED"
                if self.active:
                    self._call("ending the run", mlflow.end_run, status)
                else:  # the server went away: forget the run locally without calling it
                    mlflow.tracking.fluent._active_run_stack.get().clear()
        finally:
            if self.problems or (self.settings.get("enabled", True) and self.run_id is None):
                warnings.warn(
                    f"this run was not (fully) tracked in MLflow at {self.uri}; its model, metrics, forecasts "
                    f"and figures are in {self.local_dir}",
                    TrackingWarning,
                    stacklevel=2,
                )
            self.finished = True
            _STATE.local_dir = None
            _STATE.on_failure = None
            _STATE.failed_runs.discard(self.run_id)


class MultirunParentRun(Callback):
    """Hydra callback: a ``--multirun`` sweep is one MLflow parent run, each job a child run of it."""

    def __init__(self):
        self.run_id: str | None = None
        self.uri: str | None = None

    def on_multirun_start(self, config, **kwargs) -> None:
        _STATE.sweep_failures.clear()
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

            MlflowClient(self.uri).set_terminated(self.run_id, "FAILED" if _STATE.sweep_failures else "FINISHED")
        except Exception as err:  # noqa: BLE001
            warnings.warn(f"could not close the sweep's parent run {self.run_id} ({err})", TrackingWarning,
                          stacklevel=2)


def record_sweep_failure(cfg, job: int, error: BaseException, local_dir: str | Path) -> None:
    """A ``--multirun`` job failed: remember it for the sweep's summary and parent run, and make sure it has a
    FAILED child run carrying the error (the job's own, or a new one when it failed before starting it)."""
    text = f"{type(error).__name__}: {error}"
    _STATE.sweep_failures.append((job, text))
    if _STATE.job_tracked:  # the job's RunTracker already ended its run as FAILED, with the error
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
    return list(_STATE.sweep_failures)


# ------------------------------------------------------------------------------------------ pyfunc model


def _forecaster_model_class():
    import mlflow.pyfunc

    class ForecasterModel(mlflow.pyfunc.PythonModel):
        """MLflow pyfunc around an ssmcast forecaster: ``predict(history_df) -> forecast frame``.

        Artifacts: ``model`` (a directory written by ``est.save``) or ``config`` (the estimator's config,
        refitted on each history: the classical baselines), ``meta`` (horizon) and optionally ``scaling``
        (per-series mean/std the model was trained under, e.g. the long-horizon protocol's z-scores).
        """

        def load_context(self, context) -> None:
            artifacts = context.artifacts
            self.meta = json.loads(Path(artifacts["meta"]).read_text())
            self.scaling = json.loads(Path(artifacts["scaling"]).read_text()) if "scaling" in artifacts else None
            if "model" in artifacts:
                from ssmcast.forecasters import load

                self.estimator, self.refit = load(artifacts["model"]), False
            else:
                from ssmcast.config import build

                self.estimator, self.refit = build(artifacts["config"]), True

        def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
            from sklearn.base import clone

            from ssmcast.data import to_long

            params = params or {}
            h = int(params.get("h") or self.meta["horizon"])
            history = to_long(model_input)
            if self.scaling is not None:
                history = _scale(history, self.scaling, ["y"], inverse=False)
            if self.refit:
                forecast = clone(self.estimator).fit(history).predict(h=h)
            else:
                forecast = self.estimator.predict(h=h, df=history)
            if self.scaling is not None:
                columns = [c for c in forecast.columns if c.startswith("y_pred")]
                forecast = _scale(forecast, self.scaling, columns, inverse=True)
            return forecast

    ForecasterModel.__module__ = __name__
    ForecasterModel.__qualname__ = "ForecasterModel"
    return ForecasterModel


def _scale(frame, scaling: dict, columns: list[str], inverse: bool):
    frame = frame.copy()
    ids = frame["unique_id"].astype(str)
    unknown = sorted(set(ids) - set(scaling))
    if unknown:
        raise ValueError(f"series {unknown[:5]} have no scaling statistics; the model knows {sorted(scaling)[:5]}")
    mean = ids.map({k: v[0] for k, v in scaling.items()}).to_numpy(float)
    std = ids.map({k: v[1] for k, v in scaling.items()}).to_numpy(float)
    for col in columns:
        values = frame[col].to_numpy(float)
        frame[col] = values * std + mean if inverse else (values - mean) / std
    return frame


def __getattr__(name: str):
    if name == "ForecasterModel":  # built on first use so that importing this module stays light
        cls = _forecaster_model_class()
        globals()[name] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _requirements() -> list[str]:
    from importlib.metadata import PackageNotFoundError, version

    out = []
    for package in ("ssmcast", "mlflow", "torch", "lightning", "pandas", "numpy", "scikit-learn", "statsmodels",
                    "hydra-core"):
        try:
            out.append(f"{package}=={version(package).split('+')[0]}")
        except PackageNotFoundError:
            out.append(package)
    return out


def log_forecaster(estimator, history, name: str = "model", scaling: dict | None = None, horizon: int | None = None):
    """Log a fitted forecaster to the active MLflow run as a pyfunc model; returns MLflow's ``ModelInfo``.

    ``history`` (a long frame the model was fitted on) provides the input example (the last rows of
    one series, or of every series for ``channel_mode="mixed"``) and the signature. ``scaling``
    ``{unique_id: (mean, std)}``: the model was fitted on ``(y - mean) / std``; the pyfunc applies it to its
    input and inverts it on the forecasts.
    """
    import mlflow
    from mlflow.models import infer_signature

    from ssmcast.config import save_config
    from ssmcast.data import to_long

    if mlflow.active_run() is None:
        raise ValueError("log_forecaster needs an active MLflow run (with mlflow.start_run(): ...)")
    horizon = int(horizon or getattr(estimator, "horizon", None) or 1)
    frame = to_long(history)
    n_example = max(int(getattr(estimator, "input_size", 0) or 0), 2 * horizon, 8)
    if getattr(estimator, "channel_mode", None) == "mixed":  # one sample made of every series: all are needed
        example = frame.groupby("unique_id", sort=False).tail(n_example)
    else:
        example = frame[frame["unique_id"] == frame["unique_id"].iloc[0]].tail(n_example)
    example = example[["unique_id", "ds", "y"]].reset_index(drop=True)
    model_cls = _forecaster_model_class()
    with tempfile.TemporaryDirectory(prefix="ssmcast-pyfunc-") as tmp:
        tmp = Path(tmp)
        artifacts = {"meta": str(tmp / "meta.json")}
        (tmp / "meta.json").write_text(json.dumps({"horizon": horizon, "class": type(estimator).__name__}))
        if callable(getattr(estimator, "save", None)):
            estimator.save(tmp / "model")
            artifacts["model"] = str(tmp / "model")
        else:
            save_config(estimator, tmp / "config.yaml")
            artifacts["config"] = str(tmp / "config.yaml")
        if scaling is not None:
            (tmp / "scaling.json").write_text(json.dumps({str(k): [float(v[0]), float(v[1])]
                                                          for k, v in scaling.items()}))
            artifacts["scaling"] = str(tmp / "scaling.json")
        python_model = model_cls()
        python_model.load_context(type("Context", (), {"artifacts": artifacts})())
        output = python_model.predict(None, example, {"h": horizon})
        signature = infer_signature(example, output, params={"h": horizon})
        code = tmp / "ssmcast_pyfunc.py"  # the estimator itself lives in the artifacts
        code.write_text("import mlflow\n\nfrom ssmcast.tracking import ForecasterModel\n\n"
                        "mlflow.models.set_model(ForecasterModel())\n")
        pyfunc_logger = logging.getLogger("mlflow.pyfunc")  # its INFO lines would land in the job's output
        level = pyfunc_logger.level
        pyfunc_logger.setLevel(logging.WARNING)
        try:
            info = mlflow.pyfunc.log_model(
                name=name,
                python_model=str(code),  # models from code: loading imports ssmcast, unpickles nothing
                artifacts=artifacts,
                signature=signature,
                input_example=example,
                pip_requirements=_requirements(),
            )
        finally:
            pyfunc_logger.setLevel(level)
    return info


def load_logged_model(model_uri: str, tracking_uri: str | None = None):
    """The fitted forecaster of a model logged by :func:`log_forecaster`, loaded without running stored code.

    ``model_uri``: ``runs:/<run_id>/model``, ``models:/m-<id>`` or any URI MLflow resolves. Only the
    ``artifacts/model`` folder (written by ``est.save``) is downloaded and read by :func:`ssmcast.load`; the
    pyfunc's ``ssmcast_pyfunc.py`` is neither downloaded nor imported. Models without ``save`` (the classical
    baselines) have no such folder: a clear error says so.
    """
    import mlflow
    import mlflow.artifacts
    from mlflow.store.artifact.models_artifact_repo import ModelsArtifactRepository

    from ssmcast.forecasters.persistence import load

    with tempfile.TemporaryDirectory(prefix="ssmcast-logged-") as tmp:
        try:
            root = model_uri.rstrip("/")
            if root.startswith("models:/"):  # a logged or registered model: its storage location
                previous = mlflow.get_tracking_uri()
                if tracking_uri is not None:
                    mlflow.set_tracking_uri(tracking_uri)
                try:
                    root = ModelsArtifactRepository.get_underlying_uri(root).rstrip("/")
                finally:
                    mlflow.set_tracking_uri(previous)
            path = mlflow.artifacts.download_artifacts(root + "/artifacts/model", dst_path=tmp,
                                                       tracking_uri=tracking_uri)  # fmt: skip
        except Exception as err:  # MLflow raises its own exception types for a missing path
            raise ValueError(f"{model_uri} has no weights-only model folder (artifacts/model): was it logged by "
                             f"log_forecaster from a neural forecaster? ({type(err).__name__}: {err})") from None
        return load(path)
