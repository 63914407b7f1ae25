"""The jobs behind ``ssmcast train`` and ``ssmcast compare``, driven by a composed Hydra config (``conf/``).

``train``: fit ``model`` (and the ``baselines``) on the training part, forecast the test part, score,
write forecasts / metrics / figures / models to the run directory and log them to MLflow.
Test part: the last ``horizon`` steps of every series (``data.protocol: holdout``), or every test window
of the long-horizon benchmark split (``data.protocol: ltsf``, :func:`ssmcast.evaluation.evaluate_ltsf`).

``compare``: backtest every model of ``models`` over the last ``n_windows`` windows and rank them.
"""

from __future__ import annotations

import contextlib
import contextvars
import copy
import hashlib
import json
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ssmcast.training.ranks import RANK_VARIABLES as _RANK_VARIABLES  # noqa: F401 - (tests read it here)
from ssmcast.training.ranks import is_worker as _is_worker

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
QUICK_ROWS = 400
QUICK_TRAINER = {"limit_train_batches": 4, "limit_val_batches": 2}


class JobError(ValueError):
    """A problem with the configuration or the data of a job (reported without a traceback)."""


# the backend the classical baselines get while a job runs against a cluster (+cluster.address=tcp://...)
_CLUSTER_BACKEND: contextvars.ContextVar[str | None] = contextvars.ContextVar("ssmcast_cluster_backend", default=None)


@contextlib.contextmanager
def cluster(cfg):
    """With ``cluster.address`` set (``+cluster.address=tcp://scheduler:8786``): a ``dask.distributed`` client
    connected to it for the job's duration, and every model built meanwhile that has a ``backend`` parameter (the
    classical baselines) gets ``backend="dask"``. Without it: nothing (local processes, ``n_jobs``)."""
    address = (cfg.get("cluster") or {}).get("address")
    if not address:
        yield None
        return
    try:
        from distributed import Client
    except ImportError:
        raise JobError("cluster.address needs dask.distributed: pip install 'ssmcast[dask]'") from None
    timeout = float((cfg.get("cluster") or {}).get("timeout_s", 30))
    try:
        client = Client(str(address), timeout=timeout, set_as_default=True)
    except (OSError, TimeoutError) as err:
        raise JobError(f"cluster.address={address!r}: cannot reach the Dask scheduler ({type(err).__name__}: "
                       f"{err}); start one with `dask scheduler` and workers with `dask worker {address}`") from None
    token = _CLUSTER_BACKEND.set("dask")
    try:
        with client:
            yield client
    finally:
        _CLUSTER_BACKEND.reset(token)


# ------------------------------------------------------------------------------------------------ data


def load_data(data: dict) -> tuple[pd.DataFrame, str]:
    """The validated long frame of the ``data`` config and its name (gaps/NaN handled by ``data.fill``)."""
    from ssmcast.data import to_long, validate

    if data.get("source", "dataset") == "file":
        path = data.get("path")
        if not path:
            raise JobError("data.path is required with data=csv / data=parquet")
        path = Path(str(path)).expanduser()
        if not path.is_file():
            raise JobError(f"data.path={str(path)!r}: no such file")
        reader = pd.read_parquet if data.get("format") == "parquet" else pd.read_csv
        raw = reader(path)
        time_col, target_col, id_col = data.get("time_col", "ds"), data.get("target_col", "y"), data.get("id_col")
        missing = [c for c in (time_col, target_col if not data.get("wide") else None, id_col) if c and c not in raw]
        if missing:
            raise JobError(f"{path.name} has no column(s) {missing}; it has {list(raw.columns)} "
                           "(set data.time_col / data.target_col / data.id_col)")
        if data.get("wide"):
            frame = to_long(raw, time_col=time_col)
        else:
            if id_col is None:
                raw = raw.assign(_series=str(target_col))
                id_col = "_series"
            frame = to_long(raw[[id_col, time_col, target_col]], id_col=id_col, time_col=time_col,
                            target_col=target_col)
        name = data.get("name") or path.stem
    else:
        from ssmcast.datasets import load_dataset

        name = str(data["name"])
        frame = load_dataset(name, data_dir=data.get("data_dir"))
    channels = data.get("channels")
    if channels:
        channels = [str(c) for c in ([channels] if isinstance(channels, str) else channels)]
        unknown = sorted(set(channels) - set(frame["unique_id"]))
        if unknown:
            known = sorted(set(frame["unique_id"]))
            raise JobError(f"data.channels: unknown series {unknown[:5]}; {name} has {known[:10]}")
        frame = frame[frame["unique_id"].isin(channels)]
    return validate(frame, fill=data.get("fill")), name


