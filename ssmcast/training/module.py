"""The network every neural forecaster trains, and its Lightning module.

``ForecastNet`` = input projection -> SSM backbone (a mixer stack) -> the hidden state at the last
observed step -> a direct multi-horizon head (with future-known covariates and static features
concatenated), plus, with ``linear_skip``, a linear map from the last ``input_size`` target values
straight to the forecast locations (shared over channels, as DLinear's). Because the forecast only needs
the backbone's output at the last step (and the last window of targets), the recurrent ``step`` of the
backbone produces exactly the same forecast as the parallel ``forward`` over a window, and it can keep
going over an unbounded history (streaming). Window models (DLinear, PatchTST: ``recurrent = False`` on the
backbone config) map the whole window to the forecast instead, in :class:`WindowForecastNet`
(:meth:`ForecastNet.for_config` picks the network for a config).
"""

from __future__ import annotations

import math

import lightning as L
import numpy as np
import torch
from torch import nn

from ssmcast.backbones.blocks import prefill
from ssmcast.backbones.config import parameter_groups
from ssmcast.training.losses import ForecastLoss


class ForecastNet(nn.Module):
    def __init__(
        self,
        backbone: nn.Module,
        d_model: int,
        n_inputs: int,
        n_targets: int,
        horizon: int,
        n_params: int,
        n_future: int = 0,
        n_static: int = 0,
        revin: bool = False,
        skip_window: int | None = None,
        n_location: int = 1,
    ):
        super().__init__()
        self.n_targets, self.horizon, self.n_params = n_targets, horizon, n_params
        self.revin = revin
        self.skip_window, self.n_location = skip_window, n_location
        self.embed = nn.Linear(n_inputs, d_model)
        self.backbone = backbone
        self.head = nn.Linear(d_model + horizon * n_future + n_static, horizon * n_targets * n_params)
        self.skip = nn.Linear(skip_window, horizon) if skip_window else None

    def normalize(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor] | None]:
        """Reversible instance normalisation of the target channels over the window (if enabled)."""
        if not self.revin:
            return x, None
        target = x[..., : self.n_targets]  # (B, L, C)
        mean = target.mean(1, keepdim=True).detach()  # (B, 1, C)
        std = (target.var(1, keepdim=True, unbiased=False) + 1e-5).sqrt().detach()  # (B, 1, C)
        return torch.cat([(target - mean) / std, x[..., self.n_targets :]], -1), (mean, std)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(self.embed(x))[:, -1]  # (B, d_model)

    def decode(self, z: torch.Tensor, future: torch.Tensor | None, static: torch.Tensor | None,
               window: torch.Tensor | None = None) -> torch.Tensor:
        """Hidden state ``z`` ``(B, d_model)`` (+ the last targets ``window`` ``(B, skip_window, C)`` with
        ``linear_skip``) -> ``(B, h, C, n_params)``."""
        parts = [z]
        if future is not None and future.shape[-1]:
            parts.append(future.flatten(1).to(z.dtype))  # (B, h * F)
        if static is not None and static.shape[-1]:
            parts.append(static.to(z.dtype))  # (B, S)
        out = self.head(torch.cat(parts, -1))  # (B, h * C * n_params)
        out = out.view(-1, self.horizon, self.n_targets, self.n_params)
        if self.skip is None:
            return out
        if window is None or window.shape[1:] != (self.skip_window, self.n_targets):
            raise ValueError(f"linear_skip needs the last {self.skip_window} target values (B, "
                             f"{self.skip_window}, {self.n_targets}); got {None if window is None else window.shape}")
        shift = self.skip(window.to(out.dtype).transpose(1, 2)).transpose(1, 2)  # (B, h, C)
        k = self.n_location
        return torch.cat([out[..., :k] + shift.unsqueeze(-1), out[..., k:]], -1)  # (B, h, C, n_params)

    def forward(self, x, future=None, static=None) -> torch.Tensor:
        """x ``(B, L, n_inputs)`` (already instance-normalised if RevIN) -> ``(B, h, C, n_params)``."""
        window = x[:, -self.skip_window :, : self.n_targets] if self.skip is not None else None
        return self.decode(self.encode(x), future, static, window)

    def initial_state(self, batch_size: int):
        return self.backbone.initial_state(batch_size)

    def step(self, x_t: torch.Tensor, state):
        """One observation ``(B, n_inputs)`` -> (hidden ``(B, d_model)``, new state)."""
        return self.backbone.step(self.embed(x_t), state)

    def prefill(self, x: torch.Tensor):
        """A whole history ``(B, L, n_inputs)`` in parallel -> (last hidden ``(B, d_model)``, state after it),
        as :meth:`step` unrolled from :meth:`initial_state` gives."""
        z, state = prefill(self.backbone, self.embed(x), last=True)  # (B, 1, d_model)
        return z[:, -1], state

    @classmethod
    def for_config(cls, config, input_size: int, n_inputs: int, n_targets: int, horizon: int, n_params: int,
                   **kwargs) -> nn.Module:
        """The network a forecaster trains on backbone ``config`` (``kwargs``: this class's keywords): this class
        around ``config.build()``, or :class:`WindowForecastNet` around a window model (a config with
        ``recurrent = False``, e.g. DLinear, PatchTST), which is built for ``input_size`` steps and ``horizon``."""
        if getattr(config, "recurrent", True):
            return cls(config.build(), config.d_model, n_inputs, n_targets, horizon, n_params, **kwargs)
        return WindowForecastNet(config.build(input_size, horizon, n_params), n_inputs, n_targets, horizon, n_params,
                                 **kwargs)


