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


@contextlib.contextmanager
def quiet_lightning(verbose: bool):
    """Silence Lightning's INFO chatter (device summary, tips, seeds) unless ``verbose``."""
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
    )
    if scratch_dir is not None:
        kwargs["default_root_dir"] = str(scratch_dir)
    extra = dict(trainer_kwargs or {})
    if "callbacks" in extra:
        kwargs["callbacks"] = callbacks + list(extra.pop("callbacks"))
    kwargs.update(extra)
    return L.Trainer(**kwargs), checkpoint
