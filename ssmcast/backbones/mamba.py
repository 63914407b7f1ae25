"""Mamba (S6): the selective state space block of Gu & Dao (2023), in plain PyTorch.

One block maps ``u (B, L, D) -> (B, L, D)``::

    x, z = in_proj(u)                          # (B, L, ED) each, E = expand
    x = silu(causal_depthwise_conv1d(x))       # (B, L, ED)
    dt, B, C = x_proj(x)                       # input-dependent: the "selection"
    dt = softplus(dt_proj(dt))                 # (B, L, ED)
    h_t = exp(dt_t A) h_{t-1} + dt_t B_t x_t   # (B, ED, N), A = -exp(A_log) diagonal
    y_t = C_t h_t + D x_t
    out = out_proj(y * silu(z))

``forward`` runs the whole sequence through :func:`ssmcast.ops.selective_scan.selective_scan` (its ``backend``:
the fused numba kernel on the CPU and Triton on CUDA under ``"auto"``, the plain PyTorch reference with ``"torch"``);
``step`` advances one token in O(1) time and memory, keeping the last ``d_conv`` conv inputs
``(B, ED, d_conv)`` and the SSM state ``(B, ED, N)``. Initialisation follows ``mamba_simple.py``:
S4D-Real ``A = -(1, ..., N)``, ``D = 1``, ``dt`` log-uniform in ``[dt_min, dt_max]`` stored as the
inverse softplus in ``dt_proj.bias``, ``dt_proj.weight`` uniform in ``+-dt_rank**-0.5 * dt_scale``.
"""

from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F
from torch import nn

from ssmcast.backbones.blocks import SequenceStack
from ssmcast.backbones.config import BackboneConfig, tag_optim
from ssmcast.ops.backends import check_backend
from ssmcast.ops.conv import causal_conv1d
from ssmcast.ops.selective_scan import selective_scan, selective_state_update


def inverse_softplus(x: torch.Tensor) -> torch.Tensor:
    """``y`` with ``softplus(y) == x`` for ``x > 0``."""
    return x + torch.log(-torch.expm1(-x))


def init_dt_bias(size: int, dt_min: float, dt_max: float, dt_init_floor: float = 1e-4) -> torch.Tensor:
    """Inverse softplus of ``dt`` drawn log-uniformly in ``[dt_min, dt_max]`` (floored at ``dt_init_floor``)."""
    if not 0 < dt_min <= dt_max:
        raise ValueError(f"need 0 < dt_min <= dt_max, got dt_min={dt_min}, dt_max={dt_max}")
    log_dt = torch.rand(size) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)
    dt = torch.exp(log_dt).clamp(min=dt_init_floor)  # (size,)
    return inverse_softplus(dt)


def check_sequence_input(x: torch.Tensor, d_model: int, name: str = "x") -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim != 3 or x.shape[-1] != d_model:
        raise ValueError(f"{name} must have shape (batch, length, {d_model}), got {tuple(x.shape)}")


def check_step_input(x: torch.Tensor, d_model: int, name: str = "x_t") -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim != 2 or x.shape[-1] != d_model:
        raise ValueError(f"{name} must have shape (batch, {d_model}), got {tuple(x.shape)}")


def state_dtype(param: torch.Tensor) -> torch.dtype:
    """Recurrent states are kept in float32 at least (float64 if the module is float64)."""
    return torch.promote_types(param.dtype, torch.float32)


def causal_depthwise_conv_step(
    conv_state: torch.Tensor, x_t: torch.Tensor, conv: nn.Conv1d
) -> tuple[torch.Tensor, torch.Tensor]:
    """One step of a causal depthwise ``conv``: shift ``x_t (B, C)`` into ``conv_state (B, C, K)``."""
    conv_state = torch.cat([conv_state[..., 1:], x_t.to(conv_state.dtype).unsqueeze(-1)], dim=-1)  # (B, C, K)
    y = (conv_state * conv.weight[:, 0, :].to(conv_state.dtype)).sum(-1)  # (B, C)
    if conv.bias is not None:
        y = y + conv.bias.to(conv_state.dtype)
    return y, conv_state


def conv_state_after(x: torch.Tensor, d_conv: int, dtype: torch.dtype) -> torch.Tensor:
    """The conv state ``(B, C, d_conv)`` after the inputs ``x (B, C, L)``: the last ``d_conv`` of them, zeros
    in front when ``L < d_conv`` (what :func:`causal_depthwise_conv_step` unrolled over ``x`` leaves)."""
    return F.pad(x[..., -d_conv:], (max(d_conv - x.shape[-1], 0), 0)).to(dtype)  # (B, C, d_conv)