class WindowForecastNet(nn.Module):
    """The network around a *window model* (DLinear, PatchTST: a backbone config with ``recurrent = False``).

    The backbone maps the window of target values ``(B, L, C)`` straight to the forecast ``(B, h, C, n_params)``
    (its last layer has ``h * n_params`` outputs per channel); RevIN (``revin``) and the linear skip
    (``skip_window``) work as in :class:`ForecastNet`. It takes target values only (no covariates or static
    features) and keeps no recurrent state: ``step``/``prefill``/``initial_state`` raise, so forecasts always
    come from the last ``input_size`` observations."""

    recurrent = False
    normalize = ForecastNet.normalize

    def __init__(self, backbone: nn.Module, n_inputs: int, n_targets: int, horizon: int, n_params: int,
                 n_future: int = 0, n_static: int = 0, revin: bool = False, skip_window: int | None = None,
                 n_location: int = 1):
        super().__init__()
        if n_inputs != n_targets or n_future or n_static:
            raise ValueError(
                f"{type(backbone).__name__} maps the window of target values to the forecast and takes no covariates: "
                "fit it without past_covariates, future_covariates, static_features and calendar_features"
            )
        self.n_targets, self.horizon, self.n_params = n_targets, horizon, n_params
        self.revin, self.skip_window, self.n_location = revin, skip_window, n_location
        self.backbone = backbone
        self.skip = nn.Linear(skip_window, horizon) if skip_window else None

    def forward(self, x, future=None, static=None) -> torch.Tensor:
        """x ``(B, L, n_targets)`` (already instance-normalised if RevIN) -> ``(B, h, C, n_params)``."""
        out = self.backbone(x[..., : self.n_targets])  # (B, h, C, n_params)
        if self.skip is None:
            return out
        shift = self.skip(x[:, -self.skip_window :, : self.n_targets].transpose(1, 2)).transpose(1, 2)  # (B, h, C)
        k = self.n_location
        return torch.cat([out[..., :k] + shift.unsqueeze(-1), out[..., k:]], -1)

    def _no_state(self, *args, **kwargs):
        raise ValueError(f"{type(self.backbone).__name__} is a window model: it maps the last input_size observations "
                         "to the forecast and keeps no recurrent state to step or prefill")

    initial_state = step = prefill = decode = _no_state


def denormalize(values: torch.Tensor, stats) -> torch.Tensor:
    """Undo RevIN on forecasts ``(B, h, C, ...)``."""
    if stats is None:
        return values
    mean, std = stats  # (B, 1, C)
    extra = values.ndim - 3
    return values * std.view(std.shape + (1,) * extra) + mean.view(mean.shape + (1,) * extra)


class NonFiniteLossError(RuntimeError):
    pass


def rng_states() -> dict:
    """torch's (CPU and every CUDA device's), numpy's and Python's random-number states, as tensors and plain
    lists (what ``torch.load(weights_only=True)`` reads back)."""
    import random

    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    states = {
        "torch": torch.get_rng_state(),
        "numpy": [kind, torch.as_tensor(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)],
        "python": [int(version), list(internal), gauss_next],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["torch.cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict) -> None:
    """Restore what :func:`rng_states` collected."""
    import random

    torch.set_rng_state(states["torch"])
    kind, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.int64).astype(np.uint32), pos, has_gauss, cached))
    version, internal, gauss_next = states["python"]
    random.setstate((version, tuple(internal), gauss_next))
    if "torch.cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["torch.cuda"])


