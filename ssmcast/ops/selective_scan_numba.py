"""The selective scan fused into one pass on the CPU: numba kernels, forward and backward.

The Mamba paper's point about its CUDA kernel holds on a CPU too: the scan is memory-bound when the
expanded state ``(batch, dim, L, N)`` is written out. Here one unit of work is one (batch, channel) pair;
its N-vector state lives in a small local array (registers and L1), time is streamed, and every output
is written once. Work items run in parallel over batch x channel slices (``prange``).

Forward, per (b, d), with ``dt_t = softplus(delta_t + bias)`` (both optional)::

    h_t = exp(dt_t A) * h_{t-1} + dt_t u_t B_t        y_t = (C_t . h_t + D u_t) * silu(z_t)

It also keeps the state entering every chunk of ``CHUNK`` steps, ``(b, d, L / CHUNK, N)``. The backward
walks the chunks from the last: it recomputes a chunk's states from its checkpoint into a ``(CHUNK + 1, N)``
buffer, then runs the adjoint recurrence ``g_{t-1} = exp(dt_t A) * (g_t + C_t gy_t)`` backwards through it.
So memory stays O(b d (L / CHUNK) N), never the full ``(b, d, L, N)``.

The float32 kernels use :func:`fexp2` (``2**y`` from a rounding split, a degree-5 polynomial and the exponent
bits written directly; 2.4e-7 relative) and :func:`fsoftplus`, which LLVM vectorises over N where libm's
scalar ``exp`` would not; float64 keeps ``math.exp`` (gradcheck precision). Compiled functions are cached on
disk (numba's ``cache=True``): only the first call in a fresh environment compiles. numba is imported when
this module is, which only the ``numba`` backend does, so ``import ssmcast`` stays light.

Performance notes, measured on the 2-core development CPU (AVX2): every buffer inside the kernels is a slice
``[w]`` of a workspace argument, not a local ``np.empty``, and no array view is made inside the time loop (each
costs reference counting; together about twice as slow); loops over n index arrays with the loop variable last. The
forward runs at about 1.2x the cost of its arithmetic alone (``arithmetic_limit``); the exponential is most of
it.

Canonical layouts (contiguous, one dtype): ``u, z (b, D, L)``; ``delta (b, Dd, L)`` with ``Dd`` dividing
``D`` (channel d reads ``delta[:, d // (D / Dd)]``, how Mamba-2 shares one step per head); ``A (D, NA)``
with ``NA`` 1 (one decay per channel, Mamba-2) or N; ``B, C (nb, g, l, N)``: ``(b, G, L, N)``
input-dependent (channel d reads group ``d // (D / G)``) or ``(1, D, 1, N)`` time-invariant; optional
arrays are passed empty.
"""

from __future__ import annotations

import math
import os

# numba runs its parallel loops on its own OpenMP pool, a second libgomp beside torch's. With libgomp's default
# wait policy its threads spin after every kernel and take the cores from torch's threads (measured: S5 training
# at 1/3 of its speed on two cores). Set before the pool starts; a user's own setting is kept.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numba  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from llvmlite import ir  # noqa: E402
from numba import njit, prange, types  # noqa: E402
from numba.extending import intrinsic, overload  # noqa: E402

CHUNK = 64  # steps between the forward's saved states; the backward's buffers are (CHUNK + 1, N)
_FASTMATH = {"reassoc", "contract", "arcp", "nsz", "afn"}  # no "nnan"/"ninf": NaN and inf propagate


@intrinsic
def _pow2_f32(typingctx, k):
    """``2 ** k`` for an integral float32 ``k`` in [-126, 127], by writing the exponent bits."""
    if k != types.float32:
        return None

    def codegen(context, builder, sig, args):
        i32 = ir.IntType(32)
        ki = builder.fptosi(args[0], i32)
        bits = builder.shl(builder.add(ki, ir.Constant(i32, 127)), ir.Constant(i32, 23))
        return builder.bitcast(bits, ir.FloatType())

    return types.float32(k), codegen


