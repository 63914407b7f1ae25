"""The selective scan fused into one kernel on the GPU: Triton kernels, forward and backward.

The same algorithm and canonical layouts as :mod:`ssmcast.ops.selective_scan_numba` (its docstring has them):
one program per (batch row, block of ``BLOCK_D`` channels) keeps the ``(BLOCK_D, N)`` states in registers and
streams time, writing ``y`` once and the state entering every chunk of ``CHUNK`` steps. The backward walks the
chunks from the last: it recomputes a chunk's states from its checkpoint into a scratch buffer
``(b, D, CHUNK + 1, N)`` (it stays in L2), then runs the adjoint recurrence backwards through it. Gradients of
parameters shared across programs (A, D, time-invariant B/C) are summed in registers over time and added once
per program with atomics; input-dependent B/C gradients are added per step.

One kernel launch replaces the torch reference's several hundred small ones, which is what bounds it on a GPU.
The kernels are checked on the CPU under Triton's interpreter (``TRITON_INTERPRET=1``) against the loop
reference and by gradcheck (tests/ops/test_fused_scans.py). Only the ``triton`` backend imports this module.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

CHUNK = 64


@triton.jit
def _softplus(x):
    return tl.where(x > 20.0, x, tl.where(x < -15.0, tl.exp(x), tl.log(1.0 + tl.exp(x))))


@triton.jit
def _load_bc(ptr, bi, d, t, n, mask, nb, ng, nl, N: tl.constexpr, D):
    """B or C at step t for the channels ``d`` (BLOCK_D,) and states ``n`` (BLOCK_N,): ``(nb, ng, nl, N)``."""
    bb = tl.where(nb > 1, bi, 0)
    tt = tl.where(nl > 1, t, 0)
    g = d // (D // ng)
    offs = ((bb * ng + g[:, None]) * nl + tt) * N + n[None, :]
    return tl.load(ptr + offs, mask=mask, other=0.0)


@triton.jit
def _add_bc(ptr, val, bi, d, t, n, mask, nb, ng, nl, N: tl.constexpr, D, BLOCK_GROUP: tl.constexpr):
    """Add ``val (BLOCK_D, BLOCK_N)`` to the gradient of B or C at step t. With ``BLOCK_GROUP`` every channel of
    the block is in one group: the rows are summed first and one row is added (no contention)."""
    bb = tl.where(nb > 1, bi, 0)
    tt = tl.where(nl > 1, t, 0)
    if BLOCK_GROUP:
        g = tl.min(d, axis=0) // (D // ng)
        tl.atomic_add(ptr + ((bb * ng + g) * nl + tt) * N + n, tl.sum(val, axis=0), mask=n < N)
    else:
        g = d // (D // ng)
        tl.atomic_add(ptr + ((bb * ng + g[:, None]) * nl + tt) * N + n[None, :], val, mask=mask)


@triton.jit
def _forward_kernel(u_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, h0_ptr, y_ptr, last_ptr,
                    ckpt_ptr, L, D, Dd, nbB, ngB, nlB, nbC, ngC, nlC, n_chunks,
                    N: tl.constexpr, NA: tl.constexpr, HAS_D: tl.constexpr, HAS_Z: tl.constexpr,
                    HAS_BIAS: tl.constexpr, HAS_H0: tl.constexpr, SOFTPLUS: tl.constexpr, SAVE: tl.constexpr,
                    CHUNK: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr):  # fmt: skip
    bi = tl.program_id(0)
    d = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    n = tl.arange(0, BLOCK_N)
    dmask = d < D
    mask = dmask[:, None] & (n[None, :] < N)
    dd = d // (D // Dd)
    if NA == 1:
        A = tl.load(A_ptr + d, mask=dmask, other=0.0)[:, None]  # (BLOCK_D, 1)
    else:
        A = tl.load(A_ptr + d[:, None] * N + n[None, :], mask=mask, other=0.0)  # (BLOCK_D, BLOCK_N)
    if HAS_H0:
        h = tl.load(h0_ptr + (bi * D + d[:, None]) * N + n[None, :], mask=mask, other=0.0)
    else:
        h = tl.zeros((BLOCK_D, BLOCK_N), dtype=A.dtype)
    if HAS_D:
        Dv = tl.load(D_ptr + d, mask=dmask, other=0.0)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + dd, mask=dmask, other=0.0)
    row = (bi * D + d) * L  # (BLOCK_D,) offsets of u, z, y rows
    drow = (bi * Dd + dd) * L
    for t in range(L):
        if SAVE:
            if t % CHUNK == 0:
                tl.store(ckpt_ptr + ((bi * D + d[:, None]) * n_chunks + t // CHUNK) * N + n[None, :], h, mask=mask)
        dt = tl.load(delta_ptr + drow + t, mask=dmask, other=0.0)
        if HAS_BIAS:
            dt = dt + bias
        if SOFTPLUS:
            dt = _softplus(dt)
        ut = tl.load(u_ptr + row + t, mask=dmask, other=0.0)
        Bt = _load_bc(B_ptr, bi, d, t, n, mask, nbB, ngB, nlB, N, D)
        Ct = _load_bc(C_ptr, bi, d, t, n, mask, nbC, ngC, nlC, N, D)
        h = tl.exp(dt[:, None] * A) * h + (dt * ut)[:, None] * Bt
        out = tl.sum(h * Ct, axis=1)
        if HAS_D:
            out = out + Dv * ut
        if HAS_Z:
            zt = tl.load(z_ptr + row + t, mask=dmask, other=0.0)
            out = out * zt * tl.sigmoid(zt)
        tl.store(y_ptr + row + t, out, mask=dmask)
    tl.store(last_ptr + (bi * D + d[:, None]) * N + n[None, :], h, mask=mask)


@triton.jit
def _backward_kernel(u_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, ckpt_ptr, gy_ptr, glast_ptr,
                     gu_ptr, gdt_ptr, gA_ptr, gB_ptr, gC_ptr, gD_ptr, gz_ptr, gh0_ptr, hs_ptr,
                     L, D, Dd, nbB, ngB, nlB, nbC, ngC, nlC, n_chunks,
                     N: tl.constexpr, NA: tl.constexpr, HAS_D: tl.constexpr, HAS_Z: tl.constexpr,
                     HAS_BIAS: tl.constexpr, HAS_GLAST: tl.constexpr, SOFTPLUS: tl.constexpr,
                     B_VAR_T: tl.constexpr, C_VAR_T: tl.constexpr, B_BLOCK_GROUP: tl.constexpr,
                     C_BLOCK_GROUP: tl.constexpr, CHUNK: tl.constexpr, BLOCK_D: tl.constexpr,
                     BLOCK_N: tl.constexpr):  # fmt: skip
    bi = tl.program_id(0)
    d = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    n = tl.arange(0, BLOCK_N)
    dmask = d < D
    mask = dmask[:, None] & (n[None, :] < N)
    dd = d // (D // Dd)
    if NA == 1:
        A = tl.load(A_ptr + d, mask=dmask, other=0.0)[:, None]
    else:
        A = tl.load(A_ptr + d[:, None] * N + n[None, :], mask=mask, other=0.0)
    if HAS_D:
        Dv = tl.load(D_ptr + d, mask=dmask, other=0.0)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + dd, mask=dmask, other=0.0)
    state = (bi * D + d[:, None]) * N + n[None, :]  # (BLOCK_D, BLOCK_N) offsets of a (b, D, N) tensor
    if HAS_GLAST:
        g = tl.load(glast_ptr + state, mask=mask, other=0.0)  # dL/dh_t
    else:
        g = tl.zeros((BLOCK_D, BLOCK_N), dtype=A.dtype)
    gA = tl.zeros((BLOCK_D, BLOCK_N), dtype=A.dtype)  # summed over n at the end when NA == 1
    gD = tl.zeros((BLOCK_D,), dtype=A.dtype)
    gBsum = tl.zeros((BLOCK_D, BLOCK_N), dtype=A.dtype)  # time-invariant B/C: summed over t
    gCsum = tl.zeros((BLOCK_D, BLOCK_N), dtype=A.dtype)
    row = (bi * D + d) * L
    drow = (bi * Dd + dd) * L
    hs = (bi * D + d[:, None]) * (CHUNK + 1) * N + n[None, :]  # this program's scratch rows
    for cc in range(n_chunks):
        c = n_chunks - 1 - cc
        t0 = c * CHUNK
        t1 = tl.minimum(L, t0 + CHUNK)
        h = tl.load(ckpt_ptr + ((bi * D + d[:, None]) * n_chunks + c) * N + n[None, :], mask=mask, other=0.0)
        tl.store(hs_ptr + hs, h, mask=mask)
        for t in range(t0, t1):  # recompute the chunk's states into the scratch buffer
            dt = tl.load(delta_ptr + drow + t, mask=dmask, other=0.0)
            if HAS_BIAS:
                dt = dt + bias
            if SOFTPLUS:
                dt = _softplus(dt)
            ut = tl.load(u_ptr + row + t, mask=dmask, other=0.0)
            Bt = _load_bc(B_ptr, bi, d, t, n, mask, nbB, ngB, nlB, N, D)
            h = tl.exp(dt[:, None] * A) * h + (dt * ut)[:, None] * Bt
            tl.store(hs_ptr + hs + (t - t0 + 1) * N, h, mask=mask)
        tl.debug_barrier()
        for tt in range(t0, t1):  # the adjoint, backwards in time
            t = t0 + t1 - 1 - tt
            raw = tl.load(delta_ptr + drow + t, mask=dmask, other=0.0)
            if HAS_BIAS:
                raw = raw + bias
            dt = raw
            if SOFTPLUS:
                dt = _softplus(raw)
            ut = tl.load(u_ptr + row + t, mask=dmask, other=0.0)
            Bt = _load_bc(B_ptr, bi, d, t, n, mask, nbB, ngB, nlB, N, D)
            Ct = _load_bc(C_ptr, bi, d, t, n, mask, nbC, ngC, nlC, N, D)
            h_t = tl.load(hs_ptr + hs + (t - t0 + 1) * N, mask=mask, other=0.0)
            h_prev = tl.load(hs_ptr + hs + (t - t0) * N, mask=mask, other=0.0)
            a = tl.exp(dt[:, None] * A)
            go = tl.load(gy_ptr + row + t, mask=dmask, other=0.0)
            if HAS_Z:
                zt = tl.load(z_ptr + row + t, mask=dmask, other=0.0)
                sz = tl.sigmoid(zt)
                ypre = tl.sum(h_t * Ct, axis=1)
                if HAS_D:
                    ypre = ypre + Dv * ut
                tl.store(gz_ptr + row + t, go * ypre * sz * (1.0 + zt * (1.0 - sz)), mask=dmask)
                go = go * zt * sz
            gD += go * ut
            gn = g + go[:, None] * Ct
            gCt = go[:, None] * h_t
            gBt = gn * (dt * ut)[:, None]
            if C_VAR_T:
                _add_bc(gC_ptr, gCt, bi, d, t, n, mask, nbC, ngC, nlC, N, D, C_BLOCK_GROUP)
            else:
                gCsum += gCt
            if B_VAR_T:
                _add_bc(gB_ptr, gBt, bi, d, t, n, mask, nbB, ngB, nlB, N, D, B_BLOCK_GROUP)
            else:
                gBsum += gBt
            gx = tl.sum(gn * Bt, axis=1)  # dL/d(dt u)
            ga = gn * h_prev * a  # dL/d(dt A)
            gA += ga * dt[:, None]
            gd = tl.sum(ga * A, axis=1) + gx * ut
            if SOFTPLUS:
                gd = gd * tl.sigmoid(raw)
            tl.store(gdt_ptr + row + t, gd, mask=dmask)
            gu = gx * dt
            if HAS_D:
                gu = gu + go * Dv
            tl.store(gu_ptr + row + t, gu, mask=dmask)
            g = gn * a
    tl.store(gh0_ptr + state, g, mask=mask)
    if NA == 1:
        tl.atomic_add(gA_ptr + d, tl.sum(gA, axis=1), mask=dmask)
    else:
        tl.atomic_add(gA_ptr + d[:, None] * N + n[None, :], gA, mask=mask)
    if HAS_D:
        tl.atomic_add(gD_ptr + d, gD, mask=dmask)
    if not B_VAR_T:
        _add_bc(gB_ptr, gBsum, bi, d, 0, n, mask, nbB, ngB, nlB, N, D, B_BLOCK_GROUP)
    if not C_VAR_T:
        _add_bc(gC_ptr, gCsum, bi, d, 0, n, mask, nbC, ngC, nlC, N, D, C_BLOCK_GROUP)


def _blocks(D: int, N: int) -> tuple[int, int]:
    block_n = max(triton.next_power_of_2(N), 2)
    block_d = max(1, min(triton.next_power_of_2(D), max(1, 2048 // block_n), 32))
    return block_d, block_n


def _or(t: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    return like if t is None else t


def forward(u, delta, A, B, C, D, z, bias, h0, softplus: bool, save: bool):
    """``y (b, D, L)``, the last state ``(b, D, N)`` and, if ``save``, the chunk checkpoints (canonical
    layouts: :mod:`ssmcast.ops.selective_scan_numba`)."""
    b, Dn, L = u.shape
    N, NA = B.shape[3], A.shape[1]
    n_chunks = -(-L // CHUNK)
    y = torch.empty_like(u)
    last = u.new_empty(b, Dn, N)
    ckpt = u.new_empty(b, Dn, n_chunks, N) if save else u.new_empty(1)
    block_d, block_n = _blocks(Dn, N)
    _forward_kernel[(b, triton.cdiv(Dn, block_d))](
        u, delta, A, B, C, _or(D, u), _or(z, u), _or(bias, u), _or(h0, u), y, last, ckpt,
        L, Dn, delta.shape[1], *B.shape[:3], *C.shape[:3], n_chunks,
        N=N, NA=NA, HAS_D=D is not None, HAS_Z=z is not None, HAS_BIAS=bias is not None, HAS_H0=h0 is not None,
        SOFTPLUS=softplus, SAVE=save, CHUNK=CHUNK, BLOCK_D=block_d, BLOCK_N=block_n,
    )  # fmt: skip
    return y, last, (ckpt if save else u.new_empty(0, 0, 0, 0))


def backward(u, delta, A, B, C, D, z, bias, h0, softplus: bool, ckpt, gy, glast):
    """Gradients of every canonical input, as :func:`ssmcast.ops.selective_scan_numba.backward` returns them."""
    b, Dn, L = u.shape
    N, NA = B.shape[3], A.shape[1]
    n_chunks = ckpt.shape[2]
    gu, gdt = torch.empty_like(u), torch.empty_like(u)
    gz = torch.empty_like(u) if z is not None else None
    gA = torch.zeros_like(A)
    gB, gC = torch.zeros_like(B), torch.zeros_like(C)
    gD = torch.zeros(Dn, dtype=u.dtype, device=u.device)
    gh0 = u.new_empty(b, Dn, N)
    scratch = u.new_empty(b, Dn, CHUNK + 1, N)
    block_d, block_n = _blocks(Dn, N)
    _backward_kernel[(b, triton.cdiv(Dn, block_d))](
        u, delta, A, B, C, _or(D, u), _or(z, u), _or(bias, u), ckpt, gy, _or(glast, u),
        gu, gdt, gA, gB, gC, gD, _or(gz, u), gh0, scratch,
        L, Dn, delta.shape[1], *B.shape[:3], *C.shape[:3], n_chunks,
        N=N, NA=NA, HAS_D=D is not None, HAS_Z=z is not None, HAS_BIAS=bias is not None,
        HAS_GLAST=glast is not None, SOFTPLUS=softplus, B_VAR_T=B.shape[2] > 1, C_VAR_T=C.shape[2] > 1,
        B_BLOCK_GROUP=(Dn // B.shape[1]) % block_d == 0, C_BLOCK_GROUP=(Dn // C.shape[1]) % block_d == 0,
        CHUNK=CHUNK, BLOCK_D=block_d, BLOCK_N=block_n,
    )  # fmt: skip
    return gu, gdt, gA, gB, gC, gD, gz, gh0