class ForecastModule(L.LightningModule):
    def __init__(
        self,
        net: ForecastNet,
        loss: ForecastLoss,
        learning_rate: float = 1e-3,
        weight_decay: float = 0.01,
        lr_schedule: str | None = "cosine",
    ):
        super().__init__()
        self.net, self.loss = net, loss
        self.learning_rate, self.weight_decay = learning_rate, weight_decay
        self.lr_schedule = lr_schedule

    @staticmethod
    def inputs(batch: dict) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """Model inputs from a window batch (:mod:`ssmcast.data.windows`): the context rows (targets, past
        and known-in-advance covariates) ``(B, L, n_inputs)``, the known inputs over the horizon, statics."""
        L = batch["context"].shape[1]
        parts, future = [batch["context"]], batch.get("future_covariates")
        if "past_covariates" in batch:
            parts.append(batch["past_covariates"])
        if future is not None:
            parts.append(future[:, :L])
            future = future[:, L:]  # (B, h, F)
        return torch.cat(parts, -1), future, batch.get("static")

    def _loss(self, batch) -> torch.Tensor:
        context, future, static = self.inputs(batch)
        x, stats = self.net.normalize(context)
        out = self.net(x, future, static)  # (B, h, C, P)
        loss = self.loss(out, batch["target"], stats)  # in the data's (scaled) space, see ForecastLoss
        aux = getattr(self.net.backbone, "aux_loss", None)  # e.g. MoE load balancing, already weighted
        return loss + aux() if aux is not None else loss

    def training_step(self, batch, batch_idx):
        loss = self._loss(batch)
        if not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"training loss became {loss.item()} at epoch {self.current_epoch}, batch {batch_idx}. Likely "
                f"causes: a learning rate too high (learning_rate={self.learning_rate}), unscaled data "
                "(keep scaler='standard'), or bad rows (huge or non-finite values) in the training frame."
            )
        self.log("train_loss", loss, prog_bar=True, on_step=False, on_epoch=True, batch_size=len(batch["target"]))
        return loss

    def validation_step(self, batch, batch_idx):
        loss = self._loss(batch)
        self.log("val_loss", loss, prog_bar=True, on_epoch=True, batch_size=len(batch["target"]), sync_dist=True)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """The random-number states go into every checkpoint, so that a fit resumed from it draws the same
        dropout masks as the uninterrupted fit (the data order already depends only on seed and epoch)."""
        checkpoint["ssmcast_rng_states"] = rng_states()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        states = checkpoint.get("ssmcast_rng_states")
        if states is not None:  # checkpoints written before the states were kept resume as they did
            set_rng_states(states)

    def configure_optimizers(self):
        groups = parameter_groups(self.net, lr=self.learning_rate, weight_decay=self.weight_decay)
        params = [p for g in groups for p in g["params"]]
        # the fused implementation (one kernel for every tensor): 5x faster than the per-tensor loop on the CPU for
        # these small models, where the optimiser step was a fifth of a training step; same update up to rounding.
        # Not under mixed precision: Lightning's AMP plugin refuses gradient clipping with a fused optimizer.
        mixed = "mixed" in str(getattr(self._trainer, "precision", "") if self._trainer is not None else "")
        fused = not mixed and all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)
        optimizer = torch.optim.AdamW(groups, lr=self.learning_rate, fused=fused or None)
        if self.lr_schedule in (None, "none", "constant"):
            return optimizer
        total = max(1, int(self.trainer.estimated_stepping_batches))
        if self.lr_schedule == "cosine":
            warmup = min(100, max(1, total // 20))

            def factor(step: int) -> float:
                if step < warmup:
                    return (step + 1) / warmup
                progress = (step - warmup) / max(1, total - warmup)
                return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

            scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, [factor] * len(groups))
        elif self.lr_schedule == "onecycle":
            scheduler = torch.optim.lr_scheduler.OneCycleLR(
                optimizer, max_lr=[g["lr"] for g in groups], total_steps=total
            )
        elif self.lr_schedule == "halving":  # the long-horizon reference code's "type1": lr * 0.5**epoch
            scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=0.5)
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}
        else:
            raise ValueError(
                f"unknown lr_schedule {self.lr_schedule!r}: expected 'cosine', 'onecycle', 'halving' or None"
            )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
