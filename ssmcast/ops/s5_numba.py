"""S5's diagonal complex scan fused into one pass on the CPU: numba kernels, forward and backward.

``x_t = a * x_{t-1} + b_t`` for complex ``a (P,)`` and ``b (batch, L, P)``, the complex numbers stored as
interleaved (re, im) pairs in a real ``(batch, L, 2P)`` buffer (what :func:`ssmcast.ops.s5.s5_scan`'s input
projection writes), overwritten with the states. One work item is a batch row (and a slice of the P states when
the batch is smaller than the threads); it streams time, keeping its states in a workspace row, and touches every
element of the buffer once: read ``b_t``, write ``x_t``. The torch reference takes three passes (a scan inside
chunks, one across chunks, a correction) and the powers of ``a``.

The backward is the adjoint recurrence ``g_t = grad_t + conj(a) g_{t+1}`` (written over the incoming gradient)
with ``dL/da = sum_t conj(x_{t-1}) g_t`` accumulated on the way (PyTorch's convention for complex gradients),
and ``dL/dx0 = conj(a) g_0``. States need no recomputation: the forward's output is the saved states.
"""

from __future__ import annotations

import numpy as np
import torch
from numba import njit, prange

from ssmcast.ops.selective_scan_numba import _FASTMATH, _n_slices, _threads


@njit(parallel=True, fastmath=_FASTMATH, cache=True)
def _forward(ar, ai, x, x0, n_slices, S):  # pragma: no cover
    """In place on ``x (batch, L, 2P)``; ``x0 (batch, 2P)`` or empty; workspace ``S (W, 2, P)``."""
    batch, L, P2 = x.shape
    P = P2 // 2
    has_x0 = x0.shape[0] > 0
    per = -(-P // n_slices)
    for w in prange(batch * n_slices):
        bi = w // n_slices
        p0 = (w % n_slices) * per
        p1 = min(P, p0 + per)
        for p in range(p0, p1):
            S[w, 0, p] = x0[bi, 2 * p] if has_x0 else 0
            S[w, 1, p] = x0[bi, 2 * p + 1] if has_x0 else 0
        for t in range(L):
            for p in range(p0, p1):
                sr, si = S[w, 0, p], S[w, 1, p]
                nr = ar[p] * sr - ai[p] * si + x[bi, t, 2 * p]
                ni = ar[p] * si + ai[p] * sr + x[bi, t, 2 * p + 1]
                S[w, 0, p] = nr
                S[w, 1, p] = ni
                x[bi, t, 2 * p] = nr
                x[bi, t, 2 * p + 1] = ni


@njit(parallel=True, fastmath=_FASTMATH, cache=True)
def _backward(ar, ai, x, g, x0, ga, gx0, n_slices, S):  # pragma: no cover
    """``g (batch, L, 2P)`` becomes dL/db in place; ``ga (W, 2, P)`` zeros, added to per work item (each its
    slice of P); ``gx0 (batch, 2P)``."""
    batch, L, P2 = x.shape
    P = P2 // 2
    has_x0 = x0.shape[0] > 0
    per = -(-P // n_slices)
    for w in prange(batch * n_slices):
        bi = w // n_slices
        p0 = (w % n_slices) * per
        p1 = min(P, p0 + per)
        for p in range(p0, p1):
            S[w, 0, p] = 0
            S[w, 1, p] = 0
        for t in range(L - 1, 0, -1):
            for p in range(p0, p1):
                sr, si = S[w, 0, p], S[w, 1, p]
                gr = g[bi, t, 2 * p] + ar[p] * sr + ai[p] * si  # + conj(a) g_{t+1}
                gi = g[bi, t, 2 * p + 1] + ar[p] * si - ai[p] * sr
                S[w, 0, p] = gr
                S[w, 1, p] = gi
                g[bi, t, 2 * p] = gr
                g[bi, t, 2 * p + 1] = gi
                xr, xi = x[bi, t - 1, 2 * p], x[bi, t - 1, 2 * p + 1]
                ga[w, 0, p] += xr * gr + xi * gi  # conj(x_{t-1}) g_t
                ga[w, 1, p] += xr * gi - xi * gr
        for p in range(p0, p1):  # t = 0: the state before it is x0 (or zero)
            sr, si = S[w, 0, p], S[w, 1, p]
            gr = g[bi, 0, 2 * p] + ar[p] * sr + ai[p] * si
            gi = g[bi, 0, 2 * p + 1] + ar[p] * si - ai[p] * sr
            g[bi, 0, 2 * p] = gr
            g[bi, 0, 2 * p + 1] = gi
            if has_x0:
                xr, xi = x0[bi, 2 * p], x0[bi, 2 * p + 1]
                ga[w, 0, p] += xr * gr + xi * gi
                ga[w, 1, p] += xr * gi - xi * gr
                gx0[bi, 2 * p] = ar[p] * gr + ai[p] * gi
                gx0[bi, 2 * p + 1] = ar[p] * gi - ai[p] * gr


def _work(batch: int, P: int) -> int:
    return _n_slices(batch, P, _threads())


def _real(t: torch.Tensor | None, like: torch.Tensor) -> np.ndarray:
    if t is None:
        return np.empty((0, 0), dtype=like.numpy().dtype)
    return t.detach().to(like.dtype).contiguous().numpy()


def forward(a: torch.Tensor, x: torch.Tensor, x0: torch.Tensor | None) -> None:
    """Overwrite ``x (batch, L, 2P)`` (real, interleaved pairs) with the states; ``a (P,)`` complex,
    ``x0 (batch, 2P)`` interleaved like ``x`` or None."""
    batch, L, P2 = x.shape
    k = _work(batch, P2 // 2)
    x = x.detach()
    ar, ai = (t.detach().to(x.dtype).contiguous().numpy() for t in (a.real, a.imag))
    S = np.empty((batch * k, 2, P2 // 2), dtype=x.numpy().dtype)
    _forward(ar, ai, x.numpy(), _real(x0, x), k, S)


def backward(a: torch.Tensor, x: torch.Tensor, g: torch.Tensor, x0: torch.Tensor | None):
    """``g`` (contiguous, overwritten) becomes dL/db; returns ``(dL/da (P,) complex, dL/dx0 (batch, 2P) or None)``."""
    batch, L, P2 = x.shape
    P = P2 // 2
    k = _work(batch, P)
    x = x.detach()
    ar, ai = (t.detach().to(x.dtype).contiguous().numpy() for t in (a.real, a.imag))
    ga = np.zeros((batch * k, 2, P), dtype=x.numpy().dtype)  # each work item writes only its slice of P
    gx0 = torch.empty(batch, P2, dtype=x.dtype) if x0 is not None else x.new_empty(0, 0)
    S = np.empty((batch * k, 2, P), dtype=x.numpy().dtype)
    _backward(ar, ai, x.numpy(), g.detach().numpy(), _real(x0, x), ga, gx0.numpy(), k, S)
    ga = torch.from_numpy(ga).sum(0)  # (2, P)
    return torch.complex(ga[0], ga[1]), (gx0 if x0 is not None else None)
