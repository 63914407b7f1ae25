"""The residual block and stack shared by every backbone.

A *mixer* is any ``nn.Module`` with

* ``forward(x)``: ``(B, L, H) -> (B, L, H)``, causal, the parallel (training) mode;
* ``initial_state(batch_size)``: the recurrent state before any input (a tensor, or a tuple/list/dict of
  tensors, on the mixer's device);
* ``step(x_t, state) -> (y_t, state)``: ``(B, H) -> (B, H)``, the recurrent mode, so that unrolling
  ``step`` over a sequence reproduces ``forward``;
* optionally ``prefill(x) -> (y, state)``: ``forward`` that also returns the state after the sequence (the
  one ``step`` unrolled from ``initial_state`` reaches), computed in parallel. A long history is absorbed
  this way and then extended with ``step``. :func:`prefill` falls back to unrolling ``step`` for mixers
  without it.

``ResidualBlock`` wraps a mixer as ``x + dropout(mixer(norm(x)))`` (pre-norm, as in S4, Mamba and
nanoGPT), optionally followed by a second residual MLP sub-layer. ``SequenceStack`` chains blocks and
ends with a norm. Both keep the mixer interface, so a stack is itself a mixer.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Sequence

import torch
from torch import nn


class RMSNorm(nn.RMSNorm):
    """``nn.RMSNorm`` computed in the wider of the input's and the weight's dtypes (float32 under bf16 autocast,
    as autocast runs ``layer_norm``): a bf16 input against a float32 weight would take the unfused path, with
    a warning on every call."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = torch.promote_types(x.dtype, self.weight.dtype)
        return nn.functional.rms_norm(x.to(dtype), self.normalized_shape, self.weight.to(dtype), self.eps)


def make_norm(kind: str, d_model: int) -> nn.Module:
    if kind == "layer":
        return nn.LayerNorm(d_model)
    if kind == "rms":
        return RMSNorm(d_model)
    if kind in ("none", None):
        return nn.Identity()
    raise ValueError(f"unknown norm {kind!r}: expected 'layer', 'rms' or 'none'")


class MLP(nn.Module):
    """Position-wise feed-forward sub-layer (GELU), stateless."""

    def __init__(self, d_model: int, expand: int = 2, dropout: float = 0.0):
        super().__init__()
        self.fc1 = nn.Linear(d_model, expand * d_model)
        self.fc2 = nn.Linear(expand * d_model, d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.dropout(nn.functional.gelu(self.fc1(x))))


def prefill(mixer: nn.Module, x: torch.Tensor, last: bool = False):
    """``(y (B, L, H), state after x)`` from ``mixer.prefill``, or by unrolling ``step`` if it has none.

    ``last=True``: ``y`` only at the last step, ``(B, 1, H)`` (what a forecast from the state needs). A mixer
    whose ``prefill`` takes ``last`` computes it from the state alone (S4/S4D: no convolution over the history,
    issue #36); for the others it is the last step of the whole output."""
    if hasattr(mixer, "prefill"):
        if last and _takes_last(type(mixer)):
            return mixer.prefill(x, last=True)
        y, state = mixer.prefill(x)
        return (y[:, -1:] if last else y), state
    state, ys = mixer.initial_state(x.shape[0]), []
    for t in range(x.shape[1]):
        y_t, state = mixer.step(x[:, t], state)  # (B, H)
        ys.append(y_t)
    y = torch.stack(ys, 1)  # (B, L, H)
    return (y[:, -1:] if last else y), state


@functools.cache
def _takes_last(cls: type) -> bool:
    return "last" in inspect.signature(cls.prefill).parameters


class ResidualBlock(nn.Module):
    """``x + dropout(mixer(norm(x)))``, then optionally ``x + dropout(mlp(norm2(x)))``."""

    def __init__(
        self,
        mixer: nn.Module,
        d_model: int,
        norm: str = "layer",
        dropout: float = 0.0,
        mlp: nn.Module | None = None,
    ):
        super().__init__()
        self.mixer = mixer
        self.norm = make_norm(norm, d_model)
        self.dropout = nn.Dropout(dropout)
        self.mlp = mlp
        self.norm2 = make_norm(norm, d_model) if mlp is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.dropout(self.mixer(self.norm(x)))  # (B, L, H)
        if self.mlp is not None:
            x = x + self.dropout(self.mlp(self.norm2(x)))
        return x

    def initial_state(self, batch_size: int):
        return self.mixer.initial_state(batch_size)

    def step(self, x: torch.Tensor, state):
        y, state = self.mixer.step(self.norm(x), state)  # (B, H)
        x = x + self.dropout(y)
        if self.mlp is not None:
            x = x + self.dropout(self.mlp(self.norm2(x)))
        return x, state

    def prefill(self, x: torch.Tensor, last: bool = False):
        y, state = prefill(self.mixer, self.norm(x), last)  # (B, L | 1, H)
        x = (x[:, -1:] if last else x) + self.dropout(y)
        if self.mlp is not None:
            x = x + self.dropout(self.mlp(self.norm2(x)))
        return x, state


class SequenceStack(nn.Module):
    """A stack of residual blocks with a final norm; itself a mixer ``(B, L, H) -> (B, L, H)``."""

    def __init__(self, blocks: Sequence[nn.Module], d_model: int, norm: str = "layer"):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.norm_f = make_norm(norm, d_model)
        self.d_model = d_model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)  # (B, L, H)
        return self.norm_f(x)

    def initial_state(self, batch_size: int) -> list:
        return [block.initial_state(batch_size) for block in self.blocks]

    def step(self, x: torch.Tensor, state: list):
        new_state = []
        for block, s in zip(self.blocks, state, strict=True):
            x, s = block.step(x, s)  # (B, H)
            new_state.append(s)
        return self.norm_f(x), new_state

    def prefill(self, x: torch.Tensor, last: bool = False):
        """``(y (B, L, H), states)``; ``last=True``: ``y`` at the last step only ``(B, 1, H)`` (the last block
        computes no other; the earlier ones feed it every step)."""
        states = []
        for i, block in enumerate(self.blocks):
            x, s = prefill(block, x, last and i == len(self.blocks) - 1)  # (B, L, H)
            states.append(s)
        return self.norm_f(x), states

    def aux_loss(self) -> torch.Tensor | float:
        """Sum of auxiliary losses (e.g. MoE load balancing) left by the last forward, else 0.

        Consumes them (each ``last_aux_loss`` goes back to None), so no autograd graph outlives its step."""
        total = 0.0
        for module in self.modules():
            if module is not self and getattr(module, "last_aux_loss", None) is not None:
                total = total + module.last_aux_loss
                module.last_aux_loss = None
        return total
