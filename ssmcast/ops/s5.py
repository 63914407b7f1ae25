"""S5 operations: discretisation of a diagonal continuous-time SSM and the parallel MIMO scan.

Smith, Warrington & Linderman, "Simplified State Space Layers for Sequence Modeling" (ICLR 2023).
The state matrix is diagonal (``Lambda``), so the recurrence ``x_k = Lambda_bar x_{k-1} + B_bar u_k``
runs state by state. :func:`diagonal_scan` evaluates it as a chunked scan: the sequence is cut into
chunks of ``T`` steps, all chunks advance together from a zero state (``T - 1`` vectorised updates, each
over every chunk at once); the chunk-end states are then combined by the same scan, applied recursively
with ``Lambda_bar^T``, and each chunk adds ``Lambda_bar^(t+1)`` times the state entering it. That is
``log_T(L)`` levels, no loop over ``L``, and about three passes over the data: on a CPU the scan is
bound by memory, not arithmetic. The powers of ``Lambda_bar`` are taken in float64 and only to
non-negative exponents (no division by ``Lambda_bar^k``, which would overflow for decaying states).
The gradient is the adjoint recurrence, run backwards in time by the same scan.

That chunked scan is the ``backend="torch"`` reference. The fused kernels (numba on the CPU,
:mod:`ssmcast.ops.s5_numba`; Triton on CUDA, :mod:`ssmcast.ops.s5_triton`) run the recurrence in one pass over
the states instead, which is what ``backend="auto"`` picks (:mod:`ssmcast.ops.backends`).
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from ssmcast.ops import backends

DEFAULT_CHUNK = 16  # fastest of 4-128 on CPU at L = 4096 (benchmarks/bench_s5.py --chunk)


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


def _scan_inplace(a: torch.Tensor, x: torch.Tensor, x0: torch.Tensor | None, chunk: int) -> torch.Tensor:
    """Overwrite ``x (batch, L, P)`` (holding ``b``) with the states of ``x_k = a x_{k-1} + b_k`` from
    ``x_{-1} = x0`` (None: 0); ``a (P,)`` complex128, ``x0 (batch, P)``. Returns ``x``."""
    batch, L, P = x.shape
    T = min(chunk, L)
    n = -(-L // T)
    buf = x if n * T == L else F.pad(x, (0, 0, 0, n * T - L))  # (batch, n T, P): zeros past the end
    w = buf.view(batch, n, T, P)
    a_w = _flush_tiny(a, x.dtype)
    for t in range(1, T):  # every chunk at once, from zero
        w[:, :, t].addcmul_(w[:, :, t - 1], a_w)  # (batch, n, P)
    if n > 1 or x0 is not None:
        pows = _flush_tiny(_powers(a, T + 1)[1:], x.dtype)  # (T, P): a^1 .. a^T
        if n > 1:
            ends = _scan_inplace(a ** T, w[:, :, -1].clone(), x0, chunk)  # (batch, n, P) true chunk-end states
            first = ends.new_zeros(batch, 1, P) if x0 is None else x0.to(x.dtype)[:, None]  # (batch, 1, P)
            carry = torch.cat([first, ends[:, :-1]], 1)  # (batch, n, P): state entering each chunk
        else:
            carry = x0.to(x.dtype)[:, None]  # (batch, 1, P)
        w.addcmul_(carry[:, :, None], pows)  # (batch, n, T, P)
    if buf is not x:
        x.copy_(buf[:, :L])
    return x


def _pairs_as_complex(t: torch.Tensor) -> torch.Tensor:
    """A complex view ``(..., P)`` of a real ``(..., 2P)`` tensor of interleaved (re, im) pairs."""
    return torch.view_as_complex(t.view(*t.shape[:-1], t.shape[-1] // 2, 2))


class _DiagonalScan(torch.autograd.Function):
    """``x_k = a x_{k-1} + b_k`` in place on ``b (batch, L, 2P)`` real, the complex ``b_k`` stored as
    interleaved (re, im) pairs, so that a matrix product can write it and read the states with no copy.
    The gradient of ``b`` is the same scan run backwards in time with ``conj(a)``; those of ``a`` and
    ``x0`` follow from it (PyTorch's conjugate convention for complex gradients)."""

    @staticmethod
    def forward(ctx, a, b, x0, chunk):
        _scan_inplace(a, _pairs_as_complex(b), x0, chunk)  # (batch, L, P)
        ctx.mark_dirty(b)
        ctx.save_for_backward(a, b, x0)
        ctx.chunk = chunk
        return b

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        a, b, x0 = ctx.saved_tensors
        batch, L, P2 = b.shape
        x = _pairs_as_complex(b)  # (batch, L, P)
        g = _pairs_as_complex(grad.flip(1).contiguous())  # (batch, L, P), reversed in time
        grad_b = _scan_inplace(a.conj(), g, None, ctx.chunk).flip(1)  # (batch, L, P)
        grad_a = grad_x0 = None
        if ctx.needs_input_grad[0]:
            grad_a = (x[:, :-1].conj() * grad_b[:, 1:]).sum((0, 1))  # (P,)
            if x0 is not None:
                grad_a = grad_a + (x0.to(x.dtype).conj() * grad_b[:, 0]).sum(0)
            grad_a = grad_a.to(a.dtype)
        if x0 is not None and ctx.needs_input_grad[2]:
            grad_x0 = (a.conj().to(x.dtype) * grad_b[:, 0]).to(x0.dtype)  # (batch, P)
        return grad_a, torch.view_as_real(grad_b).reshape(batch, L, P2), grad_x0, None


class _FusedDiagonalScan(torch.autograd.Function):
    """``_DiagonalScan`` by a fused kernel module (``s5_numba`` or ``s5_triton``): one pass forward, one back."""

    @staticmethod
    def forward(ctx, module, a, b, x0):
        x0_pairs = None if x0 is None else torch.view_as_real(x0.to(_complex_dtype(b.dtype))).reshape(x0.shape[0], -1)
        module.forward(a, b, x0_pairs)  # (batch, L, 2P), in place
        ctx.mark_dirty(b)
        ctx.save_for_backward(a, b, x0_pairs)
        ctx.module, ctx.x0_dtype = module, None if x0 is None else x0.dtype
        return b

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        a, b, x0_pairs = ctx.saved_tensors
        g = grad.contiguous().clone()  # (batch, L, 2P), overwritten with dL/db
        grad_a, grad_x0 = ctx.module.backward(a, b, g, x0_pairs)
        if grad_x0 is not None:
            grad_x0 = _pairs_as_complex(grad_x0).to(ctx.x0_dtype)  # (batch, P)
        need = ctx.needs_input_grad
        return None, grad_a.to(a.dtype) if need[1] else None, g, grad_x0 if need[3] else None


def _scan(a: torch.Tensor, b: torch.Tensor, x0: torch.Tensor | None, chunk: int, backend: str = "torch"):
    """States ``(batch, L, 2P)`` (interleaved re, im) of the scan over ``b``, which it overwrites. ``backend``
    is a resolved one: ``"torch"`` (the chunked scan), ``"numba"`` or ``"triton"``."""
    if backend == "torch":
        return _DiagonalScan.apply(a, b, x0, chunk)
    return _FusedDiagonalScan.apply(backends.kernels(backend, "s5"), a, b, x0)


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
    backend: str = "auto",
) -> torch.Tensor:
    """All states of ``x_k = Lambda_bar * x_{k-1} + Bu_k`` (``x_{-1} = x0``, zeros by default).

    ``Lambda_bar (P,)`` complex, ``Bu (batch, L, P)`` complex, ``x0 (batch, P)``. Returns
    ``(batch, L, P)`` in ``Bu``'s dtype. ``backend`` as in :func:`s5_scan`; the torch backend's chunked scan
    (module docstring) takes ``chunk_size`` (default 16), the fused kernels ignore it.
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
    backend = backends.resolve(backend, Bu.device, "diagonal_scan")
    a = Lambda_bar.to(torch.complex128)  # powers in double precision: see module docstring
    b = torch.view_as_real(Bu).reshape(batch, L, 2 * P).clone()  # (batch, L, 2P), overwritten by the scan
    return _pairs_as_complex(_scan(a, b, x0, chunk, backend))  # (batch, L, P)


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
    backend: str = "auto",
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

    ``backend``: ``"auto"`` (numba on the CPU, Triton on CUDA, else torch), ``"torch"`` (the chunked scan of the
    module docstring, ``chunk_size`` its chunk, default 16), ``"numba"`` or ``"triton"``: see
    :mod:`ssmcast.ops.backends`. Only the scan between the two projections differs.
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
    backend = backends.resolve(backend, u.device, "s5_scan")
    if backend == "mamba_ssm":
        raise ValueError("s5_scan: backend='mamba_ssm' has no S5 kernel; use 'auto', 'torch', 'numba' or 'triton'")
    compute = u.dtype if u.dtype in (torch.float32, torch.float64) else torch.float32
    cdtype = _complex_dtype(compute)
    a = Lambda_bar.to(torch.complex128)  # powers in double precision: see module docstring
    with torch.autocast(device_type=u.device.type, enabled=False):
        # time-major throughout; complex numbers as interleaved (re, im) pairs, so that both projections are
        # single real matrix products and the scan runs on a view of the first one's output
        W_in = torch.view_as_real(B_bar.to(cdtype)).permute(1, 0, 2).reshape(H, 2 * P)  # (H, 2P)
        Bu = torch.matmul(u.to(compute), W_in)  # (batch, L, 2P)
        Bu_back = Bu.flip(1) if bidirectional else None  # (batch, L, 2P), before the scan overwrites Bu
        xs = _scan(a, Bu, x0, chunk, backend)  # (batch, L, 2P)
        if bidirectional:
            xs_all = torch.cat([xs, _scan(a, Bu_back, None, chunk, backend).flip(1)], 2)  # (batch, L, 4P)
        else:
            xs_all = xs
        # Re(C x) = Re C . Re x - Im C . Im x, with the (re, im) pairs interleaved as in Bu; 2 Re for conj_sym
        C_c = C_tilde.to(cdtype) * (2 if conj_sym else 1)
        W_out = torch.stack([C_c.real, -C_c.imag], -1).reshape(H, 2 * n_read)  # (H, 2P')
        y = torch.matmul(xs_all, W_out.T)  # (B, L, H)
    y = y.to(u.dtype)
    if return_state:
        return y, _pairs_as_complex(xs[:, -1])  # (batch, P)
    return y