def partitioned_data(data: dict):
    """``data.partitioned: true``: the Parquet dataset at ``data.path`` (a directory of files, each holding whole
    series) as a lazy Dask DataFrame in the long format; nothing is read but its schema."""
    from ssmcast.evaluation.partitioned import as_dask_frame

    if data.get("format") != "parquet" or data.get("wide"):
        raise JobError("data.partitioned=true reads a Parquet dataset in the long format (data=parquet, wide=false)")
    path = Path(str(data.get("path") or "")).expanduser()
    if not data.get("path") or not path.exists():
        raise JobError(f"data.path={str(data.get('path'))!r}: no such Parquet dataset")
    if data.get("channels") or data.get("fill"):
        raise JobError("data.channels and data.fill are not applied to a partitioned dataset: prepare it beforehand")
    ddf = as_dask_frame(path)
    time_col, target_col, id_col = data.get("time_col", "ds"), data.get("target_col", "y"), data.get("id_col")
    missing = [c for c in (id_col, time_col, target_col) if c and c not in ddf.columns]
    if id_col is None or missing:
        raise JobError(f"{path.name} needs its series, time and target columns (data.id_col, data.time_col, "
                       f"data.target_col){f'; it has no {missing}' if missing else ''}; it has {list(ddf.columns)}")
    ddf = ddf[[id_col, time_col, target_col]].rename(columns={id_col: "unique_id", time_col: "ds", target_col: "y"})
    return ddf, data.get("name") or path.stem


def _compare_partitioned(cfg, out: Path, resolved: dict, estimators: dict, horizon: int) -> float | None:
    """``compare`` on a partitioned Parquet dataset: each partition evaluated where it lives (on the cluster of
    ``+cluster.address``, else dask's local scheduler); the leaderboard from the gathered per-series scores."""
    from ssmcast.evaluation import compare

    ddf, data_name = partitioned_data(resolved["data"])
    metrics = [str(m) for m in cfg.metrics]
    season = cfg.data.get("season_length")
    if season is None and any(m in ("mase", "owa") for m in metrics):
        raise JobError("data.season_length is needed for mase/owa on a partitioned dataset (its frequency is not "
                       "inferred: the data stays where it is), e.g. data.season_length=24")
    tracker = _tracker(cfg, out, resolved, f"compare-{data_name}", None, data_name,
                       {"dataset.partitions": ddf.npartitions})
    failed, error = True, None
    try:
        board = compare(estimators, ddf, horizon=horizon, n_windows=int(cfg.n_windows), metrics=metrics,
                        quantiles=cfg.get("quantiles"), season_length=None if season is None else int(season))
        objective = _report_board(board, board.metrics, out, tracker, f"{data_name} ({ddf.npartitions} partitions): "
                                  f"backtest over {cfg.n_windows} window(s) of horizon {horizon}")
        failed = False
        return objective
    except BaseException as err:
        error = err
        raise
    finally:
        tracker.finish(failed=failed, error=error)


def frame_checksum(frame: pd.DataFrame) -> str:
    """sha256 of the frame's content (ids, stamps, values): the data a run actually used."""
    return hashlib.sha256(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes()).hexdigest()


