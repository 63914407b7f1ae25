"""S4 (diagonal plus low rank) and S4D (diagonal) layers and their backbone configs.

One ``S4`` mixer serves both: ``mode="dplr"`` is S4 with HiPPO-LegS in normal-plus-low-rank form,
bilinear discretisation and S4's ``C~`` parametrisation; ``mode="diag"`` is S4D with its LegS/Lin/Inv/Real
initialisations and ZOH or bilinear discretisation. The forward (training) mode computes a length-``L``
kernel and applies it by FFT convolution; the recurrent mode (``initial_state``/``step``) unrolls the
discretised state space model at ``O(1)`` cost per step.

References: Gu, Goel, Re, "Efficiently Modeling Long Sequences with Structured State Spaces" (ICLR 2022);
Gu, Gupta, Goel, Re, "On the Parameterization and Initialization of Diagonal State Space Models" (2022).
"""

from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F
from torch import nn

from ssmcast.backbones.blocks import SequenceStack
from ssmcast.backbones.config import BackboneConfig, tag_optim
from ssmcast.ops.conv import fft_conv
from ssmcast.ops.hippo import nplr_legs, s4d_init
from ssmcast.ops.s4_kernels import dplr_dense, dplr_kernel, lti_final_state, s4d_kernel

_INITS = {"dplr": ("legs",), "diag": ("legs", "lin", "inv", "real")}


