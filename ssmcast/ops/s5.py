"""S5 operations: discretisation of a diagonal continuous-time SSM and the parallel MIMO scan.

Smith, Warrington & Linderman, "Simplified State Space Layers for Sequence Modeling" (ICLR 2023).
The state matrix is diagonal (``Lambda``), so the recurrence ``x_k = Lambda_bar x_{k-1} + B_bar u_k``
is, per state, a causal convolution with the kernel ``Lambda_bar^k``. :func:`diagonal_scan` evaluates
it as a chunked scan: inside a chunk of ``T`` steps, one batched matrix product with the lower
triangular Toeplitz matrix ``Lambda_bar^(t-s)``; across chunks, the same scan applied recursively to
the chunk-end states with ``Lambda_bar^T`` (so ``log_T(L)`` levels and no Python loop over time).
Powers are only raised to non-negative exponents (no division by ``Lambda_bar^k``, which would
overflow for decaying states) and are computed in float64, so long chunks stay accurate in float32.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

DEFAULT_CHUNK = 32  # 16-64 measured within noise of each other on CPU (benchmarks/bench_s5.py --chunk)


def _real_dtype(dtype: torch.dtype) -> torch.dtype:
    return {torch.complex64: torch.float32, torch.complex128: torch.float64}.get(dtype, dtype)


def _complex_dtype(dtype: torch.dtype) -> torch.dtype:
    return {torch.float64: torch.complex128, torch.complex128: torch.complex128}.get(dtype, torch.complex64)


def _check_tensor(name: str, value, ndim: int) -> None:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if value.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {tuple(value.shape)}")


def _expm1(z: torch.Tensor) -> torch.Tensor:
    """``exp(z) - 1`` for complex ``z`` without cancellation near 0, from real ops only."""
    x, y = z.real, z.imag
    re = torch.expm1(x) * torch.cos(y) - 2 * torch.sin(y / 2) ** 2
    im = torch.exp(x) * torch.sin(y)
    return torch.complex(re, im)


def discretize(
    Lambda: torch.Tensor, B: torch.Tensor, dt: torch.Tensor, method: str = "zoh"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Discretise ``x' = diag(Lambda) x + B u`` with per-state step ``dt``.

    ``Lambda (P,)`` complex, ``B (P, H)`` complex, ``dt (P,)`` real (or a scalar). Returns
    ``(Lambda_bar (P,), B_bar (P, H))``:

    * ``"zoh"``: ``Lambda_bar = exp(Lambda dt)``, ``B_bar = (Lambda_bar - 1) / Lambda * B``
      (evaluated with ``expm1``; its limit ``dt B`` where ``Lambda = 0``);
    * ``"bilinear"``: ``Lambda_bar = (1 + dt Lambda / 2) / (1 - dt Lambda / 2)``,
      ``B_bar = dt / (1 - dt Lambda / 2) * B``.
    """
    _check_tensor("Lambda", Lambda, 1)
    _check_tensor("B", B, 2)
    if not isinstance(dt, torch.Tensor):
        raise TypeError(f"dt must be a torch.Tensor, got {type(dt).__name__}")
    if dt.is_complex() or not dt.is_floating_point():
        raise TypeError(f"dt must be a real floating tensor, got dtype {dt.dtype}")
    P = Lambda.shape[0]
    if B.shape[0] != P:
        raise ValueError(f"B must have shape (P, H) = ({P}, H) to match Lambda {tuple(Lambda.shape)}, "
                         f"got {tuple(B.shape)}")
    if dt.shape not in ((), (P,)):
        raise ValueError(f"dt must have shape ({P},) (one step per state) or be a scalar, got {tuple(dt.shape)}")
    cdtype = _complex_dtype(torch.promote_types(_real_dtype(Lambda.dtype), dt.dtype))
    Lambda, B = Lambda.to(cdtype), B.to(cdtype)
    dt = dt.to(_real_dtype(cdtype))
    z = Lambda * dt  # (P,)
    if method == "zoh":
        Lambda_bar = torch.exp(z)  # (P,)
        zero = Lambda == 0
        gain = torch.where(zero, dt.to(cdtype), _expm1(z) / torch.where(zero, 1, Lambda))  # (P,)
    elif method == "bilinear":
        denom = 1 - z / 2  # (P,)
        Lambda_bar = (1 + z / 2) / denom  # (P,)
        gain = dt / denom  # (P,)
    else:
        raise ValueError(f"unknown discretization method {method!r}: expected 'zoh' or 'bilinear'")
    return Lambda_bar, gain[:, None] * B  # (P,), (P, H)


def _powers(a: torch.Tensor, n: int) -> torch.Tensor:
    """``a^0 .. a^(n-1)`` stacked ``(n, P)``, by repeated doubling (log2 n products)."""
    pows = torch.ones_like(a)[None]  # (1, P)
    a_k = a
    while pows.shape[0] < n:
        pows = torch.cat([pows, pows * a_k], 0)  # (2m, P)
        a_k = a_k * a_k
    return pows[:n]


