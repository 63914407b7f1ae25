"""State space duality (SSD, Mamba-2): the chunked scan in plain PyTorch, and fused kernels behind ``backend=``.

Per batch, head h, head channel p and state index n, with a scalar decay per head::

    dt_t = softplus(dt_t + dt_bias)   (optional), clamped to dt_limit
    h_t  = exp(dt_t A) h_{t-1} + dt_t B_t x_t          h: (head_dim, N) per head
    y_t  = h_t C_t + D x_t,  then y_t * silu(z_t)

``ssd`` matches ``mamba_ssm``'s ``mamba_chunk_scan_combined``. Because the decay is a scalar per head,
the sequence splits into chunks of ``chunk_size`` in which the outputs are a masked (causal) matrix
product ``(C B^T * exp(segsum(dt A))) (dt x)`` (the "quadratic" dual form), while chunk-to-chunk
information flows through the chunk states by a small recurrence over chunks. Segment sums are taken
as ``cumsum_i - cumsum_j`` for ``j <= i`` only (masked to ``-inf`` before ``exp``), so no exponent is
positive for a stable (negative) ``A``. Memory is linear in L.

SSD is the selective scan with one decay per head shared by its ``head_dim`` channels, so the fused selective-scan
kernels (numba on the CPU, Triton on CUDA; :mod:`ssmcast.ops.backends`) run it directly: each (batch, channel)
keeps its N-vector state in registers and takes one ``exp`` per step instead of N. ``backend="auto"`` uses them
(mamba_ssm's own kernel first on CUDA when installed); ``backend="torch"`` is the chunked dual form above.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ssmcast.ops import backends

try:  # the fused Triton kernel is optional and only ever used for CUDA tensors
    from mamba_ssm.ops.triton.ssd_combined import mamba_chunk_scan_combined as _cuda_chunk_scan
except ImportError:  # pragma: no cover - depends on the environment
    _cuda_chunk_scan = None

__all__ = ["ssd", "ssd_state_update", "has_ssd_kernel"]


def _default_chunk(head_dim: int, N: int) -> int:
    """Chunk length balancing the (l, l) intra-chunk work against the (head_dim, N) state work."""
    return min(128, max(32, 1 << round(math.log2(math.sqrt(head_dim * N)))))


def has_ssd_kernel() -> bool:
    """True when the optional ``mamba_ssm`` Triton SSD kernel is importable."""
    return _cuda_chunk_scan is not None


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise ValueError(msg)


class _SegsumExp(torch.autograd.Function):
    """``exp(Adt_{j+1} + ... + Adt_i)`` for ``j <= i``, 0 above the diagonal: ``(..., l) -> (..., l, l)``.

    The segment sums are differences of float64 cumulative sums, so they stay accurate when the decay
    within a chunk is large; only the (l, l) result is float32. Backward: with ``P = grad * out``,
    ``dS_i = sum_j P_ij - sum_k P_ki`` for the cumulative sums ``S``, then a reverse cumsum.
    """

    @staticmethod
    def forward(ctx, Adt):
        l = Adt.shape[-1]
        S = Adt.to(torch.float64).cumsum(-1)  # (..., l)
        out = torch.empty(*Adt.shape, l, dtype=Adt.dtype, device=Adt.device)  # (..., l, l)
        torch.sub(S.unsqueeze(-1), S.unsqueeze(-2), out=out)
        above = torch.ones(l, l, dtype=torch.bool, device=Adt.device).triu(1)
        out.masked_fill_(above, -math.inf).exp_()
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad):
        (out,) = ctx.saved_tensors
        P = grad * out  # (..., l, l)
        dS = P.sum(-1) - P.sum(-2)  # (..., l)
        return dS.flip(-1).cumsum(-1).flip(-1)  # d/dAdt_k = sum_{i >= k} dS_i


def _segsum_exp(Adt: torch.Tensor) -> torch.Tensor:
    return _SegsumExp.apply(Adt)


def _chunk_scan(X, Adt, B, C, S0):
    """SSD core on padded inputs. X: (b, c, h, l, p) = dt*x; Adt: (b, c, h, l); B, C: (b, c, g, l, n)."""
    b, c, h, l, p = X.shape
    g, n = B.shape[2], B.shape[-1]
    hg = h // g
    Acs = Adt.cumsum(-1)  # (b, c, h, l)
    # 1. within each chunk: masked quadratic form
    Lmat = _segsum_exp(Adt)  # (b, c, h, l, l)
    CB = C @ B.transpose(-1, -2)  # (b, c, g, l, l)
    M = Lmat.reshape(b, c, g, hg, l, l) * CB.unsqueeze(3)  # (b, c, g, hg, l, l)
    Y = M.reshape(b, c, h, l, l) @ X  # (b, c, h, l, p)
    # 2. state of every chunk from its own inputs (decay to the chunk end)
    decay_to_end = Lmat[..., -1, :]  # (b, c, h, l)
    Xw = (X * decay_to_end.unsqueeze(-1)).transpose(-1, -2)  # (b, c, h, p, l)
    states = (Xw.reshape(b, c, g, hg, p, l) @ B.unsqueeze(3)).view(b, c, h, p, n)  # (b, c, h, p, n)
    # 3. pass states from chunk to chunk: a small recurrence over chunks
    chunk_decay = Acs[..., -1].exp()  # (b, c, h)
    S = S0
    prev = []
    for k in range(c):
        prev.append(S)
        S = chunk_decay[:, k, :, None, None] * S + states[:, k]  # (b, h, p, n)
    S_prev = torch.stack(prev, dim=1)  # (b, c, h, p, n) state entering each chunk
    # 4. contribution of the entering state to every position of the chunk
    CS = C.unsqueeze(3) @ S_prev.reshape(b, c, g, hg, p, n).transpose(-1, -2)  # (b, c, g, hg, l, p)
    Y = Y + CS.reshape(b, c, h, l, p) * Acs.exp().unsqueeze(-1)  # (b, c, h, l, p)
    return Y, S


def ssd(
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    chunk_size: int | None,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    dt_bias: torch.Tensor | None = None,
    dt_softplus: bool = False,
    initial_states: torch.Tensor | None = None,
    return_final_states: bool = False,
    *,
    dt_limit: tuple[float, float] = (0.0, math.inf),
    backend: str = "auto",
):
    """Mamba-2's chunked SSD scan; the semantics of ``mamba_ssm``'s ``mamba_chunk_scan_combined``.

    Args:
        x: ``(batch, L, heads, head_dim)``. dt: ``(batch, L, heads)`` step sizes (before bias/softplus).
        A: ``(heads,)`` scalar decay rate per head (negative for a stable model).
        B, C: ``(batch, L, groups, N)``; groups divide heads (head h uses group ``h // (heads/groups)``).
        chunk_size: chunk length of the dual (quadratic) form; any L works (padded internally). None picks
            one: for the torch backend the power of two nearest sqrt(head_dim * N), within [32, 128] (the
            fastest on CPU in benchmarks/bench_selective_scan.py); 256 for the CUDA kernel. The result
            does not depend on it beyond rounding.
        D: optional ``(heads,)`` or ``(heads, head_dim)`` skip. z: optional gate like x, ``y * silu(z)``.
        dt_bias: optional ``(heads,)``; dt_softplus: softplus after the bias; dt_limit: clamp range of dt
            (applied only when not the default ``(0, inf)``, as mamba_ssm does).
        initial_states: optional ``(batch, heads, head_dim, N)`` state before the first step.
        return_final_states: also return the state after the last step, ``(batch, heads, head_dim, N)``.
        backend: ``"auto"``, ``"torch"``, ``"numba"``, ``"triton"`` or ``"mamba_ssm"`` (alias ``"cuda"``), see
            :mod:`ssmcast.ops.backends`. The fused kernels ignore ``chunk_size``.

    Returns:
        ``y`` like ``x`` (x's dtype), and the final states (float32; float64 for float64 x) if asked.
    """
    backend = backends.check_backend(backend)
    for name, t in (("x", x), ("dt", dt), ("A", A), ("B", B), ("C", C)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    _check(x.dim() == 4, f"x must be (batch, L, heads, head_dim), got shape {tuple(x.shape)}")
    b, L, h, p = x.shape
    _check(L >= 1, "x has L=0 time steps")
    _check(dt.shape == (b, L, h), f"dt of shape {tuple(dt.shape)}: expected (batch, L, heads) = {(b, L, h)}")
    _check(A.shape == (h,), f"A of shape {tuple(A.shape)}: expected (heads,) = ({h},)")
    _check(B.dim() == 4, f"B must be (batch, L, groups, N), got shape {tuple(B.shape)}")
    g, n = B.shape[2], B.shape[3]
    _check(
        B.shape[:2] == (b, L) and g >= 1 and h % g == 0,
        f"B of shape {tuple(B.shape)}: expected (batch={b}, L={L}, groups, N) with groups dividing heads={h}",
    )
    _check(C.shape == B.shape, f"C of shape {tuple(C.shape)}: expected B's shape {tuple(B.shape)}")
    if D is not None:
        _check(D.shape in ((h,), (h, p)), f"D of shape {tuple(D.shape)}: expected (heads,) or (heads, p)")
    if z is not None:
        _check(z.shape == x.shape, f"z of shape {tuple(z.shape)}: expected x's shape {tuple(x.shape)}")
    if dt_bias is not None:
        _check(dt_bias.shape == (h,), f"dt_bias of shape {tuple(dt_bias.shape)}: expected (heads,) = ({h},)")
    if initial_states is not None:
        _check(
            initial_states.shape == (b, h, p, n),
            f"initial_states of shape {tuple(initial_states.shape)}: expected {(b, h, p, n)}",
        )
    if chunk_size is not None and (isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1):
        raise ValueError(f"chunk_size must be a positive int or None, got {chunk_size!r}")

    chosen = backends.resolve(backend, x.device, "ssd", mamba_ssm_ok=_cuda_chunk_scan is not None)
    if chosen == "mamba_ssm":
        if _cuda_chunk_scan is None:
            raise ValueError("backend='mamba_ssm' needs the optional mamba_ssm package (pip install mamba-ssm)")
        return _cuda_chunk_scan(
            x, dt, A, B, C, chunk_size or 256, D=D, z=z, dt_bias=dt_bias, initial_states=initial_states,
            dt_softplus=dt_softplus, dt_limit=dt_limit, return_final_states=return_final_states,
        )  # fmt: skip
    if chosen in ("numba", "triton"):
        return _fused(chosen, x, dt, A, B, C, D, z, dt_bias, dt_softplus, initial_states, return_final_states,
                      tuple(dt_limit))  # fmt: skip

    cdt = torch.float64 if x.dtype == torch.float64 else torch.float32
    xf = x.to(cdt)
    dtf = dt.to(cdt)
    if dt_bias is not None:
        dtf = dtf + dt_bias.to(cdt)
    if dt_softplus:
        dtf = F.softplus(dtf)
    if tuple(dt_limit) != (0.0, math.inf):
        dtf = dtf.clamp(dt_limit[0], dt_limit[1])
    l = min(chunk_size or _default_chunk(p, n), L)
    pad = -L % l
    c = (L + pad) // l
    X = xf * dtf.unsqueeze(-1)  # (b, L, h, p)
    Adt = dtf * A.to(cdt)  # (b, L, h)
    Bf, Cf = B.to(cdt), C.to(cdt)
    if pad:  # dt = 0 steps: no decay, no input
        X, Adt = F.pad(X, (0, 0, 0, 0, 0, pad)), F.pad(Adt, (0, 0, 0, pad))
        Bf, Cf = F.pad(Bf, (0, 0, 0, 0, 0, pad)), F.pad(Cf, (0, 0, 0, 0, 0, pad))
    X = X.reshape(b, c, l, h, p).transpose(2, 3)  # (b, c, h, l, p)
    Adt = Adt.reshape(b, c, l, h).transpose(2, 3)  # (b, c, h, l)
    Bc = Bf.reshape(b, c, l, g, n).transpose(2, 3)  # (b, c, g, l, n)
    Cc = Cf.reshape(b, c, l, g, n).transpose(2, 3)
    S0 = initial_states.to(cdt) if initial_states is not None else xf.new_zeros(b, h, p, n)
    Y, S = _chunk_scan(X, Adt, Bc, Cc, S0)  # (b, c, h, l, p), (b, h, p, n)
    y = Y.transpose(2, 3).reshape(b, c * l, h, p)[:, :L]  # (b, L, h, p)
    if D is not None:
        Df = D.to(cdt)
        y = y + xf * (Df if Df.dim() == 2 else Df.unsqueeze(-1))
    if z is not None:
        y = y * F.silu(z.to(cdt))
    y = y.to(x.dtype)
    return (y, S) if return_final_states else y


def _fused(backend, x, dt, A, B, C, D, z, dt_bias, dt_softplus, initial_states, return_final_states, dt_limit):
    """``ssd`` as the fused selective scan: channels ``heads * head_dim``, one step ``dt`` and one decay ``A`` per
    head (``delta`` of ``heads`` rows, ``A`` of shape ``(channels, 1)``), B and C in groups."""
    b, L, h, p = x.shape
    n = B.shape[-1]
    cdt = torch.float64 if x.dtype == torch.float64 else torch.float32
    dtf, bias, softplus = dt.to(cdt), dt_bias, dt_softplus
    if dt_limit != (0.0, math.inf):  # the clamp follows the softplus: apply both here
        dtf = dtf + dt_bias.to(cdt) if dt_bias is not None else dtf
        dtf = (F.softplus(dtf) if dt_softplus else dtf).clamp(dt_limit[0], dt_limit[1])
        bias, softplus = None, False
    Dc = None
    if D is not None:
        Dc = (D if D.dim() == 2 else D[:, None].expand(h, p)).to(cdt).reshape(h * p).contiguous()
    y, last = backends.fused_selective_scan(
        backend,
        x.to(cdt).reshape(b, L, h * p).transpose(1, 2).contiguous(),  # (b, h p, L)
        dtf.transpose(1, 2).contiguous(),  # (b, h, L): channel h p + i reads row h
        A.to(cdt).repeat_interleave(p)[:, None].contiguous(),  # (h p, 1)
        B.to(cdt).transpose(1, 2).contiguous(),  # (b, g, L, n)
        C.to(cdt).transpose(1, 2).contiguous(),
        Dc,
        None if z is None else z.to(cdt).reshape(b, L, h * p).transpose(1, 2).contiguous(),
        None if bias is None else bias.to(cdt).contiguous(),
        None if initial_states is None else initial_states.to(cdt).reshape(b, h * p, n).contiguous(),
        bool(softplus),
    )  # (b, h p, L), (b, h p, n)
    y = y.transpose(1, 2).reshape(b, L, h, p).to(x.dtype)
    return (y, last.reshape(b, h, p, n)) if return_final_states else y


def ssd_state_update(
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
    """One SSD (Mamba-2) decoding step; updates ``state`` IN PLACE and returns ``y``.

    Shapes: state ``(batch, heads, head_dim, N)``; x, z ``(batch, heads, head_dim)``;
    dt ``(batch, heads)``; A ``(heads,)``; B, C ``(batch, groups, N)``; D ``(heads,)`` or
    ``(heads, head_dim)``; dt_bias ``(heads,)``.
    The same update as ``selective_state_update`` with A, dt and dt_bias broadcast over head_dim and N
    (what mamba_ssm's Mamba-2 decoding does), but with one scalar decay per head. Computed in float32.
    """
    _check(state.dim() == 4, f"state must be (batch, heads, head_dim, N), got shape {tuple(state.shape)}")
    b, h, p, n = state.shape
    _check(x.shape == (b, h, p), f"x of shape {tuple(x.shape)}: expected (batch, heads, p) = {(b, h, p)}")
    _check(dt.shape == (b, h), f"dt of shape {tuple(dt.shape)}: expected (batch, heads) = {(b, h)}")
    _check(A.shape == (h,), f"A of shape {tuple(A.shape)}: expected (heads,) = ({h},)")
    for name, M in (("B", B), ("C", C)):
        _check(
            M.dim() == 3 and M.shape[0] == b and M.shape[2] == n and M.shape[1] >= 1 and h % M.shape[1] == 0,
            f"{name} of shape {tuple(M.shape)}: expected (batch, groups, N) with groups dividing heads={h}",
        )
    if D is not None:
        _check(D.shape in ((h,), (h, p)), f"D of shape {tuple(D.shape)}: expected (heads,) or (heads, p)")
    if z is not None:
        _check(z.shape == x.shape, f"z of shape {tuple(z.shape)}: expected x's shape {tuple(x.shape)}")
    if dt_bias is not None:
        _check(dt_bias.shape == (h,), f"dt_bias of shape {tuple(dt_bias.shape)}: expected (heads,) = ({h},)")
    cdt = torch.float64 if x.dtype == torch.float64 else torch.float32
    xf, dtf = x.to(cdt), dt.to(cdt)
    if dt_bias is not None:
        dtf = dtf + dt_bias.to(cdt)
    if dt_softplus:
        dtf = F.softplus(dtf)
    Bh = B.to(cdt).repeat_interleave(h // B.shape[1], dim=1)  # (b, h, n)
    Ch = C.to(cdt).repeat_interleave(h // C.shape[1], dim=1)
    decay = torch.exp(dtf * A.to(cdt))[..., None, None]  # (b, h, 1, 1)
    new_state = (dtf.unsqueeze(-1) * xf).unsqueeze(-1) * Bh.unsqueeze(2)  # (b, h, p, n)
    new_state.addcmul_(state.to(cdt), decay)
    state.copy_(new_state)
    y = (new_state @ Ch.unsqueeze(-1)).squeeze(-1)  # (b, h, p)
    if D is not None:
        y = y + xf * (D.to(cdt) if D.dim() == 2 else D.to(cdt).unsqueeze(-1))
    if z is not None:
        y = y * F.silu(z.to(cdt))
    return y.to(x.dtype)
