"""The one base class behind every neural forecaster.

A forecaster class is its backbone config and nothing else (see ``neural.py``). :class:`NeuralForecaster` holds
the estimator (parameters, their checks), Lightning training and the batched direct and recursive forecasts;
it inherits its other jobs from one module each:

- ``preparation.py`` (:class:`DataPreparation`): frames validated, scaled per series (fitted on the training
  part), covariates and calendar features arranged, training/validation windows;
- ``streaming.py`` (:class:`Streaming`): ``update()`` and the recurrent state behind ``context="full"``;
- ``persistence.py`` (:class:`SavedModel`, :func:`load`): ``save``/``load`` without pickle.

Vocabulary: a *unit* is one training sample stream. With ``channel_mode="independent"`` each series is
a unit with one target channel; with ``"mixed"`` the whole panel is one unit whose channels are the
series (they must share their time stamps).
"""

from __future__ import annotations

import copy
import functools
import inspect
import math
import os
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from ssmcast.backbones.config import BackboneConfig
from ssmcast.data.frames import ID, TARGET, _bounds, future_timestamps, infer_freq, validate
from ssmcast.data.shards import ParquetShards
from ssmcast.data.windows import collate_windows
from ssmcast.forecasters.persistence import SavedModel, load
from ssmcast.forecasters.preparation import DataPreparation, _collector_paused, _ids_at
from ssmcast.forecasters.streaming import Streaming, StreamStates, _distinct
from ssmcast.forecasting import check_quantiles, forecast_frame

__all__ = ["NeuralForecaster", "load"]

CHANNEL_MODES = ("independent", "mixed")
CONTEXTS = ("window", "full")
SCALERS = ("standard", "robust", None)


