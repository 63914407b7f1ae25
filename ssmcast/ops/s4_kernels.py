"""Convolution kernels of S4D (diagonal) and S4 (diagonal plus low rank) state space models.

A discretised SSM ``x_l = Abar x_{l-1} + Bbar u_l``, ``y_l = C x_l`` is the convolution ``y = K * u`` with
``K_l = C Abar^l Bbar``. These functions compute ``K`` without stepping through time and without any
``(H, N2, L)`` tensor: a blocked Vandermonde product for diagonal ``A`` (S4D), and S4's Algorithm 1
(truncated generating function at the roots of unity, Cauchy kernel, Woodbury identity, inverse FFT) for
``A = Lambda - P P^*``. The Cauchy kernel is an ``autograd.Function`` chunked over the nodes in forward
and backward, so training memory stays ``O(H (N2 + L))`` as well.

Complex SSM parameters hold one member of each conjugate pair (``N2 = N / 2`` of them); the real
system they describe has ``2 N2`` states.
"""

from __future__ import annotations

import math

import torch
from torch.autograd.function import once_differentiable

_CHUNK_ELEMENTS = 1 << 21  # complex temporaries per chunk: (H, N2, chunk) <= this


def _chunk(H: int, N2: int, total: int, chunk_size: int | None) -> int:
    if chunk_size is not None:
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be positive, got {chunk_size}")
        return chunk_size
    return max(1, min(total, _CHUNK_ELEMENTS // max(1, H * N2)))


class _CauchyConj(torch.autograd.Function):
    """``out[.., h, k] = sum_n v/(z[h,k] - w[h,n]) + conj(v)/(z[h,k] - conj(w[h,n]))``, chunked over k."""

    @staticmethod
    def forward(ctx, v, z, w, chunk):
        # pair conjugate poles: v/(z-w) + conj(v)/(z-conj w) = (2Re(v) z - 2Re(v conj w)) / ((z-w)(z-conj w))
        out = v.new_empty(v.shape[:-1] + z.shape[-1:])  # (*, H, K)
        numer = torch.stack([2 * v.real, 2 * (v * w.conj()).real]).to(v.dtype)  # (2, *, H, N2)
        wc = w.conj()
        for k0 in range(0, z.shape[-1], chunk):
            z_c = z[:, None, k0 : k0 + chunk]  # (H, 1, c)
            r = 1 / ((z_c - w[..., None]) * (z_c - wc[..., None]))  # (H, N2, c)
            s = torch.einsum("...hn,hnk->...hk", numer, r)  # (2, *, H, c)
            out[..., k0 : k0 + chunk] = z_c[:, 0] * s[0] - s[1]
        ctx.save_for_backward(v, z, w)
        ctx.chunk = chunk
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        v, z, w = ctx.saved_tensors
        vc, wc, gc = v.conj(), w.conj(), grad.conj()
        grad_v = torch.zeros_like(v)  # (*, H, N2)
        grad_z = torch.zeros_like(z) if ctx.needs_input_grad[1] else None  # (H, K)
        acc_w = torch.zeros_like(v) if ctx.needs_input_grad[2] else None  # (*, H, N2)
        for k0 in range(0, z.shape[-1], ctx.chunk):
            z_c = z[:, None, k0 : k0 + ctx.chunk]  # (H, 1, c)
            r1 = 1 / (z_c - w[..., None])  # (H, N2, c)
            r2 = 1 / (z_c - wc[..., None])  # (H, N2, c)
            g_c, gc_c = grad[..., k0 : k0 + ctx.chunk], gc[..., k0 : k0 + ctx.chunk]  # (*, H, c)
            grad_v += torch.einsum("...hk,hnk->...hn", g_c, r1.conj())
            grad_v += torch.einsum("...hk,hnk->...hn", gc_c, r2)
            r1, r2 = r1 * r1, r2 * r2  # (H, N2, c)
            if grad_z is not None:
                dz = torch.einsum("...hn,hnk->...hk", v, r1) + torch.einsum("...hn,hnk->...hk", vc, r2)
                grad_z[:, k0 : k0 + ctx.chunk] = -(g_c * dz.conj()).reshape(-1, *dz.shape[-2:]).sum(0)
            if acc_w is not None:
                acc_w += vc * torch.einsum("...hk,hnk->...hn", g_c, r1.conj())
                acc_w += vc * torch.einsum("...hk,hnk->...hn", gc_c, r2)
        grad_w = acc_w.reshape(-1, *w.shape).sum(0) if acc_w is not None else None
        return grad_v, grad_z, grad_w, None


def vandermonde_real(W: torch.Tensor, logZ: torch.Tensor, L: int, chunk_size: int | None = None) -> torch.Tensor:
    """``Re sum_n W[.., h, n] Z[h, n]^l`` for ``l = 0..L-1``, ``Z = exp(logZ)``: ``(*, H, N2) -> (*, H, L)``.

    Splits ``l = j c + i`` into blocks of ``c = chunk_size`` (default ``~sqrt(L)``): with the block powers
    ``Z^{jc}`` folded into ``W``, one batched matmul against the shared ``(H, N2, c)`` table ``Z^i`` gives
    every block. Only ``O(H N2 (c + L/c) + H L)`` memory (autograd included), never the ``(H, N2, L)``
    Vandermonde matrix, and ``O(H N2)`` complex exponentials per block instead of per step.
    """
    H, N2 = logZ.shape
    c = chunk_size if chunk_size is not None else max(1, math.isqrt(L))
    if c < 1:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    c = min(c, L)
    J = -(-L // c)  # number of blocks
    i = torch.arange(c, device=logZ.device, dtype=logZ.real.dtype)  # (c,)
    jc = c * torch.arange(J, device=logZ.device, dtype=logZ.real.dtype)  # (J,)
    Z_within = torch.exp(logZ[..., None] * i)  # (H, N2, c)
    Z_block = torch.exp(logZ[:, None, :] * jc[:, None])  # (H, J, N2)
    out = (W[..., None, :] * Z_block) @ Z_within  # (*, H, J, c)
    return out.real.flatten(-2)[..., :L]  # (*, H, L)


def cauchy_conj(v: torch.Tensor, z: torch.Tensor, w: torch.Tensor, chunk_size: int | None = None) -> torch.Tensor:
    """Cauchy kernel over conjugate pairs: ``sum_n v_n/(z_k - w_n) + conj(v_n)/(z_k - conj(w_n))``.

    ``v (*, H, N2)``, nodes ``z (H, K)``, poles ``w (H, N2)``, all complex; returns ``(*, H, K)``. Chunked
    over the nodes (forward and backward) so memory stays ``O(H N2 chunk)``."""
    H, N2 = w.shape
    return _CauchyConj.apply(v, z, w, _chunk(H, N2, z.shape[-1], chunk_size))


def _as_complex(x: torch.Tensor, name: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.is_complex():
        return x
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating or complex tensor, got {x.dtype}")
    return x.to(torch.complex128 if x.dtype == torch.float64 else torch.complex64)


def _check_length(L: int) -> None:
    if isinstance(L, bool) or not isinstance(L, int) or L < 1:
        raise ValueError(f"L must be a positive int, got {L!r}")


def _check_dt(dt: torch.Tensor, H: int) -> None:
    if not isinstance(dt, torch.Tensor) or dt.is_complex() or dt.shape != (H,):
        shape = tuple(dt.shape) if isinstance(dt, torch.Tensor) else type(dt).__name__
        raise ValueError(f"dt must be a real tensor of shape (H,) = ({H},), got {shape}")


def _common_complex(*xs: torch.Tensor) -> torch.dtype:
    double = any(x.dtype in (torch.complex128, torch.float64) for x in xs)
    return torch.complex128 if double else torch.complex64


def s4d_kernel(
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    L: int,
    discretization: str = "zoh",
    chunk_size: int | None = None,
) -> torch.Tensor:
    """S4D convolution kernel ``K[..., h, l] = 2 Re sum_n C[..., h, n] Abar[h, n]^l Bbar[h, n]``.

    ``dt (H,)`` real, ``A, B (H, N2)`` and ``C (*, H, N2)`` complex (one member of each conjugate pair;
    leading dims of ``C`` are extra output channels). ``discretization``: ``"zoh"`` (``Abar = exp(dt A)``,
    ``Bbar = (Abar - 1)/A B``) or ``"bilinear"`` (``Abar = (1 + dt A/2)/(1 - dt A/2)``,
    ``Bbar = dt B/(1 - dt A/2)``). Returns the real ``(*, H, L)`` kernel, in ``O(H (N2 + L))`` memory.
    """
    A, B, C = _as_complex(A, "A"), _as_complex(B, "B"), _as_complex(C, "C")
    if A.ndim != 2:
        raise ValueError(f"A must have shape (H, N2), got {tuple(A.shape)}")
    H, N2 = A.shape
    if B.shape != (H, N2):
        raise ValueError(f"B must have shape (H, N2) = {(H, N2)} like A, got {tuple(B.shape)}")
    if C.ndim < 2 or C.shape[-2:] != (H, N2):
        raise ValueError(f"C must have shape (..., H, N2) = (..., {H}, {N2}), got {tuple(C.shape)}")
    _check_dt(dt, H)
    _check_length(L)
    cdtype = _common_complex(dt, A, B, C)
    A, B, C = A.to(cdtype), B.to(cdtype), C.to(cdtype)
    dtA = dt.to(A.real.dtype)[:, None] * A  # (H, N2)
    if discretization == "zoh":
        logZ = dtA  # (H, N2)
        Bbar = torch.expm1(dtA) / A * B  # (H, N2)
    elif discretization == "bilinear":
        denom = 1 - dtA / 2  # (H, N2)
        logZ = 2 * torch.atanh(dtA / 2)  # (H, N2): log((1 + dtA/2)/(1 - dtA/2)), accurate for small dt
        Bbar = dt.to(A.real.dtype)[:, None] * B / denom  # (H, N2)
    else:
        raise ValueError(f"unknown discretization {discretization!r}: expected 'zoh' or 'bilinear'")
    return 2 * vandermonde_real(C * Bbar, logZ, L, chunk_size)  # (*, H, L)


def dplr_dense(
    dt: torch.Tensor, Lambda: torch.Tensor, P: torch.Tensor, B: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Bilinear discretisation of the conjugate-extended ``2 N2``-state DPLR system, as dense matrices.

    ``A = diag(Lambda, conj Lambda) - sum_r p_r p_r^*`` with ``p_r = [P_r; conj P_r]``; returns
    ``dA (H, 2N2, 2N2) = (I - dt A/2)^{-1} (I + dt A/2)`` and ``dB (H, 2N2) = dt (I - dt A/2)^{-1} B_full``.
    Used for S4's recurrent mode and the one-off ``C~`` correction; never inside a loop over time."""
    H, N2 = Lambda.shape
    Lambda_full = torch.cat([Lambda, Lambda.conj()], -1)  # (H, 2N2)
    P_full = torch.cat([P, P.conj()], -1)  # (R, H, 2N2)
    B_full = torch.cat([B, B.conj()], -1)  # (H, 2N2)
    A = torch.diag_embed(Lambda_full) - torch.einsum("rhn,rhm->hnm", P_full, P_full.conj())  # (H, 2N2, 2N2)
    eye = torch.eye(2 * N2, dtype=A.dtype, device=A.device)
    half_dtA = dt.to(Lambda.real.dtype)[:, None, None] / 2 * A  # (H, 2N2, 2N2)
    left = eye - half_dtA  # (H, 2N2, 2N2)
    dA = torch.linalg.solve(left, eye + half_dtA)  # (H, 2N2, 2N2)
    dB = torch.linalg.solve(left, dt.to(Lambda.real.dtype)[:, None] * B_full)  # (H, 2N2)
    return dA, dB


def dplr_kernel(
    dt: torch.Tensor,
    Lambda: torch.Tensor,
    P: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    L: int,
    tilde: bool = False,
    chunk_size: int | None = None,
) -> torch.Tensor:
    """S4 convolution kernel of the bilinear-discretised DPLR system ``A = Lambda - P P^*`` (S4 Algorithm 1).

    ``dt (H,)`` real; ``Lambda, B (H, N2)``, ``P (R, H, N2)`` and ``C (*, H, N2)`` complex, one member of
    each conjugate pair: the real ``2 N2``-state system is ``A = diag(Lambda, conj Lambda) - sum_r p_r p_r^*``
    (``p_r = [P_r; conj P_r]``), ``B_full = [B; conj B]``, ``C_full = [C; conj C]``. Returns the real
    ``(*, H, L)`` kernel ``K_l = C_full Abar^l Bbar``.

    The truncated generating function ``sum_{l<L} K_l z^l = C~ (I - Abar z)^{-1} Bbar`` with
    ``C~ = C (I - Abar^L)`` is evaluated at the roots of unity ``z_k = exp(-2 pi i k / L)``,
    ``k = 0..L/2``, by a Cauchy kernel over the conjugate pairs and a Woodbury ``R x R`` solve per node,
    then inverted by ``irfft``. With ``tilde=True``, ``C`` already is ``C~`` for this ``L`` (S4's
    parametrisation) and the one-off dense ``Abar^L`` correction is skipped.
    """
    Lambda, P, B, C = (_as_complex(x, n) for x, n in ((Lambda, "Lambda"), (P, "P"), (B, "B"), (C, "C")))
    if Lambda.ndim != 2:
        raise ValueError(f"Lambda must have shape (H, N2), got {tuple(Lambda.shape)}")
    H, N2 = Lambda.shape
    if B.shape != (H, N2):
        raise ValueError(f"B must have shape (H, N2) = {(H, N2)} like Lambda, got {tuple(B.shape)}")
    if P.ndim != 3 or P.shape[1:] != (H, N2):
        raise ValueError(f"P must have shape (R, H, N2) = (R, {H}, {N2}), got {tuple(P.shape)}")
    if C.ndim < 2 or C.shape[-2:] != (H, N2):
        raise ValueError(f"C must have shape (..., H, N2) = (..., {H}, {N2}), got {tuple(C.shape)}")
    _check_dt(dt, H)
    _check_length(L)
    cdtype = _common_complex(dt, Lambda, P, B, C)
    Lambda, P, B, C = Lambda.to(cdtype), P.to(cdtype), B.to(cdtype), C.to(cdtype)
    rdtype = Lambda.real.dtype
    dt = dt.to(rdtype)
    R = P.shape[0]
    lead = C.shape[:-2]
    C = C.reshape(-1, H, N2)  # (M, H, N2)
    M = C.shape[0]

    if not tilde:
        dA, _ = dplr_dense(dt, Lambda, P, B)  # (H, 2N2, 2N2)
        C_full = torch.cat([C, C.conj()], -1)  # (M, H, 2N2)
        C = (C_full - torch.einsum("mhn,hnk->mhk", C_full, torch.linalg.matrix_power(dA, L)))[..., :N2]

    n_regular = (L + 1) // 2  # nodes k < L/2; for even L the node z = -1 is handled exactly below
    half_theta = math.pi / L * torch.arange(n_regular, device=Lambda.device, dtype=torch.float64)  # (K,)
    g = 2j * torch.tan(half_theta).to(rdtype) / dt[:, None]  # (H, K): 2/dt (1 - z)/(1 + z)
    scale = torch.polar(1 / torch.cos(half_theta), half_theta).to(cdtype)  # (K,): 2/(1 + z)

    U = torch.cat([C, P.conj()])  # (M + R, H, N2)
    V = torch.cat([B[None], P])  # (R + 1, H, N2)
    numer = (U[:, None] * V[None]).reshape(-1, H, N2)  # ((M + R)(R + 1), H, N2)
    k = cauchy_conj(numer, g.to(cdtype), Lambda, chunk_size).reshape(M + R, R + 1, H, n_regular)
    k00, k01, k10, k11 = k[:M, 0], k[:M, 1:], k[M:, 0], k[M:, 1:]  # (M,H,K) (M,R,H,K) (R,H,K) (R,R,H,K)
    eye = torch.eye(R, dtype=cdtype, device=Lambda.device)
    woodbury = torch.linalg.solve(eye + k11.permute(2, 3, 0, 1), k10.permute(1, 2, 0)[..., None])  # (H,K,R,1)
    K_hat = scale * (k00 - torch.einsum("mrhk,hkr->mhk", k01, woodbury[..., 0]))  # (M, H, K)
    if L % 2 == 0:
        # z = -1: (I + Abar)^{-1} Bbar = dt B / 2 exactly
        K_nyquist = dt * (C * B).sum(-1).real  # (M, H)
        K_hat = torch.cat([K_hat, K_nyquist[..., None].to(cdtype)], -1)  # (M, H, L/2 + 1)
    K = torch.fft.irfft(K_hat, n=L)  # (M, H, L)
    return K.reshape(*lead, H, L)


def _krylov(dA: torch.Tensor, dB: torch.Tensor, n: int) -> torch.Tensor:
    """``dA^k dB`` for ``k = 0 .. n-1``: ``(H, n, N)``, by doubling (``log2 n`` products with ``dA^(2^j)``).

    ``dA (H, N)`` diagonal or ``(H, N, N)`` dense, ``dB (H, N)``; computed in ``dA``'s dtype (pass double)."""
    vectors, power = dB[:, None], dA  # (H, m, N): dA^k dB for k < m; power = dA^m
    while vectors.shape[1] < n:
        step = vectors * power[:, None] if dA.ndim == 2 else vectors @ power.mT  # dA^(m + k) dB
        vectors = torch.cat([vectors, step], 1)
        power = power * power if dA.ndim == 2 else power @ power
    return vectors[:, :n]


def lti_final_state(dA: torch.Tensor, dB: torch.Tensor, u: torch.Tensor, chunk_size: int = 4096) -> torch.Tensor:
    """The state ``x_{L-1}`` of ``x_l = dA x_{l-1} + dB u_l`` from ``x_{-1} = 0``, without a loop over ``L``.

    ``dA (H, N)`` (diagonal, real or complex) or ``(H, N, N)`` (dense), ``dB (H, N)``, ``u (B, H, L)`` real.
    Returns ``(B, H, N)`` in ``dB``'s dtype: ``x_{L-1} = sum_k dA^k dB u_{L-1-k}``, a linear map of the history:
    one matrix product per channel of the inputs ``(B, n)`` with the Krylov vectors ``dA^k dB`` ``(n, N)``
    (computed by doubling in double precision, then rounded to ``dB``'s precision). Time runs in chunks of at
    most ``chunk_size`` steps (memory ``O(H N chunk_size + B H chunk_size)``), each chunk's state carried into
    the next by ``dA^n``. (A pairwise tree reduction over time before issue #36 was 20-100x slower.)"""
    if dA.ndim not in (2, 3) or dB.ndim != 2 or u.ndim != 3:
        raise ValueError(f"expected dA (H, N) or (H, N, N), dB (H, N), u (B, H, L); got {tuple(dA.shape)}, "
                         f"{tuple(dB.shape)}, {tuple(u.shape)}")
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive int, got {chunk_size!r}")
    dtype = dB.dtype
    wide = torch.complex128 if (dA.is_complex() or dB.is_complex()) else torch.float64
    dA64, dB64 = dA.to(wide), dB.to(wide)
    B, H, L = u.shape
    size = max(1, min(chunk_size, L))
    krylov = _krylov(dA64, dB64, size).flip(1)  # (H, size, N): row j holds dA^(size-1-j) dB
    N = krylov.shape[-1]
    real_dtype = u.dtype if u.is_floating_point() else torch.float32
    if krylov.is_complex():  # real and imaginary parts side by side: one product, (H, size, 2N)
        krylov = torch.cat([krylov.real, krylov.imag], -1)
    krylov = krylov.to(real_dtype)
    state = None
    for start in range(0, L, size):
        # (B, H, n) contiguous (one copy, cheap from either layout), seen as (H, B, n): no copy inside bmm
        uc = u[..., start : start + size].to(real_dtype).contiguous().transpose(0, 1)
        n = uc.shape[-1]
        s = torch.bmm(uc, krylov[:, size - n :])  # (H, B, N | 2N): sum_k dA^k dB u_{end-k}
        if s.shape[-1] != N:
            s = torch.complex(s[..., :N], s[..., N:])
        s = s.transpose(0, 1).to(dtype)  # (B, H, N)
        if state is not None:
            advance = dA64**n if dA.ndim == 2 else torch.linalg.matrix_power(dA64, n)
            advance = advance.to(dtype)
            s = s + (advance * state if dA.ndim == 2 else torch.einsum("hnm,bhm->bhn", advance, state))
        state = s
    if state is None:  # L == 0: the initial state
        state = torch.zeros(B, *dB.shape, dtype=dtype, device=dB.device)
    return state