def _positive_int(value, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")


class S4(nn.Module):
    """S4/S4D mixer ``(B, L, H) -> (B, L, H)``: SSM convolution per channel, GELU, linear + GLU.

    Args:
        d_model: ``H``, number of independent SSMs (one per feature).
        d_state: ``N``, state size of each real SSM (``N/2`` complex conjugate pairs are stored).
        mode: ``"dplr"`` (S4: ``A = Lambda - P P^*``) or ``"diag"`` (S4D: ``A = Lambda``).
        init: ``"legs"`` for dplr (HiPPO-LegS); for diag ``"legs"``, ``"lin"``, ``"inv"`` or ``"real"``.
        discretization: ``"zoh"`` or ``"bilinear"``; default bilinear for dplr (its only one), zoh for diag.
        dt_min: lower end of the log-uniform initialisation of the learnable step ``dt``.
        dt_max: upper end of that range.
        channels: number of SSM output channels per feature (mixed back to ``H`` by the output linear).
        rank: rank ``R`` of the low-rank term (dplr).
        bidirectional: add an anti-causal SSM (non-causal layer; no recurrent mode).
        dropout: dropout after the activation.
        ssm_lr: learning rate of ``A``, ``P``, ``B``, ``dt`` (tagged, weight decay 0); None: the global lr.
        l_max: dplr only. S4 learns ``C~ = C (I - Abar^l_kernel)``, tied to a kernel length: it is set up for
            ``l_max`` at construction (else for the first forward's length); a longer input doubles it in place
            (as S4 does), a shorter one uses the first ``L`` taps of the ``l_kernel``-long kernel.
    """

    def __init__(
        self,
        d_model: int,
        d_state: int = 64,
        mode: str = "dplr",
        init: str = "legs",
        discretization: str | None = None,
        dt_min: float = 1e-3,
        dt_max: float = 1e-1,
        channels: int = 1,
        rank: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.0,
        ssm_lr: float | None = 1e-3,
        l_max: int | None = None,
    ):
        super().__init__()
        _positive_int(d_model, "d_model")
        _positive_int(channels, "channels")
        _positive_int(rank, "rank")
        if isinstance(d_state, bool) or not isinstance(d_state, int) or d_state < 2 or d_state % 2:
            raise ValueError(f"d_state must be an even int >= 2 (conjugate pairs), got {d_state!r}")
        if mode not in _INITS:
            raise ValueError(f"unknown mode {mode!r}: expected 'dplr' or 'diag'")
        if init not in _INITS[mode]:
            raise ValueError(f"init {init!r} is not available for mode {mode!r}: expected one of {_INITS[mode]}")
        if discretization is None:
            discretization = "bilinear" if mode == "dplr" else "zoh"
        if discretization not in ("zoh", "bilinear"):
            raise ValueError(f"unknown discretization {discretization!r}: expected 'zoh' or 'bilinear'")
        if mode == "dplr" and discretization != "bilinear":
            raise ValueError("mode 'dplr' supports only discretization='bilinear' (S4's kernel algorithm)")
        if not 0 < dt_min <= dt_max:
            raise ValueError(f"need 0 < dt_min <= dt_max, got dt_min={dt_min}, dt_max={dt_max}")
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        if l_max is not None:
            _positive_int(l_max, "l_max")
        self.d_model, self.d_state, self.mode, self.init = d_model, d_state, mode, init
        self.discretization, self.channels, self.bidirectional = discretization, channels, bidirectional
        H, N2 = d_model, d_state // 2
        n_kernels = channels * (2 if bidirectional else 1)

        if mode == "dplr":
            Lambda, P, B, _ = nplr_legs(d_state, rank)  # (N2,), (R, N2), (N2,)
            self.P = nn.Parameter(torch.view_as_real(P[:, None].repeat(1, H, 1)).float())  # (R, H, N2, 2)
        else:
            Lambda, B = s4d_init(N2, init, dtype=torch.complex128)  # (N2,), (N2,)
        self.log_A_real = nn.Parameter(torch.log(-Lambda.real).repeat(H, 1).float())  # (H, N2)
        self.A_imag = nn.Parameter(Lambda.imag.repeat(H, 1).float())  # (H, N2)
        self.B = nn.Parameter(torch.view_as_real(B.repeat(H, 1)).float())  # (H, N2, 2)
        self.C = nn.Parameter(torch.view_as_real(torch.randn(n_kernels, H, N2, dtype=torch.complex64)))
        self.D = nn.Parameter(torch.randn(channels, H))  # (channels, H)
        log_dt = torch.rand(H) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)  # (H,)
        self.log_dt = nn.Parameter(log_dt)
        for name in ("log_A_real", "A_imag", "P", "B", "log_dt"):
            if hasattr(self, name):
                settings = {"weight_decay": 0.0} if ssm_lr is None else {"lr": ssm_lr, "weight_decay": 0.0}
                tag_optim(getattr(self, name), **settings)
        # dplr: self.C holds C~ = C (I - Abar^l_kernel) once l_kernel > 0 (S4's parametrisation), else C
        self.register_buffer("l_kernel", torch.zeros((), dtype=torch.long))

        self.dropout = nn.Dropout(dropout)
        self.output_linear = nn.Linear(channels * H, 2 * H)
        self._step_cache = None
        self._ssm_names = [n for n in ("log_A_real", "A_imag", "P", "B", "C", "D", "log_dt") if hasattr(self, n)]
        if l_max is not None and mode == "dplr":
            self._extend_kernel_length(l_max)

    # ----- SSM parameters -----------------------------------------------------------------------------

    def _ssm(self, double: bool = False):
        """``(dt, A, B, C, P)`` as real/complex tensors (``P`` is None for diag), in float64 if ``double``."""
        dt = torch.exp(self.log_dt)  # (H,)
        A = torch.complex(-torch.exp(self.log_A_real), self.A_imag)  # (H, N2)
        B = torch.view_as_complex(self.B)  # (H, N2)
        C = torch.view_as_complex(self.C)  # (n_kernels, H, N2)
        P = torch.view_as_complex(self.P) if self.mode == "dplr" else None  # (R, H, N2)
        if double:
            dt, A, B, C = dt.double(), A.to(torch.complex128), B.to(torch.complex128), C.to(torch.complex128)
            P = P.to(torch.complex128) if P is not None else None
        return dt, A, B, C, P

    @torch.no_grad()
    def _extend_kernel_length(self, L: int) -> None:
        """Set up (or double until ``>= L``) the length of S4's ``C~``, updating ``self.C`` in place."""
        L_kernel = int(self.l_kernel)
        if L <= L_kernel:
            return
        dt, Lambda, B, C, P = self._ssm(double=True)
        N2 = Lambda.shape[-1]
        dA, _ = dplr_dense(dt, Lambda, P, B)  # (H, 2N2, 2N2)
        C_full = torch.cat([C, C.conj()], -1)  # (n_kernels, H, 2N2)
        if L_kernel == 0:
            C_full = C_full - torch.einsum("chn,hnm->chm", C_full, torch.linalg.matrix_power(dA, L))
            L_kernel = L
        while L_kernel < L:  # C~_{2L} = C (I - Abar^{2L}) = C~_L (I + Abar^L)
            C_full = C_full + torch.einsum("chn,hnm->chm", C_full, torch.linalg.matrix_power(dA, L_kernel))
            L_kernel *= 2
        self.C.copy_(torch.view_as_real(C_full[..., :N2]).to(self.C.dtype))
        self.l_kernel.fill_(L_kernel)

    def kernel(self, L: int) -> torch.Tensor:
        """SSM kernels ``(n_kernels, H, L)``; ``n_kernels`` is ``channels``, doubled if bidirectional."""
        _positive_int(L, "L")
        if self.mode == "diag":
            dt, A, B, C, _ = self._ssm()
            return s4d_kernel(dt, A, B, C, L, self.discretization)  # (n_kernels, H, L)
        self._extend_kernel_length(L)
        dt, Lambda, B, C, P = self._ssm()
        K = dplr_kernel(dt, Lambda, P, B, C, int(self.l_kernel), tilde=True)  # (n_kernels, H, l_kernel)
        return K[..., :L]

    # ----- convolution (training) mode ----------------------------------------------------------------

    def _output(self, y: torch.Tensor) -> torch.Tensor:
        y = self.dropout(F.gelu(y))  # (..., channels H)
        return F.glu(self.output_linear(y), dim=-1)  # (..., H)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, L, H) -> (B, L, H)``; causal unless ``bidirectional``."""
        if x.ndim != 3 or x.shape[-1] != self.d_model:
            name = type(self).__name__
            raise ValueError(f"{name} expects input (batch, length, {self.d_model}), got {tuple(x.shape)}")
        batch, L, H = x.shape
        with torch.autocast(device_type=x.device.type, enabled=False):
            u = x.transpose(1, 2).to(self.log_dt.dtype)  # (B, H, L)
            K = self.kernel(L)  # (n_kernels, H, L)
            y = fft_conv(u[:, None], K[: self.channels], self.D)  # (B, channels, H, L)
            if self.bidirectional:
                K_back = F.pad(K[self.channels :], (1, 0))[..., :L]  # (channels, H, L), strictly anti-causal
                y = y + fft_conv(u.flip(-1)[:, None], K_back).flip(-1)  # (B, channels, H, L)
            y = self._extra_terms(u, y)
        y = y.reshape(batch, self.channels * H, L).transpose(1, 2)  # (B, L, channels H)
        return self._output(y)

    def _extra_terms(self, u: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Terms a subclass adds to the convolution's output ``y (B, channels, H, L)`` of ``u (B, H, L)`` (none)."""
        return y

    def prefill(self, x: torch.Tensor, last: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """``forward`` plus the state after ``x`` (as :meth:`step` keeps it), in parallel over time.

        The state is a linear map of the history (:func:`lti_final_state`). ``last=True``: the output at the last
        step only, ``(B, 1, H)``, read out of that state as :meth:`step` does (no convolution over the history)."""
        if self.bidirectional:
            raise RuntimeError("a bidirectional S4 layer is non-causal and has no recurrent state")
        last = last and type(self)._extra_terms is S4._extra_terms  # a subclass's extra terms: the full forward
        y = None if last else self.forward(x)  # (B, L, H)
        with torch.autocast(device_type=x.device.type, enabled=False):
            dA, dB, C, D = self._step_params()
            u = x.transpose(1, 2).to(self.log_dt.dtype)  # (B, H, L)
            state = lti_final_state(dA, dB, u)  # (B, H, N2 | N)
            if last:
                y = self._readout(state, u[..., -1], C, D)  # (B, channels, H)
        if last:
            y = self._output(y.reshape(x.shape[0], -1))[:, None]  # (B, 1, H)
        return y, state

    # ----- recurrent mode -----------------------------------------------------------------------------

    def _step_params(self):
        """Discretised ``(dA, dB, C, D)`` for ``step``; cached (without autograd) until parameters change."""
        tracked = [self._parameters[n] for n in self._ssm_names] + [self.l_kernel]
        key = (tuple((p.data_ptr(), p._version) for p in tracked), self.log_dt.dtype)  # no device sync
        use_cache = not (torch.is_grad_enabled() and self.log_dt.requires_grad)
        if use_cache and self._step_cache is not None and self._step_cache[0] == key:
            return self._step_cache[1]
        params = self.setup_step()
        if use_cache:
            self._step_cache = (key, tuple(p.detach() for p in params))
        return params

    def setup_step(self):
        """Discretise once for the recurrent mode: ``(dA, dB, C, D)``.

        diag: ``dA, dB (H, N2)`` and ``C (channels, H, N2)`` complex (output ``2 Re(C x)``). dplr: the dense
        ``2 N2``-state bilinear system in real coordinates ``z = [Re x; Im x]``: ``dA (H, N, N)``,
        ``dB (H, N)``, ``C (channels, H, N)`` real, with ``C = C~ (I - Abar^L)^{-1}`` as in S4.
        """
        dtype = self.log_dt.dtype
        if self.mode == "diag":
            dt, A, B, C, _ = self._ssm()
            dtA = dt[:, None] * A  # (H, N2)
            if self.discretization == "zoh":
                dA, dB = torch.exp(dtA), torch.expm1(dtA) / A * B  # (H, N2)
            else:
                dA, dB = (1 + dtA / 2) / (1 - dtA / 2), dt[:, None] * B / (1 - dtA / 2)  # (H, N2)
            return dA, dB, C[: self.channels], self.D
        dt, Lambda, B, C, P = self._ssm(double=True)
        N2 = Lambda.shape[-1]
        dA, dB = dplr_dense(dt, Lambda, P, B)  # (H, 2N2, 2N2), (H, 2N2)
        C_full = torch.cat([C[: self.channels], C[: self.channels].conj()], -1)  # (channels, H, 2N2)
        L_kernel = int(self.l_kernel)
        if L_kernel > 0:
            eye = torch.eye(2 * N2, dtype=dA.dtype, device=dA.device)
            left = (eye - torch.linalg.matrix_power(dA, L_kernel)).mT  # (H, 2N2, 2N2)
            C_full = torch.linalg.solve(left, C_full[..., None])[..., 0]  # (channels, H, 2N2)
        eye = torch.eye(N2, dtype=dA.dtype, device=dA.device)
        T = torch.cat([torch.cat([eye, 1j * eye], 1), torch.cat([eye, -1j * eye], 1)])  # x_full = T z
        T_inv = 0.5 * torch.cat([torch.cat([eye, eye], 1), torch.cat([-1j * eye, 1j * eye], 1)])
        dA_real = (T_inv @ dA @ T).real.to(dtype)  # (H, N, N)
        dB_real = (dB @ T_inv.mT).real.to(dtype)  # (H, N)
        C_real = (C_full @ T).real.to(dtype)  # (channels, H, N)
        return dA_real, dB_real, C_real, self.D

    def initial_state(self, batch_size: int) -> torch.Tensor:
        """Zero state: ``(B, H, N/2)`` complex (diag) or ``(B, H, N)`` real (dplr)."""
        _positive_int(batch_size, "batch_size")
        if self.mode == "diag":
            dtype = torch.complex128 if self.log_dt.dtype == torch.float64 else torch.complex64
            return torch.zeros(batch_size, self.d_model, self.d_state // 2, dtype=dtype, device=self.log_dt.device)
        return torch.zeros(batch_size, self.d_model, self.d_state, dtype=self.log_dt.dtype, device=self.log_dt.device)

    def step(self, x: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One recurrent step ``(B, H) -> (B, H)`` at O(1) cost in the history length."""
        if self.bidirectional:
            raise RuntimeError("a bidirectional S4 layer is non-causal and has no recurrent step mode")
        if x.ndim != 2 or x.shape[-1] != self.d_model:
            raise ValueError(f"S4.step expects x of shape (batch, {self.d_model}), got {tuple(x.shape)}")
        with torch.autocast(device_type=x.device.type, enabled=False):
            dA, dB, C, D = self._step_params()
            u = x.to(self.log_dt.dtype)  # (B, H)
            if self.mode == "diag":
                state = dA * state + dB * u[..., None]  # (B, H, N2)
            else:
                state = (dA @ state[..., None])[..., 0] + dB * u[..., None]  # (B, H, N)
            y = self._readout(state, u, C, D)  # (B, channels, H)
        return self._output(y.reshape(x.shape[0], -1)), state

    def _readout(self, state: torch.Tensor, u: torch.Tensor, C: torch.Tensor, D: torch.Tensor) -> torch.Tensor:
        """The SSM's output ``(B, channels, H)`` at a step from its state and input ``u (B, H)``."""
        if self.mode == "diag":
            y = 2 * torch.einsum("bhn,chn->bch", state, C).real  # (B, channels, H)
        else:
            y = torch.einsum("bhn,chn->bch", state, C)  # (B, channels, H)
        return y + D * u[:, None]  # (B, channels, H)


@dataclasses.dataclass
class S4Config(BackboneConfig):
    """S4 backbone: ``n_layers`` pre-norm residual blocks around :class:`S4` mixers (HiPPO-LegS DPLR)."""

    d_model: int = 32
    n_layers: int = 2
    d_state: int = 32
    mode: str = "dplr"
    init: str = "legs"
    discretization: str = "bilinear"
    dt_min: float = 1e-3
    dt_max: float = 1e-1
    channels: int = 1
    dropout: float = 0.1
    norm: str = "layer"
    bidirectional: bool = False
    ssm_lr: float | None = 1e-3

    def build(self) -> SequenceStack:
        return self.residual_stack(lambda: S4(
            self.d_model,
            d_state=self.d_state,
            mode=self.mode,
            init=self.init,
            discretization=self.discretization,
            dt_min=self.dt_min,
            dt_max=self.dt_max,
            channels=self.channels,
            bidirectional=self.bidirectional,
            dropout=self.dropout,
            ssm_lr=self.ssm_lr,
        ))


@dataclasses.dataclass
class S4DConfig(S4Config):
    """S4D backbone: the same stack with diagonal ``A`` (S4D-Inv init, ZOH discretisation)."""

    mode: str = "diag"
    init: str = "inv"
    discretization: str = "zoh"
