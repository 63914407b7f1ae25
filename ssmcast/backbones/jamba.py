"""Jamba: a hybrid stack of Mamba layers, a few causal attention layers and mixture-of-experts MLPs.

Following Lieber et al. (2024), layer ``i`` of the stack is a pre-norm residual block whose mixer is
causal multi-head self-attention when ``i % attn_every == attn_offset`` and a Mamba (or Mamba-2) block
otherwise, followed by a residual feed-forward sub-layer that is a mixture of experts when
``i % moe_every == moe_offset`` and a plain MLP otherwise. Defaults match the paper's 1:7
attention-to-Mamba ratio (``attn_every=8, attn_offset=4``) and MoE on every other layer.

There is no positional encoding, as in Jamba: the Mamba layers are causal recurrences and already tell
the attention layers where each token is.

The recurrent ``step`` is O(1) per token for Mamba layers and O(t) for attention layers, whose state is a
key/value cache ``(B, n_heads, t, head_dim)`` that grows by one position per step.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from ssmcast.backbones.blocks import MLP, ResidualBlock, SequenceStack
from ssmcast.backbones.config import BackboneConfig
from ssmcast.backbones.mamba import Mamba, check_sequence_input, check_step_input, state_dtype
from ssmcast.backbones.mamba2 import Mamba2


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention, ``(B, L, d_model) -> (B, L, d_model)``, no positional encoding.

    ``step`` keeps a key/value cache, so a step at time ``t`` costs O(t) time and memory."""

    def __init__(self, d_model: int, n_heads: int = 4, dropout: float = 0.0, bias: bool = False):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model={d_model} is not divisible by n_heads={n_heads}")
        self.d_model, self.n_heads, self.head_dim = d_model, n_heads, d_model // n_heads
        self.dropout = dropout
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=bias)
        self.out_proj = nn.Linear(d_model, d_model, bias=bias)

    def _heads(self, x: torch.Tensor):
        q, k, v = self.qkv(x).unflatten(-1, (3, self.n_heads, self.head_dim)).unbind(-3)  # (B, L, nh, hd)
        return q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # (B, nh, L, hd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Parallel mode, causal."""
        return self.prefill(x)[0]

    def prefill(self, x: torch.Tensor):
        """``forward`` plus the key/value cache ``(B, n_heads, L, head_dim)`` twice that :meth:`step` extends."""
        check_sequence_input(x, self.d_model)
        q, k, v = self._heads(x)  # (B, nh, L, hd)
        dropout_p = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=True)  # (B, nh, L, hd)
        sd = state_dtype(self.qkv.weight)
        # contiguous: views into the qkv projection would keep all of it alive (and slow the first step)
        cache = (k.to(sd).contiguous(), v.to(sd).contiguous())
        return self.out_proj(y.transpose(1, 2).flatten(-2)), cache  # (B, L, d_model)

    def initial_state(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """An empty key/value cache ``(B, n_heads, 0, head_dim)`` twice."""
        weight = self.qkv.weight
        empty = torch.zeros(batch_size, self.n_heads, 0, self.head_dim, device=weight.device, dtype=state_dtype(weight))
        return empty, empty.clone()

    def step(self, x_t: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]):
        """Attend from ``x_t (B, d_model)`` to every cached position and itself; returns the grown cache."""
        check_step_input(x_t, self.d_model)
        k_cache, v_cache = state
        q, k, v = self._heads(x_t.unsqueeze(1))  # (B, nh, 1, hd)
        k_cache = torch.cat([k_cache, k.to(k_cache.dtype)], dim=2)  # (B, nh, t, hd)
        v_cache = torch.cat([v_cache, v.to(v_cache.dtype)], dim=2)
        dropout_p = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q.to(k_cache.dtype), k_cache, v_cache, dropout_p=dropout_p)
        return self.out_proj(y.flatten(1).to(self.out_proj.weight.dtype)), (k_cache, v_cache)  # (B, d_model)


class MixtureOfExperts(nn.Module):
    """Top-k routed mixture of MLP experts (Mixtral-style), applied position-wise to ``(..., d_model)``.

    Each token goes to the ``top_k`` experts with the largest router logits, weighted by a softmax over
    those ``top_k`` logits. Every forward stores the Switch-Transformer load-balancing loss,
    ``aux_loss_coef * n_experts * sum_e f_e P_e`` (``f_e``: fraction of the token-to-expert assignments
    that went to expert ``e``; ``P_e``: mean router probability of ``e``; 1 at perfect balance, before the
    coefficient), as ``last_aux_loss`` for :meth:`SequenceStack.aux_loss`."""

    def __init__(
        self,
        d_model: int,
        n_experts: int = 4,
        top_k: int = 2,
        expand: int = 2,
        dropout: float = 0.0,
        aux_loss_coef: float = 1e-2,
    ):
        super().__init__()
        if not isinstance(n_experts, int) or n_experts < 1:
            raise ValueError(f"n_experts must be a positive int, got {n_experts!r}")
        if not isinstance(top_k, int) or not 1 <= top_k <= n_experts:
            raise ValueError(f"top_k must be an int in [1, n_experts={n_experts}], got {top_k!r}")
        if aux_loss_coef < 0:
            raise ValueError(f"aux_loss_coef must be >= 0, got {aux_loss_coef!r}")
        self.n_experts, self.top_k, self.aux_loss_coef = n_experts, top_k, aux_loss_coef
        self.router = nn.Linear(d_model, n_experts, bias=False)
        self.experts = nn.ModuleList(MLP(d_model, expand, dropout) for _ in range(n_experts))
        self.last_aux_loss: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x = x.reshape(-1, shape[-1])  # (T, H)
        dtype = torch.promote_types(x.dtype, torch.float32)
        logits = self.router(x).to(dtype)  # (T, E)
        top_logits, top_experts = logits.topk(self.top_k, dim=-1)  # (T, k)
        weights = F.softmax(top_logits, dim=-1)  # (T, k)
        out = torch.zeros_like(x)  # (T, H)
        for e, expert in enumerate(self.experts):
            token, slot = torch.where(top_experts == e)
            if token.numel() == 0:
                continue
            y = weights[token, slot, None] * expert(x[token]).to(dtype)  # (T_e, H)
            out = out.index_add(0, token, y.to(out.dtype))
        probs = F.softmax(logits, dim=-1)  # (T, E)
        assigned = F.one_hot(top_experts, self.n_experts).sum(1).to(dtype)  # (T, E)
        fraction = assigned.mean(0) / self.top_k  # (E,)
        self.last_aux_loss = self.aux_loss_coef * self.n_experts * (fraction * probs.mean(0)).sum()
        return out.reshape(shape)


