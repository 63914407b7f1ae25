"""Mamba-2: the multi-head SSD block of Dao & Gu (2024), in plain PyTorch.

One block maps ``u (B, L, D) -> (B, L, D)``::

    z, xBC, dt = in_proj(u)                    # one projection: (ED, ED + 2GN, H)
    x, B, C = silu(causal_depthwise_conv1d(xBC))
    x -> (B, L, H, P), B, C -> (B, L, G, N)    # H = ED / P heads, G groups of B/C shared by H/G heads
    dt = softplus(dt + dt_bias)                # (B, L, H)
    h_t = exp(dt_t A) h_{t-1} + dt_t x_t B_t^T  # (B, H, P, N), A = -exp(A_log) one scalar per head
    y_t = h_t C_t + D x_t
    out = out_proj(gated_rmsnorm(y, z))        # rmsnorm(y * silu(z)), per group

``forward`` runs :func:`ssmcast.ops.ssd.ssd` (by its ``backend``: the fused kernels under ``"auto"``, the chunked
SSD algorithm with ``"torch"``); ``step``
(:func:`ssmcast.ops.ssd.ssd_state_update`) advances one token in O(1), keeping the conv inputs
``(B, ED + 2GN, d_conv)`` and the SSM state ``(B, H, P, N)``.
Initialisation follows ``mamba2_simple.py``: ``A`` uniform in ``A_init_range``, ``D = 1``, ``dt``
log-uniform in ``[dt_min, dt_max]`` stored as the inverse softplus in ``dt_bias``.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from ssmcast.backbones.blocks import SequenceStack
from ssmcast.backbones.config import BackboneConfig, tag_optim
from ssmcast.backbones.mamba import (
    causal_depthwise_conv_step,
    check_sequence_input,
    check_step_input,
    conv_state_after,
    init_dt_bias,
    state_dtype,
)
from ssmcast.ops.backends import check_backend
from ssmcast.ops.conv import causal_conv1d
from ssmcast.ops.ssd import ssd, ssd_state_update


class GatedRMSNorm(nn.Module):
    """``rmsnorm(y * silu(z)) * weight``, the RMS taken over each of ``n_groups`` equal channel groups; with
    ``z=None`` the gate is taken to be applied already (Mamba-2 lets the scan apply it: ``ssd(..., z=z)``)."""

    def __init__(self, d: int, n_groups: int = 1, eps: float = 1e-5):
        super().__init__()
        if d % n_groups:
            raise ValueError(f"d={d} is not divisible by n_groups={n_groups}")
        self.n_groups, self.eps = n_groups, eps
        self.weight = nn.Parameter(torch.ones(d))

    def forward(self, y: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        dtype = y.dtype
        y = y.to(state_dtype(self.weight))
        if z is not None:
            y = y * F.silu(z.to(state_dtype(self.weight)))  # (..., d)
        y = y.unflatten(-1, (self.n_groups, -1))  # (..., G, d / G)
        y = y * torch.rsqrt(y.pow(2).mean(-1, keepdim=True) + self.eps)
        return (y.flatten(-2) * self.weight).to(dtype)


class Mamba2(nn.Module):
    """The Mamba-2 (multi-head SSD) mixer, ``(B, L, d_model) -> (B, L, d_model)``."""

    def __init__(
        self,
        d_model: int,
        d_state: int = 64,
        d_conv: int = 4,
        expand: int = 2,
        head_dim: int = 64,
        n_groups: int = 1,
        chunk_size: int = 64,
        A_init_range: tuple[float, float] = (1.0, 16.0),
        dt_min: float = 1e-3,
        dt_max: float = 1e-1,
        dt_init_floor: float = 1e-4,
        conv_bias: bool = True,
        bias: bool = False,
        backend: str = "auto",
    ):
        super().__init__()
        self.backend = check_backend(backend)
        for name, value in (
            ("d_model", d_model),
            ("d_state", d_state),
            ("d_conv", d_conv),
            ("expand", expand),
            ("head_dim", head_dim),
            ("n_groups", n_groups),
            ("chunk_size", chunk_size),
        ):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        d_inner = expand * d_model
        if d_inner % head_dim:
            raise ValueError(f"expand * d_model = {d_inner} is not divisible by head_dim={head_dim}")
        n_heads = d_inner // head_dim
        if n_heads % n_groups:
            raise ValueError(
                f"n_heads = {n_heads} (expand * d_model / head_dim) is not divisible by n_groups={n_groups}"
            )
        if not 0 < A_init_range[0] <= A_init_range[1]:
            raise ValueError(f"A_init_range must satisfy 0 < low <= high, got {A_init_range}")
        self.d_model, self.d_state, self.d_conv = d_model, d_state, d_conv
        self.d_inner, self.head_dim, self.n_heads, self.n_groups = d_inner, head_dim, n_heads, n_groups
        self.chunk_size = chunk_size
        ED, N, G, H = d_inner, d_state, n_groups, n_heads
        self.conv_dim = ED + 2 * G * N

        self.in_proj = nn.Linear(d_model, 2 * ED + 2 * G * N + H, bias=bias)
        self.conv1d = nn.Conv1d(
            self.conv_dim, self.conv_dim, kernel_size=d_conv, groups=self.conv_dim, padding=d_conv - 1, bias=conv_bias
        )
        self.dt_bias = tag_optim(nn.Parameter(init_dt_bias(H, dt_min, dt_max, dt_init_floor)), weight_decay=0.0)
        A = torch.empty(H).uniform_(*A_init_range)  # (H,)
        self.A_log = tag_optim(nn.Parameter(torch.log(A)), weight_decay=0.0)
        self.D = tag_optim(nn.Parameter(torch.ones(H)), weight_decay=0.0)
        self.norm = GatedRMSNorm(ED, n_groups=G)
        self.out_proj = nn.Linear(ED, d_model, bias=bias)

    def _split(self, zxbcdt: torch.Tensor):
        return zxbcdt.split([self.d_inner, self.conv_dim, self.n_heads], dim=-1)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        """Parallel (training) mode: ``u (B, L, d_model) -> (B, L, d_model)``, causal."""
        return self._parallel(u, return_state=False)

    def prefill(self, u: torch.Tensor):
        """``forward`` plus the state after ``u``, ``(conv_state, ssm_state)`` as :meth:`step` keeps it."""
        return self._parallel(u, return_state=True)

    def _parallel(self, u: torch.Tensor, return_state: bool):
        check_sequence_input(u, self.d_model, "u")
        z, xBC, dt = self._split(self.in_proj(u))  # (B, L, ED), (B, L, ED + 2GN), (B, L, H)
        xBC_in = xBC.transpose(1, 2)  # (B, ED + 2GN, L)
        xBC = causal_conv1d(xBC_in, self.conv1d.weight, self.conv1d.bias, "silu", backend=self.backend)
        xBC = xBC.transpose(1, 2)  # (B, L, ED + 2GN)
        x, B, C = xBC.split([self.d_inner, self.n_groups * self.d_state, self.n_groups * self.d_state], dim=-1)
        sd = state_dtype(self.A_log)
        A = -torch.exp(self.A_log.to(sd))  # (H,)
        out = ssd(
            x.unflatten(-1, (self.n_heads, self.head_dim)),  # (B, L, H, P)
            dt,
            A,
            B.unflatten(-1, (self.n_groups, self.d_state)),  # (B, L, G, N)
            C.unflatten(-1, (self.n_groups, self.d_state)),
            self.chunk_size,
            D=self.D.to(sd),
            z=z.unflatten(-1, (self.n_heads, self.head_dim)),  # the gate, inside the scan
            dt_bias=self.dt_bias.to(sd),
            dt_softplus=True,
            return_final_states=return_state,
            backend=self.backend,
        )  # (B, L, H, P), y * silu(z)
        y, last = out if return_state else (out, None)
        y = self.out_proj(self.norm(y.flatten(-2)).to(self.out_proj.weight.dtype))  # (B, L, d_model)
        if not return_state:
            return y
        return y, (conv_state_after(xBC_in, self.d_conv, sd), last.to(sd))  # (B, ED + 2GN, d_conv), (B, H, P, N)

    def initial_state(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(conv_state (B, ED + 2GN, d_conv), ssm_state (B, H, P, N))``, zeros."""
        param = self.A_log
        dtype = state_dtype(param)
        conv_state = torch.zeros(batch_size, self.conv_dim, self.d_conv, device=param.device, dtype=dtype)
        ssm_state = torch.zeros(batch_size, self.n_heads, self.head_dim, self.d_state, device=param.device, dtype=dtype)
        return conv_state, ssm_state

    def step(self, u_t: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]):
        """Recurrent mode, O(1) per token: ``u_t (B, d_model) -> (y_t (B, d_model), new state)``.

        The given state is not modified; a new one is returned."""
        check_step_input(u_t, self.d_model, "u_t")
        conv_state, ssm_state = state
        sd = ssm_state.dtype
        z, xBC, dt = self._split(self.in_proj(u_t))  # (B, ED), (B, ED + 2GN), (B, H)
        xBC, conv_state = causal_depthwise_conv_step(conv_state, xBC, self.conv1d)
        xBC = F.silu(xBC)  # (B, ED + 2GN)
        x, B, C = xBC.split([self.d_inner, self.n_groups * self.d_state, self.n_groups * self.d_state], dim=-1)
        ssm_state = ssm_state.clone()
        y = ssd_state_update(
            ssm_state,
            x.unflatten(-1, (self.n_heads, self.head_dim)).to(sd),  # (B, H, P)
            dt.to(sd),  # (B, H)
            -torch.exp(self.A_log.to(sd)),  # (H,)
            B.unflatten(-1, (self.n_groups, self.d_state)).to(sd),  # (B, G, N)
            C.unflatten(-1, (self.n_groups, self.d_state)).to(sd),
            D=self.D.to(sd),
            z=z.unflatten(-1, (self.n_heads, self.head_dim)).to(sd),
            dt_bias=self.dt_bias.to(sd),
            dt_softplus=True,
        )  # (B, H, P), y * silu(z)
        y = self.norm(y.flatten(-2))  # (B, ED)
        return self.out_proj(y.to(self.out_proj.weight.dtype)), (conv_state, ssm_state)


@dataclasses.dataclass
class Mamba2Config(BackboneConfig):
    """A stack of pre-norm residual Mamba-2 blocks (no separate MLP, as in the paper)."""

    d_model: int = 32
    n_layers: int = 2
    d_state: int = 32
    d_conv: int = 4
    expand: int = 2
    head_dim: int = 16
    n_groups: int = 1
    chunk_size: int = 64
    dt_min: float = 1e-3
    dt_max: float = 1e-1
    dropout: float = 0.0
    norm: str = "rms"
    backend: str = "auto"  # the SSD scan's: auto, torch, numba, triton or mamba_ssm (ssmcast.ops.backends)

    def build(self) -> SequenceStack:
        return self.residual_stack(lambda: Mamba2(
            self.d_model,
            d_state=self.d_state,
            d_conv=self.d_conv,
            expand=self.expand,
            head_dim=self.head_dim,
            n_groups=self.n_groups,
            chunk_size=self.chunk_size,
            dt_min=self.dt_min,
            dt_max=self.dt_max,
            backend=self.backend,
        ))
