"""Fitted forecasters as MLflow pyfunc models: logged, saved locally, loaded (safely or through MLflow).

Security: MLflow's models-from-code design means ``mlflow.pyfunc.load_model`` *runs* the model's stored
``ssmcast_pyfunc.py``, so a tampered model folder runs its code. Load models from stores you trust that way; for
anything else use :func:`load_logged_model`, which downloads only the weights-only folder ``est.save`` wrote
(``<model>/artifacts/model``) and reads it with :func:`ssmcast.load` (JSON and ``torch.load(weights_only=True)``):
no code from the store runs.
"""

from __future__ import annotations

import json
import logging
import tempfile
import warnings
from contextlib import contextmanager
from pathlib import Path

import pandas as pd  # module level: MLflow resolves the ``pd.DataFrame`` hints of ForecasterModel.predict

__all__ = ["log_forecaster", "save_forecaster", "log_saved_model", "load_logged_model"]


_MODEL_CLASS = None


def _forecaster_model_class():
    global _MODEL_CLASS
    if _MODEL_CLASS is not None:
        return _MODEL_CLASS
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

    ForecasterModel.__module__ = "ssmcast.tracking"  # what stored models import
    ForecasterModel.__qualname__ = "ForecasterModel"
    _MODEL_CLASS = ForecasterModel
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


CODE_FILE = "ssmcast_pyfunc.py"  # the model-from-code entry point stored beside the artifacts


@contextmanager
def _quiet_example_fits():
    """Warnings filter for the pyfunc's own predictions of its input example (the signature, MLflow's check of
    the serving example): a classical baseline refits on those few rows, and its fallback notes are noise there
    (they were shown when the model itself was fitted)."""
    from ssmcast.baselines._base import FallbackWarning

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FallbackWarning)
        yield


def save_forecaster(estimator, history, path, scaling: dict | None = None, horizon: int | None = None) -> Path:
    """Write a fitted forecaster as a complete MLflow pyfunc model folder at ``path`` (no tracking server needed);
    :func:`log_saved_model` logs such a folder into a run. See :func:`log_forecaster` for the arguments."""
    import mlflow
    from mlflow.models import infer_signature

    from ssmcast.config import save_config
    from ssmcast.data import to_long

    path = Path(path)
    if path.exists():
        raise ValueError(f"{path} exists: a pyfunc model is saved into a new folder")
    horizon = int(horizon or getattr(estimator, "horizon", None) or 1)
    frame = to_long(history)
    n_example = max(int(getattr(estimator, "input_size", 0) or 0), 2 * horizon, 8)
    if getattr(estimator, "channel_mode", None) == "mixed":  # one sample made of every series: all are needed
        example = frame.groupby("unique_id", sort=False).tail(n_example)
    else:
        example = frame[frame["unique_id"] == frame["unique_id"].iloc[0]].tail(n_example)
    example = example[["unique_id", "ds", "y"]].reset_index(drop=True)
    model_cls = _forecaster_model_class()
    with _quiet_example_fits(), tempfile.TemporaryDirectory(prefix="ssmcast-pyfunc-") as tmp:
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
        code = tmp / CODE_FILE  # the estimator itself lives in the artifacts
        code.write_text("import mlflow\n\nfrom ssmcast.tracking import ForecasterModel\n\n"
                        "mlflow.models.set_model(ForecasterModel())\n")
        with _quiet_pyfunc_logger():
            mlflow.pyfunc.save_model(
                path=str(path),
                python_model=str(code),  # models from code: loading imports ssmcast, unpickles nothing
                artifacts=artifacts,
                signature=signature,
                input_example=example,
                pip_requirements=_requirements(),
            )
    return path


class _quiet_pyfunc_logger:
    """mlflow.pyfunc's INFO lines would land in the job's output."""

    def __enter__(self):
        self.logger = logging.getLogger("mlflow.pyfunc")
        self.level = self.logger.level
        self.logger.setLevel(logging.WARNING)

    def __exit__(self, *exc):
        self.logger.setLevel(self.level)


def log_saved_model(path, name: str = "model"):
    """Log a pyfunc folder written by :func:`save_forecaster` into the active MLflow run; returns ``ModelInfo``."""
    import mlflow
    from mlflow.models import Model

    if mlflow.active_run() is None:
        raise ValueError("log_saved_model needs an active MLflow run (with mlflow.start_run(): ...)")
    path = Path(path)
    saved = Model.load(str(path))
    conf = saved.flavors["python_function"]
    artifacts = {key: str(path / value["path"]) for key, value in conf["artifacts"].items()}
    with _quiet_example_fits(), _quiet_pyfunc_logger():
        return mlflow.pyfunc.log_model(
            name=name,
            python_model=str(path / CODE_FILE),
            artifacts=artifacts,
            signature=saved.signature,
            input_example=saved.load_input_example(str(path)),
            pip_requirements=str(path / "requirements.txt"),
        )


def log_forecaster(estimator, history, name: str = "model", scaling: dict | None = None, horizon: int | None = None):
    """Log a fitted forecaster to the active MLflow run as a pyfunc model; returns MLflow's ``ModelInfo``.

    ``history`` (a long frame the model was fitted on) provides the input example (the last rows of
    one series, or of every series for ``channel_mode="mixed"``) and the signature. ``scaling``
    ``{unique_id: (mean, std)}``: the model was fitted on ``(y - mean) / std``; the pyfunc applies it to its
    input and inverts it on the forecasts.
    """
    import mlflow

    if mlflow.active_run() is None:
        raise ValueError("log_forecaster needs an active MLflow run (with mlflow.start_run(): ...)")
    with tempfile.TemporaryDirectory(prefix="ssmcast-pyfunc-") as tmp:
        saved = save_forecaster(estimator, history, Path(tmp) / name, scaling=scaling, horizon=horizon)
        return log_saved_model(saved, name)


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
        previous = mlflow.get_tracking_uri()
        if tracking_uri is not None:  # runs:/ and models:/ URIs resolve through the process's tracking URI
            mlflow.set_tracking_uri(tracking_uri)
        try:
            root = model_uri.rstrip("/")
            if root.startswith("models:/"):  # a logged or registered model: its storage location
                root = ModelsArtifactRepository.get_underlying_uri(root).rstrip("/")
            path = mlflow.artifacts.download_artifacts(root + "/artifacts/model", dst_path=tmp,
                                                       tracking_uri=tracking_uri)  # fmt: skip
        except Exception as err:  # MLflow raises its own exception types for a missing path
            raise ValueError(f"{model_uri} has no weights-only model folder (artifacts/model): was it logged by "
                             f"log_forecaster from a neural forecaster? ({type(err).__name__}: {err})") from None
        finally:
            mlflow.set_tracking_uri(previous)
        return load(path)
