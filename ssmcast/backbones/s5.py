"""S5: the simplified (MIMO, diagonal) state space layer of Smith, Warrington & Linderman (ICLR 2023).

One multi-input multi-output SSM per layer (instead of S4's ``H`` independent SISO SSMs), with a
diagonal state matrix ``Lambda`` run by a parallel scan (:func:`ssmcast.ops.s5.s5_scan`), followed by
the reference's GELU/GLU output activation. Initialisation follows the S5 reference code:

* ``d_state`` is the paper's ``P``: the size of the block-diagonal HiPPO-N state matrix, ``blocks`` (``J``)
  copies of the normal part ``S = A + p p^T`` of HiPPO-LegS of size ``P/J``, each diagonalised as
  ``S = V Lambda V^*``.
* With ``conj_sym`` only one eigenvalue of each conjugate pair is kept: the layer stores
  ``n_states = P/2`` complex states and outputs ``y = 2 Re(C~ x) + D u``. Without it, ``n_states = P``
  and ``y = Re(C~ x) + D u``.
* ``B~ = V^{-1} B`` with ``B`` lecun-normal ``(P, H)``; ``C~ = C V`` with ``C`` (complex) from ``C_init``;
  per-state ``log dt`` uniform in ``[log dt_min, log dt_max]``; ``D (H,)`` standard normal.

Parameters are real (complex ones as ``(..., 2)`` re/im pairs), so ``.double()``/``.to()`` work.
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import nn
from torch.nn import functional as F

from ssmcast.backbones.blocks import SequenceStack
from ssmcast.backbones.config import BackboneConfig, tag_optim
from ssmcast.ops.backends import check_backend
from ssmcast.ops.hippo import nplr_legs
from ssmcast.ops.s5 import discretize, s5_scan

ACTIVATIONS = ("gelu", "full_glu", "half_glu1", "half_glu2")
C_INITS = ("trunc_standard", "lecun_normal", "complex_normal")


def _lecun_normal(shape: tuple[int, ...], fan_in: int) -> torch.Tensor:
    """Truncated (at 2 sigma) normal with standard deviation ``1/sqrt(fan_in)``, as JAX's lecun_normal."""
    x = nn.init.trunc_normal_(torch.empty(shape, dtype=torch.float64), std=1.0, a=-2.0, b=2.0)
    return x / 0.87962566103423978 / math.sqrt(fan_in)  # std of N(0,1) truncated to [-2, 2]


