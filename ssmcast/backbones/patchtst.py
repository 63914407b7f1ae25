"""PatchTST: Nie, Nguyen, Sinthong & Kalagnanam, "A Time Series is Worth 64 Words: Long-term Forecasting with
Transformers" (ICLR 2023).

A *window model* (``recurrent = False``; the forecaster wraps it in
:class:`~ssmcast.training.module.WindowForecastNet`), following the reference code
(``PatchTST_supervised/layers/PatchTST_backbone.py``) in its supervised long-horizon form:

* **channel independence**: every channel of the window ``(B, L, C)`` is its own sample of ``B * C``, all
  sharing the weights;
* **patching**: the window is padded at the end with ``stride`` copies of its last value (``padding_patch="end"``,
  the reference's ``ReplicationPad1d((0, stride))``) and cut into ``n_patches = (L - patch_len) // stride + 2``
  patches of ``patch_len`` steps, ``stride`` apart (``Tensor.unfold``);
* **embedding**: a linear map of each patch to ``d_model`` plus a learnable positional encoding (the
  reference's ``pe="zeros", learn_pe=True``: initialised uniform in ``[-0.02, 0.02]``), then dropout;
* **encoder**: ``n_layers`` post-norm Transformer layers with **BatchNorm** over ``d_model`` (the paper's choice
  over LayerNorm, ``norm="batch"``; ``"layer"`` is offered), GELU feed-forward of ``d_ff``, and the reference's
  *residual attention* (``res_attention=True``: each layer adds the previous layer's pre-softmax scores to its
  own, as RealFormer); attention scaled by ``(d_model / n_heads) ** -0.5``;
* **flatten head**: the ``d_model x n_patches`` tokens of a channel, flattened (``d_model`` major, as
  ``nn.Flatten(start_dim=-2)`` over ``(d_model, n_patches)``), one linear map to ``horizon * n_outputs``, then
  ``head_dropout``.

RevIN is not part of this module: the forecaster's ``revin=True`` (the default) normalises every window and
undoes it on the forecast, as the reference's ``RevIN(affine=True, subtract_last=False)`` minus the learnable
per-channel affine weights (channel independence over a panel has no fixed set of channels to give them to).
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn
from torch.nn import functional as F

from ssmcast.backbones.config import BackboneConfig


def n_patches(input_size: int, patch_len: int, stride: int, padding_patch: str | None = "end") -> int:
    """How many patches a window of ``input_size`` steps gives (the reference's ``patch_num``)."""
    length = input_size + (stride if padding_patch == "end" else 0)
    return (length - patch_len) // stride + 1 if length >= patch_len else 0


def patchify(x: torch.Tensor, patch_len: int, stride: int, padding_patch: str | None = "end") -> torch.Tensor:
    """``x (N, L)`` -> patches ``(N, n_patches, patch_len)``: end-padded with ``stride`` copies of the last value
    (``padding_patch="end"``), then windows of ``patch_len`` every ``stride`` steps."""
    if padding_patch == "end":
        x = torch.cat([x, x[:, -1:].expand(-1, stride)], 1)  # (N, L + stride)
    return x.unfold(-1, patch_len, stride)  # (N, n_patches, patch_len)


class _BatchNorm(nn.BatchNorm1d):
    """``BatchNorm1d`` over the features of tokens ``(N, T, d)`` (statistics over ``N * T``; a training batch of a
    single token, one window of one patch, has none: it is normalised by the running statistics)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and x.shape[0] * x.shape[1] == 1:
            return F.batch_norm(x.transpose(1, 2), self.running_mean, self.running_var, self.weight, self.bias,
                                False, 0.0, self.eps).transpose(1, 2)
        return super().forward(x.transpose(1, 2)).transpose(1, 2)


class EncoderLayer(nn.Module):
    """Post-norm (or pre-norm) Transformer layer of the reference (``TSTEncoderLayer``) on ``(N, T, d_model)``,
    returning the tokens and the pre-softmax attention scores ``(N, n_heads, T, T)`` for residual attention."""

    def __init__(self, d_model: int, n_heads: int, d_ff: int, dropout: float = 0.0, attn_dropout: float = 0.0,
                 norm: str = "batch", pre_norm: bool = False):
        super().__init__()
        self.n_heads, self.head_dim, self.pre_norm = n_heads, d_model // n_heads, pre_norm
        self.attn_dropout = attn_dropout
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)
        self.dropout = nn.Dropout(dropout)  # after the output projection, then again on the residual branch
        self.ff = nn.Sequential(nn.Linear(d_model, d_ff), nn.GELU(), nn.Dropout(dropout), nn.Linear(d_ff, d_model))
        self.norm_attn, self.norm_ff = (_norm(norm, d_model) for _ in range(2))

    def attention(self, x: torch.Tensor, prev: torch.Tensor | None, keep_scores: bool):
        """Multi-head self-attention ``(N, T, d) -> (N, T, d)`` and its pre-softmax scores (with ``prev`` added),
        or None when ``keep_scores`` is off (then the fused ``scaled_dot_product_attention`` runs)."""
        N, T, d = x.shape
        q, k, v = self.qkv(x).view(N, T, 3, self.n_heads, self.head_dim).permute(2, 0, 3, 1, 4)  # (N, heads, T, hd)
        p = self.attn_dropout if self.training else 0.0
        if keep_scores:
            scores = q @ k.transpose(-2, -1) * self.head_dim**-0.5  # (N, heads, T, T)
            if prev is not None:
                scores = scores + prev
            y = F.dropout(scores.softmax(-1), p, self.training) @ v
        else:
            scores, y = None, F.scaled_dot_product_attention(q, k, v, dropout_p=p)
        return self.dropout(self.out(y.transpose(1, 2).reshape(N, T, d))), scores

    def forward(self, x: torch.Tensor, prev: torch.Tensor | None = None, keep_scores: bool = True):
        y, scores = self.attention(self.norm_attn(x) if self.pre_norm else x, prev, keep_scores)
        x = x + self.dropout(y)
        if not self.pre_norm:
            x = self.norm_attn(x)
        y = self.ff(self.norm_ff(x) if self.pre_norm else x)
        x = x + self.dropout(y)
        if not self.pre_norm:
            x = self.norm_ff(x)
        return x, scores


def _norm(kind: str, d_model: int) -> nn.Module:
    if kind == "batch":
        return _BatchNorm(d_model)
    if kind == "layer":
        return nn.LayerNorm(d_model)
    raise ValueError(f"norm must be 'batch' or 'layer', got {kind!r}")


class PatchTST(nn.Module):
    """Window model ``(B, L, C) -> (B, h, C, n_outputs)``: patching, Transformer encoder, flatten head; every
    channel separately, with shared weights (channel independence)."""

    recurrent = False

    def __init__(self, input_size: int, horizon: int, n_outputs: int = 1, *, patch_len: int = 16, stride: int = 8,
                 padding_patch: str | None = "end", d_model: int = 128, n_layers: int = 3, n_heads: int = 16,
                 d_ff: int = 256, dropout: float = 0.2, attn_dropout: float = 0.0, head_dropout: float = 0.0,
                 norm: str = "batch", res_attention: bool = True, pre_norm: bool = False):
        super().__init__()
        for name, value in (("input_size", input_size), ("horizon", horizon), ("n_outputs", n_outputs),
                            ("patch_len", patch_len), ("stride", stride), ("d_model", d_model),
                            ("n_layers", n_layers), ("n_heads", n_heads), ("d_ff", d_ff)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if d_model % n_heads:
            raise ValueError(f"d_model ({d_model}) must be divisible by n_heads ({n_heads})")
        if padding_patch not in ("end", None):
            raise ValueError(f"padding_patch must be 'end' or None, got {padding_patch!r}")
        for name, value in (("dropout", dropout), ("attn_dropout", attn_dropout), ("head_dropout", head_dropout)):
            if not 0.0 <= value < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {value!r}")
        self.n_patches = n_patches(input_size, patch_len, stride, padding_patch)
        if self.n_patches < 1:
            raise ValueError(f"a window of input_size={input_size} steps holds no patch of patch_len={patch_len} "
                             f"(stride {stride}, padding_patch={padding_patch!r}): lower patch_len or raise input_size")
        self.input_size, self.horizon, self.n_outputs = input_size, horizon, n_outputs
        self.patch_len, self.stride, self.padding_patch = patch_len, stride, padding_patch
        self.res_attention = res_attention
        self.embed = nn.Linear(patch_len, d_model)  # the reference's W_P
        self.pos = nn.Parameter(torch.empty(self.n_patches, d_model).uniform_(-0.02, 0.02))  # learnable W_pos
        self.dropout = nn.Dropout(dropout)
        self.layers = nn.ModuleList(EncoderLayer(d_model, n_heads, d_ff, dropout, attn_dropout, norm, pre_norm)
                                    for _ in range(n_layers))
        self.head = nn.Linear(d_model * self.n_patches, horizon * n_outputs)
        self.head_dropout = nn.Dropout(head_dropout)

    def patches(self, x: torch.Tensor) -> torch.Tensor:
        """``x (B, L, C)`` -> ``(B * C, n_patches, patch_len)``, channel ``c`` of sample ``b`` at row ``b * C + c``."""
        B, L, C = x.shape
        return patchify(x.transpose(1, 2).reshape(B * C, L), self.patch_len, self.stride, self.padding_patch)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """``x (B, L, C)`` -> the encoder's tokens ``(B * C, n_patches, d_model)``."""
        if x.shape[1] != self.input_size:
            raise ValueError(f"PatchTST was built for windows of {self.input_size} steps; got {x.shape[1]}")
        z = self.dropout(self.embed(self.patches(x)) + self.pos)  # (B * C, n_patches, d_model)
        scores = None
        for layer in self.layers:
            z, scores = layer(z, scores, keep_scores=self.res_attention)
        return z

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, _, C = x.shape
        z = self.encode(x).transpose(1, 2).flatten(1)  # (B * C, d_model * n_patches), d_model major
        out = self.head_dropout(self.head(z))  # (B * C, h * P)
        return out.view(B, C, self.horizon, self.n_outputs).transpose(1, 2)  # (B, h, C, P)


@dataclasses.dataclass
class PatchTSTConfig(BackboneConfig):
    """PatchTST (a window model: ``recurrent = False``). The defaults are the paper's PatchTST/64 long-horizon
    settings (3 layers, ``d_model`` 128, 16 heads, ``d_ff`` 256, dropout 0.2, head dropout 0, patches of 16 every
    8 steps; PatchTST/64 is its ``input_size=512``, the forecaster's to set). The reference's scripts shrink the
    model for the small datasets (ETTh1/ETTh2: ``d_model=16, n_heads=4, d_ff=128, dropout=0.3``).

    ``build(input_size, horizon, n_outputs)`` returns :class:`PatchTST`; the window length and the horizon come
    from the forecaster."""

    d_model: int = 128
    n_layers: int = 3
    n_heads: int = 16
    d_ff: int = 256
    dropout: float = 0.2
    attn_dropout: float = 0.0
    head_dropout: float = 0.0
    patch_len: int = 16
    stride: int = 8
    padding_patch: str | None = "end"
    norm: str = "batch"
    res_attention: bool = True
    pre_norm: bool = False

    recurrent = False  # a class attribute, not a field: maps the last input_size steps, keeps no state

    def build(self, input_size: int, horizon: int, n_outputs: int = 1) -> PatchTST:
        return PatchTST(input_size, horizon, n_outputs, **self.to_dict())