def _flush_tiny(z: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Cast to ``dtype``, zeroing values that would be subnormal there (slow on CPUs, no accuracy)."""
    tiny = torch.finfo(_real_dtype(dtype)).tiny
    return torch.where(z.abs() < tiny, 0, z).to(dtype)


def _chunked_scan(a: torch.Tensor, b: torch.Tensor, x0: torch.Tensor | None, chunk: int) -> torch.Tensor:
    """``x_k = a x_{k-1} + b_k`` from ``x_{-1} = x0`` (None: 0), state-major: ``a (P,)`` complex128,
    ``b (P, M, L)`` contiguous, ``x0 (P, M)``. Returns ``(P, M, L)``."""
    P, M, L = b.shape
    T = min(chunk, L)
    n_chunks = -(-L // T)
    if n_chunks * T != L:
        b = F.pad(b, (0, n_chunks * T - L))  # (P, M, n_chunks T)
    pows = _powers(a, T + 1)  # (T+1, P)
    t = torch.arange(T, device=b.device)
    lag = t[None, :] - t[:, None]  # (T, T): [s, t] -> t - s
    toeplitz = torch.where((lag >= 0)[..., None], pows[lag.clamp(min=0)], 0)  # (T, T, P)
    toeplitz = _flush_tiny(toeplitz.permute(2, 0, 1), b.dtype)  # (P, T, T): x_t = sum_s b_s a^(t-s)
    x = torch.bmm(b.view(P, M * n_chunks, T), toeplitz)  # (P, M n_chunks, T), from zero in each chunk
    if n_chunks > 1:
        ends = x.view(P, M, n_chunks, T)[..., -1].contiguous()  # (P, M, n_chunks) chunk-local end states
        ends = _chunked_scan(pows[T], ends, x0, chunk)  # (P, M, n_chunks) true end states
        first = torch.zeros_like(ends[..., :1]) if x0 is None else x0.to(b.dtype)[..., None]  # (P, M, 1)
        carry = torch.cat([first, ends[..., :-1]], -1)  # (P, M, n_chunks): state entering each chunk
    elif x0 is not None:
        carry = x0.to(b.dtype)[..., None]  # (P, M, 1)
    else:
        return x.view(P, M, n_chunks * T)[..., :L]
    decay = _flush_tiny(pows[1:].T, b.dtype)[:, None, None, :]  # (P, 1, 1, T): a^(t+1)
    x = x.view(P, M, n_chunks, T) + carry[..., None] * decay  # (P, M, n_chunks, T)
    return x.view(P, M, n_chunks * T)[..., :L]


def _check_chunk(chunk_size) -> int:
    chunk = DEFAULT_CHUNK if chunk_size is None else chunk_size
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 2:
        raise ValueError(f"chunk_size must be an int >= 2, got {chunk_size!r}")
    return chunk


def diagonal_scan(
    Lambda_bar: torch.Tensor,
    Bu: torch.Tensor,
    x0: torch.Tensor | None = None,
    chunk_size: int | None = None,
) -> torch.Tensor:
    """All states of ``x_k = Lambda_bar * x_{k-1} + Bu_k`` (``x_{-1} = x0``, zeros by default).

    ``Lambda_bar (P,)`` complex, ``Bu (batch, L, P)`` complex, ``x0 (batch, P)``. Returns
    ``(batch, L, P)`` in ``Bu``'s dtype. Parallel chunked scan (module docstring); ``chunk_size``
    defaults to 32.
    """
    _check_tensor("Lambda_bar", Lambda_bar, 1)
    _check_tensor("Bu", Bu, 3)
    if not Bu.is_complex():
        raise TypeError(f"Bu must be complex, got dtype {Bu.dtype}")
    batch, L, P = Bu.shape
    if Lambda_bar.shape[0] != P:
        raise ValueError(f"Lambda_bar has {Lambda_bar.shape[0]} states but Bu has {P} (shape {tuple(Bu.shape)})")
    if L == 0:
        raise ValueError("Bu has length 0: need at least one time step")
    chunk = _check_chunk(chunk_size)
    _check_x0(x0, batch, P)
    a = Lambda_bar.to(torch.complex128)  # powers in double precision: see module docstring
    x0_t = None if x0 is None else x0.T  # (P, batch)
    xs = _chunked_scan(a, Bu.permute(2, 0, 1).contiguous(), x0_t, chunk)  # (P, batch, L)
    return xs.permute(1, 2, 0)  # (batch, L, P)


def _check_x0(x0, batch: int, P: int) -> None:
    if x0 is not None:
        _check_tensor("x0", x0, 2)
        if x0.shape != (batch, P):
            raise ValueError(f"x0 must have shape (batch, P) = ({batch}, {P}), got {tuple(x0.shape)}")


def s5_scan(
    Lambda_bar: torch.Tensor,
    B_bar: torch.Tensor,
    C_tilde: torch.Tensor,
    u: torch.Tensor,
    conj_sym: bool = True,
    bidirectional: bool = False,
    x0: torch.Tensor | None = None,
    return_state: bool = False,
    chunk_size: int | None = None,
):
    """The S5 MIMO linear recurrence over a whole sequence, in parallel.

    ``x_k = Lambda_bar x_{k-1} + B_bar u_k`` (``x_{-1} = x0``, zeros by default) and
    ``y_k = 2 Re(C_tilde x_k)`` if ``conj_sym`` (the states are one half of conjugate pairs) else
    ``Re(C_tilde x_k)``. ``Lambda_bar (P,)``, ``B_bar (P, H)``, ``C_tilde (H, P)`` complex;
    ``u (batch, L, H)`` real. Returns ``y (batch, L, H)`` real, and with ``return_state`` also the last
    state ``x_{L-1} (batch, P)`` complex.

    ``bidirectional`` (as in the S5 reference) adds a backward-in-time scan with the same
    ``Lambda_bar, B_bar``: ``C_tilde`` is then ``(H, 2P)``, its first ``P`` columns read the forward
    states and the last ``P`` the backward ones (no ``x0``/``return_state``: there is no causal state).

    Computed in ``u``'s precision (float32 for half/bfloat16 inputs, under autocast too): float32 ->
    complex64, float64 -> complex128. The output has ``u``'s dtype.
    """
    _check_tensor("Lambda_bar", Lambda_bar, 1)
    _check_tensor("B_bar", B_bar, 2)
    _check_tensor("C_tilde", C_tilde, 2)
    _check_tensor("u", u, 3)
    if u.is_complex() or not u.is_floating_point():
        raise TypeError(f"u must be a real floating tensor, got dtype {u.dtype}")
    batch, L, H = u.shape
    P = Lambda_bar.shape[0]
    if L == 0:
        raise ValueError("u has length 0: need at least one time step")
    if B_bar.shape != (P, H):
        raise ValueError(f"B_bar must have shape (P, H) = ({P}, {H}) for Lambda_bar {tuple(Lambda_bar.shape)} "
                         f"and u {tuple(u.shape)}, got {tuple(B_bar.shape)}")
    n_read = 2 * P if bidirectional else P
    if C_tilde.shape != (H, n_read):
        which = "(H, 2P) with bidirectional=True" if bidirectional else "(H, P)"
        raise ValueError(f"C_tilde must have shape {which} = ({H}, {n_read}), got {tuple(C_tilde.shape)}")
    if bidirectional and (x0 is not None or return_state):
        raise ValueError("x0 and return_state are not available with bidirectional=True (non-causal scan)")

    chunk = _check_chunk(chunk_size)
    _check_x0(x0, batch, P)
    compute = u.dtype if u.dtype in (torch.float32, torch.float64) else torch.float32
    cdtype = _complex_dtype(compute)
    a = Lambda_bar.to(torch.complex128)  # powers in double precision: see module docstring
    with torch.autocast(device_type=u.device.type, enabled=False):
        # state-major layout (P, batch, L) throughout: the chunk products are batched over states
        B_c = B_bar.to(cdtype)
        W_in = torch.cat([B_c.real, B_c.imag], 0)  # (2P, H)
        Bu = W_in @ u.to(compute).reshape(batch * L, H).T  # (2P, batch L)
        Bu = torch.complex(Bu[:P], Bu[P:]).view(P, batch, L)  # (P, batch, L)
        x0_t = None if x0 is None else x0.T  # (P, batch)
        xs = _chunked_scan(a, Bu, x0_t, chunk)  # (P, batch, L)
        if bidirectional:
            xs_back = _chunked_scan(a, Bu.flip(-1), None, chunk).flip(-1)  # (P, batch, L)
            xs_all = torch.cat([xs, xs_back], 0)  # (2P, batch, L)
        else:
            xs_all = xs
        # Re(C x) = [Re C, -Im C] . [Re x; Im x]
        C_c = C_tilde.to(cdtype)
        W_out = torch.cat([C_c.real, -C_c.imag], 1)  # (H, 2P')
        x_ri = torch.view_as_real(xs_all).permute(3, 0, 1, 2).reshape(2 * n_read, batch * L)  # (2P', batch L)
        y = (x_ri.T @ W_out.T).view(batch, L, H)  # (B, L, H)
        if conj_sym:
            y = 2 * y
    y = y.to(u.dtype)
    if return_state:
        return y, xs[..., -1].T  # (batch, P)
    return y