class Mamba(nn.Module):
    """The Mamba (selective SSM) mixer, ``(B, L, d_model) -> (B, L, d_model)``."""

    def __init__(
        self,
        d_model: int,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        dt_rank: int | str = "auto",
        dt_min: float = 1e-3,
        dt_max: float = 1e-1,
        dt_scale: float = 1.0,
        dt_init_floor: float = 1e-4,
        conv_bias: bool = True,
        bias: bool = False,
        backend: str = "auto",
    ):
        super().__init__()
        self.backend = check_backend(backend)
        if dt_rank == "auto":
            dt_rank = math.ceil(d_model / 16)
        if not isinstance(dt_rank, int) or dt_rank < 1:
            raise ValueError(f"dt_rank must be 'auto' or a positive int, got {dt_rank!r}")
        for name, value in (("d_model", d_model), ("d_state", d_state), ("d_conv", d_conv), ("expand", expand)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        self.d_model, self.d_state, self.d_conv = d_model, d_state, d_conv
        self.d_inner = expand * d_model
        self.dt_rank = dt_rank
        ED, N = self.d_inner, d_state

        self.in_proj = nn.Linear(d_model, 2 * ED, bias=bias)
        self.conv1d = nn.Conv1d(ED, ED, kernel_size=d_conv, groups=ED, padding=d_conv - 1, bias=conv_bias)
        self.x_proj = nn.Linear(ED, dt_rank + 2 * N, bias=False)
        self.dt_proj = nn.Linear(dt_rank, ED, bias=True)
        dt_init_std = dt_rank**-0.5 * dt_scale
        nn.init.uniform_(self.dt_proj.weight, -dt_init_std, dt_init_std)
        with torch.no_grad():
            self.dt_proj.bias.copy_(init_dt_bias(ED, dt_min, dt_max, dt_init_floor))

        A = torch.arange(1, N + 1, dtype=torch.float32).repeat(ED, 1)  # (ED, N)
        self.A_log = tag_optim(nn.Parameter(torch.log(A)), weight_decay=0.0)
        self.D = tag_optim(nn.Parameter(torch.ones(ED)), weight_decay=0.0)
        self.out_proj = nn.Linear(ED, d_model, bias=bias)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        """Parallel (training) mode: ``u (B, L, d_model) -> (B, L, d_model)``, causal."""
        return self._parallel(u, return_state=False)

    def prefill(self, u: torch.Tensor):
        """``forward`` plus the state after ``u``, ``(conv_state, ssm_state)`` as :meth:`step` keeps it."""
        return self._parallel(u, return_state=True)

    def _parallel(self, u: torch.Tensor, return_state: bool):
        check_sequence_input(u, self.d_model, "u")
        x, z = self.in_proj(u).chunk(2, dim=-1)  # (B, L, ED)
        x_in = x.transpose(1, 2)  # (B, ED, L)
        x = causal_conv1d(x_in, self.conv1d.weight, self.conv1d.bias, "silu", backend=self.backend)  # (B, ED, L)
        dt, B, C = self.x_proj(x.transpose(1, 2)).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        dt = F.linear(dt, self.dt_proj.weight)  # (B, L, ED), bias added inside the scan
        sd = state_dtype(self.A_log)
        A = -torch.exp(self.A_log.to(sd))  # (ED, N)
        out = selective_scan(
            x,
            dt.transpose(1, 2),
            A,
            B.transpose(1, 2),  # (B, N, L)
            C.transpose(1, 2),
            D=self.D.to(sd),
            z=z.transpose(1, 2),
            delta_bias=self.dt_proj.bias.to(sd),
            delta_softplus=True,
            return_last_state=return_state,
            backend=self.backend,
        )  # (B, ED, L)
        y, last = out if return_state else (out, None)
        y = self.out_proj(y.transpose(1, 2).to(self.out_proj.weight.dtype))  # (B, L, d_model)
        if not return_state:
            return y
        return y, (conv_state_after(x_in, self.d_conv, sd), last.to(sd))  # (B, ED, d_conv), (B, ED, N)

    def initial_state(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(conv_state (B, ED, d_conv), ssm_state (B, ED, N))``, zeros."""
        param = self.A_log
        dtype = state_dtype(param)
        conv_state = torch.zeros(batch_size, self.d_inner, self.d_conv, device=param.device, dtype=dtype)
        ssm_state = torch.zeros(batch_size, self.d_inner, self.d_state, device=param.device, dtype=dtype)
        return conv_state, ssm_state

    def step(self, u_t: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]):
        """Recurrent mode, O(1) per token: ``u_t (B, d_model) -> (y_t (B, d_model), new state)``.

        The given state is not modified; a new one is returned."""
        check_step_input(u_t, self.d_model, "u_t")
        conv_state, ssm_state = state
        x, z = self.in_proj(u_t).chunk(2, dim=-1)  # (B, ED)
        x, conv_state = causal_depthwise_conv_step(conv_state, x, self.conv1d)
        x = F.silu(x)  # (B, ED)
        dt, B, C = self.x_proj(x.to(self.x_proj.weight.dtype)).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        dt = F.linear(dt, self.dt_proj.weight)  # (B, ED)
        sd = ssm_state.dtype
        A = -torch.exp(self.A_log.to(sd))  # (ED, N)
        ssm_state = ssm_state.clone()
        y = selective_state_update(
            ssm_state,
            x.to(sd),
            dt.to(sd),
            A,
            B.to(sd),
            C.to(sd),
            D=self.D.to(sd),
            z=z.to(sd),
            dt_bias=self.dt_proj.bias.to(sd),
            dt_softplus=True,
        )  # (B, ED)
        return self.out_proj(y.to(self.out_proj.weight.dtype)), (conv_state, ssm_state)


@dataclasses.dataclass
class MambaConfig(BackboneConfig):
    """A stack of pre-norm residual Mamba blocks (no separate MLP, as in the paper)."""

    d_model: int = 32
    n_layers: int = 2
    d_state: int = 16
    d_conv: int = 4
    expand: int = 2
    dt_rank: int | str = "auto"
    dt_min: float = 1e-3
    dt_max: float = 1e-1
    dropout: float = 0.0
    norm: str = "rms"
    backend: str = "auto"  # the selective scan's: auto, torch, numba, triton or mamba_ssm (ssmcast.ops.backends)

    def build(self) -> SequenceStack:
        return self.residual_stack(lambda: Mamba(
            self.d_model,
            d_state=self.d_state,
            d_conv=self.d_conv,
            expand=self.expand,
            dt_rank=self.dt_rank,
            dt_min=self.dt_min,
            dt_max=self.dt_max,
            backend=self.backend,
        ))