class Jamba(SequenceStack):
    """A Jamba stack; ``layer_kinds[i]`` names layer ``i``'s mixer and feed-forward, e.g. ``"mamba+moe"``."""

    def __init__(self, blocks, d_model: int, norm: str, layer_kinds: list[str]):
        super().__init__(blocks, d_model, norm=norm)
        self.layer_kinds = list(layer_kinds)


@dataclasses.dataclass
class JambaConfig(BackboneConfig):
    """Hybrid Mamba/attention stack with mixture-of-experts MLPs.

    The default is a 4-layer cut of the Jamba block: one attention layer (the third) to three Mamba layers
    (the paper's block has 1 in 8) and MoE MLPs in every other layer, sized for forecasting. Jamba's own
    layout is ``n_layers=8, attn_every=8, attn_offset=4``. ``attn_every=0`` gives no attention layer,
    ``moe_every=0`` no MoE (plain MLPs everywhere)."""

    d_model: int = 32
    n_layers: int = 4
    mamba_version: int = 1
    attn_every: int = 4
    attn_offset: int = 2
    n_heads: int = 4
    moe_every: int = 2
    moe_offset: int = 1
    n_experts: int = 4
    top_k: int = 2
    mlp_expand: int = 2
    aux_loss_coef: float = 1e-2
    d_state: int = 16
    d_conv: int = 4
    expand: int = 2
    head_dim: int = 16
    n_groups: int = 1
    chunk_size: int = 64
    dropout: float = 0.0
    norm: str = "rms"
    backend: str = "auto"  # the Mamba layers' scan: auto, torch, numba, triton or mamba_ssm (ssmcast.ops.backends)

    def layer_kinds(self) -> list[str]:
        """``"attention"`` or ``"mamba"``, then ``"+moe"`` or ``"+mlp"``, for each layer."""
        kinds = []
        for i in range(self.n_layers):
            attention = self.attn_every > 0 and i % self.attn_every == self.attn_offset
            moe = self.moe_every > 0 and i % self.moe_every == self.moe_offset
            kinds.append(("attention" if attention else "mamba") + ("+moe" if moe else "+mlp"))
        return kinds

    def _validate(self) -> None:
        for name in ("d_model", "n_layers", "n_heads", "mlp_expand"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if self.mamba_version not in (1, 2):
            raise ValueError(f"mamba_version must be 1 or 2, got {self.mamba_version!r}")
        for every, offset in (("attn_every", "attn_offset"), ("moe_every", "moe_offset")):
            e, o = getattr(self, every), getattr(self, offset)
            if not isinstance(e, int) or e < 0:
                raise ValueError(f"{every} must be an int >= 0 (0 disables), got {e!r}")
            if e > 0 and not (isinstance(o, int) and 0 <= o < e):
                raise ValueError(f"{offset} must be an int in [0, {every}={e}), got {o!r}")
        if self.attn_every > 0 and not any(k.startswith("attention") for k in self.layer_kinds()):
            raise ValueError(
                f"n_layers={self.n_layers} with attn_every={self.attn_every}, attn_offset={self.attn_offset} "
                "gives no attention layer; lower attn_offset/attn_every, or set attn_every=0 for none"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")

    def _mamba(self) -> nn.Module:
        if self.mamba_version == 1:
            return Mamba(self.d_model, d_state=self.d_state, d_conv=self.d_conv, expand=self.expand,
                         backend=self.backend)  # fmt: skip
        return Mamba2(
            self.d_model,
            d_state=self.d_state,
            d_conv=self.d_conv,
            expand=self.expand,
            head_dim=self.head_dim,
            n_groups=self.n_groups,
            chunk_size=self.chunk_size,
            backend=self.backend,
        )

    def build(self) -> Jamba:
        self._validate()
        kinds = self.layer_kinds()
        blocks = []
        for kind in kinds:
            mixer_kind, ffn_kind = kind.split("+")
            if mixer_kind == "attention":
                mixer = CausalSelfAttention(self.d_model, self.n_heads, dropout=self.dropout)
            else:
                mixer = self._mamba()
            if ffn_kind == "moe":
                mlp = MixtureOfExperts(
                    self.d_model, self.n_experts, self.top_k, self.mlp_expand, self.dropout, self.aux_loss_coef
                )
            else:
                mlp = MLP(self.d_model, self.mlp_expand, self.dropout)
            blocks.append(ResidualBlock(mixer, self.d_model, norm=self.norm, dropout=self.dropout, mlp=mlp))
        return Jamba(blocks, self.d_model, norm=self.norm, layer_kinds=kinds)