_EXP2 = (1.0000001192092896, 0.6931469440460205, 0.24022120237350464, 0.05550713092088699, 0.00967550277709961,
         0.0013276358367875218)  # 2**f on [-1/2, 1/2], degree 5, relative error 2.4e-7 in float32
LOG2E = 1.4426950408889634


def fexp2(y):  # pragma: no cover - replaced by the overload below inside numba
    """``2 ** y``: vectorisable in float32, ``math.exp2`` otherwise."""
    return 2.0**y


@overload(fexp2)
def _fexp2_overload(y):
    if y == types.float32:
        c0, c1, c2, c3, c4, c5 = (np.float32(c) for c in _EXP2)

        def exp2_f32(y):  # 2**y = 2**k 2**f, k = round(y), |f| <= 1/2; NaN stays NaN (no min/max)
            y = np.float32(-126.0) if y < np.float32(-126.0) else y  # 2**-126: float32's smallest normal
            y = np.float32(128.0) if y > np.float32(128.0) else y  # overflows to inf, as exp does
            k = np.floor(y + np.float32(0.5))
            f = y - k
            p = c5 * f + c4
            p = p * f + c3
            p = p * f + c2
            p = p * f + c1
            p = p * f + c0
            return p * _pow2_f32(k)

        return exp2_f32
    if isinstance(y, types.Float):
        return lambda y: math.exp(y * 0.6931471805599453)
    return None


def fexp(x):  # pragma: no cover - replaced by the overload below inside numba
    """``exp(x)``: :func:`fexp2` of ``x log2(e)``; within 7e-7 relative of ``exp`` for ``|x| < 10`` in float32
    (the float32 rounding of ``x`` itself is of that order), exact to rounding in float64."""
    return math.exp(x)


@overload(fexp)
def _fexp_overload(x):
    if x == types.float32:
        return lambda x: fexp2(x * np.float32(LOG2E))
    if isinstance(x, types.Float):
        return lambda x: math.exp(x)
    return None


_LOG1P = (0.9999999403953552, -0.4999925494194031, 0.3331601023674011, -0.24825648963451385, 0.19055955111980438,
          -0.13583941757678986, 0.07754038274288177, -0.029210267588496208, 0.005186003632843494)


def fsoftplus(x):  # pragma: no cover - replaced by the overload below inside numba
    """``log(1 + exp(x))`` (``x`` itself above 20, as torch): vectorisable in float32."""
    return x if x > 20 else math.log1p(math.exp(x))


@overload(fsoftplus)
def _fsoftplus_overload(x):
    if x == types.float32:
        c0, c1, c2, c3, c4, c5, c6, c7, c8 = (np.float32(c) for c in _LOG1P)

        def softplus_f32(x):  # max(x, 0) + log1p(exp(-|x|)), log1p(t) = t p(t) on [0, 1] (2 ulp)
            t = fexp(-abs(x))
            p = c8 * t + c7
            p = p * t + c6
            p = p * t + c5
            p = p * t + c4
            p = p * t + c3
            p = p * t + c2
            p = p * t + c1
            p = p * t + c0
            return max(x, np.float32(0.0)) + t * p

        return softplus_f32
    if isinstance(x, types.Float):
        return lambda x: x if x > 20.0 else math.log1p(math.exp(x))
    return None


@njit(fastmath=_FASTMATH, cache=True)
def _delta_rows(delta, bias, bi, dd, softplus, one, rows, w):  # pragma: no cover
    """``rows[w, 0] = softplus(delta[bi, dd] + bias[dd])`` and ``rows[w, 1] = softplus'`` (each optional)."""
    L = delta.shape[2]
    b = bias[dd] if bias.shape[0] > 0 else one - one
    if softplus:
        for t in range(L):
            x = delta[bi, dd, t] + b
            rows[w, 0, t] = fsoftplus(x)
            rows[w, 1, t] = one / (one + fexp(-x))
    else:
        for t in range(L):
            rows[w, 0, t] = delta[bi, dd, t] + b


