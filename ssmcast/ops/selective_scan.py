"""Selective scan (Mamba's S6 recurrence): a chunked plain-PyTorch reference, and fused kernels behind ``backend=``.

The recurrence, per batch b, channel d and state index n (A diagonal, real)::

    dt_t  = softplus(delta_t + delta_bias)            (bias and softplus optional)
    x_t   = exp(dt_t A) x_{t-1} + dt_t B_t u_t         (zero-order hold for A, Euler for B)
    y_t   = C_t x_t + D u_t,   then y_t * silu(z_t)    (D and z optional)

``selective_scan`` matches ``mamba_ssm``'s ``selective_scan_fn`` (shapes, argument names, dtypes). Where the
state ``(batch, dim, L, N)`` is written out, the scan is bound by memory; the fused kernels keep each
(batch, channel) pair's N-vector state in registers and stream time: numba on the CPU
(:mod:`ssmcast.ops.selective_scan_numba`), Triton on CUDA (:mod:`ssmcast.ops.selective_scan_triton`), or the
optional ``mamba_ssm`` package's kernel. ``backend="auto"`` (:mod:`ssmcast.ops.backends`) picks the fastest
available one for the tensors' device; ``backend="torch"`` is the reference described next.

Time is cut into blocks (about 2M state elements each) processed one after the other, so memory stays linear
in L. Inside a block of T steps, cut into sub-chunks of ``sub`` ~ sqrt(T)
steps, a two-level scan runs: pass 1 loops over the ``sub`` positions for all sub-chunks at once and
keeps only each sub-chunk's end state from a zero start; a loop over sub-chunks turns those into the true
entering states with the sub-chunk decays ``exp(A * sum dt)``; pass 2 reruns every sub-chunk from its
entering state and produces y. Only products of ``exp(dt A) <= 1`` appear (for a stable A), never an
exp of a positive cumulative sum, so long sequences cannot overflow. So the Python loops run about
3 sqrt(T) times per block, not once per step. The gradient is a custom ``autograd.Function``: backward
recomputes one block's states at a time and runs the adjoint recurrence backwards with the same two
passes, so training memory is linear in L too (measured in ``benchmarks/bench_selective_scan.py``).

On a GPU those 3 sqrt(T) iterations of small ops are bound by kernel launches, so for CUDA tensors each
block is scanned instead by Blelloch's work-efficient scan (``scan="logdepth"``): about 4 log2(T) ops over
the whole block, with the same custom backward (the adjoint is the same scan on the time-reversed
block). On the CPU it is about twice as slow as the two-level scan, which stays the default there.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from ssmcast.ops import backends

try:  # the fused CUDA kernel is optional and only ever used for CUDA tensors
    from mamba_ssm.ops.selective_scan_interface import selective_scan_fn as _cuda_selective_scan_fn
except ImportError:  # pragma: no cover - depends on the environment
    _cuda_selective_scan_fn = None

__all__ = ["selective_scan", "selective_state_update", "has_cuda_kernel"]

_SCANS = ("auto", "chunked", "logdepth")
_BLOCK_ELEMENTS = 1 << 21  # elements of one (batch, block, dim, N) block tensor on CPU: fits in L3
_GPU_BLOCK_ELEMENTS = 1 << 25  # on GPU: fewer, larger blocks (kernel launches dominate); untuned


def has_cuda_kernel() -> bool:
    """True when the optional ``mamba_ssm`` fused selective-scan kernel is importable."""
    return _cuda_selective_scan_fn is not None


# ---------------------------------------------------------------------------------------------------
# Two-level scans inside one block, along dim 1: a, X, G: (b, T, *S) with T a multiple of `sub`.
# ---------------------------------------------------------------------------------------------------


class _Workspace:
    """Named flat buffers reused from block to block (fresh large allocations page-fault on every block)."""

    def __init__(self, like: torch.Tensor):
        self.dtype, self.device, self.buffers = like.dtype, like.device, {}

    def __call__(self, name: str, shape) -> torch.Tensor:
        n = math.prod(shape)
        buf = self.buffers.get(name)
        if buf is None or buf.numel() < n:
            buf = self.buffers[name] = torch.empty(n, dtype=self.dtype, device=self.device)
        return buf[:n].view(shape)


def _scan_forward(a, X, P, h0, sub: int, ws: _Workspace, C=None, C_varying: bool = True) -> torch.Tensor:
    """States ``h_t = a_t h_{t-1} + X_t`` of a block from ``h_{-1} = h0`` (None means zeros).

    ``P`` (b, nsub, *S) is the product of ``a`` over each sub-chunk. Pass 1 finds every sub-chunk's end
    state from a zero start (kept in a small buffer only); a short loop over sub-chunks turns them into
    the true entering states; pass 2 runs every sub-chunk again from its entering state. Returns all
    states (b, T, *S), or, when ``C`` is given, only ``y_t = sum_n C_t h_t`` (b, T, *S[:-1]).
    """
    b, T, *S = X.shape
    nsub = T // sub
    a = a.view(b, nsub, sub, *S)  # (b, nsub, sub, *S)
    X = X.view(b, nsub, sub, *S)
    H = ws("H", (b, nsub, *S))  # state entering each sub-chunk
    H[:, 0] = 0.0 if h0 is None else h0
    if nsub > 1:
        e = ws("e", (b, nsub, *S))
        e.copy_(X[:, :, 0])
        for j in range(1, sub):
            torch.addcmul(X[:, :, j], a[:, :, j], e, out=e)
        for i in range(1, nsub):
            torch.addcmul(e[:, i - 1], P[:, i - 1], H[:, i - 1], out=H[:, i])
    if C is None:
        hs = ws("hs", X.shape)
        torch.addcmul(X[:, :, 0], a[:, :, 0], H, out=hs[:, :, 0])
        for j in range(1, sub):
            torch.addcmul(X[:, :, j], a[:, :, j], hs[:, :, j - 1], out=hs[:, :, j])
        return hs.view(b, T, *S)
    y = torch.empty(b, nsub, sub, *S[:-1], dtype=X.dtype, device=X.device)  # (b, nsub, sub, G, H)
    C = C.view(C.shape[0], nsub, sub, *C.shape[2:]) if C_varying else C
    tmp = ws("tmp", H.shape)
    for j in range(sub):
        torch.addcmul(X[:, :, j], a[:, :, j], H, out=H)
        Cj = C[:, :, j] if C_varying else C
        torch.sum(torch.mul(H, Cj, out=tmp), dim=-1, out=y[:, :, j])
    return y.view(b, T, *S[:-1])


def _scan_backward(a, G, P, g_next, sub: int, ws: _Workspace) -> torch.Tensor:
    """Adjoint ``g_t = G_t + a_{t+1} g_{t+1}`` of a block, with ``a_T g_T := g_next`` (None means zeros).

    The same two passes as ``_scan_forward``, backwards in time.
    """
    b, T, *S = G.shape
    nsub = T // sub
    a = a.view(b, nsub, sub, *S)
    G = G.view(b, nsub, sub, *S)
    R = ws("H", (b, nsub, *S))  # dL/dh at each sub-chunk's last step, from later sub-chunks
    R[:, -1] = 0.0 if g_next is None else g_next
    if nsub > 1:
        e = ws("e", (b, nsub, *S))  # adjoint at each sub-chunk's first step, from its own steps only
        e.copy_(G[:, :, -1])
        for j in range(sub - 2, -1, -1):
            torch.addcmul(G[:, :, j], a[:, :, j + 1], e, out=e)
        for i in range(nsub - 2, -1, -1):
            torch.mul(a[:, i + 1, 0], e[:, i + 1], out=R[:, i])
            R[:, i].addcmul_(P[:, i + 1], R[:, i + 1])
    gs = ws("gs", G.shape)
    torch.add(G[:, :, -1], R, out=gs[:, :, -1])
    for j in range(sub - 2, -1, -1):
        torch.addcmul(G[:, :, j], a[:, :, j + 1], gs[:, :, j + 1], out=gs[:, :, j])
    return gs.view(b, T, *S)


def _blelloch_(a, X) -> None:
    """In place along dim 1: ``X_t <- a_t X_{t-1} + X_t`` (from a zero state) and ``a_t <- a_0 ... a_t``.

    Blelloch's work-efficient scan on strided views, any length: the up-sweep folds each pair (even, odd)
    into the odd element and recurses on the odd elements, the down-sweep completes every even element
    from the odd one before it. About 4 log2(T) elementwise kernels in all, O(T) work: for GPUs, where
    the two-level scan's 3 sqrt(T) Python iterations a block are bound by kernel launches.
    """
    levels = []
    while a.shape[1] > 1:
        ev_a, od_a, ev_X, od_X = a[:, 0::2], a[:, 1::2], X[:, 0::2], X[:, 1::2]
        n = od_a.shape[1]
        od_X.addcmul_(od_a, ev_X[:, :n])
        od_a.mul_(ev_a[:, :n])
        levels.append((ev_a, od_a, ev_X, od_X))
        a, X = od_a, od_X
    for ev_a, od_a, ev_X, od_X in reversed(levels):
        m = ev_a.shape[1] - 1
        if m > 0:
            ev_X[:, 1:].addcmul_(ev_a[:, 1:], od_X[:, :m])
            ev_a[:, 1:].mul_(od_a[:, :m])


def _logdepth_forward(a, X, h0, ws: _Workspace, C=None, C_varying: bool = True) -> torch.Tensor:
    """``_scan_forward`` by :func:`_blelloch_`: all states (b, T, *S), or ``y`` when ``C`` is given.

    Overwrites ``X`` (it becomes the states); ``a`` is kept (its running products go to a workspace copy).
    """
    acum = ws("acum", a.shape).copy_(a)  # (b, T, *S), becomes a_0 ... a_t
    _blelloch_(acum, X)
    if h0 is not None:
        X.addcmul_(acum, h0.unsqueeze(1))
    if C is None:
        return X
    return torch.mul(X, C, out=ws("tmp", X.shape)).sum(-1)  # (b, T, G, H)


def _logdepth_backward(a, G, g_next, ws: _Workspace) -> torch.Tensor:
    """``_scan_backward`` by :func:`_blelloch_` on the time-reversed adjoint recurrence."""
    T = a.shape[1]
    ar = ws("acum", a.shape)  # decays of the reversed recurrence: ar_s = a_{T-s}, ar_0 = 1
    ar[:, 0] = 1.0
    if T > 1:
        ar[:, 1:] = a[:, 1:].flip(1)
    gs = ws("gs", G.shape)
    gs.copy_(G.flip(1))
    _blelloch_(ar, gs)
    if g_next is not None:
        gs.addcmul_(ar, g_next.unsqueeze(1))
    return gs.flip(1)


# ---------------------------------------------------------------------------------------------------
# The chunked core, canonical contiguous layouts (compute dtype):
#   u, dt: (b, L, G, H); A: (G, H, N); Bm, Cm: (b, L, G, 1, N) input-dependent or (1, 1, G, H, N)
#   time-invariant; h0: (b, G, H, N) or None. Block tensors are (b, T, G, H, N): for input-dependent
#   B/C the sums over N and over the channels H of a group are batched matrix products.
# ---------------------------------------------------------------------------------------------------


def _contract_n(X, M, varying: bool, ws: _Workspace) -> torch.Tensor:
    """``sum_n X[..., n] M[..., n]``: (b, T, G, H, N) and a B/C block -> (b, T, G, H)."""
    if varying:
        return (X @ M.transpose(-1, -2)).squeeze(-1)
    return torch.mul(X, M, out=ws("tmp", X.shape)).sum(-1)


def _contract_h(v, X, varying: bool, ws: _Workspace) -> torch.Tensor:
    """``sum_h v[..., h] X[..., h, :]``, the gradient of a B/C block (summed over b, T if time-invariant)."""
    if varying:
        return v.unsqueeze(-2) @ X  # (b, T, G, 1, N)
    return torch.mul(X, v.unsqueeze(-1), out=ws("tmp", X.shape)).sum((0, 1), keepdim=True)  # (1, 1, G, H, N)


def _subchunk_decay(dt: torch.Tensor, A: torch.Tensor, sub: int) -> torch.Tensor:
    """``exp(A * sum of dt over each sub-chunk)``: (b, T, G, H) -> (b, T // sub, G, H, N)."""
    b, T, *S = dt.shape
    return torch.exp(dt.view(b, T // sub, sub, *S).sum(2).unsqueeze(-1) * A)


def _block_bounds(L: int, block: int) -> list[tuple[int, int]]:
    return [(t0, min(t0 + block, L)) for t0 in range(0, L, block)]


def _time_slice(M: torch.Tensor, t0: int, t1: int, varying: bool) -> torch.Tensor:
    return M[:, t0:t1] if varying else M


class _ChunkedSelectiveScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u, dt, A, Bm, Cm, h0, block: int, sub: int, B_var: bool, C_var: bool, logdepth: bool):
        b, L, G, H = u.shape
        N = A.shape[-1]
        ws = _Workspace(u)
        y = torch.empty_like(u)  # (b, L, G, H)
        starts = []
        h = h0
        for t0, t1 in _block_bounds(L, block):
            starts.append(h)
            shape = (b, t1 - t0, G, H, N)
            dt_c = dt[:, t0:t1]  # (b, T, G, H)
            a = torch.mul(dt_c.unsqueeze(-1), A, out=ws("a", shape)).exp_()  # (b, T, G, H, N)
            du = (dt_c * u[:, t0:t1]).unsqueeze(-1)
            X = torch.mul(du, _time_slice(Bm, t0, t1, B_var), out=ws("X", shape))  # (b, T, G, H, N)
            C_c = _time_slice(Cm, t0, t1, C_var)
            if logdepth:
                y[:, t0:t1] = _logdepth_forward(a, X, h, ws, C_c, C_var)
                h = X[:, -1].clone()  # (b, G, H, N) state after the block
            else:
                P = _subchunk_decay(dt_c, A, sub)  # (b, nsub, G, H, N)
                y[:, t0:t1] = _scan_forward(a, X, P, h, sub, ws, C_c, C_var)
                h = ws("H", P.shape)[:, -1].clone()
        if h is None:
            h = u.new_zeros(b, G, H, N)
        ctx.save_for_backward(u, dt, A, Bm, Cm, *starts)
        ctx.block, ctx.sub, ctx.has_h0, ctx.varying = block, sub, h0 is not None, (B_var, C_var)
        ctx.logdepth = logdepth
        ctx.set_materialize_grads(False)
        return y, h

    @staticmethod
    @once_differentiable
    def backward(ctx, gy, g_last):
        u, dt, A, Bm, Cm, *starts = ctx.saved_tensors
        block, sub = ctx.block, ctx.sub
        B_var, C_var = ctx.varying
        need_A, need_B, need_C = ctx.needs_input_grad[2:5]
        b, L, G, H = u.shape
        N = A.shape[-1]
        ws = _Workspace(u)
        gy = gy.contiguous() if gy is not None else torch.zeros_like(u)
        gu, gdt = torch.empty_like(u), torch.empty_like(dt)
        gA = torch.zeros_like(A)
        gB, gC = torch.zeros_like(Bm), torch.zeros_like(Cm)
        g_next = g_last  # dL/dh at the end of the current block, from the future
        for k, (t0, t1) in reversed(list(enumerate(_block_bounds(L, block)))):
            shape = (b, t1 - t0, G, H, N)
            h = starts[k]
            dt_c, u_c, gy_c = dt[:, t0:t1], u[:, t0:t1], gy[:, t0:t1]  # (b, T, G, H)
            B_c, C_c = _time_slice(Bm, t0, t1, B_var), _time_slice(Cm, t0, t1, C_var)
            a = torch.mul(dt_c.unsqueeze(-1), A, out=ws("a", shape)).exp_()  # (b, T, G, H, N)
            du = dt_c * u_c
            X = torch.mul(du.unsqueeze(-1), B_c, out=ws("X", shape))  # (b, T, G, H, N)
            Gin = torch.mul(gy_c.unsqueeze(-1), C_c, out=ws("G", shape))  # (b, T, G, H, N)
            if ctx.logdepth:
                hs = _logdepth_forward(a, X, h, ws)  # (b, T, G, H, N)
                gs = _logdepth_backward(a, Gin, g_next, ws)  # dL/dh_t, (b, T, G, H, N)
            else:
                P = _subchunk_decay(dt_c, A, sub)  # (b, nsub, G, H, N)
                hs = _scan_forward(a, X, P, h, sub, ws)
                gs = _scan_backward(a, Gin, P, g_next, sub, ws)
            # gradient w.r.t. the log-decay dt_t A: g_t * a_t * h_{t-1}
            gdA = a.mul_(gs)  # (b, T, G, H, N), reuses a
            g_next = gdA[:, 0].clone()  # dL/dh entering the block
            gdA[:, 1:].mul_(hs[:, :-1])
            if h is None:
                gdA[:, 0] = 0.0
            else:
                gdA[:, 0].mul_(h)
            gX = _contract_n(gs, B_c, B_var, ws)  # (b, T, G, H)
            gdt[:, t0:t1] = torch.mul(gdA, A, out=ws("tmp", shape)).sum(-1).addcmul_(gX, u_c)
            torch.mul(gX, dt_c, out=gu[:, t0:t1])
            if need_A:
                gA += torch.mul(gdA, dt_c.unsqueeze(-1), out=ws("tmp", shape)).sum((0, 1))
            if need_B and B_var:
                gB[:, t0:t1] = _contract_h(du, gs, True, ws)
            elif need_B:
                gB += _contract_h(du, gs, False, ws)
            if need_C and C_var:
                gC[:, t0:t1] = _contract_h(gy_c, hs, True, ws)
            elif need_C:
                gC += _contract_h(gy_c, hs, False, ws)
        gh0 = g_next if ctx.has_h0 else None
        return gu, gdt, gA if need_A else None, gB if need_B else None, gC if need_C else None, gh0, *[None] * 5


# ---------------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------------


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise ValueError(msg)


def _canonical_bc(M: torch.Tensor, name: str, b: int, D: int, L: int, N: int, G: int, dtype) -> torch.Tensor:
    """B or C as (b, L, G, 1, N) (input-dependent) or (1, 1, G, H, N) (time-invariant)."""
    M = M.to(dtype)
    if M.dim() == 2:
        _check(M.shape == (D, N), f"{name} of shape {tuple(M.shape)}: expected (dim, N) = {(D, N)}")
        return M.reshape(1, 1, G, D // G, N)
    if M.dim() == 3:
        M = M.unsqueeze(1)
    _check(M.dim() == 4, f"{name} must have 2, 3 or 4 dimensions, got shape {tuple(M.shape)}")
    g = M.shape[1]
    _check(
        M.shape[0] == b and M.shape[2] == N and M.shape[3] == L and g >= 1 and D % g == 0,
        f"{name} of shape {tuple(M.shape)}: expected (batch, N, L) = {(b, N, L)} or "
        f"(batch, groups, N, L) with groups dividing dim={D}",
    )
    M = M.permute(0, 3, 1, 2)  # (b, L, g, N)
    if g != G:
        M = M.repeat_interleave(G // g, dim=2)
    return M.unsqueeze(3).contiguous()  # (b, L, G, 1, N)


def _fused_bc(M: torch.Tensor, name: str, b: int, D: int, L: int, N: int, dtype) -> torch.Tensor:
    """B or C in the fused kernels' layout: ``(1, dim, 1, N)`` time-invariant, ``(batch, groups, L, N)`` else."""
    M = M.to(dtype)
    if M.dim() == 2:
        _check(M.shape == (D, N), f"{name} of shape {tuple(M.shape)}: expected (dim, N) = {(D, N)}")
        return M.reshape(1, D, 1, N).contiguous()
    if M.dim() == 3:
        M = M.unsqueeze(1)
    _check(
        M.dim() == 4 and M.shape[0] == b and M.shape[2] == N and M.shape[3] == L and D % M.shape[1] == 0,
        f"{name} of shape {tuple(M.shape)}: expected (batch, N, L) = {(b, N, L)} or "
        f"(batch, groups, N, L) with groups dividing dim={D}",
    )
    return M.transpose(2, 3).contiguous()  # (b, g, L, N)


def _groups(M: torch.Tensor) -> int:
    return 1 if M.dim() <= 3 else M.shape[1]


def _compute_dtype(t: torch.Tensor) -> torch.dtype:
    """float32, or float64 for float64 inputs (useful for gradcheck); half types are upcast."""
    return torch.float64 if t.dtype == torch.float64 else torch.float32


def _default_sizes(b: int, D: int, L: int, N: int, cuda: bool) -> tuple[int, int]:
    """Block length and sub-chunk length: blocks of ~2M state elements, sub ~ sqrt(block)."""
    budget = _GPU_BLOCK_ELEMENTS if cuda else _BLOCK_ELEMENTS
    block = max(16, min(4096, budget // max(1, b * D * N)))
    block = 1 << int(math.log2(block))
    block = min(block, 1 << max(0, math.ceil(math.log2(max(L, 1)))))
    sub = 1 << (int(math.log2(block)) + 1) // 2
    return block, sub


def selective_scan(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
    return_last_state: bool = False,
    *,
    initial_state: torch.Tensor | None = None,
    backend: str = "auto",
    chunk_size: int | None = None,
    scan: str = "auto",
):
    """Mamba's selective scan; same signature and semantics as ``mamba_ssm``'s ``selective_scan_fn``.

    Args:
        u: ``(batch, dim, L)`` input.
        delta: ``(batch, dim, L)`` step sizes (before ``delta_bias`` / softplus).
        A: ``(dim, N)`` real state matrix (diagonal per channel), normally negative.
        B, C: ``(dim, N)`` time-invariant, ``(batch, N, L)`` or ``(batch, groups, N, L)`` input-dependent
            (group g serves channels ``[g*dim/groups, (g+1)*dim/groups)``).
        D: optional ``(dim,)`` skip connection. z: optional ``(batch, dim, L)`` gate, ``y * silu(z)``.
        delta_bias: optional ``(dim,)`` added to delta; delta_softplus: apply softplus after the bias.
        return_last_state: also return the state after the last step, ``(batch, dim, N)`` float32.
        initial_state: optional ``(batch, dim, N)`` state before the first step (not with mamba_ssm's kernel).
        backend: ``"auto"``, ``"torch"``, ``"numba"``, ``"triton"`` or ``"mamba_ssm"`` (alias ``"cuda"``); see
            :mod:`ssmcast.ops.backends`. ``auto``: numba on the CPU; on CUDA mamba_ssm when installed (and no
            ``initial_state``), else Triton, else torch.
        chunk_size: block length of the torch backend (default: sized to ~2M state elements per block on
            the CPU, ~32M on a GPU); the fused kernels ignore it.
        scan: how the torch backend scans a block: ``"chunked"`` (two-level, about 3 sqrt(T) Python
            iterations of small ops; the CPU default), ``"logdepth"`` (Blelloch's scan, about 4 log2(T) large
            ops; the default for CUDA tensors, where kernel launches dominate) or ``"auto"``.

    Returns:
        ``y`` of shape ``(batch, dim, L)`` in ``u``'s dtype, and the last state if asked.
    """
    backend = backends.check_backend(backend)
    if scan not in _SCANS:
        raise ValueError(f"scan={scan!r}: expected one of {_SCANS}")
    for name, t in (("u", u), ("delta", delta), ("A", A), ("B", B), ("C", C)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.is_complex():
            raise TypeError(f"{name} is complex: only real selective scans are supported")
    _check(u.dim() == 3, f"u must be (batch, dim, L), got shape {tuple(u.shape)}")
    b, dim, L = u.shape
    _check(delta.shape == u.shape, f"delta of shape {tuple(delta.shape)}: expected u's {tuple(u.shape)}")
    _check(A.dim() == 2 and A.shape[0] == dim, f"A of shape {tuple(A.shape)}: expected (dim={dim}, N)")
    N = A.shape[1]
    _check(L >= 1 and N >= 1, f"empty input: L={L}, N={N}")
    if D is not None:
        _check(D.shape == (dim,), f"D of shape {tuple(D.shape)}: expected (dim,) = ({dim},)")
    if z is not None:
        _check(z.shape == u.shape, f"z of shape {tuple(z.shape)}: expected u's shape {tuple(u.shape)}")
    if delta_bias is not None:
        _check(delta_bias.shape == (dim,), f"delta_bias of shape {tuple(delta_bias.shape)}: expected (dim,)")
    if initial_state is not None:
        _check(
            initial_state.shape == (b, dim, N),
            f"initial_state of shape {tuple(initial_state.shape)}: expected (batch, dim, N) = {(b, dim, N)}",
        )
    if chunk_size is not None:
        _check(int(chunk_size) >= 1, f"chunk_size must be >= 1, got {chunk_size}")

    chosen = backends.resolve(backend, u.device, "selective_scan",
                              mamba_ssm_ok=_cuda_selective_scan_fn is not None and initial_state is None)  # fmt: skip
    if chosen == "mamba_ssm":
        if _cuda_selective_scan_fn is None:
            raise ValueError("backend='mamba_ssm' needs the optional mamba_ssm package (pip install mamba-ssm)")
        if initial_state is not None:
            raise ValueError("initial_state is not supported by the mamba_ssm kernel: use another backend")
        return _cuda_selective_scan_fn(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state)
    if chosen in ("numba", "triton"):
        _check(dim % _groups(B) == 0 and dim % _groups(C) == 0,
               f"the groups of B and C ({_groups(B)}, {_groups(C)}) must divide dim={dim}")  # fmt: skip
        cdt = _compute_dtype(u)
        y, last = backends.fused_selective_scan(
            chosen, u.to(cdt).contiguous(), delta.to(cdt).contiguous(), A.to(cdt).contiguous(),
            _fused_bc(B, "B", b, dim, L, N, cdt), _fused_bc(C, "C", b, dim, L, N, cdt),
            None if D is None else D.to(cdt).contiguous(), None if z is None else z.to(cdt).contiguous(),
            None if delta_bias is None else delta_bias.to(cdt).contiguous(),
            None if initial_state is None else initial_state.to(cdt).contiguous(), bool(delta_softplus),
        )  # fmt: skip
        y = y.to(u.dtype)
        return (y, last) if return_last_state else y

    G = math.lcm(_groups(B), _groups(C))
    _check(dim % G == 0, f"the groups of B and C ({_groups(B)}, {_groups(C)}) must divide dim={dim}")
    cdt = _compute_dtype(u)
    Bm = _canonical_bc(B, "B", b, dim, L, N, G, cdt)
    Cm = _canonical_bc(C, "C", b, dim, L, N, G, cdt)
    H = dim // G
    uf = u.to(cdt)
    dt = delta.to(cdt)
    if delta_bias is not None:
        dt = dt + delta_bias.to(cdt)[:, None]  # (b, dim, L)
    if delta_softplus:
        dt = F.softplus(dt)

    logdepth = scan == "logdepth" or (scan == "auto" and u.is_cuda)
    if chunk_size is None:
        block, sub = _default_sizes(b, dim, L, N, u.is_cuda)
    else:
        sub = 1 << int(math.log2(math.isqrt(int(chunk_size))))
        block = -(-int(chunk_size) // sub) * sub
    if logdepth:
        block, sub = int(chunk_size) if chunk_size is not None else block, 1
    pad = -L % sub
    u_in = uf.transpose(1, 2)  # (b, L, dim)
    dt_in = dt.transpose(1, 2)
    if pad:  # dt = 0 steps: no decay, no input
        u_in, dt_in = F.pad(u_in, (0, 0, 0, pad)), F.pad(dt_in, (0, 0, 0, pad))
        Bm = F.pad(Bm, (0, 0, 0, 0, 0, 0, 0, pad)) if B.dim() > 2 else Bm
        Cm = F.pad(Cm, (0, 0, 0, 0, 0, 0, 0, pad)) if C.dim() > 2 else Cm
    Lp = L + pad
    h0 = None if initial_state is None else initial_state.to(cdt).reshape(b, G, H, N)
    y, last = _ChunkedSelectiveScan.apply(
        u_in.reshape(b, Lp, G, H).contiguous(),
        dt_in.reshape(b, Lp, G, H).contiguous(),
        A.to(cdt).reshape(G, H, N),
        Bm,
        Cm,
        h0,
        block,
        sub,
        B.dim() > 2,
        C.dim() > 2,
        logdepth,
    )
    y = y.reshape(b, Lp, dim)[:, :L].transpose(1, 2)  # (b, dim, L)
    if D is not None:
        y = y + uf * D.to(cdt)[:, None]
    if z is not None:
        y = y * F.silu(z.to(cdt))
    y = y.to(u.dtype).contiguous()
    return (y, last.reshape(b, dim, N)) if return_last_state else y


def selective_state_update(
    state: torch.Tensor,
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    dt_bias: torch.Tensor | None = None,
    dt_softplus: bool = False,
) -> torch.Tensor:
    """One step of the selective scan, for decoding (``mamba_ssm``'s ``selective_state_update``).

    Updates ``state`` IN PLACE (as mamba_ssm does) and returns ``y``. Shapes, without / with heads:
    state ``(batch, dim, N)`` / ``(batch, heads, dim, N)``; x, dt, z ``(batch, dim)`` /
    ``(batch, heads, dim)``; A ``(dim, N)`` / ``(heads, dim, N)``; B, C ``(batch, N)`` or
    ``(batch, groups, N)`` (groups divide heads in the 4-d form, dim in the 3-d form); D, dt_bias
    ``(dim,)`` / ``(heads, dim)``. Computed in float32 (float64 for float64 x); ``y`` has ``x``'s dtype.
    """
    has_heads = state.dim() == 4
    _check(
        state.dim() in (3, 4),
        f"state must be (batch, dim, N) or (batch, heads, dim, N), got {tuple(state.shape)}",
    )
    if not has_heads:
        state_, x_, dt_, A_ = state.unsqueeze(1), x.unsqueeze(1), dt.unsqueeze(1), A.unsqueeze(0)
        z_ = None if z is None else z.unsqueeze(1)
        D_ = None if D is None else D.unsqueeze(0)
        bias_ = None if dt_bias is None else dt_bias.unsqueeze(0)
    else:
        state_, x_, dt_, A_, z_, D_, bias_ = state, x, dt, A, z, D, dt_bias
    b, nh, dim, N = state_.shape
    _check(x_.shape == (b, nh, dim), f"x of shape {tuple(x.shape)} does not match state {tuple(state.shape)}")
    _check(dt_.shape == (b, nh, dim), f"dt of shape {tuple(dt.shape)}: expected x's shape {tuple(x.shape)}")
    _check(A_.shape == (nh, dim, N), f"A of shape {tuple(A.shape)} does not match state {tuple(state.shape)}")
    if z_ is not None:
        _check(z_.shape == x_.shape, f"z of shape {tuple(z.shape)}: expected x's shape {tuple(x.shape)}")
    if D_ is not None:
        _check(D_.shape == (nh, dim), f"D of shape {tuple(D.shape)}: expected {tuple(x.shape[1:])}")
    if bias_ is not None:
        _check(
            bias_.shape == (nh, dim),
            f"dt_bias shape {tuple(dt_bias.shape)}: expected {tuple(x.shape[1:])}",
        )
    split = nh if has_heads else dim

    cdt = _compute_dtype(x)

    def groups_of(M, name):
        M = M.to(cdt)
        if M.dim() == 2:
            M = M.unsqueeze(1)
        _check(
            M.dim() == 3 and M.shape[0] == b and M.shape[2] == N and split % M.shape[1] == 0,
            f"{name} of shape {tuple(M.shape)}: expected (batch, N) or (batch, groups, N) with groups "
            f"dividing {'heads' if has_heads else 'dim'}={split}",
        )
        if has_heads:
            return M.repeat_interleave(nh // M.shape[1], dim=1).unsqueeze(2)  # (b, nh, 1, N)
        return M.repeat_interleave(dim // M.shape[1], dim=1).unsqueeze(1)  # (b, 1, dim, N)

    Bg, Cg = groups_of(B, "B"), groups_of(C, "C")
    xf = x_.to(cdt)
    dtf = dt_.to(cdt)
    if bias_ is not None:
        dtf = dtf + bias_.to(cdt)
    if dt_softplus:
        dtf = F.softplus(dtf)
    dA = torch.exp(dtf.unsqueeze(-1) * A_.to(cdt))  # (b, nh, dim, N)
    new_state = state_.to(cdt) * dA + (dtf * xf).unsqueeze(-1) * Bg  # (b, nh, dim, N)
    state_.copy_(new_state)
    y = (new_state * Cg).sum(-1)  # (b, nh, dim)
    if D_ is not None:
        y = y + xf * D_.to(cdt)
    if z_ is not None:
        y = y * F.silu(z_.to(cdt))
    y = y.to(x.dtype)
    return y if has_heads else y.squeeze(1)