def hippo_n_block_diag(d_state: int, blocks: int, conj_sym: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigenvalues ``Lambda (n_states,)`` and eigenvectors ``V (d_state, n_states)`` (complex128) of the
    block-diagonal HiPPO-N matrix: ``blocks`` copies of the normal part of HiPPO-LegS of size
    ``d_state/blocks``. With ``conj_sym`` one member of each conjugate pair is kept (``n_states =
    d_state/2``), otherwise all (``n_states = d_state``, ``V`` unitary)."""
    size = d_state // blocks
    Lambda, _, _, V = nplr_legs(size)  # (size/2,), (size, size/2), Im(Lambda) > 0
    if not conj_sym:
        Lambda = torch.cat([Lambda, Lambda.conj()])  # (size,)
        V = torch.cat([V, V.conj()], 1)  # (size, size)
    return Lambda.repeat(blocks), torch.block_diag(*[V] * blocks)  # (n_states,), (d_state, n_states)


class S5(nn.Module):
    """S5 mixer ``(B, L, H) -> (B, L, H)``: MIMO diagonal SSM + the reference's output activation.

    Args:
        d_model: ``H``, input/output features.
        d_state: ``P``, the (real-equivalent) state size of the block-diagonal HiPPO-N matrix; the layer
            keeps ``P/2`` complex states with ``conj_sym``, ``P`` without.
        blocks: ``J``, number of HiPPO-N blocks on the diagonal; ``d_state/blocks`` must be even.
        discretization: ``"zoh"`` or ``"bilinear"``.
        dt_min: lower end of the range of the initial per-state steps (log-uniform).
        dt_max: upper end of that range.
        conj_sym: keep one of each conjugate pair of states, output ``2 Re(C~ x)``.
        C_init: ``"trunc_standard"`` (reference default: lecun-normal rows, then ``C V``),
            ``"lecun_normal"`` (then ``C V``) or ``"complex_normal"`` (``C~`` directly, std ``sqrt(1/2)``).
        bidirectional: add a backward-in-time scan (non-causal: no ``step``).
        activation: ``"gelu"``, ``"full_glu"``, ``"half_glu1"`` or ``"half_glu2"`` as in the reference
            (``"glu"`` is ``"half_glu1"``, the reference default).
        dropout: dropout after the GELU inside the GLU activations.
        ssm_lr: learning rate of ``Lambda``, ``B``, ``log_dt`` (tagged, weight decay 0); None: the global lr.
        clip_eigs: clamp ``Re(Lambda) <= -1e-4`` so every state decays (reference option, here on by default).
        step_rescale: multiplies every ``dt`` (e.g. to evaluate at another sampling rate).
        backend: the scan's (:func:`ssmcast.ops.s5.s5_scan`): ``"auto"``, ``"torch"``, ``"numba"`` or ``"triton"``.
    """

    def __init__(
        self,
        d_model: int,
        d_state: int = 64,
        blocks: int = 4,
        discretization: str = "zoh",
        dt_min: float = 1e-3,
        dt_max: float = 1e-1,
        conj_sym: bool = True,
        C_init: str = "trunc_standard",
        bidirectional: bool = False,
        activation: str = "half_glu1",
        dropout: float = 0.0,
        ssm_lr: float | None = 1e-3,
        clip_eigs: bool = True,
        step_rescale: float = 1.0,
        backend: str = "auto",
    ):
        super().__init__()
        self.backend = check_backend(backend)
        if self.backend == "mamba_ssm":
            raise ValueError("backend='mamba_ssm' has no S5 scan: use 'auto', 'torch', 'numba' or 'triton'")
        for name, value in (("d_model", d_model), ("d_state", d_state), ("blocks", blocks)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if d_state % blocks or (d_state // blocks) % 2:
            raise ValueError(f"d_state/blocks must be an even integer (HiPPO-N block size), "
                             f"got d_state={d_state}, blocks={blocks}")
        if discretization not in ("zoh", "bilinear"):
            raise ValueError(f"discretization must be 'zoh' or 'bilinear', got {discretization!r}")
        if not 0 < dt_min <= dt_max:
            raise ValueError(f"need 0 < dt_min <= dt_max, got dt_min={dt_min}, dt_max={dt_max}")
        C_init = "trunc_standard" if C_init == "trunc_standard_normal" else C_init
        if C_init not in C_INITS:
            raise ValueError(f"C_init must be one of {C_INITS}, got {C_init!r}")
        activation = "half_glu1" if activation == "glu" else activation
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS + ('glu',)}, got {activation!r}")
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        if not step_rescale > 0:
            raise ValueError(f"step_rescale must be positive, got {step_rescale!r}")

        self.d_model, self.d_state, self.blocks = d_model, d_state, blocks
        self.conj_sym, self.bidirectional, self.clip_eigs = conj_sym, bidirectional, clip_eigs
        self.discretization, self.activation, self.step_rescale = discretization, activation, step_rescale
        H = d_model
        Lambda, V = hippo_n_block_diag(d_state, blocks, conj_sym)  # (P', ), (P, P')
        self.n_states = P = Lambda.shape[0]
        dtype = torch.get_default_dtype()

        B = _lecun_normal((d_state, H), fan_in=d_state)  # (P_full, H), JAX fan-in convention
        B_tilde = V.conj().T @ B.to(V.dtype)  # (P', H)
        n_read = 2 if bidirectional else 1
        if C_init == "complex_normal":
            C_tilde = torch.complex(*torch.randn(2, H, n_read * P, dtype=torch.float64)) * math.sqrt(0.5)
        else:
            fan_in = d_state if C_init == "trunc_standard" else d_state * H
            Cs = [torch.complex(*_lecun_normal((2, H, d_state), fan_in)) @ V for _ in range(n_read)]
            C_tilde = torch.cat(Cs, 1)  # (H, n_read P')
        log_dt = torch.rand(P, dtype=torch.float64) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)

        self.Lambda_re = nn.Parameter(Lambda.real.to(dtype))  # (P',)
        self.Lambda_im = nn.Parameter(Lambda.imag.to(dtype))  # (P',)
        self.B = nn.Parameter(torch.view_as_real(B_tilde).to(dtype))  # (P', H, 2)
        self.C = nn.Parameter(torch.view_as_real(C_tilde).to(dtype))  # (H, n_read P', 2)
        self.D = nn.Parameter(torch.randn(H, dtype=torch.float64).to(dtype))  # (H,)
        self.log_dt = nn.Parameter(log_dt.to(dtype))  # (P',)
        settings = {"weight_decay": 0.0} if ssm_lr is None else {"lr": ssm_lr, "weight_decay": 0.0}
        for param in (self.Lambda_re, self.Lambda_im, self.B, self.log_dt):
            tag_optim(param, **settings)

        self.out1 = nn.Linear(H, H) if activation == "full_glu" else None
        self.out2 = nn.Linear(H, H) if activation != "gelu" else None
        self.dropout = nn.Dropout(dropout)
        self._cache = None

    def _real_dtype(self) -> torch.dtype:
        return torch.float64 if self.Lambda_re.dtype == torch.float64 else torch.float32

    def discrete_params(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(Lambda_bar (P',), B_bar (P', H), C_tilde (H, P'))`` complex, computed in float32 at least.

        Without autograd (inference, streaming ``step``) the result is cached until a parameter changes
        (in place, e.g. an optimiser step or ``load_state_dict``, or by ``.to()``)."""
        if torch.is_grad_enabled():
            self._cache = None
            return self._discrete_params()
        params = (self.Lambda_re, self.Lambda_im, self.B, self.C, self.log_dt)
        key = tuple((p.data_ptr(), p._version, p.dtype, p.device) for p in params) + (self.step_rescale, self.clip_eigs)
        if self._cache is None or self._cache[0] != key:
            self._cache = (key, self._discrete_params())
        return self._cache[1]

    def _discrete_params(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        real = self._real_dtype()
        Lambda_re = self.Lambda_re.to(real)
        if self.clip_eigs:
            Lambda_re = Lambda_re.clamp(max=-1e-4)
        Lambda = torch.complex(Lambda_re, self.Lambda_im.to(real))  # (P',)
        B_tilde = torch.view_as_complex(self.B.to(real))  # (P', H)
        C_tilde = torch.view_as_complex(self.C.to(real))  # (H, P')
        dt = self.step_rescale * torch.exp(self.log_dt.to(real))  # (P',)
        Lambda_bar, B_bar = discretize(Lambda, B_tilde, dt, self.discretization)
        return Lambda_bar, B_bar, C_tilde

    def _activate(self, y: torch.Tensor) -> torch.Tensor:
        if self.activation == "gelu":
            return F.gelu(y)
        if self.activation == "full_glu":
            y = self.dropout(F.gelu(y))
            return self.out1(y) * torch.sigmoid(self.out2(y))
        if self.activation == "half_glu1":
            y = self.dropout(F.gelu(y))
            return y * torch.sigmoid(self.out2(y))
        return y * torch.sigmoid(self.out2(self.dropout(F.gelu(y))))  # half_glu2

    def _check_input(self, x: torch.Tensor, ndim: int) -> None:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"input must be a torch.Tensor, got {type(x).__name__}")
        expect = "(batch, length, d_model)" if ndim == 3 else "(batch, d_model)"
        if x.ndim != ndim or x.shape[-1] != self.d_model:
            raise ValueError(f"input must have shape {expect} with d_model={self.d_model}, got {tuple(x.shape)}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Parallel mode ``(B, L, H) -> (B, L, H)``."""
        return self.scan(x)[0]

    def scan(self, x: torch.Tensor, state: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Parallel mode continued from ``state`` (complex ``(B, P')``, None: zeros): returns ``(y (B, L, H),
        last state)``, so a long history can be absorbed in parallel and then extended with :meth:`step`.
        The last state is None for a bidirectional layer."""
        self._check_input(x, 3)
        Lambda_bar, B_bar, C_tilde = self.discrete_params()
        if self.bidirectional:
            if state is not None:
                raise ValueError("a bidirectional S5 layer is non-causal: it cannot continue from a state")
            y, last = s5_scan(Lambda_bar, B_bar, C_tilde, x, self.conj_sym, bidirectional=True,
                              backend=self.backend), None  # fmt: skip
        else:
            if state is not None:
                self._check_state(state, x.shape[0])
            y, last = s5_scan(Lambda_bar, B_bar, C_tilde, x, self.conj_sym, x0=state, return_state=True,
                              backend=self.backend)  # fmt: skip
        y = y + self.D.to(y.dtype) * x  # (B, L, H)
        return self._activate(y), last

    def prefill(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``forward`` plus the state after ``x``: :meth:`scan` from zeros (causal layers only)."""
        self._no_recurrence()
        return self.scan(x)

    def _check_state(self, state: torch.Tensor, batch_size: int) -> None:
        if not isinstance(state, torch.Tensor) or not state.is_complex():
            raise TypeError("state must be a complex tensor from initial_state() or a previous step()")
        if state.shape != (batch_size, self.n_states):
            raise ValueError(f"state must have shape (batch, n_states) = ({batch_size}, {self.n_states}), "
                             f"got {tuple(state.shape)}")

    def _no_recurrence(self) -> None:
        if self.bidirectional:
            raise RuntimeError("S5 with bidirectional=True is non-causal and has no recurrent (step) mode; "
                               "use forward() on whole sequences or build it with bidirectional=False")

    def initial_state(self, batch_size: int) -> torch.Tensor:
        """Complex zeros ``(batch_size, n_states)``: the state before any input."""
        self._no_recurrence()
        cdtype = torch.complex128 if self._real_dtype() == torch.float64 else torch.complex64
        return torch.zeros(batch_size, self.n_states, dtype=cdtype, device=self.Lambda_re.device)

    def step(self, x_t: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Recurrent mode, O(1) per observation: ``x_t (B, H) -> (y_t (B, H), new state (B, P'))``."""
        self._no_recurrence()
        self._check_input(x_t, 2)
        self._check_state(state, x_t.shape[0])
        Lambda_bar, B_bar, C_tilde = self.discrete_params()
        with torch.autocast(device_type=x_t.device.type, enabled=False):
            u = x_t.to(self._real_dtype())  # (B, H)
            state = Lambda_bar * state.to(Lambda_bar.dtype) + u.to(B_bar.dtype) @ B_bar.T  # (B, P')
            y = (state @ C_tilde.T).real  # (B, H)
            if self.conj_sym:
                y = 2 * y
            y = (y + self.D.to(u.dtype) * u).to(x_t.dtype)
        return self._activate(y), state


@dataclasses.dataclass
class S5Config(BackboneConfig):
    """A stack of ``n_layers`` pre-norm residual blocks around :class:`S5` mixers."""

    d_model: int = 32
    n_layers: int = 2
    d_state: int = 32
    blocks: int = 4
    discretization: str = "zoh"
    dt_min: float = 1e-3
    dt_max: float = 1e-1
    conj_sym: bool = True
    C_init: str = "trunc_standard"
    bidirectional: bool = False
    activation: str = "half_glu1"
    clip_eigs: bool = True
    dropout: float = 0.0
    norm: str = "layer"
    ssm_lr: float | None = 1e-3
    backend: str = "auto"  # the scan's: auto, torch, numba or triton (ssmcast.ops.backends)

    def build(self) -> SequenceStack:
        return self.residual_stack(lambda: S5(
            self.d_model,
            d_state=self.d_state,
            blocks=self.blocks,
            discretization=self.discretization,
            dt_min=self.dt_min,
            dt_max=self.dt_max,
            conj_sym=self.conj_sym,
            C_init=self.C_init,
            bidirectional=self.bidirectional,
            activation=self.activation,
            dropout=self.dropout,
            ssm_lr=self.ssm_lr,
            clip_eigs=self.clip_eigs,
            backend=self.backend,
        ))