@njit(parallel=True, fastmath=_FASTMATH, cache=True)
def _forward(u, delta, A, B, C, Dskip, z, bias, h0, softplus, y, last, ckpt, n_slices, one,
             h, rows, A2):  # pragma: no cover  # fmt: skip
    """Workspaces: ``h (W, N)``, ``rows (W, 3, L)``, ``A2 (W, NA)`` for the ``W = b n_slices`` work items."""
    b, D, L = u.shape
    N = B.shape[3]
    NA = A.shape[1]
    dgroup = D // delta.shape[1]
    bgroup, cgroup = D // B.shape[1], D // C.shape[1]
    bvar_b, cvar_b = B.shape[0] > 1, C.shape[0] > 1
    bvar_t, cvar_t = B.shape[2] > 1, C.shape[2] > 1
    has_D, has_z, has_h0, save = Dskip.shape[0] > 0, z.shape[0] > 0, h0.shape[0] > 0, ckpt.shape[0] > 0
    zero = one - one  # `one` is a 1 of the arrays' dtype: a float literal would promote float32 to float64
    log2e = one * LOG2E
    per_slice = -(-D // n_slices)
    for w in prange(b * n_slices):
        bi = w // n_slices
        d0 = (w % n_slices) * per_slice
        bb, cb = (bi if bvar_b else 0), (bi if cvar_b else 0)
        for d in range(d0, min(D, d0 + per_slice)):
            for n in range(N):
                h[w, n] = h0[bi, d, n] if has_h0 else zero
            for n in range(NA):
                A2[w, n] = A[d, n] * log2e
            _delta_rows(delta, bias, bi, d // dgroup, softplus, one, rows, w)  # rows[w, 0]: dt
            if NA == 1:  # one decay per step: all of them at once, into rows[w, 1]
                a2 = A2[w, 0]
                for t in range(L):
                    rows[w, 1, t] = fexp2(rows[w, 0, t] * a2)
            bg, cg = d // bgroup, d // cgroup
            for t in range(L):
                if save and t % CHUNK == 0:
                    for n in range(N):
                        ckpt[bi, d, t // CHUNK, n] = h[w, n]
                dtt = rows[w, 0, t]
                x = dtt * u[bi, d, t]
                tb, tc = (t if bvar_t else 0), (t if cvar_t else 0)
                s = zero
                if NA == 1:
                    a = rows[w, 1, t]
                    for n in range(N):
                        hn = a * h[w, n] + x * B[bb, bg, tb, n]
                        h[w, n] = hn
                        s += hn * C[cb, cg, tc, n]
                else:
                    for n in range(N):
                        hn = fexp2(dtt * A2[w, n]) * h[w, n] + x * B[bb, bg, tb, n]
                        h[w, n] = hn
                        s += hn * C[cb, cg, tc, n]
                rows[w, 2, t] = s
            Dv = Dskip[d] if has_D else zero
            if has_z:
                for t in range(L):
                    zt = z[bi, d, t]
                    y[bi, d, t] = (rows[w, 2, t] + Dv * u[bi, d, t]) * zt / (one + fexp(-zt))
            else:
                for t in range(L):
                    y[bi, d, t] = rows[w, 2, t] + Dv * u[bi, d, t]
            for n in range(N):
                last[bi, d, n] = h[w, n]


@njit(parallel=True, fastmath=_FASTMATH, cache=True)
def _backward(u, delta, A, B, C, Dskip, z, bias, h0, softplus, ckpt, gy, glast,
              gu, gdt, gA, gB, gC, gD, gz, gh0, n_slices, one,
              hbuf, abuf, g, rows, A2):  # pragma: no cover  # fmt: skip
    """Gradients; ``gA (b, D, NA)`` and ``gD (b, D)`` per batch row, ``gB, gC (n_slices, b, *B.shape[1:])``
    per work item, summed by the caller: no two work items write the same element. Workspaces:
    ``hbuf (W, CHUNK + 1, N)`` (a chunk's states), ``abuf (W, CHUNK, N)`` (its decays), ``g (W, 3, N)``
    (dL/dh, the gradient of A, the running state), ``rows (W, 4, L)``, ``A2 (W, NA)``."""
    b, D, L = u.shape
    N = B.shape[3]
    NA = A.shape[1]
    dgroup = D // delta.shape[1]
    bgroup, cgroup = D // B.shape[1], D // C.shape[1]
    bvar_b, cvar_b = B.shape[0] > 1, C.shape[0] > 1
    bvar_t, cvar_t = B.shape[2] > 1, C.shape[2] > 1
    has_D, has_z, has_glast = Dskip.shape[0] > 0, z.shape[0] > 0, glast.shape[0] > 0
    zero = one - one
    log2e = one * LOG2E
    n_chunks = ckpt.shape[2]
    per_slice = -(-D // n_slices)
    for w in prange(b * n_slices):
        bi = w // n_slices
        k = w % n_slices
        d0 = k * per_slice
        bb, cb = (bi if bvar_b else 0), (bi if cvar_b else 0)
        for d in range(d0, min(D, d0 + per_slice)):
            for n in range(NA):
                A2[w, n] = A[d, n] * log2e
                g[w, 1, n] = zero  # dL/dA[d]
            _delta_rows(delta, bias, bi, d // dgroup, softplus, one, rows, w)  # rows[w, 0]: dt, rows[w, 1]: dt'
            bg, cg = d // bgroup, d // cgroup
            Dv = Dskip[d] if has_D else zero
            gDacc = zero
            for n in range(N):
                g[w, 0, n] = glast[bi, d, n] if has_glast else zero  # dL/dh_t
            for c in range(n_chunks - 1, -1, -1):
                t0 = c * CHUNK
                t1 = min(L, t0 + CHUNK)
                for n in range(N):
                    hbuf[w, 0, n] = ckpt[bi, d, c, n]
                    g[w, 2, n] = ckpt[bi, d, c, n]  # the running state (a separate buffer: twice as fast)
                for t in range(t0, t1):  # recompute the chunk's states; rows[w, 2]: C_t . h_t
                    j = t - t0
                    dtt = rows[w, 0, t]
                    x = dtt * u[bi, d, t]
                    tb, tc = (t if bvar_t else 0), (t if cvar_t else 0)
                    s = zero
                    if NA == 1:
                        a = fexp2(dtt * A2[w, 0])
                        for n in range(N):
                            abuf[w, j, n] = a
                            hn = a * g[w, 2, n] + x * B[bb, bg, tb, n]
                            g[w, 2, n] = hn
                            hbuf[w, j + 1, n] = hn
                            s += hn * C[cb, cg, tc, n]
                    else:
                        for n in range(N):
                            a = fexp2(dtt * A2[w, n])
                            abuf[w, j, n] = a
                            hn = a * g[w, 2, n] + x * B[bb, bg, tb, n]
                            g[w, 2, n] = hn
                            hbuf[w, j + 1, n] = hn
                            s += hn * C[cb, cg, tc, n]
                    rows[w, 2, t] = s
                if has_z:  # through the gate; rows[w, 3]: dL/d(C_t . h_t + D u_t)
                    for t in range(t0, t1):
                        zt = z[bi, d, t]
                        sz = one / (one + fexp(-zt))
                        go = gy[bi, d, t]
                        gz[bi, d, t] = go * (rows[w, 2, t] + Dv * u[bi, d, t]) * sz * (one + zt * (one - sz))
                        rows[w, 3, t] = go * zt * sz
                else:
                    for t in range(t0, t1):
                        rows[w, 3, t] = gy[bi, d, t]
                for t in range(t0, t1):
                    gDacc += rows[w, 3, t] * u[bi, d, t]
                for t in range(t1 - 1, t0 - 1, -1):  # the adjoint, backwards in time
                    j = t - t0
                    tb, tc = (t if bvar_t else 0), (t if cvar_t else 0)
                    ut = u[bi, d, t]
                    go = rows[w, 3, t]
                    dtt = rows[w, 0, t]
                    x = dtt * ut
                    gx = zero  # dL/d(dt u)
                    gl = zero  # dL/d(dt), through the decays
                    if NA == 1:
                        gsum = zero
                        for n in range(N):
                            gn = g[w, 0, n] + go * C[cb, cg, tc, n]
                            gC[k, bi, cg, tc, n] += go * hbuf[w, j + 1, n]
                            gB[k, bi, bg, tb, n] += gn * x
                            gx += gn * B[bb, bg, tb, n]
                            gsum += gn * hbuf[w, j, n]
                            g[w, 0, n] = gn * abuf[w, j, n]
                        gsum *= abuf[w, j, 0]
                        gl = gsum * A[d, 0]
                        g[w, 1, 0] += gsum * dtt
                    else:
                        for n in range(N):
                            gn = g[w, 0, n] + go * C[cb, cg, tc, n]
                            gC[k, bi, cg, tc, n] += go * hbuf[w, j + 1, n]
                            gB[k, bi, bg, tb, n] += gn * x
                            gx += gn * B[bb, bg, tb, n]
                            ga = gn * hbuf[w, j, n] * abuf[w, j, n]
                            gl += ga * A[d, n]
                            g[w, 1, n] += ga * dtt
                            g[w, 0, n] = gn * abuf[w, j, n]
                    gu[bi, d, t] = go * Dv + gx * dtt
                    gd = gl + gx * ut
                    gdt[bi, d, t] = gd * rows[w, 1, t] if softplus else gd
            for n in range(N):
                gh0[bi, d, n] = g[w, 0, n]
            for n in range(NA):
                gA[bi, d, n] = g[w, 1, n]
            gD[bi, d] = gDacc


@njit(parallel=True, fastmath=_FASTMATH, cache=True)
def _arithmetic(b, D, N, L, A2, Bt, Ct, dts, out):  # pragma: no cover
    for w in prange(b):
        acc = Ct[0] * 0
        for _ in range(D):
            for n in range(N):
                out[w, n] = 0
            for t in range(L):
                dtt = dts[t & 63]
                x = dtt * Ct[t & 15]
                s = acc * 0
                for n in range(N):
                    hn = fexp2(dtt * A2[n]) * out[w, n] + x * Bt[n]
                    out[w, n] = hn
                    s += hn * Ct[n]
                acc += s
        out[w, 0] += acc


def arithmetic_limit(b: int, D: int, N: int, L: int) -> None:
    """The float32 forward's arithmetic (an exp and two multiply-adds a state update, the same loops) with every
    operand in L1 and nothing read or written per step: what the forward would cost without memory traffic.
    For ``benchmarks/bench_selective_scan.py``."""
    _threads()
    rng = np.random.default_rng(0)
    A2 = -rng.random(N, dtype=np.float32)
    Bt, Ct = rng.random(max(N, 16), dtype=np.float32), rng.random(max(N, 16), dtype=np.float32)
    _arithmetic(b, D, N, L, A2, Bt, Ct, rng.random(64, dtype=np.float32) * 0.1, np.empty((b, N), np.float32))


# ---------------------------------------------------------------------------------------------------
# torch glue
# ---------------------------------------------------------------------------------------------------


def _np(t: torch.Tensor | None, ndim: int, like: torch.Tensor) -> np.ndarray:
    """A numpy view of a contiguous CPU tensor, or an empty array of ``ndim`` dimensions for None."""
    if t is None:
        return np.empty((0,) * ndim, dtype=like.detach().numpy().dtype)
    return t.detach().contiguous().numpy()


def _n_slices(b: int, D: int, threads: int) -> int:
    """Channel slices per batch row: enough work items (>= 4 per thread) to balance the threads."""
    return max(1, min(D, -(-4 * threads // b))) if threads > 1 else 1


def _ws(like: torch.Tensor, *shape: int) -> np.ndarray:
    return np.empty(shape, dtype=np.float64 if like.dtype == torch.float64 else np.float32)


def _one(t: torch.Tensor):
    return np.float64(1.0) if t.dtype == torch.float64 else np.float32(1.0)


def _threads() -> int:
    """numba follows torch's intra-op thread count (e.g. one per process under pytest-xdist)."""
    n = max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS))
    numba.set_num_threads(n)
    return n


def forward(u, delta, A, B, C, D, z, bias, h0, softplus: bool, save: bool):
    """``y (b, D, L)``, the last state ``(b, D, N)`` and, if ``save``, the chunk checkpoints."""
    b, Dn, L = u.shape
    N = B.shape[3]
    y = torch.empty_like(u)
    last = u.new_empty(b, Dn, N)
    ckpt = u.new_empty(b, Dn, -(-L // CHUNK), N) if save else u.new_empty(0, 0, 0, 0)
    k = _n_slices(b, Dn, _threads())
    W, NA = b * k, A.shape[1]
    u, delta, A, B, C = (t.detach() for t in (u, delta, A, B, C))
    _forward(u.numpy(), delta.numpy(), A.numpy(), B.numpy(), C.numpy(), _np(D, 1, u), _np(z, 3, u),
             _np(bias, 1, u), _np(h0, 3, u), softplus, y.numpy(), last.numpy(), ckpt.numpy(), k, _one(u),
             _ws(u, W, N), _ws(u, W, 3, L), _ws(u, W, NA))  # fmt: skip
    return y, last, ckpt


def backward(u, delta, A, B, C, D, z, bias, h0, softplus: bool, ckpt, gy, glast):
    """Gradients of every canonical input (see the module docstring): ``gu, gdt (b, D, L)`` (``gdt`` per
    channel, w.r.t. ``delta + bias`` before the softplus), ``gA`` like A, ``gB``/``gC`` like B/C,
    ``gD (D,)``, ``gz (b, D, L)``, ``gh0 (b, D, N)``."""
    b, Dn, L = u.shape
    NA = A.shape[1]
    N = B.shape[3]
    k = _n_slices(b, Dn, _threads())
    W = b * k
    gu, gdt = torch.empty_like(u), torch.empty_like(u)
    gz = torch.empty_like(u) if z is not None else u.new_empty(0, 0, 0)
    gA_rows = u.new_empty(b, Dn, NA)
    gD_rows = u.new_empty(b, Dn)
    gB, gC = u.new_zeros(k, b, *B.shape[1:]), u.new_zeros(k, b, *C.shape[1:])  # per work item
    gh0 = u.new_empty(b, Dn, N)
    u, delta, A, B, C, ckpt = (t.detach() for t in (u, delta, A, B, C, ckpt))
    _backward(u.numpy(), delta.numpy(), A.numpy(), B.numpy(), C.numpy(), _np(D, 1, u), _np(z, 3, u),
              _np(bias, 1, u), _np(h0, 3, u), softplus, ckpt.numpy(), gy.detach().contiguous().numpy(),
              _np(glast, 3, u), gu.numpy(), gdt.numpy(), gA_rows.numpy(), gB.numpy(), gC.numpy(),
              gD_rows.numpy(), gz.numpy(), gh0.numpy(), k, _one(u),
              _ws(u, W, CHUNK + 1, N), _ws(u, W, CHUNK, N), _ws(u, W, 3, N), _ws(u, W, 4, L),
              _ws(u, W, NA))  # fmt: skip
    gB = gB.sum(0) if B.shape[0] > 1 else gB.sum((0, 1)).unsqueeze(0)  # (nb, g, l, N) like B
    gC = gC.sum(0) if C.shape[0] > 1 else gC.sum((0, 1)).unsqueeze(0)
    return gu, gdt, gA_rows.sum(0), gB, gC, gD_rows.sum(0), (gz if z is not None else None), gh0
