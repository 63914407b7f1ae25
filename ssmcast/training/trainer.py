"""Building the Lightning ``Trainer`` the forecasters fit with."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint
from torch.utils.data import Sampler

_LOGGERS = ("lightning.pytorch", "lightning.fabric", "lightning")


def resolve_precision(precision: str | None, accelerator: str) -> str:
    """``"auto"``: bf16 mixed precision on a CUDA GPU (when the card supports it), full float32 on CPU."""
    if precision not in (None, "auto"):
        return str(precision)
    on_gpu = accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()
    if on_gpu and torch.cuda.is_bf16_supported():
        return "bf16-mixed"
    return "32-true"


def _lightning_console() -> logging.Handler | None:
    """The console handler ``import lightning`` puts on the ``lightning`` logger (``INFO: ...`` on stderr)."""
    import lightning

    handler = getattr(lightning, "_console", None)
    return handler if isinstance(handler, logging.Handler) else None


@contextlib.contextmanager
def _one_console_line():
    """Each of Lightning's log lines printed once.

    ``import lightning`` always gives the ``lightning`` logger its own stderr handler, while the
    ``lightning.pytorch``/``lightning.fabric`` loggers propagate whenever the root logger already has handlers
    (as inside a Hydra job, whose ``job_logging`` puts a console and a file handler on the root): every line
    then printed twice, once through Hydra's root handler and once through Lightning's. While the root logger
    has handlers, Lightning's own is set aside here, so the line goes through the root's only (console and the
    job's log file); without root handlers Lightning's handler stays, the only one to print."""
    lightning_logger = logging.getLogger("lightning")
    console = _lightning_console()
    detach = (console is not None and console in lightning_logger.handlers and lightning_logger.propagate
              and bool(logging.getLogger().handlers))
    if detach:
        lightning_logger.removeHandler(console)
    try:
        yield
    finally:
        if detach and console not in lightning_logger.handlers:
            lightning_logger.addHandler(console)


class _NoAdverts(logging.Filter):
    """Drops Lightning's "try installing litlogger" tip on every fit: an advert, nothing about the run."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "litlogger" not in str(record.msg)


_NO_ADVERTS = _NoAdverts()


@contextlib.contextmanager
def quiet_lightning(verbose: bool):
    """Silence Lightning's INFO chatter (device summary, tips, seeds) unless ``verbose``; either way each of
    Lightning's log lines printed once (see ``_one_console_line``) and its litlogger advert dropped."""
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logging.getLogger(name).addFilter(_NO_ADVERTS)  # once: addFilter ignores a filter already there
    with _one_console_line():
        if verbose:
            yield
            return
        loggers = [logging.getLogger(name) for name in _LOGGERS]
        levels = [lg.level for lg in loggers]
        for lg in loggers:
            lg.setLevel(logging.WARNING)
        try:
            yield
        finally:
            for lg, level in zip(loggers, levels):
                lg.setLevel(level)


def build_trainer(
    *,
    max_epochs: int,
    accelerator: str,
    precision: str | None,
    verbose: bool,
    checkpoint_dir: str | Path | None,
    scratch_dir: str | Path | None,
    has_val: bool,
    early_stopping_patience: int | None,
    gradient_clip_val: float | None,
    logger: Any = False,
    trainer_kwargs: dict[str, Any] | None = None,
) -> tuple[L.Trainer, ModelCheckpoint | None]:
    """``checkpoint_dir``: where checkpoints go (``last.ckpt`` for resuming, ``best.ckpt``); without it but
    with a ``scratch_dir``, checkpoints go under the scratch dir (Lightning broadcasts rank 0's path, so every
    DDP rank reads the same best checkpoint)."""
    callbacks: list = []
    checkpoint = None
    if checkpoint_dir is not None or scratch_dir is not None:
        checkpoint = ModelCheckpoint(
            dirpath=str(checkpoint_dir) if checkpoint_dir is not None else None,
            filename="best",
            monitor="val_loss" if has_val else None,
            mode="min",
            save_top_k=1,
            save_last=True,
            save_on_train_epoch_end=False if has_val else None,  # with validation: after it, when val_loss exists
        )
        callbacks.append(checkpoint)
    if has_val and early_stopping_patience:
        # checked after validation only: a run cut short mid-epoch (max_steps) has no val_loss to judge
        callbacks.append(EarlyStopping(monitor="val_loss", patience=int(early_stopping_patience), mode="min",
                                       check_on_train_epoch_end=False))
    kwargs: dict[str, Any] = dict(
        max_epochs=max_epochs,
        accelerator=accelerator,
        precision=resolve_precision(precision, accelerator),
        callbacks=callbacks,
        logger=logger,
        enable_progress_bar=verbose,
        enable_model_summary=verbose,
        enable_checkpointing=checkpoint is not None,
        gradient_clip_val=gradient_clip_val,
        log_every_n_steps=1,
        num_sanity_val_steps=0,
        deterministic=False,
        use_distributed_sampler=False,  # the loaders' samplers shard themselves (ssmcast.training.sampling)
    )
    if scratch_dir is not None:
        kwargs["default_root_dir"] = str(scratch_dir)
    extra = dict(trainer_kwargs or {})
    if extra.get("use_distributed_sampler"):
        raise ValueError(
            "trainer_kwargs: use_distributed_sampler=True is not supported: ssmcast's loaders shard their windows "
            "across DDP ranks themselves (so a DDP fit equals one process with the ranks' batches put together)"
        )
    if "callbacks" in extra:
        kwargs["callbacks"] = callbacks + list(extra.pop("callbacks"))
    kwargs.update(extra)
    return L.Trainer(**kwargs), checkpoint


class ShardAgreement(Callback):
    """What the ranks of a sharded fit (``fit`` from a partitioned Parquet dataset) settle once Lightning has
    created the process group: in its ``setup`` hook, on every rank before any loader is sized, each rank's own
    figures (``info``: the rank and world size it read its files for, its window counts, inferred frequency and
    held-out steps) are gathered and checked for agreement, and the samplers' ``total`` is set to the most windows
    any rank holds (:mod:`ssmcast.training.sampling`). Every rank sees the same gathered figures, so a
    disagreement raises the same error on all of them (none is left waiting). ``gathered`` keeps them."""

    def __init__(self, info: dict, train: Sampler, val: Sampler | None):
        super().__init__()
        self.info, self.train, self.val, self.gathered = info, train, val, [info]

    def setup(self, trainer, pl_module, stage: str) -> None:
        dist = torch.distributed
        world = self.info["world_size"]
        if not (dist.is_available() and dist.is_initialized()):
            if world > 1:
                raise ValueError(
                    f"this process read its share of a Parquet dataset for rank {self.info['rank']} of {world} (from "
                    "the launcher's environment: WORLD_SIZE/SLURM_NTASKS) but trains without a process group: give "
                    "the trainer DDP (trainer_kwargs={'strategy': 'ddp', 'num_nodes': ..., 'devices': ...}; CLI "
                    "trainer=ddp), or run one process"
                )
            return
        gathered = [None] * dist.get_world_size()
        dist.all_gather_object(gathered, self.info)
        self.gathered = gathered
        group = len(gathered)
        wrong = [r for r, g in enumerate(gathered) if (g["rank"], g["world_size"]) != (r, group)]
        if wrong:
            g = gathered[wrong[0]]
            raise ValueError(
                f"the process group has {group} ranks, but rank {wrong[0]} read the Parquet dataset as rank "
                f"{g['rank']} of {g['world_size']}: a sharded fit must know its rank before training starts, from its "
                "launcher (torchrun: RANK/WORLD_SIZE; srun: SLURM_PROCID/SLURM_NTASKS). Lightning's own launcher "
                "(strategy='ddp' with devices=N from a plain python run) starts the other processes inside fit, after "
                "the first one has read its data: start the fit with torchrun (torchrun --nproc-per-node N ...) or srun"
            )
        for key, what in (("freq", "inferred frequency"), ("held_out", "validation steps held out per series"),
                          ("has_val", "validation")):
            values = [g[key] for g in gathered]
            if len(set(map(str, values))) > 1:
                hint = (" (val_size=None holds out horizon steps only when every series of the shard is long enough: "
                        "set val_size explicitly)" if key in ("held_out", "has_val") else "")
                raise ValueError(f"the ranks of a sharded fit disagree on the {what}: {values} by rank{hint}")
        empty = [r for r, g in enumerate(gathered) if g["n_train"] == 0]
        if empty:
            raise ValueError(f"rank(s) {empty} have no training window in their files "
                             f"{[gathered[r]['files'] for r in empty][:3]}: every rank needs one (files of longer "
                             "series, or lower input_size/horizon/val_size)")
        if self.val is not None:
            no_val = [r for r, g in enumerate(gathered) if g["n_val"] == 0]
            if no_val:
                raise ValueError(f"rank(s) {no_val} have no validation window in their files: every rank needs "
                                 "one (set val_size=0 to train without validation)")
        if self.train is not None:
            self.train.total = max(g["n_train"] for g in gathered)
        if self.val is not None:
            self.val.total = max(g["n_val"] for g in gathered)
