"""Liquid-S4: the S4D layer with the liquid (input-dependent transition) kernel of polynomial order ``P``.

Hasani, Lechner, Wang, Chahine, Amini, Rus, "Liquid Structural State-Space Models" (ICLR 2023,
arXiv 2209.12951); reference code github.com/raminmh/liquid-s4 (``src/models/sequence/ss/s4.py``, class ``S4``,
options ``liquid_kernel="polyb"`` and ``liquid_degree``).

The model. Liquid-S4 linearises a liquid time-constant (LTC) network: the input modulates the state transition,

    x_k = (Abar + diag(Bbar) u_k) x_{k-1} + Bbar u_k,    y_k = 2 Re(C x_k) + D u_k,            (1)

per feature ``h`` (``H`` independent single-input SSMs, as S4), with the diagonal S4D state of this package:
``Abar, Bbar, C`` in ``C^{N/2}`` (one member of each conjugate pair), discretised from ``(dt, A, B)`` exactly as
:class:`ssmcast.backbones.s4.S4` in ``mode="diag"`` (bilinear by default, as the paper; ZOH optional). The
liquid term acts element-wise on the state, as the LTC's input-dependent time constant does (LTC:
``dx/dt = -[w + f(x, u)] * x + ...``): each mode's pole becomes ``Abar_n + Bbar_n u_k``, and the transition
stays diagonal.

(1) is multilinear in the inputs. Expanded (induction over ``k``), with ``Abar`` and ``diag(Bbar)`` commuting,

    y_k = D u_k + sum_{p >= 1} sum_{i_1 < ... < i_p <= k} Kliq^(p)_{k - i_1 - (p - 1)} u_{i_1} ... u_{i_p},
    Kliq^(p)_m = 2 Re sum_n C_n Abar_n^m Bbar_n^p,                                                (2)

so ``p = 1`` is the S4 kernel ``Kbar_m = C Abar^m Bbar`` and ``p >= 2`` the paper's liquid kernel
``[C Abar^(L - i - p) Bbar^p]_i`` applied to the input correlations. The exponent ``m = k - i_1 - (p - 1)``
counts the steps of the span ``i_1..k`` that carry no input of the product: ``m = 0`` for exactly one
``p``-tuple, the ``p`` most recent inputs ``u_{k-p+1} ... u_k``.

What this layer computes (the PB kernel, "powers of Bbar", the reference's ``liquid_kernel="polyb"``, which the
paper recommends): the whole degree-1 term plus, for each degree ``p = 2..P`` (``P = liquid_degree``), the
``Abar^0`` tap of the liquid kernel, ``K^PB_p = Kliq^(p)_0 = 2 Re sum_n C_n Bbar_n^p``::

    y_k = (Kbar * u)_k + D u_k + sum_{p=2}^{P} K^PB_p  u_k u_{k-1} ... u_{k-p+1}             (3)

(inputs before the sequence are zero). Each term of (3) is a term of (2) with its exact coefficient; the terms
of (2) dropped are those with a gap (``m >= 1``, damped by ``Abar^m``) and those of degree above ``P``.
``liquid_degree=1`` is exactly S4D. In recurrent form (3) is

    x_k = Abar x_{k-1} + Bbar u_k                      (the S4D state)
    pi^(1)_k = u_k,  pi^(p)_k = u_k pi^(p-1)_{k-1}     (running products of the p latest inputs)   (4)
    y_k = 2 Re(C x_k) + D u_k + sum_{p=2}^{P} K^PB_p pi^(p)_k

(equivalently liquid states ``z^(p)_k = diag(Bbar) u_k z^(p-1)_{k-1}``, ``z^(1)_k = Bbar u_k``, read out as
``2 Re C z^(p)_k``: (1)'s liquid path with no ``Abar`` between its multiplications). :meth:`LiquidS4.step` runs
(4) at ``O(N + P)`` per step; the state is ``(x (B, H, N/2) complex, pi (B, H, P - 1) real)`` with
``pi[..., q-1] = pi^(q)``. :meth:`LiquidS4.forward` computes (3) in parallel: the S4D kernel by FFT convolution
plus ``P - 1`` shifted products of the input.

Where this departs from the reference code, and why (the paper leaves these open):

* Causality. The reference multiplies ``K^PB_p`` with the *time-reversed* correlation sequence
  (``torch.flip(u_corr, [-1])``: ``y_k`` gets the product at ``L - 1 - k``), and its default ``allcombs=True``
  builds the correlations from ``p``-subsets of the *last* ~``sqrt(2L)`` positions of the window: both make
  ``y_k`` depend on future inputs, which a forecaster (and a recurrent ``step``) cannot. This layer uses the
  causal products of the ``p`` latest inputs, the reference's ``allcombs=False`` correlation at ``p = 2``
  (``u_k u_{k-1}``) without the flip: by (2) these are exactly the correlations whose liquid-kernel tap
  carries no ``Abar``, i.e. the ones the PB kernel's coefficient ``C Bbar^p`` is exact for.
* Degree ``p >= 3``. The reference updates ``us = us * shift(us)`` (degree 3: ``u_k u_{k-1}^2 u_{k-2}``, a
  polynomial of degree 4) and ``dB = dB * sum(dB)`` (degree ``p``: ``Bbar (1^T Bbar)^(2^(p-1) - 1)``), repeated
  squaring that matches no expansion of (1). Here degree ``p`` is the degree-``p`` term of (1): ``p`` inputs,
  ``Bbar_n^p`` element-wise (the diagonal reading of the paper's ``Bbar^p``; the reference's degree-2
  ``Bbar sum(Bbar)`` is the reading with the rank-one coupling ``Bbar 1^T``, which would make the transition
  dense).
* Discretisation. The reference's liquid ``Bbar`` is always bilinear and its ``C`` is S4's ``C~``; here ``Bbar``
  and ``C`` are the layer's own (bilinear or ZOH), so (3) and (4) describe one system. ``lcontract`` (identity by
  default there) and the ``"kb"`` kernel (``Kbar sum(Bbar)`` convolved with the flipped correlations) are not
  implemented; there is no bidirectional mode (the layer is causal).
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F

from ssmcast.backbones.blocks import SequenceStack
from ssmcast.backbones.config import BackboneConfig
from ssmcast.backbones.s4 import S4
from ssmcast.ops.s4_kernels import lti_final_state


def check_liquid_degree(liquid_degree) -> None:
    if isinstance(liquid_degree, bool) or not isinstance(liquid_degree, int) or liquid_degree < 1:
        raise ValueError(
            f"liquid_degree must be an int >= 1 (1: plain S4D; P >= 2 adds the liquid terms of degree 2..P), "
            f"got {liquid_degree!r}"
        )


def pb_coefficients(dB: torch.Tensor, C: torch.Tensor, liquid_degree: int) -> torch.Tensor:
    """PB liquid kernel ``K^PB_p = 2 Re sum_n C[c, h, n] dB[h, n]^p`` for ``p = 2..P``: ``(P - 1, channels, H)``.

    ``dB (H, N2)`` is the discretised ``Bbar``, ``C (channels, H, N2)``, both complex (one member of each pair)."""
    powers, power = [], dB  # (H, N2)
    for _ in range(2, liquid_degree + 1):
        power = power * dB  # Bbar^p, element-wise
        powers.append(power)
    if not powers:
        return dB.real.new_zeros(0, C.shape[0], C.shape[1])
    return 2 * torch.einsum("chn,phn->pch", C, torch.stack(powers)).real  # (P - 1, channels, H)


def running_products(u: torch.Tensor, liquid_degree: int) -> torch.Tensor:
    """``pi^(p)_k = u_k u_{k-1} ... u_{k-p+1}`` (zero inputs before ``k = 0``) for ``p = 2..P``.

    ``u (B, H, L)`` -> ``(P - 1, B, H, L)``; ``pi^(p) = u * shift(pi^(p-1))``, ``pi^(1) = u``."""
    products, pi = [], u  # (B, H, L)
    for _ in range(2, liquid_degree + 1):
        pi = u * F.pad(pi[..., :-1], (1, 0))  # (B, H, L)
        products.append(pi)
    if not products:
        return u.new_zeros(0, *u.shape)
    return torch.stack(products)  # (P - 1, B, H, L)


class LiquidS4(S4):
    """Liquid-S4 mixer ``(B, L, H) -> (B, L, H)``: the PB liquid SSM (3) per feature, GELU, linear + GLU.

    An :class:`~ssmcast.backbones.s4.S4` in ``mode="diag"`` (its parameters, kernel, discretisation and output
    layers, unchanged) plus the liquid terms of degrees ``2..liquid_degree``; see the module docstring.

    Args:
        d_model: ``H``, number of independent SSMs (one per feature).
        d_state: ``N``, state size of each real SSM (``N/2`` complex conjugate pairs are stored).
        liquid_degree: ``P``, the highest degree of the input correlations (1: S4D exactly; the reference's
            default is 2).
        init: S4D initialisation, ``"legs"`` (default: the diagonal part of HiPPO-LegS, the ``A`` and ``B`` the
            reference's liquid term uses), ``"lin"``, ``"inv"`` or ``"real"``.
        discretization: ``"bilinear"`` (default, as the paper) or ``"zoh"``; used for ``Bbar`` in both the
            S4D kernel and the liquid kernel.
        dt_min: lower end of the log-uniform initialisation of the learnable step ``dt`` (as S4).
        dt_max: upper end of that range.
        channels: number of SSM output channels per feature (mixed back to ``H`` by the output linear).
        dropout: dropout after the activation.
        ssm_lr: learning rate of ``A``, ``B``, ``dt`` (tagged, weight decay 0); None: the global lr.
    """

    def __init__(
        self,
        d_model: int,
        d_state: int = 64,
        liquid_degree: int = 2,
        init: str = "legs",
        discretization: str = "bilinear",
        dt_min: float = 1e-3,
        dt_max: float = 1e-1,
        channels: int = 1,
        dropout: float = 0.0,
        ssm_lr: float | None = 1e-3,
    ):
        check_liquid_degree(liquid_degree)
        super().__init__(
            d_model, d_state=d_state, mode="diag", init=init, discretization=discretization, dt_min=dt_min,
            dt_max=dt_max, channels=channels, bidirectional=False, dropout=dropout, ssm_lr=ssm_lr,
        )
        self.liquid_degree = liquid_degree

    def setup_step(self):
        """Discretise once for the recurrent mode: ``(dA, dB, C, D, K_pb)``, ``K_pb (P - 1, channels, H)``."""
        dA, dB, C, D = super().setup_step()  # (H, N2), (H, N2), (channels, H, N2), (channels, H)
        return dA, dB, C, D, pb_coefficients(dB, C, self.liquid_degree)

    def _liquid(self, u: torch.Tensor, K_pb: torch.Tensor) -> torch.Tensor:
        """``sum_p K^PB_p pi^(p)``: ``u (B, H, L)`` -> ``(B, channels, H, L)``."""
        return torch.einsum("pbhl,pch->bchl", running_products(u, self.liquid_degree), K_pb)

    def _extra_terms(self, u: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """:meth:`S4.forward` (``(B, L, H) -> (B, L, H)``, causal) computes ``Kbar * u + D u``; this adds (3)'s
        liquid terms: ``u (B, H, L)``, ``y (B, channels, H, L)``."""
        if self.liquid_degree == 1:
            return y
        K_pb = self.setup_step()[-1]  # (P - 1, channels, H), with autograd
        return y + self._liquid(u, K_pb)  # (B, channels, H, L)

    def prefill(self, x: torch.Tensor):
        """``forward`` plus the state after ``x`` (as :meth:`step` keeps it), in parallel over time."""
        y = self.forward(x)  # (B, L, H)
        with torch.autocast(device_type=x.device.type, enabled=False):
            dA, dB, _, _, _ = self._step_params()
            u = x.transpose(1, 2).to(self.log_dt.dtype)  # (B, H, L)
            state = lti_final_state(dA, dB, u)  # (B, H, N2)
            P = self.liquid_degree
            latest = F.pad(u, (P - 1, 0))[..., u.shape[-1] :]  # (B, H, P - 1): u_{L-P+1} .. u_{L-1}
            pi = torch.cumprod(latest.flip(-1), -1)  # (B, H, P - 1): pi^(q)_{L-1} = u_{L-1} ... u_{L-q}
        return y, (state, pi)

    def initial_state(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Zero state ``(x (B, H, N/2) complex, pi (B, H, P - 1) real)``."""
        x = super().initial_state(batch_size)  # (B, H, N2)
        pi = torch.zeros(batch_size, self.d_model, self.liquid_degree - 1, dtype=self.log_dt.dtype,
                         device=self.log_dt.device)
        return x, pi

    def step(self, x: torch.Tensor, state):
        """One recurrent step (4), ``(B, H) -> (B, H)``, at O(1) cost in the history length."""
        if x.ndim != 2 or x.shape[-1] != self.d_model:
            raise ValueError(f"LiquidS4.step expects x of shape (batch, {self.d_model}), got {tuple(x.shape)}")
        s, pi = state  # (B, H, N2), (B, H, P - 1)
        with torch.autocast(device_type=x.device.type, enabled=False):
            dA, dB, C, D, K_pb = self._step_params()
            u = x.to(self.log_dt.dtype)  # (B, H)
            s = dA * s + dB * u[..., None]  # (B, H, N2): x_k = Abar x_{k-1} + Bbar u_k
            y = 2 * torch.einsum("bhn,chn->bch", s, C).real + D * u[:, None]  # (B, channels, H)
            ones = torch.ones_like(u)[..., None]  # (B, H, 1): pi^(0)
            pi = u[..., None] * torch.cat([ones, pi], -1)  # (B, H, P): pi^(q)_k = u_k pi^(q-1)_{k-1}, q = 1..P
            y = y + torch.einsum("bhp,pch->bch", pi[..., 1:], K_pb)  # sum_{p>=2} K^PB_p pi^(p)_k
            pi = pi[..., :-1]  # (B, H, P - 1): what the next step needs
        return self._output(y.reshape(x.shape[0], -1)), (s, pi)


@dataclasses.dataclass
class LiquidS4Config(BackboneConfig):
    """Liquid-S4 backbone: ``n_layers`` pre-norm residual blocks around :class:`LiquidS4` mixers (PB kernel)."""

    d_model: int = 32
    n_layers: int = 2
    d_state: int = 32
    liquid_degree: int = 2
    init: str = "legs"
    discretization: str = "bilinear"
    dt_min: float = 1e-3
    dt_max: float = 1e-1
    channels: int = 1
    dropout: float = 0.1
    norm: str = "layer"
    ssm_lr: float | None = 1e-3

    def build(self) -> SequenceStack:
        check_liquid_degree(self.liquid_degree)
        return self.residual_stack(lambda: LiquidS4(
            self.d_model,
            d_state=self.d_state,
            liquid_degree=self.liquid_degree,
            init=self.init,
            discretization=self.discretization,
            dt_min=self.dt_min,
            dt_max=self.dt_max,
            channels=self.channels,
            dropout=self.dropout,
            ssm_lr=self.ssm_lr,
        ))
