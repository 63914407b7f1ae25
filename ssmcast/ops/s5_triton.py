"""S5's diagonal complex scan fused into one kernel on the GPU: Triton kernels, forward and backward.

The algorithm of :mod:`ssmcast.ops.s5_numba` (its docstring has it): ``x_t = a x_{t-1} + b_t`` in place on the
interleaved (re, im) buffer ``(batch, L, 2P)``, one program per (batch row, block of ``BLOCK_P`` states), the
states in registers, time streamed; the backward is the adjoint recurrence with ``conj(a)`` and accumulates
``dL/da`` in registers. One launch instead of the torch reference's ``log_T(L)`` levels of small kernels.
Checked on the CPU under Triton's interpreter (``TRITON_INTERPRET=1``) in tests/ops/test_fused_scans.py.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _forward_kernel(ar_ptr, ai_ptr, x_ptr, x0_ptr, L, P, HAS_X0: tl.constexpr, BLOCK_P: tl.constexpr):
    bi = tl.program_id(0)
    p = tl.program_id(1) * BLOCK_P + tl.arange(0, BLOCK_P)
    mask = p < P
    ar = tl.load(ar_ptr + p, mask=mask, other=0.0)
    ai = tl.load(ai_ptr + p, mask=mask, other=0.0)
    if HAS_X0:
        sr = tl.load(x0_ptr + bi * 2 * P + 2 * p, mask=mask, other=0.0)
        si = tl.load(x0_ptr + bi * 2 * P + 2 * p + 1, mask=mask, other=0.0)
    else:
        sr = tl.zeros((BLOCK_P,), dtype=ar.dtype)
        si = tl.zeros((BLOCK_P,), dtype=ar.dtype)
    base = bi * L * 2 * P + 2 * p
    for t in range(L):
        off = base + t * 2 * P
        br = tl.load(x_ptr + off, mask=mask, other=0.0)
        bim = tl.load(x_ptr + off + 1, mask=mask, other=0.0)
        nr = ar * sr - ai * si + br
        si = ar * si + ai * sr + bim
        sr = nr
        tl.store(x_ptr + off, sr, mask=mask)
        tl.store(x_ptr + off + 1, si, mask=mask)


@triton.jit
def _backward_kernel(ar_ptr, ai_ptr, x_ptr, g_ptr, x0_ptr, ga_ptr, gx0_ptr, L, P, HAS_X0: tl.constexpr,
                     BLOCK_P: tl.constexpr):  # fmt: skip
    bi = tl.program_id(0)
    p = tl.program_id(1) * BLOCK_P + tl.arange(0, BLOCK_P)
    mask = p < P
    ar = tl.load(ar_ptr + p, mask=mask, other=0.0)
    ai = tl.load(ai_ptr + p, mask=mask, other=0.0)
    sr = tl.zeros((BLOCK_P,), dtype=ar.dtype)  # conj(a) g_{t+1}, before the multiplication
    si = tl.zeros((BLOCK_P,), dtype=ar.dtype)
    gar = tl.zeros((BLOCK_P,), dtype=ar.dtype)
    gai = tl.zeros((BLOCK_P,), dtype=ar.dtype)
    base = bi * L * 2 * P + 2 * p
    for tt in range(L):
        t = L - 1 - tt
        off = base + t * 2 * P
        gr = tl.load(g_ptr + off, mask=mask, other=0.0) + ar * sr + ai * si
        gi = tl.load(g_ptr + off + 1, mask=mask, other=0.0) + ar * si - ai * sr
        sr = gr
        si = gi
        tl.store(g_ptr + off, gr, mask=mask)
        tl.store(g_ptr + off + 1, gi, mask=mask)
        if t > 0:
            xr = tl.load(x_ptr + off - 2 * P, mask=mask, other=0.0)
            xi = tl.load(x_ptr + off - 2 * P + 1, mask=mask, other=0.0)
        elif HAS_X0:
            xr = tl.load(x0_ptr + bi * 2 * P + 2 * p, mask=mask, other=0.0)
            xi = tl.load(x0_ptr + bi * 2 * P + 2 * p + 1, mask=mask, other=0.0)
        else:
            xr = tl.zeros((BLOCK_P,), dtype=ar.dtype)
            xi = tl.zeros((BLOCK_P,), dtype=ar.dtype)
        gar += xr * gr + xi * gi  # conj(x_{t-1}) g_t
        gai += xr * gi - xi * gr
    tl.store(ga_ptr + bi * 2 * P + p, gar, mask=mask)
    tl.store(ga_ptr + bi * 2 * P + P + p, gai, mask=mask)
    if HAS_X0:
        tl.store(gx0_ptr + bi * 2 * P + 2 * p, ar * sr + ai * si, mask=mask)
        tl.store(gx0_ptr + bi * 2 * P + 2 * p + 1, ar * si - ai * sr, mask=mask)


def _block(P: int) -> int:
    return max(2, min(triton.next_power_of_2(P), 128))


def _pairs(a: torch.Tensor, like: torch.Tensor):
    return a.real.detach().to(like.dtype).contiguous(), a.imag.detach().to(like.dtype).contiguous()


def forward(a: torch.Tensor, x: torch.Tensor, x0: torch.Tensor | None) -> None:
    """Overwrite ``x (batch, L, 2P)`` with the states (as :func:`ssmcast.ops.s5_numba.forward`)."""
    batch, L, P2 = x.shape
    P = P2 // 2
    ar, ai = _pairs(a, x)
    block = _block(P)
    _forward_kernel[(batch, triton.cdiv(P, block))](ar, ai, x, x if x0 is None else x0.contiguous(), L, P,
                                                    HAS_X0=x0 is not None, BLOCK_P=block)  # fmt: skip


def backward(a: torch.Tensor, x: torch.Tensor, g: torch.Tensor, x0: torch.Tensor | None):
    """``g`` becomes dL/db in place; returns ``(dL/da (P,) complex, dL/dx0 (batch, 2P) or None)``."""
    batch, L, P2 = x.shape
    P = P2 // 2
    ar, ai = _pairs(a, x)
    ga = x.new_empty(batch, 2, P)
    gx0 = x.new_empty(batch, P2) if x0 is not None else None
    block = _block(P)
    _backward_kernel[(batch, triton.cdiv(P, block))](
        ar, ai, x, g, x if x0 is None else x0.contiguous(), ga, x if gx0 is None else gx0, L, P,
        HAS_X0=x0 is not None, BLOCK_P=block,
    )  # fmt: skip
    ga = ga.sum(0)
    return torch.complex(ga[0], ga[1]), gx0
