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
