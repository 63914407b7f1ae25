"""Causal long convolution by FFT, the convolution mode of S4/S4D."""

from __future__ import annotations

import torch

_LOW_PRECISION = (torch.float16, torch.bfloat16)


def fft_conv(u: torch.Tensor, K: torch.Tensor, D: torch.Tensor | None = None) -> torch.Tensor:
    """Causal convolution ``y[.., h, t] = sum_{s <= t} K[.., h, s] u[.., h, t - s] + D[.., h] u[.., h, t]``.

    ``u`` is ``(batch, H, L)`` and ``K`` is ``(H, L)``; leading dimensions broadcast (e.g. ``u (B, 1, H, L)``
    with ``K (C, H, L)`` gives ``(B, C, H, L)``), as does ``D (..., H)``. Computed by ``rfft`` at length
    ``2L`` (no wrap-around), in float32 at least: half/bfloat16 inputs are upcast (FFTs do not take bf16)
    and the result is cast back to the inputs' common dtype.
    """
    if u.ndim < 2 or K.ndim < 2:
        raise ValueError(f"fft_conv: u and K need shape (..., H, L); got u {tuple(u.shape)}, K {tuple(K.shape)}")
    if u.is_complex() or K.is_complex():
        raise TypeError("fft_conv: u and K must be real tensors")
    L = u.shape[-1]
    if K.shape[-1] != L or K.shape[-2] != u.shape[-2]:
        raise ValueError(
            f"fft_conv: K {tuple(K.shape)} must end in (H, L) = {tuple(u.shape[-2:])} (u is {tuple(u.shape)})"
        )
    if D is not None and D.shape[-1:] != u.shape[-2:-1]:
        raise ValueError(f"fft_conv: D {tuple(D.shape)} must end in H = {u.shape[-2]}")
    out_dtype = torch.result_type(u, K) if D is None else torch.promote_types(torch.result_type(u, K), D.dtype)
    work = torch.float32 if out_dtype in _LOW_PRECISION else out_dtype
    u_, K_ = u.to(work), K.to(work)
    n = 2 * L
    y = torch.fft.irfft(torch.fft.rfft(u_, n=n) * torch.fft.rfft(K_, n=n), n=n)[..., :L]  # (..., H, L)
    if D is not None:
        y = y + D.to(work)[..., None] * u_  # (..., H, L)
    return y.to(out_dtype)


def causal_conv1d(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    activation: str | None = None,
    backend: str = "auto",
) -> torch.Tensor:
    """Causal depthwise convolution, Mamba's short ``conv1d`` (the ``causal_conv1d`` package's semantics).

    ``y[b, c, t] = act(bias[c] + sum_k weight[c, k] x[b, c, t - K + 1 + k])`` with zeros before ``t = 0``, for
    ``x (batch, C, L)``, ``weight (C, K)`` (or ``nn.Conv1d``'s ``(C, 1, K)``) and ``bias (C,)``; ``activation``
    None or ``"silu"``. ``backend``: ``"torch"`` (``F.conv1d`` with ``K - 1`` zeros of padding, then the
    activation: the reference), ``"numba"`` (one fused pass forward and one backward on the CPU, where torch's
    depthwise convolution, its padding copy and the separate activation cost ~25 ns an element) or ``"auto"``
    (numba on the CPU, torch elsewhere: on a GPU the convolution is cuDNN's). Computed in float32 at least;
    returns ``x``'s dtype.
    """
    from torch.nn import functional as F

    from ssmcast.ops import backends

    if x.ndim != 3:
        raise ValueError(f"causal_conv1d: x must be (batch, C, L), got shape {tuple(x.shape)}")
    C, L = x.shape[1], x.shape[2]
    if weight.ndim == 3 and weight.shape[1] == 1:
        weight = weight[:, 0]
    if weight.ndim != 2 or weight.shape[0] != C:
        raise ValueError(f"causal_conv1d: weight must be (C, K) = ({C}, K), got shape {tuple(weight.shape)}")
    if bias is not None and bias.shape != (C,):
        raise ValueError(f"causal_conv1d: bias must be (C,) = ({C},), got shape {tuple(bias.shape)}")
    if activation not in (None, "silu"):
        raise ValueError(f"causal_conv1d: activation must be None or 'silu', got {activation!r}")
    chosen = backends.check_backend(backend)
    if chosen == "auto":
        chosen = "numba" if backends.available("numba", x.device) else "torch"
    elif chosen != "torch":
        chosen = backends.resolve(chosen, x.device, "causal_conv1d")
        if chosen != "numba":  # the GPU backends have no kernel of their own here: cuDNN's convolution is fast
            chosen = "torch"
    work = torch.float64 if x.dtype == torch.float64 else torch.float32
    if chosen == "numba":
        module = backends.kernels("numba", "conv")
        y = module.CausalConv1d.apply(x.to(work).contiguous(), weight.to(work).contiguous(),
                                      None if bias is None else bias.to(work).contiguous(), activation == "silu")
        return y.to(x.dtype)
    K = weight.shape[1]
    xw = x.to(work)
    y = F.conv1d(xw, weight.to(work)[:, None], None if bias is None else bias.to(work), padding=K - 1, groups=C)
    y = y[..., :L]  # (batch, C, L)
    return (F.silu(y) if activation == "silu" else y).to(x.dtype)