def holdout_split(frame: pd.DataFrame, horizon: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train = all but the last ``horizon`` rows of each series; test = those rows."""
    lengths = frame.groupby("unique_id", sort=False)["y"].transform("size")
    short = sorted(set(frame.loc[lengths <= horizon, "unique_id"]))
    if short:
        raise JobError(f"series {short[:5]} have at most horizon={horizon} rows: nothing left to train on")
    position = frame.groupby("unique_id", sort=False).cumcount()
    test = position >= lengths - horizon
    return frame[~test].reset_index(drop=True), frame[test].reset_index(drop=True)


def quick_data(frame: pd.DataFrame, cfg: dict) -> pd.DataFrame:
    """``quick=true``: the last rows of every series only (enough for one window plus the test part)."""
    keep = max(QUICK_ROWS, 2 * (int(cfg["input_size"]) + 2 * int(cfg["horizon"])))
    return frame.groupby("unique_id", sort=False).tail(keep).reset_index(drop=True)


# ------------------------------------------------------------------------------------------------ models


def model_config(name: str, cfg) -> dict:
    """The resolved ``model/<name>.yaml`` config in the context of ``cfg`` (its data, trainer, horizon...),
    merged with ``cfg.overrides.<name>``."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf import OmegaConf, open_dict

    try:
        if GlobalHydra.instance().is_initialized():  # inside the running app: its search path
            node = compose(overrides=[f"+model={name}"]).model
        else:
            with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
                node = compose(overrides=[f"+model={name}"]).model
    except HydraException as err:
        raise JobError(f"unknown model {name!r}: {err}") from None
    context = copy.deepcopy(cfg)
    with open_dict(context):
        context.model = node
        extra = (cfg.get("overrides") or {}).get(name)
        if extra:  # any constructor argument, listed in the yaml or not (as ++model.<arg> for train)
            OmegaConf.set_struct(node, False)
            context.model = OmegaConf.merge(node, extra)
    return OmegaConf.to_container(context.model, resolve=True)


def build_model(config: dict, quick: bool, check: bool = True):
    """Instantiate a model config; ``quick`` trims a neural model to one short epoch.

    ``check``: validate its arguments now, before any data is read (e.g. ``horizon=0`` or
    ``trainer.max_epochs=abc``: an error at once, not after loading). ``compare`` passes False: a model with bad
    arguments fails in its own leaderboard row there, and the others run. Either way the values ``quick``
    replaces are checked first, so that it never hides a bad one.
    """
    from ssmcast.config import build
    from ssmcast.forecasters.ensemble import EnsembleForecaster

    est = build(config)
    if _CLUSTER_BACKEND.get() and "backend" in est.get_params(deep=False):
        est.set_params(backend=_CLUSTER_BACKEND.get())
    validate = getattr(est, "_check_params", None)
    if check and callable(validate):
        validate()
    targets = [est]  # what quick trims: the model, or an ensemble's members
    if quick and isinstance(est, EnsembleForecaster):
        try:
            targets = list(est._templates().values())
        except ValueError:  # bad members: the ensemble's own checks report them (compare: in its row)
            pass
    for target in targets:
        if quick and "max_epochs" in target.get_params(deep=False):
            epochs = target.get_params(deep=False)["max_epochs"]
            if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
                raise JobError(f"max_epochs must be a positive integer; got {epochs!r} (quick=true would replace it)")
            kwargs = dict(target.get_params(deep=False).get("trainer_kwargs") or {})
            kwargs.update(QUICK_TRAINER)
            target.set_params(max_epochs=1, trainer_kwargs=kwargs)
    return est


def _choice(group: str, default: str) -> str:
    try:
        from hydra.core.hydra_config import HydraConfig

        return str(HydraConfig.get().runtime.choices.get(group) or default)
    except ValueError:  # not inside a Hydra app
        return default


def _command_line(command: str) -> str:
    """The shell command that reproduces the run (``ssmcast train experiment=ltsf_etth1_96 model=s4d ...``; a
    --multirun job's own values), for the MLflow UI; "" outside a Hydra app (``main_job``'s compose API)."""
    import shlex

    try:
        from hydra.core.hydra_config import HydraConfig

        task = list(HydraConfig.get().overrides.task)
    except ValueError:
        return ""
    return shlex.join(["ssmcast", command, *(word for word in task if not word.startswith("command="))])[:5000]


def _season(cfg, frame: pd.DataFrame) -> int:
    if cfg.data.get("season_length"):
        return int(cfg.data.season_length)
    from ssmcast.data import infer_freq
    from ssmcast.forecasting import season_length_from_freq

    return season_length_from_freq(infer_freq(frame))


# ------------------------------------------------------------------------------------------------ jobs


def run(cfg, output_dir: str | Path | None = None) -> float | None:
    """Run ``cfg.command`` (train / compare); returns the objective (the main model's test metric)."""
    from omegaconf import OmegaConf

    if output_dir is None:
        from hydra.core.hydra_config import HydraConfig

        output_dir = HydraConfig.get().runtime.output_dir
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    command = cfg.get("command", "train")
    if command not in ("train", "compare"):
        raise JobError(f"command={command!r}: use train or compare")
    resolved = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    (out / "config.yaml").write_text(OmegaConf.to_yaml(resolved))
    with cluster(cfg):
        return train(cfg, out, resolved) if command == "train" else compare_models(cfg, out, resolved)


def _tracker(cfg, out: Path, resolved: dict, run_name: str, frame: pd.DataFrame | None, data_name: str,
             data_tags: dict | None = None):
    """The run's tracker, started, with its tags (the data's checksum and size from ``frame``; a partitioned
    dataset, never collected, gives ``frame=None`` and its own ``data_tags``), parameters and config logged."""
    from ssmcast import __version__
    from ssmcast.tracking import PARENT_ENV, RunTracker, device_name, flatten, git_commit

    tags = {
        "ssmcast.command": cfg.command,
        "ssmcast.version": __version__,
        "git_commit": git_commit(),
        "dataset": data_name,
        **({} if frame is None else {"dataset.sha256": frame_checksum(frame), "dataset.rows": len(frame),
                                     "dataset.series": frame["unique_id"].nunique()}),
        **(data_tags or {}),
        "device": device_name(),
        "output_dir": str(out.resolve()),
        **({"ssmcast.command_line": line} if (line := _command_line(cfg.command)) else {}),
    }
    tracker = RunTracker(resolved["tracking"], out, run_name, tags, parent_run_id=os.environ.get(PARENT_ENV))
    tracker.start()
    tracker.log_params(flatten({k: v for k, v in resolved.items() if k != "tracking"}))
    tracker.log_artifact(out / "config.yaml")
    return tracker


def _check_horizon(cfg) -> int:
    horizon = cfg.horizon
    if isinstance(horizon, bool) or not isinstance(horizon, int) or horizon < 1:
        raise JobError(f"horizon must be a positive integer; got {horizon!r}")
    return horizon


def train(cfg, out: Path, resolved: dict) -> float | None:
    """Fit the model and baselines, evaluate on the test part, write and log everything."""
    if resolved["data"].get("partitioned"):
        raise JobError(
            "ssmcast train does not take data.partitioned=true (its hold-out evaluation, figures and baselines work "
            "on the panel in one process): `ssmcast compare` evaluates a partitioned dataset with the per-series "
            "models, and a neural forecaster trains from it in Python, est.fit(path), each rank reading its own files "
            "under torchrun/srun (docs/guide/gpu.md)"
        )
    horizon, metrics = _check_horizon(cfg), [str(m) for m in cfg.metrics]
    model_name = _choice("model", "model")
    models = {model_name: build_model(resolved["model"], cfg.get("quick", False))}
    for name in cfg.get("baselines") or []:
        if name in models:
            raise JobError(f"baselines: {name!r} is also the model")
        models[name] = build_model(model_config(name, cfg), cfg.get("quick", False))
    explain = _check_explain(cfg, models[model_name], model_name)
    frame, data_name = load_data(resolved["data"])  # after every argument is checked: loading can take a while
    if cfg.get("quick"):
        frame = quick_data(frame, resolved)
    ltsf = resolved["data"].get("protocol") == "ltsf"
    if _is_worker():  # DDP rank > 0: take part in the fit, nothing else
        _evaluate(models[model_name], model_name, frame, cfg, resolved, ltsf, None)
        return None

    tracker = _tracker(cfg, out, resolved, f"train-{model_name}-{data_name}", frame, data_name)
    failed, error = True, None
    try:
        results = {}
        benchmark = _naive2_holdout(frame, cfg) if "owa" in metrics and not ltsf else None
        for name, est in models.items():
            results[name] = _evaluate(est, name, frame, cfg, resolved, ltsf, None if name == model_name else name,
                                      benchmark)
        table = pd.DataFrame([{"model": n, **r["metrics"], "fit_time_s": r["fit_time_s"]} for n, r in results.items()])
        key = "mse" if ltsf else metrics[0]
        table = table.sort_values(key, kind="stable").reset_index(drop=True)
        table.to_csv(out / "leaderboard.csv", index=False)
        forecasts = pd.concat([r["forecast"].assign(model=n) for n, r in results.items()], ignore_index=True)
        forecasts.to_csv(out / "forecasts.csv", index=False)
        summary = {n: {**r["metrics"], "fit_time_s": r["fit_time_s"]} for n, r in results.items()}
        (out / "metrics.json").write_text(json.dumps(summary, indent=2))
        figures = _train_figures(results, out, table)

        for name, r in results.items():
            prefix = "test_" if name == model_name else f"{name}/test_"
            tracker.log_metrics({f"{prefix}{k}": v for k, v in r["metrics"].items()})
            tracker.log_metrics({f"{prefix.replace('test_', '')}fit_time_s": r["fit_time_s"]})
            for metric, per_step in r.get("per_step", {}).items():
                for step, value in enumerate(per_step):
                    tracker.log_metrics({f"{prefix}{metric}_by_step": value}, step=step + 1)
        for path in [out / "leaderboard.csv", out / "forecasts.csv", out / "metrics.json", *figures]:
            tracker.log_artifact(path, "figures" if path.suffix == ".png" else None)
        for name, r in results.items():
            _save_model(r["estimator"], out / "models" / name)
            tracker.log_model(r["estimator"], r["history"], name="model" if name == model_name else name,
                              scaling=r.get("scaling"))
        if explain:  # after the models are saved: an explanation that fails costs nothing else
            for path in _explain_figures(results[model_name], out / "explain"):
                tracker.log_artifact(path, "explain")
        _print_table(f"{data_name}: test part, horizon {horizon}" + (" (normalised, long-horizon protocol)"
                                                                       if ltsf else ""), table, out, tracker)
        failed = False
        value = table.set_index("model").loc[model_name, cfg.get("objective") or key]
        return float(value) if np.isfinite(value) else None
    except BaseException as err:
        error = err
        raise
    finally:
        tracker.finish(failed=failed, error=error)


def _evaluate(est, name: str, frame: pd.DataFrame, cfg, resolved: dict, ltsf: bool, prefix: str | None,
              benchmark: pd.DataFrame | None = None) -> dict:
    from ssmcast.tracking import metric_prefix

    with metric_prefix(prefix or ""):
        if ltsf:
            return _evaluate_ltsf(est, cfg, resolved)
        return _evaluate_holdout(est, frame, cfg, benchmark)


def _naive2_holdout(frame: pd.DataFrame, cfg) -> pd.DataFrame:
    """Naive2's forecasts of the test part (fitted on the training part, as the M4 benchmark): what ``owa`` in
    ``train``'s metrics is relative to, computed once for the model and its baselines."""
    from ssmcast.baselines import Naive2Forecaster

    train_df, _ = holdout_split(frame, int(cfg.horizon))
    forecast = Naive2Forecaster(season_length=_season(cfg, frame)).fit(train_df).predict(h=int(cfg.horizon))
    return _with_cutoff(forecast, train_df)


def _with_cutoff(forecast: pd.DataFrame, train_df: pd.DataFrame) -> pd.DataFrame:
    """``forecast`` with a first ``cutoff`` column: each series' last training time stamp (what ``score`` groups
    the forecasts of one window by)."""
    forecast.insert(0, "cutoff", forecast["unique_id"].map(train_df.groupby("unique_id")["ds"].max()))
    return forecast


def _evaluate_holdout(est, frame: pd.DataFrame, cfg, benchmark: pd.DataFrame | None = None) -> dict:
    from ssmcast.evaluation import score

    horizon = int(cfg.horizon)
    train_df, test_df = holdout_split(frame, horizon)
    tic = time.perf_counter()
    est.fit(train_df)
    # the fit alone: a neural fit measures its training (not the wait for a tracking server after it)
    fit_time = getattr(est, "fit_time_s_", None) or time.perf_counter() - tic
    kwargs = {"h": horizon}
    if cfg.get("quantiles"):
        kwargs["quantiles"] = list(cfg.quantiles)
    forecast = est.predict(**kwargs)
    joined = _with_cutoff(test_df[["unique_id", "ds", "y"]].merge(forecast, on=["unique_id", "ds"], how="left"),
                          train_df)
    metrics = [str(m) for m in cfg.metrics]
    if "owa" in metrics and benchmark is None:
        metrics.remove("owa")  # a DDP worker rank scores nothing
    table = score(joined, metrics=metrics, train=train_df, season_length=_season(cfg, frame), benchmark=benchmark)
    overall = table.loc[table["unique_id"] == "__overall__"].iloc[0]
    values = {c: float(overall[c]) for c in table.columns if c != "unique_id"}
    return {"metrics": values, "fit_time_s": fit_time, "forecast": joined, "history": train_df,
            "estimator": est}


def _evaluate_ltsf(est, cfg, resolved: dict) -> dict:
    from ssmcast.datasets import ltsf_split
    from ssmcast.evaluation import evaluate_ltsf

    data = resolved["data"]
    if data.get("source") != "dataset":
        raise JobError("data.protocol=ltsf needs a benchmark dataset (etth1, weather, ...); use holdout for files")
    horizon, input_size = int(cfg.horizon), int(cfg.input_size)
    quantiles = list(cfg.quantiles) if cfg.get("quantiles") else None
    result = evaluate_ltsf(est, data["name"], input_size=input_size, horizon=horizon,
                           data_dir=data.get("data_dir"), channels=data.get("channels"), quantiles=quantiles)
    fitted = result.estimator
    mean, std = result.settings["scaler_mean"], result.settings["scaler_std"]
    scaling = {ch: (mean[ch], std[ch]) for ch in result.channels}
    forecast, history = _last_test_window(fitted, data, result, input_size, horizon, ltsf_split(data["name"]))
    return {"metrics": {"mse": result.mse, "mae": result.mae, **result.probabilistic}, "fit_time_s": result.fit_time_s,
            "forecast": forecast, "history": history, "estimator": fitted, "scaling": scaling,
            "per_step": {"mse": result.mse_per_step, "mae": result.mae_per_step}}


def _last_test_window(est, data: dict, result, input_size: int, horizon: int, split):
    """Forecast of the last test window on the normalised scale (for the figure and the pyfunc example)."""
    from ssmcast.datasets import load_wide

    wide = load_wide(data["name"], data_dir=data.get("data_dir"))[result.channels]
    mean = pd.Series(result.settings["scaler_mean"])[result.channels]
    std = pd.Series(result.settings["scaler_std"])[result.channels]
    z = (wide - mean) / std
    end = split.test[1]
    context = z.iloc[end - horizon - input_size : end - horizon]
    actual = z.iloc[end - horizon : end]
    long = lambda w: w.rename_axis("ds").reset_index().melt("ds", var_name="unique_id", value_name="y")
    history = long(context)[["unique_id", "ds", "y"]]
    forecast = est.predict(h=horizon, df=history)
    joined = long(actual)[["unique_id", "ds", "y"]].merge(forecast, on=["unique_id", "ds"], how="left")
    joined.insert(0, "cutoff", context.index[-1])
    return joined, history


def _train_figures(results: dict, out: Path, table: pd.DataFrame) -> list[Path]:
    from ssmcast.evaluation import plot_forecasts, plot_metric_bars

    paths = []
    forecasts = {n: r["forecast"] for n, r in results.items()}
    history = pd.concat([next(iter(results.values()))["history"], *[f[["unique_id", "ds", "y"]] for f in
                                                                     list(forecasts.values())[:1]]])
    fig = plot_forecasts(forecasts, history.drop_duplicates(["unique_id", "ds"]), n_series=3)
    paths.append(out / "forecasts.png")
    fig.savefig(paths[-1], dpi=100)
    metric_cols = [c for c in table.columns if c not in ("model", "fit_time_s") and table[c].notna().all()]
    if metric_cols:
        paths.append(out / "metrics.png")
        plot_metric_bars(table, metrics=metric_cols).savefig(paths[-1], dpi=100)
    return paths


def _check_explain(cfg, est, name: str) -> bool:
    """``explain`` is a boolean, and true only for a neural model (checked before any data is read)."""
    explain = cfg.get("explain", False)
    if not isinstance(explain, bool):
        raise JobError(f"explain must be true or false; got {explain!r}")
    from ssmcast.forecasters import NeuralForecaster

    if explain and not isinstance(est, NeuralForecaster):
        raise JobError(f"explain=true explains a neural forecaster (its kernels or step sizes, the attribution of its "
                       f"forecast); model={name} is a {type(est).__name__}")  # fmt: skip
    return explain


def _explain_figures(result: dict, directory: Path) -> list[Path]:
    """``explain=true``: the model's kernels and their spectrum (S4, S4D, S5, Liquid-S4) or its step sizes (Mamba,
    Mamba-2, Jamba) over the last window of its history, and the attribution of its forecast from that window (the
    forecast of the test part) to the window's values, for its first series (:func:`ssmcast.explain.save_figures`)."""
    from ssmcast.explain import save_figures

    return save_figures(result["estimator"], directory, df=result["history"])


def _save_model(est, directory: Path) -> None:
    from ssmcast.config import save_config

    if callable(getattr(est, "save", None)):
        est.save(directory)
    else:
        save_config(est, directory / "config.yaml")


def _print_table(title: str, table: pd.DataFrame, out: Path, tracker) -> None:
    shown = table.drop(columns=[c for c in ("error", "n_fits", "predict_time_s") if c in table.columns])
    text = shown.to_string(index=False, float_format=lambda v: f"{v:.4g}")
    print(f"\n{title}\n{text}")
    where = f"MLflow run {tracker.run_id} at {tracker.uri}" if tracker.active else "not tracked"
    print(f"outputs: {out.resolve()}  ({where})")


def _report_board(board, columns: list[str], out: Path, tracker, title: str) -> float | None:
    """Save, log and print a leaderboard (either compare path); refuse it when every model failed. Returns the
    objective: the best model's first metric (None without one)."""
    paths = board.save(out)
    failed_models = board.table.loc[board.table["error"].astype(bool), ["model", "error"]]
    for _, row in board.table.iterrows():
        tracker.log_metrics({f"{row['model']}/{c}": row[c] for c in [*columns, "fit_time_s", "predict_time_s"]
                             if c in row and isinstance(row[c], (int, float)) and math.isfinite(row[c])})
    if len(board.table) and columns and board.table[columns[0]].notna().any():
        best = board.table.iloc[0]
        tracker.log_metrics({f"best_{columns[0]}": best[columns[0]]})
        tracker.set_tags({"best_model": best["model"]})
    for path in paths:
        tracker.log_artifact(path, "figures" if path.suffix == ".png" else None)
    _print_table(title, board.table, out, tracker)
    for _, row in failed_models.iterrows():
        print(f"  {row['model']} failed: {row['error']}")
    if len(failed_models) == len(board.table):
        raise JobError(f"every model failed ({', '.join(failed_models['model'])}); the leaderboard with "
                       f"their errors is in {out}")
    if not columns or board.table[columns[0]].isna().all():
        return None
    return float(board.table[columns[0]].iloc[0])


def compare_models(cfg, out: Path, resolved: dict) -> float | None:
    """Backtest every model of ``cfg.models`` on the same windows; leaderboard, figures, MLflow."""
    from ssmcast.evaluation import Leaderboard, compare, naive2_forecasts
    from ssmcast.tracking import metric_prefix

    names = [str(m) for m in (cfg.get("models") or [])]
    if not names:
        raise JobError("models is empty: e.g. models=[mamba,ets]")
    if len(set(names)) != len(names):
        raise JobError(f"models lists a model twice: {names}")
    horizon = _check_horizon(cfg)
    estimators = {name: build_model(model_config(name, cfg), cfg.get("quick", False), check=False) for name in names}
    if resolved["data"].get("partitioned"):
        return _compare_partitioned(cfg, out, resolved, estimators, horizon)
    frame, data_name = load_data(resolved["data"])
    if cfg.get("quick"):
        frame = quick_data(frame, resolved)
    tracker = _tracker(cfg, out, resolved, f"compare-{data_name}", frame, data_name)
    failed, error = True, None
    try:
        metrics = [str(m) for m in cfg.metrics]
        season = _season(cfg, frame)
        benchmark = None  # owa: Naive2 on the same windows, computed once for every model
        if "owa" in metrics:
            benchmark = naive2_forecasts(frame, horizon, n_windows=int(cfg.n_windows), season_length=season)
        boards = []
        for name, est in estimators.items():  # one at a time: per-epoch metrics are prefixed per model
            with metric_prefix(name):
                boards.append(compare({name: est}, frame, horizon=horizon, n_windows=int(cfg.n_windows),
                                      metrics=metrics, quantiles=cfg.get("quantiles"), season_length=season,
                                      benchmark=benchmark))
        columns = list(dict.fromkeys(c for b in boards for c in b.metrics))
        table = pd.concat([b.table for b in boards], ignore_index=True)
        order = [c for c in ["model", *columns, "fit_time_s", "predict_time_s", "n_fits", "error"] if c in table]
        table = table[order].sort_values(columns[0], kind="stable", na_position="last") if columns else table
        board = Leaderboard(table.reset_index(drop=True), {k: v for b in boards for k, v in b.forecasts.items()},
                            {k: v for b in boards for k, v in b.scores.items()}, frame, columns)
        objective = _report_board(board, columns, out, tracker,
                                  f"{data_name}: backtest over {cfg.n_windows} window(s) of horizon {horizon}")
        failed = False
        return objective
    except BaseException as err:
        error = err
        raise
    finally:
        tracker.finish(failed=failed, error=error)


def main_job(**overrides: Any) -> float | None:
    """Run the default ``train`` job from Python (compose API; ``overrides`` as ``key=value`` pairs)."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=[f"{k}={v}" for k, v in overrides.items()])
    return run(cfg, output_dir=Path("outputs") / "main_job" / time.strftime("%Y-%m-%d_%H-%M-%S"))
