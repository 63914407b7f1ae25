"""Mamba's causal depthwise convolution (and its SiLU) fused into one pass on the CPU: numba kernels.

One work item is one (batch, channel) row: forward ``pre_t = bias + sum_k w_k x_{t-K+1+k}`` and
``y_t = act(pre_t)`` vectorised over t (one pass a tap); backward recomputes ``pre`` (K multiply-adds), forms
``g_t = gy_t act'(pre_t)`` in a workspace row and writes ``dL/dx_s = sum_k w_k g_{s+K-1-k}``, while
``dL/dw_k = sum_t g_t x_{t-K+1+k}`` and ``dL/dbias = sum_t g_t`` are summed per row and reduced over the batch by
the caller.
"""

from __future__ import annotations

import numpy as np
import torch
from numba import njit, prange

from ssmcast.ops.selective_scan_numba import _FASTMATH, _one, _threads, fexp

# Inner loops index 1-D row views with the loop variable only: an index like ``t - K + 1 + k`` gets numba's
# negative-index wrap-around check, which keeps LLVM from vectorising the loop (measured 5x slower).


@njit(parallel=True, fastmath=_FASTMATH, cache=True)
def _forward(x, w, bias, silu, y, one):  # pragma: no cover
    b, C, L = x.shape
    K = w.shape[1]
    has_bias = bias.shape[0] > 0
    for r in prange(b * C):
        bi, c = r // C, r % C
        xr, yr = x[bi, c], y[bi, c]
        b0 = bias[c] if has_bias else one - one
        for t in range(L):
            yr[t] = b0
        for k in range(K):  # tap k: y[t] += w_k x[t - off], off = K - 1 - k
            wk = w[c, k]
            off = K - 1 - k
            if off < L:
                yo = yr[off:]
                for s in range(L - off):
                    yo[s] += wk * xr[s]
        if silu:
            for t in range(L):
                p = yr[t]
                yr[t] = p / (one + fexp(-p))


@njit(parallel=True, fastmath=_FASTMATH, cache=True)
def _backward(x, w, bias, silu, gy, gx, gw, gb, g, one):  # pragma: no cover
    """``gw (b, C, K)`` and ``gb (b, C)`` per row; workspace ``g (b C, L)``."""
    b, C, L = x.shape
    K = w.shape[1]
    has_bias = bias.shape[0] > 0
    for r in prange(b * C):
        bi, c = r // C, r % C
        xr, gyr, gxr, gr = x[bi, c], gy[bi, c], gx[bi, c], g[r]
        b0 = bias[c] if has_bias else one - one
        if silu:  # g = gy * silu'(pre), pre recomputed
            for t in range(L):
                gr[t] = b0
            for k in range(K):
                wk = w[c, k]
                off = K - 1 - k
                if off < L:
                    go = gr[off:]
                    for s in range(L - off):
                        go[s] += wk * xr[s]
            for t in range(L):
                p = gr[t]
                sg = one / (one + fexp(-p))
                gr[t] = gyr[t] * sg * (one + p * (one - sg))
        else:
            for t in range(L):
                gr[t] = gyr[t]
        acc = one - one
        for t in range(L):
            gxr[t] = 0
            acc += gr[t]
        gb[bi, c] = acc
        for k in range(K):  # dL/dx[s] += w_k g[s + off]; dL/dw_k = sum_s g[s + off] x[s]
            wk = w[c, k]
            off = K - 1 - k
            acc = one - one
            if off < L:
                go = gr[off:]
                for s in range(L - off):
                    gxr[s] += wk * go[s]
                    acc += go[s] * xr[s]
            gw[bi, c, k] = acc


class CausalConv1d(torch.autograd.Function):
    """``causal_conv1d`` on contiguous ``x (b, C, L)``, ``w (C, K)``, ``bias (C,)`` or None, one dtype."""

    @staticmethod
    def forward(ctx, x, w, bias, silu: bool):
        _threads()
        y = torch.empty_like(x)
        empty = x.new_empty(0)
        _forward(x.detach().numpy(), w.detach().numpy(), (empty if bias is None else bias.detach()).numpy(), silu,
                 y.numpy(), _one(x))  # fmt: skip
        ctx.save_for_backward(x, w, bias)
        ctx.silu = silu
        return y

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, gy):
        x, w, bias = ctx.saved_tensors
        _threads()
        b, C, L = x.shape
        gx = torch.empty_like(x)
        gw, gb = x.new_empty(b, C, w.shape[1]), x.new_empty(b, C)
        empty = x.new_empty(0)
        g = np.empty((b * C, L), dtype=x.detach().numpy().dtype)
        _backward(x.detach().numpy(), w.detach().numpy(), (empty if bias is None else bias.detach()).numpy(),
                  ctx.silu, gy.detach().contiguous().numpy(), gx.numpy(), gw.numpy(), gb.numpy(), g,
                  _one(x))  # fmt: skip
        need = ctx.needs_input_grad
        return (gx if need[0] else None, gw.sum(0) if need[1] else None,
                gb.sum(0) if bias is not None and need[2] else None, None)  # fmt: skip