class NeuralForecaster(DataPreparation, Streaming, SavedModel, BaseEstimator):
    """Global SSM forecaster over many series (base class; use ``S4Forecaster``, ``MambaForecaster``...).

    Parameters
    ----------
    input_size, horizon : context length fed to the model and number of steps it forecasts directly.
    backbone : the backbone config (e.g. ``MambaConfig(d_model=64)``); ``None`` uses the class default.
        Its fields are reachable as ``backbone__<field>`` through ``get_params``/``set_params``.
    max_epochs, batch_size, learning_rate, weight_decay, lr_schedule, gradient_clip_val,
    early_stopping_patience : training settings (AdamW with the backbone's parameter
        groups; early stopping and best-checkpoint restore on the validation loss). The patience is 5
        epochs: the validation loss of the early, high-learning-rate epochs is noisy, and a patience of 3
        stopped runs that the cosine decay would still have improved (S4 on ETTm1, H=96: MSE 0.371 -> 0.337).
        ``lr_schedule``: "cosine" (a short warm-up, then cosine decay over the fit), "onecycle", "halving" (the
        rate halved after each epoch, the long-horizon reference code's schedule) or None (constant).
    val_size : target steps per series held out (from the end of the training frame) for validation
        when ``fit`` gets no ``val_df``; 0 disables validation (and early stopping).
    loss : "huber" (default), "mse", "mae", "gaussian", "student_t"; with ``quantiles`` set the pinball loss
        is used and the model forecasts those quantiles (plus the median). The Huber loss (delta 1, in the
        units the network sees: one training standard deviation of the series with the default ``scaler``,
        data units with ``scaler=None``) is squared for small errors and linear for large ones; on the
        long-horizon benchmarks its test MSE is lower than or level with training on the MSE itself (S5 on
        ETTh1, H=720: 0.488 -> 0.482, S4D: 0.496 -> 0.479); on M4 Hourly it is slightly worse.
    channel_mode : "independent" (each series a sample) or "mixed" (the series are channels of one
        sample; all series must share their time stamps).
    scaler : per-series "standard" or "robust" scaling fitted on the training part, or None.
    revin : reversible instance normalisation of every input window (default; it copes with level shifts
        and trends, as in the long-horizon literature). ``update`` streams new rows in either way: with
        RevIN it appends them and forecasts from the last ``input_size`` observations (what
        ``predict(df=full_history)`` gives); with ``revin=False`` it advances each series' recurrent state
        over its whole history instead (what ``predict(df=full_history, context="full")`` gives).
        ``context="full"`` needs ``revin=False``: a window statistic is undefined over the whole history
        (the per-series ``scaler`` fitted at fit time then does the normalising). Window models (DLinear,
        PatchTST: backbone configs with ``recurrent = False``) keep no state: ``update`` always forecasts from
        the last ``input_size`` observations, and ``context="full"`` raises.
    linear_skip : add a linear map from the last ``input_size`` (normalised) target values straight to the
        forecast, shared over channels, as DLinear's (default). It carries the level and the recent shape
        of the series while the backbone learns the rest; on the long-horizon benchmarks it lowers the
        error markedly (S5 on ETTh1, H=96: MSE 0.399 -> 0.387). Streaming forecasts use the last
        ``input_size`` observations too (history shorter than that counts as zeros, the scaled mean).
    past_covariates, future_covariates, static_features : column names in the training frame; future
        covariates must also be given over the forecast horizon at predict time (``future_df``).
    calendar_features : add sin/cos calendar encodings of the time stamps as future-known covariates.
    window_step : stride between training windows.
    fill : missing-data policy passed to :func:`ssmcast.data.validate` (None raises on gaps/NaN).
    accelerator, precision ("auto": bf16 mixed precision on a GPU, float32 on CPU), seed, verbose,
    checkpoint_dir (enables checkpoints and ``fit(resume=True)``), trainer_kwargs (anything else for
    ``lightning.Trainer``, e.g. ``{"strategy": "ddp", "devices": 2}``).
    """

    backbone_config: type[BackboneConfig] = BackboneConfig
    #: constructor defaults a subclass changes (e.g. ``{"revin": False}``); its ``__init__`` signature carries
    #: them, so ``get_params``, ``clone``, configs and saved models see them
    param_defaults: dict[str, Any] = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("param_defaults"):
            cls.__init__ = _with_defaults(cls.__init__, cls.param_defaults)

    def __init__(
        self,
        input_size: int = 96,
        horizon: int = 96,
        backbone: BackboneConfig | None = None,
        max_epochs: int = 10,
        batch_size: int = 32,
        learning_rate: float = 1e-3,
        weight_decay: float = 0.01,
        lr_schedule: str | None = "cosine",
        gradient_clip_val: float | None = 1.0,
        early_stopping_patience: int | None = 5,
        val_size: int | None = None,
        loss: str = "huber",
        quantiles: list[float] | None = None,
        channel_mode: str = "independent",
        scaler: str | None = "standard",
        revin: bool = True,
        linear_skip: bool = True,
        past_covariates: list[str] | None = None,
        future_covariates: list[str] | None = None,
        static_features: list[str] | None = None,
        calendar_features: bool = False,
        window_step: int = 1,
        fill: str | None = None,
        accelerator: str = "auto",
        precision: str | None = "auto",
        seed: int | None = 0,
        verbose: bool = True,
        checkpoint_dir: str | None = None,
        trainer_kwargs: dict | None = None,
    ):
        self.input_size = input_size
        self.horizon = horizon
        self.backbone = backbone
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.lr_schedule = lr_schedule
        self.gradient_clip_val = gradient_clip_val
        self.early_stopping_patience = early_stopping_patience
        self.val_size = val_size
        self.loss = loss
        self.quantiles = quantiles
        self.channel_mode = channel_mode
        self.scaler = scaler
        self.revin = revin
        self.linear_skip = linear_skip
        self.past_covariates = past_covariates
        self.future_covariates = future_covariates
        self.static_features = static_features
        self.calendar_features = calendar_features
        self.window_step = window_step
        self.fill = fill
        self.accelerator = accelerator
        self.precision = precision
        self.seed = seed
        self.verbose = verbose
        self.checkpoint_dir = checkpoint_dir
        self.trainer_kwargs = trainer_kwargs

    # ------------------------------------------------------------------ sklearn plumbing
    def _backbone(self) -> BackboneConfig:
        return copy.deepcopy(self.backbone) if self.backbone is not None else self.backbone_config()

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        params = super().get_params(deep=deep)
        if deep and self.backbone is None:
            for key, value in self.backbone_config().get_params().items():
                params[f"backbone__{key}"] = value
        return params

    def set_params(self, **params):
        if self.backbone is None and any(k.startswith("backbone__") for k in params):
            self.backbone = self.backbone_config()
        return super().set_params(**params)

    # ------------------------------------------------------------------ validation
    def _check_params(self) -> None:
        for name in ("input_size", "horizon", "max_epochs", "batch_size", "window_step"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be a positive integer; got {value!r}")
        if self.channel_mode not in CHANNEL_MODES:
            raise ValueError(f"channel_mode must be one of {CHANNEL_MODES}; got {self.channel_mode!r}")
        if self.scaler not in SCALERS:
            raise ValueError(f"scaler must be one of {SCALERS}; got {self.scaler!r}")
        for name in ("revin", "linear_skip", "calendar_features"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise ValueError(f"{name} must be True or False; got {getattr(self, name)!r}")
        if not (isinstance(self.learning_rate, (int, float)) and self.learning_rate > 0):
            raise ValueError(f"learning_rate must be a positive number; got {self.learning_rate!r}")
        if self.backbone is not None and not isinstance(self.backbone, BackboneConfig):
            raise ValueError(
                f"backbone must be a backbone config such as {self.backbone_config.__name__}(...); "
                f"got {type(self.backbone).__name__}"
            )
        if self.channel_mode == "mixed" and (self.past_covariates or self.future_covariates or self.static_features):
            raise ValueError(
                "channel_mode='mixed' treats every series as a channel and takes no covariates; "
                "use channel_mode='independent' with past_covariates/future_covariates/static_features"
            )
        if self.val_size is not None and (not isinstance(self.val_size, (int, np.integer)) or self.val_size < 0):
            raise ValueError(f"val_size must be a non-negative integer or None; got {self.val_size!r}")
        from ssmcast.training.losses import ForecastLoss

        ForecastLoss("quantile" if self.quantiles else self.loss, check_quantiles(self.quantiles))

    # ------------------------------------------------------------------ fit
    def fit(self, df, val_df=None, resume: bool = False, ckpt_path: str | None = None):
        """Fit one global model over every series of ``df`` (long, wide or a Series; pandas, polars or pyarrow; or a
        partitioned Parquet dataset: its directory, or a :class:`ssmcast.data.shards.ParquetShards`).

        A Parquet dataset (long format, each file holding whole series) is read in one process as one frame: the
        same fit as on the files' rows put together. Under DDP started by ``torchrun`` or ``srun`` (the rank and
        world size come from their environment, before training starts) each rank reads only its own files
        (:func:`ssmcast.data.shards.assign_files`), fits its series' scalers and trains on its own windows
        (:mod:`ssmcast.training.sampling`: no second sharding; the ranks agree on the number of batches). After
        such a *sharded* fit every rank holds the per-series statistics of every series (``ids_``, ``loc_``,
        ``scale_``, ``static_values_``: gathered from the ranks at the end of the fit) and the histories of its
        own series only: ``predict()`` forecasts the rank's series, ``predict(df=...)`` any fitted series, and
        ``update()`` the rank's series. ``data_shard_`` records what the process read (rank, world size, files,
        series, rows). ``channel_mode="mixed"`` and ``val_df`` are not taken by a sharded fit.

        ``val_df`` (optional) continues each training series for validation (its windows may reach back
        into ``df`` for context); without it the last ``val_size`` steps of each series are held out.
        ``resume=True`` continues from the last checkpoint in ``checkpoint_dir``; ``ckpt_path`` from
        that checkpoint file.
        """
        import lightning as L
        import torch

        from ssmcast.training.loggers import flush_run
        from ssmcast.training.losses import ForecastLoss
        from ssmcast.training.module import ForecastModule, ForecastNet
        from ssmcast.training.sampling import EpochShuffleSampler, RankSampler, RankShuffleSampler, ShardSampler
        from ssmcast.training.trainer import ShardAgreement, build_trainer, quiet_lightning

        self._check_params()
        if resume and ckpt_path is None:
            if self.checkpoint_dir is None:
                raise ValueError("resume=True needs checkpoint_dir (where the interrupted fit saved last.ckpt)")
            last = Path(self.checkpoint_dir) / "last.ckpt"
            ckpt_path = str(last) if last.exists() else None
            if ckpt_path is None:
                warnings.warn(f"resume=True but no checkpoint in {self.checkpoint_dir}; training from scratch",
                              UserWarning, stacklevel=2)
        if ckpt_path is not None:
            _check_checkpoint(ckpt_path)
        for attr in [a for a in vars(self) if a.endswith("_") and not a.startswith("_")]:
            delattr(self, attr)
        self.freq_ = None
        shards, rank, world = None, 0, 1
        if isinstance(df, (str, os.PathLike, ParquetShards)):
            df, shards, rank, world = self._read_shard(df, val_df)  # (world > 1: this rank's files only)
        min_len = self.input_size + self.horizon
        frame = self._validate_frame(df, "the training frame", min_length=1)
        df = None  # (a frame read from Parquet is fit's own: the validated, sorted one is all that is kept of it)
        self.freq_ = frame.attrs.get("freq") or infer_freq(frame)  # validate inferred it (None: one row each)
        starts, lengths = _bounds(frame)  # validated: sorted by id, one block of rows a series (issue #36: the
        self.ids_ = _ids_at(frame, starts)  # panel's arrays, no groupby or map over every row's id)
        past, future, static = self._columns()

        held_out = 0
        if val_df is None:
            held_out = self.horizon if self.val_size is None else int(self.val_size)
            if held_out and (lengths < min_len + held_out).any():
                held_out = 0 if self.val_size is None else held_out  # default: validate only when possible
        short = lengths < min_len + held_out
        if short.all():
            raise ValueError(
                f"every series is shorter than input_size + horizon{' + val_size' if held_out else ''} = "
                f"{min_len + held_out} (longest has {lengths.max()} rows): lower input_size/horizon or give more data"
            )
        if short.any() and self.channel_mode == "mixed":
            raise ValueError(f"series {[self.ids_[i] for i in np.flatnonzero(short)[:5]]} are shorter than "
                             f"{min_len + held_out} rows")
        self._fit_scaler_panel(frame, lengths, lengths - held_out, [TARGET, *past, *future])
        self.static_values_ = {}
        if static:
            per_series = frame[static].groupby(np.repeat(np.arange(len(lengths)), lengths), sort=True)
            varying = [c for c in static if (per_series.nunique()[c] > 1).any()]
            if varying:
                raise ValueError(f"static_features {varying} vary within a series; they must be constant per series")
            table = per_series.first().to_numpy(np.float32)  # (n_series, S): row i is series ids_[i]
            self.static_values_ = dict(zip(self.ids_, table))

        panel = None
        if self.channel_mode == "independent":  # the whole panel at once: one float32 array, units are views of it
            units, X, offsets = self._panel_units(frame, (starts, lengths))
            panel = (X, offsets)
        else:
            units = self._unit_inputs(self._series_arrays(frame, self.ids_))
        self.n_targets_ = len(self.ids_) if self.channel_mode == "mixed" else 1
        self.n_inputs_ = units[0]["X"].shape[1]
        n_future = self.n_inputs_ - self._future_slice.start
        n_static = len(static)

        cut = [max(len(u["X"]) - held_out, 0) for u in units]
        # training targets end where the held-out part starts: the same windows as over the cut series, no copy
        train_set = self._windows(units, panel=panel, target_range=np.stack([np.zeros(len(cut), np.int64), cut], 1))
        val_set = None
        if val_df is not None:
            val_frame = self._validate_frame(val_df, "val_df")
            unknown = sorted(set(val_frame[ID]) - set(self.ids_))
            if unknown:
                raise ValueError(f"val_df has series not in the training frame: {unknown[:5]}")
            combined = pd.concat([frame, val_frame], ignore_index=True)
            full = self._unit_inputs(self._series_arrays(validate(combined, freq=self.freq_), self.ids_))
            val_set = self._windows(full, first_target=[len(u["X"]) for u in units])
        elif held_out:
            val_set = self._windows(units, first_target=cut, panel=panel)
        if len(train_set) == 0:
            raise ValueError("no training window fits: lower input_size/horizon/val_size or give longer series")
        if val_set is not None and len(val_set) == 0:
            val_set = None

        self.loss_fn_ = ForecastLoss("quantile" if self.quantiles else self.loss, check_quantiles(self.quantiles))
        if self.seed is not None:
            L.seed_everything(int(self.seed), workers=True, verbose=False)
        config = self._backbone()
        self.backbone_ = config
        net = ForecastNet.for_config(
            config, self.input_size, self.n_inputs_, self.n_targets_, self.horizon,
            self.loss_fn_.n_params, n_future=n_future, n_static=n_static, revin=self.revin,
            skip_window=self.input_size if self.linear_skip else None, n_location=self.loss_fn_.n_location,
        )
        module = ForecastModule(net, self.loss_fn_, self.learning_rate, self.weight_decay, self.lr_schedule)
        tmp = None
        if self.checkpoint_dir is None and val_set is not None:  # best-checkpoint restore needs somewhere to write
            tmp = tempfile.TemporaryDirectory(prefix="ssmcast-ckpt-")
        seed = int(self.seed) if self.seed is not None else 0
        if world > 1:  # a sharded fit: this rank's own windows, not sharded again (ssmcast.training.sampling)
            sampler = RankShuffleSampler(len(train_set), seed, rank)
            val_sampler = RankSampler(len(val_set)) if val_set is not None else None
        else:
            sampler = EpochShuffleSampler(len(train_set), seed=seed)
            val_sampler = ShardSampler(len(val_set)) if val_set is not None else None
        train_loader = torch.utils.data.DataLoader(
            train_set, batch_size=self.batch_size, sampler=sampler, collate_fn=collate_windows
        )
        val_loader = None
        if val_set is not None:
            val_loader = torch.utils.data.DataLoader(
                val_set, batch_size=max(self.batch_size, 256), sampler=val_sampler, collate_fn=collate_windows,
            )
        trainer_kwargs = self.trainer_kwargs
        agreement = None
        if shards is not None:  # the ranks check, once the process group exists, that they read consistent shares
            agreement = ShardAgreement(
                {"rank": rank, "world_size": world, "files": self.data_shard_["files"], "n_train": len(train_set),
                 "n_val": len(val_set) if val_set is not None else 0, "freq": self.freq_, "held_out": held_out,
                 "has_val": val_set is not None},
                sampler if world > 1 else None, val_sampler if world > 1 else None,
            )
            trainer_kwargs = dict(trainer_kwargs or {})
            trainer_kwargs["callbacks"] = [*trainer_kwargs.get("callbacks", []), agreement]
        logger = self._logger()
        start = time.perf_counter()
        try:
            with quiet_lightning(self.verbose), warnings.catch_warnings():
                if self.accelerator == "cpu":  # an explicit choice: Lightning's "GPU available" hint is noise
                    warnings.filterwarnings("ignore", message="GPU available but not used")
                trainer, checkpoint = build_trainer(
                    max_epochs=self.max_epochs, accelerator=self.accelerator, precision=self.precision,
                    verbose=self.verbose, checkpoint_dir=self.checkpoint_dir,
                    scratch_dir=tmp.name if tmp is not None else None, has_val=val_set is not None,
                    early_stopping_patience=self.early_stopping_patience,
                    gradient_clip_val=self.gradient_clip_val, logger=logger,
                    trainer_kwargs=trainer_kwargs,
                )
                warnings.filterwarnings("ignore", message=".*does not have many workers.*")
                warnings.filterwarnings("ignore", message="You defined a `validation_step` but have no `val_dataloader")
                warnings.filterwarnings("ignore", message=".*number of training batches.*is smaller than the logging")
                # lightning 2.6 calls torch's deprecated pytree LeafSpec internally
                warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")
                trainer.fit(module, train_loader, val_loader, ckpt_path=ckpt_path, weights_only=True)
            if checkpoint is not None and val_set is not None and checkpoint.best_model_path:
                best = torch.load(checkpoint.best_model_path, map_location="cpu", weights_only=True)
                module.load_state_dict(best["state_dict"])
            trainer.strategy.barrier()  # DDP: no rank removes the checkpoint folder while another reads it
        finally:
            if tmp is not None:
                tmp.cleanup()
        self.fit_time_s_ = time.perf_counter() - start
        if logger:  # the epoch metrics' uploads ran in the background: wait for them, bounded, outside fit_time_s_
            flush_run(logger)
        self.n_epochs_ = int(trainer.current_epoch)
        self.world_size_ = int(trainer.world_size)
        self.device_ = str(trainer.strategy.root_device)  # where it trained, e.g. "cpu" or "cuda:0"
        self.precision_ = str(trainer.precision)  # e.g. "32-true", "bf16-mixed"
        self.history_ = {i: u for i, u in enumerate(units)}
        self.net_ = net.cpu().eval()
        self.unit_of_ = {uid: i for i, u in enumerate(units) for uid in u["ids"]}
        self.stream_ = StreamStates()
        self.n_train_windows_ = len(train_set)
        if world > 1:
            self._gather_shards(agreement)
        return self

    def _gather_shards(self, agreement) -> None:
        """After a sharded fit: every rank's per-series statistics (small: a few numbers a series) gathered from
        the ranks while the process group still exists (Lightning destroys it only at the process's exit), in the
        order of the sorted ids, as an in-memory fit orders them; the histories stay the rank's own, keyed by their
        series' place in ``ids_`` (unit ``i`` is series ``ids_[i]``, as in any independent-mode fit)."""
        import torch

        parts = [None] * torch.distributed.get_world_size()
        torch.distributed.all_gather_object(parts, (self.ids_, self.loc_, self.scale_, self.static_values_))
        ids = [uid for part in parts for uid in part[0]]
        order = sorted(range(len(ids)), key=ids.__getitem__)
        self.ids_ = [ids[i] for i in order]
        self.loc_ = np.concatenate([part[1] for part in parts])[order]
        self.scale_ = np.concatenate([part[2] for part in parts])[order]
        self.static_values_ = {uid: values for part in parts for uid, values in part[3].items()}
        self.unit_of_ = {uid: i for i, uid in enumerate(self.ids_)}
        self.history_ = {self.unit_of_[u["ids"][0]]: u for u in self.history_.values()}
        self.n_train_windows_ = sum(g["n_train"] for g in agreement.gathered)

    @staticmethod
    def _logger():
        """MLflow logging when the caller has an active MLflow run (see ``ssmcast.training.loggers``), else none."""
        from ssmcast.training.loggers import active_run_logger

        return active_run_logger() or False

    # ------------------------------------------------------------------ prediction
    def _inference_device(self):
        """Where batched window forecasts run: a CUDA GPU when ``accelerator`` allows one ("auto", "gpu",
        "cuda") and this process sees one, else the CPU. Recurrent steps (``update``, ``context="full"``) and
        the fitted net at rest stay on the CPU."""
        import torch

        if self.accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device("cpu")

    def _predict_units(self, contexts, futures, statics, levels):
        """Batched forecasts in model scale: contexts ``(U, L, n_in)`` -> point ``(U, h, C)``, q ``(U, h, C, Q)``."""
        import torch

        device = self._inference_device()
        net = self.net_.to(device)  # in place; moved back below
        try:
            with torch.no_grad():
                x = torch.as_tensor(np.asarray(contexts), dtype=torch.float32)
                fut = torch.as_tensor(np.asarray(futures), dtype=torch.float32)
                sta = torch.as_tensor(np.asarray(statics), dtype=torch.float32)
                points, quants = [], []
                for lo in range(0, len(x), 1024):
                    chunk = slice(lo, lo + 1024)
                    xb, stats = net.normalize(x[chunk].to(device))
                    out = net(xb, fut[chunk].to(device), sta[chunk].to(device))
                    points.append(_denorm(self.loss_fn_.point(out), stats).cpu())
                    quants.append(_denorm(self.loss_fn_.quantiles(out, levels), stats).cpu())
                return torch.cat(points).numpy(), torch.cat(quants).numpy()
        finally:
            self.net_.cpu()

    def predict_windows(self, context: np.ndarray, quantiles=None):
        """Point forecasts for many windows at once, in the data's units (as ``predict(df=window)`` gives them).

        ``context`` ``(n_windows, input_size, n_channels)`` -> ``(n_windows, horizon, n_channels)``. Only for
        models without covariates. Channel ``j`` is the fitted series ``ids_[j]`` (the training series in order)
        and is scaled with that series' fitted scaler; a model fitted on one series (or with ``scaler=None``)
        takes any number of channels. With ``quantiles`` (levels, as ``predict`` takes them) it returns
        ``(point, q)``, ``q`` of shape ``(n_windows, horizon, n_channels, n_levels)`` (levels ascending).
        """
        check_is_fitted(self, "net_")
        levels = [] if quantiles is None else check_quantiles(quantiles)
        if levels:  # the levels this loss can give (the same check as predict's)
            self.loss_fn_.quantiles(next(self.net_.parameters()).new_zeros(1, 1, 1, self.loss_fn_.n_params), levels)
        past, future, static = self._columns()
        if past or future or static or self.calendar_features:
            raise ValueError("predict_windows takes target values only; this model uses covariates")
        context = np.asarray(context, dtype=np.float64)
        if context.ndim != 3 or context.shape[1] != self.input_size:
            raise ValueError(f"context must have shape (n_windows, {self.input_size}, n_channels); got {context.shape}")
        n, _, c = context.shape
        if self.channel_mode == "mixed":
            if c != len(self.ids_):
                raise ValueError(f"context has {c} channels; this model was fitted on {len(self.ids_)} series")
            loc, scale = self.loc_[:, 0], self.scale_[:, 0]
            x = (context - loc) / scale
            point, q = self._predict_units(x.astype(np.float32), np.zeros((n, self.horizon, 0)), np.zeros((n, 0)),
                                           levels)
            out = point * scale + loc
            self._check_finite_windows(out, x.transpose(0, 2, 1))
            if quantiles is None:
                return out
            q = q * scale[:, None] + loc[:, None]  # (n, h, c, Q)
            self._check_finite_windows(q.reshape(n, self.horizon, -1), x.transpose(0, 2, 1).repeat(len(levels), 1))
            return out, q
        if c == len(self.ids_):
            loc, scale = self.loc_[:, 0], self.scale_[:, 0]  # (c,): channel j is series ids_[j]
        elif len(self.ids_) == 1 or (np.all(self.loc_[:, 0] == 0) and np.all(self.scale_[:, 0] == 1)):
            loc, scale = np.full(c, self.loc_[0, 0]), np.full(c, self.scale_[0, 0])
        else:
            raise ValueError(f"context has {c} channels; this model was fitted on {len(self.ids_)} series with their "
                             f"own scalers: give one channel per fitted series, in the order of ids_")
        x = ((context - loc) / scale).transpose(0, 2, 1).reshape(n * c, self.input_size, 1)
        no_future, no_static = np.zeros((n * c, self.horizon, 0)), np.zeros((n * c, 0))
        point, q = self._predict_units(x.astype(np.float32), no_future, no_static, levels)
        out = point.reshape(n, c, self.horizon).transpose(0, 2, 1) * scale + loc
        self._check_finite_windows(out, x.reshape(n, c, self.input_size))
        if quantiles is None:
            return out
        q = q.reshape(n, c, self.horizon, len(levels)).transpose(0, 2, 1, 3) * scale[:, None] + loc[:, None]
        scaled = x.reshape(n, c, self.input_size).repeat(len(levels), 1)  # (n, c * Q, L), as q's columns below
        self._check_finite_windows(q.reshape(n, self.horizon, -1), scaled)
        return out, q

    @staticmethod
    def _check_finite_windows(out: np.ndarray, scaled: np.ndarray) -> None:
        """``predict_windows``' counterpart of :meth:`_check_finite`: name the windows and channels."""
        bad = ~np.isfinite(out).all(1)  # (n, c)
        if bad.any():
            w, ch = np.nonzero(bad)
            raise ValueError(
                f"the forecasts of {len(w)} window(s) are not finite (NaN or inf), e.g. window {w[0]}, channel "
                f"{ch[0]}: their inputs, scaled by the fitted scaling, reach "
                f"{float(np.nan_to_num(np.abs(scaled[w, ch]), nan=np.inf).max()):.3g}, beyond what the model's "
                "float32 arithmetic can carry. Check those values."
            )  # fmt: skip

    @_collector_paused
    def predict(self, h: int | None = None, df=None, quantiles=None, context: str = "window", future_df=None):
        """Forecast ``h`` steps (default ``horizon``) after each series' end.

        ``df``: forecast after the end of this history instead of the training data (no refit).
        ``quantiles``: levels to add as ``y_pred_q{q}`` columns (default: the fitted ``quantiles``; other
        levels need loss="gaussian"/"student_t"; ``[]`` for none).
        ``context="window"`` feeds the last ``input_size`` points, as in training; ``"full"`` runs the
        backbone over the whole history (in parallel, then keeps its recurrent state). ``h > horizon``
        rolls the model out recursively, feeding its point forecasts back (intervals then come from each
        block's own distribution and do not grow with the fed-back error; no past covariates allowed).
        ``future_df``: values of the future covariates over the forecast steps (long frame).
        """
        check_is_fitted(self, "net_")
        h = self.horizon if h is None else h
        if isinstance(h, bool) or not isinstance(h, (int, np.integer)) or h <= 0:
            raise ValueError(f"h must be a positive integer; got {h!r}")
        if context not in CONTEXTS:
            raise ValueError(f"context must be one of {CONTEXTS}; got {context!r}")
        if context == "full" and not getattr(self.backbone_, "recurrent", True):
            raise ValueError(f"context='full' needs a recurrent backbone; {type(self.backbone_).__name__} is a window "
                             f"model (it maps the last input_size={self.input_size} observations to the forecast and "
                             "keeps no state over the history): use context='window'")
        if context == "full" and self.revin:
            raise ValueError("context='full' is not defined with revin=True (RevIN normalises each window); "
                             "fit with revin=False to forecast from the recurrent state over the full history")
        levels = check_quantiles(self.quantiles if quantiles is None else quantiles)
        self.loss_fn_.quantiles(next(self.net_.parameters()).new_zeros(1, 1, 1, self.loss_fn_.n_params), levels)
        past, _, _ = self._columns()
        if h > self.horizon and past:
            raise ValueError(f"h={h} > horizon={self.horizon} needs a recursive roll-out, impossible with "
                             f"past_covariates {past} (their future values are unknown)")
        units = dict(self.history_) if df is None else self._history_units(df)
        states = None
        if context == "full":
            states = self._full_states(units, use_stream=df is None)
        else:
            short = [u["ids"] for u in units.values() if len(u["X"]) < self.input_size]
            if short:
                raise ValueError(f"history shorter than input_size={self.input_size} for series {short[:5]}")
        return self._forecast(units, states, h, levels, future_df)

    def _forecast(self, units, states, h, levels, future_df) -> pd.DataFrame:
        """Forecasts of every unit as arrays over the units (issue #36: no Python work per unit and block beyond
        gathering their last rows; the known-in-advance inputs computed once per distinct series end)."""
        keys = list(units)
        n_blocks = math.ceil(h / self.horizon)
        lasts = [units[k]["ds"][-1] for k in keys]
        distinct, ends = _distinct(lasts)  # ends (U,): each unit's distinct end
        after = self._stamps_after(distinct, n_blocks * self.horizon)
        future_rows = self._future_rows(future_df)
        calendar_cache: dict = {}
        if self._columns()[1]:  # future covariates: each unit's own values
            futures = np.stack([self._future_block(units[k], after[last], future_rows, h, calendar_cache)
                                for k, last in zip(keys, lasts)])
        else:  # calendar (or nothing): the same for every unit ending on the same stamp
            first: dict = {}
            for k, e in zip(keys, ends.tolist()):
                first.setdefault(e, k)
            per_end = np.stack([self._future_block(units[first[e]], after[last], {}, h, calendar_cache)
                                for e, last in enumerate(distinct)])
            futures = per_end[ends]  # (U, n_blocks * horizon, F)
        static = np.stack([units[k]["static"] for k in keys]).astype(np.float32)
        n_in = units[keys[0]]["X"].shape[1] if keys else self.n_inputs_
        X = np.zeros((len(keys), self.input_size, n_in), np.float32)  # the last input_size rows: all a block needs
        for j, k in enumerate(keys):  # (zero-padded in front when shorter, as _last_targets)
            tail = units[k]["X"][-self.input_size :]
            X[j, self.input_size - len(tail) :] = tail
        points = np.zeros((len(keys), n_blocks * self.horizon, self.n_targets_))
        quants = np.zeros((len(keys), n_blocks * self.horizon, self.n_targets_, len(levels)))
        fs = self._future_slice
        for b in range(n_blocks):
            span = slice(b * self.horizon, (b + 1) * self.horizon)
            fut = futures[:, span]
            if states is not None:
                windows = X[:, :, : self.n_targets_] if self.linear_skip else None
                point, quant = self._decode_hidden(states.gather_z(keys), fut, static, levels, windows)
            else:
                point, quant = self._predict_units(X, fut, static, levels)
            points[:, span], quants[:, span] = point, quant
            if b + 1 < n_blocks:  # feed the point forecast back as observations
                rows = np.zeros((len(keys), self.horizon, n_in), np.float32)
                rows[:, :, : self.n_targets_] = point
                rows[:, :, fs] = fut
                X = np.ascontiguousarray(np.concatenate([X, rows], axis=1)[:, -self.input_size :])
                if states is not None:
                    states, _ = self._run_steps(states, keys, list(rows))
        self._check_finite(keys, units, points[:, :h], quants[:, :h])
        stamps = [after[last][:h] for last in distinct]  # sliced once per distinct end
        return self._to_frame(keys, units, stamps, ends, points[:, :h], quants[:, :h], levels)

    def _check_finite(self, keys, units, *arrays) -> None:
        """No forecast is NaN or inf without an error naming the series and the cause (issue #32)."""
        bad = sorted({j for a in arrays for j in np.flatnonzero(~np.isfinite(a.reshape(len(keys), -1)).all(1))})
        if not bad:
            return
        ids = [uid for j in bad for uid in units[keys[j]]["ids"]]
        reach = max(float(np.nan_to_num(np.abs(units[keys[j]]["X"]), nan=np.inf).max(initial=0.0)) for j in bad)
        raise ValueError(
            f"the forecast of series {ids[:5]}{' ...' if len(ids) > 5 else ''} is not finite (NaN or inf): their "
            f"inputs, scaled by the scaling fitted on the training data, reach {reach:.3g} (training data is near 1 "
            "on that scale), beyond what the model's float32 arithmetic can carry. Check those rows (a unit or "
            "scale error, a corrupt value), or refit on data that covers their range."
        )

    def _stamps_after(self, lasts, n: int) -> dict:
        """The ``n`` stamps after each distinct last stamp (panels mostly end on one: one date range for all)."""
        return {last: future_timestamps(last, self.freq_, n) for last in dict.fromkeys(lasts)}

    def _to_frame(self, keys, units, stamps, ends, points, quants, levels) -> pd.DataFrame:
        """The forecast frame: unit ``j``'s channel ``c`` is series ``units[keys[j]]["ids"][c]``, its stamps
        ``stamps[ends[j]]``; rows in the order of ``ids_`` (one block of ``h`` rows a series, built as arrays)."""
        index = {uid: i for i, uid in enumerate(self.ids_)}
        unit, channel, row, names = [], [], [], []
        for j, k in enumerate(keys):
            for c, uid in enumerate(units[k]["ids"]):
                unit.append(j)
                channel.append(c)
                row.append(index[uid])
                names.append(uid)
        unit, channel, row = np.asarray(unit, np.int64), np.asarray(channel, np.int64), np.asarray(row, np.int64)
        order = np.argsort(row, kind="stable")  # the fitted series' order (a no-op for a frame sorted by id)
        unit, channel, row, names = unit[order], channel[order], row[order], np.asarray(names, dtype=object)[order]
        h = points.shape[1]
        loc, scale = self.loc_[row, 0][:, None], self.scale_[row, 0][:, None]  # (P, 1)
        y = points[unit, :, channel] * scale + loc  # (P, h)
        q = {lv: (quants[unit, :, channel, n] * scale + loc).ravel() for n, lv in enumerate(levels)}
        ds = [d if isinstance(d, pd.Index) else pd.Index(d) for d in stamps]
        ds = ds[0].append(ds[1:]) if len(ds) > 1 else ds[0] if ds else pd.Index([])
        positions = (np.asarray(ends, np.int64)[unit][:, None] * h + np.arange(h)).ravel()
        ids = pd.array(names.tolist(), dtype="str").take(np.repeat(np.arange(len(names)), h))  # one string a series
        return forecast_frame(ids, ds.take(positions), y.ravel(), q)


def _with_defaults(init, defaults: dict):
    """``init`` with the defaults of some parameters changed, in its signature too (what scikit-learn reads)."""
    signature = inspect.signature(init)
    unknown = sorted(set(defaults) - set(signature.parameters))
    if unknown:
        raise TypeError(f"param_defaults names no constructor parameter: {unknown}")
    signature = signature.replace(parameters=[p.replace(default=defaults.get(p.name, p.default))
                                              for p in signature.parameters.values()])

    @functools.wraps(init)
    def __init__(self, *args, **kwargs):
        bound = signature.bind(self, *args, **kwargs)
        bound.apply_defaults()
        init(*bound.args, **bound.kwargs)

    __init__.__signature__ = signature
    return __init__


def _denorm(values, stats):
    from ssmcast.training.module import denormalize

    return denormalize(values, stats)


def _check_checkpoint(path: str) -> None:
    """A checkpoint to resume from must be readable (weights only); say which file is not, before any work."""
    import torch

    if not Path(path).is_file():
        raise ValueError(f"checkpoint {path} does not exist")
    try:
        torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as err:  # noqa: BLE001 - torch raises several types for a damaged file
        raise ValueError(
            f"checkpoint {path} cannot be read: it is corrupt or truncated (e.g. a crash while it was written, or a "
            f"full disk; {type(err).__name__}: {str(err)[:200]}). Delete it to train from scratch, or resume from "
            "another checkpoint with ckpt_path=..."
        ) from None
