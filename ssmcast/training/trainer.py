"""Building the Lightning ``Trainer`` the forecasters fit with."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint

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
