"""The selective view of Mamba, Mamba-2 and Jamba's Mamba layers: the step size ``Delta`` they chose at every input.

A selective SSM discretises with an input-dependent step, ``h_t = exp(Delta_t A) h_{t-1} + Delta_t B_t x_t``: a
large ``Delta_t`` resets the state towards the current input (remember it, forget the past), a small one lets the
input pass by and keeps the state (ignore it). :func:`step_sizes` records ``Delta`` while the network forecasts,
through forward hooks on the projections that produce it, so the layers' own forward runs unchanged:

* Mamba: ``Delta = softplus(dt_proj(x_proj(x)[..., :dt_rank]))`` ``(B, L, ED)``, one per inner channel (the
  ``x_proj`` output is hooked; ``dt_proj``'s weight and bias are what the selective scan applies, with
  ``delta_bias`` and ``delta_softplus``);
* Mamba-2: ``Delta = softplus(dt + dt_bias)`` ``(B, L, H)``, one per head (``dt`` is the last ``H`` columns of the
  hooked ``in_proj`` output).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from ssmcast.backbones.mamba import Mamba, state_dtype
from ssmcast.backbones.mamba2 import Mamba2
from ssmcast.explain._common import fitted_net, forecast_windows, is_forecaster, kinds, layers, on_device

if TYPE_CHECKING:
    from ssmcast.forecasters import NeuralForecaster

__all__ = ["step_sizes"]

SELECTIVE_LAYERS = (Mamba, Mamba2)
COLUMNS = ["unique_id", "layer", "kind", "channel", "ds", "delta"]


def _mamba_delta(layer: Mamba, x_dbl: torch.Tensor) -> torch.Tensor:
    """``(B, L, ED)`` from the ``x_proj`` output ``(B, L, dt_rank + 2N)``."""
    sd = state_dtype(layer.A_log)
    dt = F.linear(x_dbl[..., : layer.dt_rank], layer.dt_proj.weight)  # as Mamba's forward, bias in the scan
    return F.softplus(dt.to(sd) + layer.dt_proj.bias.to(sd))


def _mamba2_delta(layer: Mamba2, zxbcdt: torch.Tensor) -> torch.Tensor:
    """``(B, L, H)`` from the ``in_proj`` output ``(B, L, 2 ED + 2 G N + H)``."""
    sd = state_dtype(layer.A_log)
    dt = layer._split(zxbcdt)[2]
    return F.softplus(dt.to(sd) + layer.dt_bias.to(sd))


@contextlib.contextmanager
def recording(selective: list[tuple[int, nn.Module]]) -> Iterator[dict[int, list[torch.Tensor]]]:
    """Forward hooks that collect each selective layer's ``Delta`` ``(B, L, channels)`` while the block runs."""
    found: dict[int, list[torch.Tensor]] = {i: [] for i, _ in selective}
    handles = []
    for index, layer in selective:
        if isinstance(layer, Mamba):
            module, delta = layer.x_proj, _mamba_delta
        else:
            module, delta = layer.in_proj, _mamba2_delta

        def hook(mod, args, out, index=index, layer=layer, delta=delta):
            if out.ndim == 3:  # the parallel forward (step() sees (B, ...) one token at a time)
                found[index].append(delta(layer, out.detach()))

        handles.append(module.register_forward_hook(hook))
    try:
        yield found
    finally:
        for handle in handles:
            handle.remove()


def _selective_layers(model, what: str):
    mixers, name = layers(model, what)
    selective = [(i, m) for i, m in mixers if isinstance(m, SELECTIVE_LAYERS)]
    if not selective:
        lti = any(type(m).__name__ in ("S4", "S5", "LiquidS4") for _, m in mixers)
        raise TypeError(f"{what} needs a selective backbone (Mamba, Mamba-2, Jamba's Mamba layers); {name}'s layers "
                        f"are {kinds(mixers)}, which choose no step size per input"
                        + (" (linear time-invariant: see ssmcast.explain.kernels)" if lti else ""))  # fmt: skip
    return selective


def step_sizes(model: NeuralForecaster | nn.Module, df: pd.DataFrame | None = None,
               unique_ids: str | Iterable[str] | None = None, future_df: pd.DataFrame | None = None,
               x: torch.Tensor | None = None) -> pd.DataFrame:
    """``Delta`` of every selective layer over the input window, per channel (Mamba) or head (Mamba-2).

    Args:
        model: a fitted Mamba, Mamba-2 or Jamba forecaster; or a module (a backbone, a ``ForecastNet``, a layer)
            with its input ``x``.
        df: for a forecaster, the history whose last ``input_size`` observations are the window (what
            ``predict(df=df)`` reads); default the training data.
        unique_ids: the series to explain (default all).
        future_df: future covariates over the forecast steps, when the model uses them (as ``predict``).
        x: for a module: its input (what its ``forward`` takes, e.g. ``(B, L, d_model)`` for a stack).

    Returns:
        One row per ``(unique_id, layer, channel, ds)``: ``unique_id`` the series (with
        ``channel_mode="mixed"`` the panel's series joined by ``","``, one pass over all of them; for a module the
        batch index), ``layer`` the block's index in the stack, ``kind`` ``"Mamba"`` or ``"Mamba2"``, ``channel``
        Mamba's inner channel (``expand * d_model`` of them) or Mamba-2's head, ``ds`` the input's time stamp (its
        position for a module) and ``delta``.
    """
    selective = _selective_layers(model, "step_sizes()")
    if is_forecaster(model):
        if x is not None:
            raise ValueError("x is for a module; a forecaster reads its windows from df (or its training data)")
        net = fitted_net(model, "step_sizes()")
        windows = forecast_windows(model, df, unique_ids, future_df)
        with on_device(model, net) as device, torch.no_grad(), recording(selective) as found:
            X, fut, sta = windows.tensors(device)
            xb, _ = net.normalize(X)
            net(xb, fut, sta)
        ids = [",".join(map(str, ids)) for ids in windows.ids]
        stamps = windows.ds
    else:
        if not isinstance(x, torch.Tensor):
            raise ValueError("step_sizes() of a module needs its input x (a tensor, e.g. (batch, length, d_model))")
        with torch.no_grad(), recording(selective) as found:
            model(x)
        ids = list(range(x.shape[0]))
        stamps = [np.arange(x.shape[1])] * x.shape[0]
    _aux_loss(model)
    frames = []
    for index, layer in selective:
        delta = torch.cat(found[index]).cpu().numpy()  # (U, L, channels)
        U, L, n = delta.shape
        frames.append(pd.DataFrame({
            "unique_id": np.repeat(np.asarray(ids, dtype=object), n * L),
            "layer": index,
            "kind": type(layer).__name__,
            "channel": np.tile(np.repeat(np.arange(n), L), U),
            "ds": np.concatenate([np.tile(s, n) for s in stamps]),
            "delta": delta.transpose(0, 2, 1).ravel(),  # (U, channels, L)
        }))  # fmt: skip
    order = {uid: i for i, uid in enumerate(ids)}
    out = pd.concat(frames, ignore_index=True)
    out = out.iloc[np.lexsort((out["layer"].to_numpy(), out["unique_id"].map(order).to_numpy()))]
    return out.reset_index(drop=True)[COLUMNS]


def _aux_loss(model) -> None:
    """Consume the auxiliary (MoE) losses the forward left behind (Jamba), as training does."""
    net = model.net_ if is_forecaster(model) else model
    backbone = getattr(net, "backbone", net)
    if callable(getattr(backbone, "aux_loss", None)):
        backbone.aux_loss()
