"""S5 ops against slow, obvious references: a Python loop over time and dense matrix exponentials."""

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from ssmcast.ops.s5 import diagonal_scan, discretize, s5_scan

C64, C128 = torch.complex64, torch.complex128
CPU_BACKENDS = ["torch", "numba"]  # Triton's kernels, under its interpreter: tests/ops/test_fused_scans.py


def loop_scan(Lambda_bar, B_bar, C_tilde, u, conj_sym=True, x0=None):
    """Reference: x_k = Lambda_bar x_{k-1} + B_bar u_k, y_k = (2) Re(C x_k), one step at a time."""
    batch, L, _ = u.shape
    x = torch.zeros(batch, Lambda_bar.shape[0], dtype=Lambda_bar.dtype) if x0 is None else x0
    ys = []
    for k in range(L):
        x = Lambda_bar * x + u[:, k].to(B_bar.dtype) @ B_bar.T
        y = (x @ C_tilde.T).real
        ys.append(2 * y if conj_sym else y)
    return torch.stack(ys, 1), x


def random_system(P, H, dtype=C128, seed=0, re=-0.5, dt_range=(1e-3, 1e-1), im_scale=10.0):
    g = torch.Generator().manual_seed(seed)
    real = torch.float64 if dtype == C128 else torch.float32
    Lambda = torch.complex(torch.full((P,), re, dtype=torch.float64),
                           im_scale * torch.randn(P, generator=g, dtype=torch.float64))
    lo, hi = math.log(dt_range[0]), math.log(dt_range[1])
    dt = torch.exp(torch.rand(P, generator=g, dtype=torch.float64) * (hi - lo) + lo)
    B = torch.complex(*torch.randn(2, P, H, generator=g, dtype=torch.float64)) / math.sqrt(H)
    C = torch.complex(*torch.randn(2, H, P, generator=g, dtype=torch.float64)) / math.sqrt(P)
    Lambda_bar, B_bar = discretize(Lambda, B, dt)
    return Lambda_bar.to(dtype), B_bar.to(dtype), C.to(dtype), real


# ---------------------------------------------------------------- discretize


def zoh_by_matrix_exp(Lambda, B, dt):
    """Van Loan: expm([[Lambda dt, dt b], [0, 0]]) = [[Lambda_bar, B_bar_row], [0, 1]], state by state."""
    P, H = B.shape
    M = torch.zeros(P, 1 + H, 1 + H, dtype=C128)  # one augmented (1+H, 1+H) matrix per state
    M[:, 0, 0] = Lambda * dt
    M[:, 0, 1:] = dt[:, None] * B
    E = torch.linalg.matrix_exp(M)
    return E[:, 0, 0], E[:, 0, 1:]


def test_zoh_matches_matrix_exponential():
    g = torch.Generator().manual_seed(1)
    P, H = 6, 3
    Lambda = torch.complex(-torch.rand(P, generator=g, dtype=torch.float64) * 3,
                           torch.randn(P, generator=g, dtype=torch.float64) * 5)
    B = torch.complex(*torch.randn(2, P, H, generator=g, dtype=torch.float64))
    dt = torch.exp(torch.linspace(math.log(1e-4), math.log(2.0), P, dtype=torch.float64))
    Lambda_bar, B_bar = discretize(Lambda, B, dt, "zoh")
    ref_L, ref_B = zoh_by_matrix_exp(Lambda, B, dt)
    # matrix_exp (Pade) itself is accurate to ~1e-11 relative
    torch.testing.assert_close(Lambda_bar, ref_L, rtol=1e-9, atol=1e-14)
    torch.testing.assert_close(B_bar, ref_B, rtol=1e-9, atol=1e-14)


def test_zoh_is_accurate_near_zero_and_at_zero_eigenvalue():
    Lambda = torch.tensor([0.0 + 0.0j, 1e-7 - 1e-7j, -1e-4 + 0j], dtype=C64)
    B = torch.ones(3, 1, dtype=C64)
    dt = torch.tensor([0.1, 0.1, 1e-3])
    _, B_bar = discretize(Lambda, B, dt)
    _, ref = zoh_by_matrix_exp(Lambda.to(C128), B.to(C128), dt.double())
    assert torch.isfinite(torch.view_as_real(B_bar)).all()
    torch.testing.assert_close(B_bar.to(C128), ref, rtol=1e-6, atol=0.0)


def test_bilinear_matches_dense_formula():
    g = torch.Generator().manual_seed(2)
    P, H = 5, 4
    Lambda = torch.complex(-torch.rand(P, generator=g, dtype=torch.float64),
                           torch.randn(P, generator=g, dtype=torch.float64))
    B = torch.complex(*torch.randn(2, P, H, generator=g, dtype=torch.float64))
    dt = torch.rand(P, generator=g, dtype=torch.float64) * 0.5 + 0.01
    Lambda_bar, B_bar = discretize(Lambda, B, dt, "bilinear")
    A = torch.diag(Lambda)
    Dt = torch.diag(dt.to(C128))
    eye = torch.eye(P, dtype=C128)
    left = torch.linalg.inv(eye - Dt @ A / 2)  # (I - dt A/2)^{-1}
    torch.testing.assert_close(torch.diag(Lambda_bar), left @ (eye + Dt @ A / 2), rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(B_bar, left @ Dt @ B, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("method", ["zoh", "bilinear"])
def test_discretize_gradcheck(method):
    g = torch.Generator().manual_seed(3)
    re = (-torch.rand(4, generator=g, dtype=torch.float64) - 0.1).requires_grad_()
    im = torch.randn(4, generator=g, dtype=torch.float64).requires_grad_()
    B = torch.randn(4, 2, 2, generator=g, dtype=torch.float64).requires_grad_()
    log_dt = torch.randn(4, generator=g, dtype=torch.float64).requires_grad_()

    def f(re, im, B, log_dt):
        Lambda_bar, B_bar = discretize(torch.complex(re, im), torch.view_as_complex(B), log_dt.exp(), method)
        return torch.view_as_real(Lambda_bar), torch.view_as_real(B_bar)

    assert torch.autograd.gradcheck(f, (re, im, B, log_dt))


def test_discretize_validates_inputs():
    Lambda = torch.full((3,), -0.5 + 1j, dtype=C64)
    B = torch.ones(3, 2, dtype=C64)
    dt = torch.full((3,), 0.1)
    with pytest.raises(ValueError, match="method"):
        discretize(Lambda, B, dt, "euler")
    with pytest.raises(ValueError, match="B must have shape"):
        discretize(Lambda, torch.ones(4, 2, dtype=C64), dt)
    with pytest.raises(ValueError, match="dt must have shape"):
        discretize(Lambda, B, torch.full((2,), 0.1))
    with pytest.raises(TypeError, match="dt must be a real"):
        discretize(Lambda, B, dt.to(C64))
    with pytest.raises(ValueError, match="Lambda must be 1-D"):
        discretize(Lambda[None], B, dt)
    # a scalar step is broadcast to every state
    torch.testing.assert_close(discretize(Lambda, B, torch.tensor(0.1)), discretize(Lambda, B, dt))


# ---------------------------------------------------------------- s5_scan forward


@pytest.mark.parametrize("conj_sym", [True, False])
@pytest.mark.parametrize("L", [1, 7, 64, 65, 300, pytest.param(4096, marks=pytest.mark.slow)])
@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_s5_scan_matches_loop_float32(L, conj_sym, backend):
    Lambda_bar, B_bar, C, real = random_system(P=16, H=8, dtype=C64, seed=L)
    u = torch.randn(2, L, 8, generator=torch.Generator().manual_seed(L))
    y, x_last = s5_scan(Lambda_bar, B_bar, C, u, conj_sym=conj_sym, return_state=True, backend=backend)
    # the reference in double precision: the float32 scan must be within float32 rounding of it
    y_ref, x_ref = loop_scan(Lambda_bar.to(C128), B_bar.to(C128), C.to(C128), u.double(), conj_sym)
    assert y.dtype == torch.float32 and y.shape == (2, L, 8)
    scale = y_ref.abs().max().item()
    torch.testing.assert_close(y.double(), y_ref, rtol=0, atol=2e-5 * scale)
    torch.testing.assert_close(x_last.to(C128), x_ref, rtol=0, atol=2e-5 * x_ref.abs().max().item())


@pytest.mark.parametrize("chunk_size", [2, 3, 16, 64, 1000])
def test_s5_scan_any_chunk_size_float64(chunk_size):
    Lambda_bar, B_bar, C, _ = random_system(P=6, H=3, seed=4)
    u = torch.randn(3, 333, 3, dtype=torch.float64)
    x0 = torch.complex(*torch.randn(2, 3, 6, dtype=torch.float64))
    y, x_last = s5_scan(Lambda_bar, B_bar, C, u, x0=x0, return_state=True, chunk_size=chunk_size, backend="torch")
    y_ref, x_ref = loop_scan(Lambda_bar, B_bar, C, u, x0=x0)
    torch.testing.assert_close(y, y_ref, rtol=1e-10, atol=1e-11)
    torch.testing.assert_close(x_last, x_ref, rtol=1e-10, atol=1e-11)


@given(
    batch=st.integers(1, 3),
    L=st.integers(1, 120),
    P=st.integers(1, 5),
    H=st.integers(1, 4),
    chunk=st.integers(2, 40),
    conj_sym=st.booleans(),
    seed=st.integers(0, 2**16),
    backend=st.sampled_from(CPU_BACKENDS),
)
def test_s5_scan_property_random_shapes(batch, L, P, H, chunk, conj_sym, seed, backend):
    Lambda_bar, B_bar, C, _ = random_system(P, H, seed=seed, dt_range=(1e-3, 1.0))
    u = torch.randn(batch, L, H, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    y = s5_scan(Lambda_bar, B_bar, C, u, conj_sym=conj_sym, chunk_size=chunk, backend=backend)
    y_ref, _ = loop_scan(Lambda_bar, B_bar, C, u, conj_sym)
    torch.testing.assert_close(y, y_ref, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("regime", ["fast_decay", "zero", "slow_decay", "mixed", "growing"])
@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_diagonal_scan_long_sequences_are_numerically_safe(regime, backend):
    """Strongly decaying states underflow to 0 without NaN/inf; slow ones accumulate accurately."""
    P, L = 4, 4096
    angle = torch.tensor([0.0, 0.3, 2.0, -1.0], dtype=torch.float64)
    modulus = {
        "fast_decay": torch.full((P,), 1e-3, dtype=torch.float64),
        "zero": torch.zeros(P, dtype=torch.float64),
        "slow_decay": torch.full((P,), 1 - 1e-5, dtype=torch.float64),
        "mixed": torch.tensor([1e-30, 0.5, 0.999, 1 - 1e-6], dtype=torch.float64),
        "growing": torch.full((P,), 1.0005, dtype=torch.float64),  # reaches ~e^2: still finite
    }[regime]
    a = torch.polar(modulus, angle).to(C64)
    b = torch.complex(*torch.randn(2, 2, L, P, generator=torch.Generator().manual_seed(5)))
    x = diagonal_scan(a, b, backend=backend)
    a, b = a.to(C128), b.to(C128)  # the reference runs in double on the same (rounded) inputs
    ref = torch.empty(2, L, P, dtype=C128)
    state = torch.zeros(2, P, dtype=C128)
    for k in range(L):
        state = a * state + b[:, k]
        ref[:, k] = state
    assert torch.isfinite(torch.view_as_real(x)).all()
    scale = ref.abs().max().item()
    torch.testing.assert_close(x.to(C128), ref, rtol=0, atol=1e-5 * scale)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_s5_scan_bidirectional_matches_two_loops(backend):
    Lambda_bar, B_bar, C_fwd, _ = random_system(P=5, H=3, seed=6)
    _, _, C_bwd, _ = random_system(P=5, H=3, seed=7)
    u = torch.randn(2, 90, 3, dtype=torch.float64)
    y = s5_scan(Lambda_bar, B_bar, torch.cat([C_fwd, C_bwd], 1), u, bidirectional=True, chunk_size=16,
                backend=backend)  # fmt: skip
    y_fwd, _ = loop_scan(Lambda_bar, B_bar, C_fwd, u)
    y_bwd, _ = loop_scan(Lambda_bar, B_bar, C_bwd, u.flip(1))
    torch.testing.assert_close(y, y_fwd + y_bwd.flip(1), rtol=1e-10, atol=1e-11)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_s5_scan_dtypes_and_promotion(backend):
    Lambda_bar, B_bar, C, _ = random_system(P=4, H=2, dtype=C64, seed=8)
    u64 = torch.randn(1, 20, 2, dtype=torch.float64)
    y = s5_scan(Lambda_bar, B_bar, C, u64, backend=backend)  # complex64 parameters, float64 input: in double
    assert y.dtype == torch.float64
    y_ref, _ = loop_scan(Lambda_bar.to(C128), B_bar.to(C128), C.to(C128), u64)
    torch.testing.assert_close(y, y_ref, rtol=1e-10, atol=1e-11)
    y_bf16 = s5_scan(Lambda_bar, B_bar, C, u64.to(torch.bfloat16), backend=backend)  # in float32, returned as bf16
    assert y_bf16.dtype == torch.bfloat16
    torch.testing.assert_close(y_bf16.float(), y_ref.float(), rtol=2e-2, atol=2e-2)
    # real-valued (decaying, non-oscillating) systems are accepted and cast to complex
    y_real = s5_scan(Lambda_bar.abs(), B_bar.real, C.real, u64, backend=backend)
    y_real_ref, _ = loop_scan(Lambda_bar.abs().to(C128), B_bar.real.to(C128), C.real.to(C128), u64)
    torch.testing.assert_close(y_real, y_real_ref, rtol=1e-10, atol=1e-11)


def test_s5_scan_runs_under_bf16_autocast_on_cpu():
    Lambda_bar, B_bar, C, _ = random_system(P=8, H=4, dtype=C64, seed=9)
    u = torch.randn(2, 100, 4, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = s5_scan(Lambda_bar, B_bar, C, u)
    assert y.dtype == torch.float32
    torch.testing.assert_close(y, s5_scan(Lambda_bar, B_bar, C, u), rtol=1e-6, atol=1e-6)
    y.sum().backward()
    assert torch.isfinite(u.grad).all()


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_s5_scan_does_not_modify_inputs(backend):
    Lambda_bar, B_bar, C, _ = random_system(P=4, H=2, seed=10)
    u = torch.randn(2, 30, 2, dtype=torch.float64)
    x0 = torch.complex(*torch.randn(2, 2, 4, dtype=torch.float64))
    copies = [t.clone() for t in (Lambda_bar, B_bar, C, u, x0)]
    s5_scan(Lambda_bar, B_bar, C, u, x0=x0, return_state=True, backend=backend)
    for before, after in zip(copies, (Lambda_bar, B_bar, C, u, x0)):
        assert torch.equal(before, after)


def test_s5_scan_validates_inputs():
    Lambda_bar, B_bar, C, _ = random_system(P=4, H=2, seed=11)
    u = torch.randn(2, 10, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"u must be 3-D"):
        s5_scan(Lambda_bar, B_bar, C, u[0])
    with pytest.raises(ValueError, match=r"B_bar must have shape \(P, H\) = \(4, 3\)"):
        s5_scan(Lambda_bar, B_bar, C, torch.randn(2, 10, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"C_tilde must have shape \(H, 2P\)"):
        s5_scan(Lambda_bar, B_bar, C, u, bidirectional=True)
    with pytest.raises(ValueError, match="x0 must have shape"):
        s5_scan(Lambda_bar, B_bar, C, u, x0=torch.zeros(3, 4, dtype=C128))
    with pytest.raises(ValueError, match="bidirectional"):
        s5_scan(Lambda_bar, B_bar, torch.cat([C, C], 1), u, bidirectional=True, return_state=True)
    with pytest.raises(ValueError, match="length 0"):
        s5_scan(Lambda_bar, B_bar, C, u[:, :0])
    with pytest.raises(TypeError, match="u must be a real"):
        s5_scan(Lambda_bar, B_bar, C, u.to(C128))
    with pytest.raises(TypeError, match="u must be a torch.Tensor"):
        s5_scan(Lambda_bar, B_bar, C, u.numpy())
    with pytest.raises(ValueError, match="chunk_size"):
        s5_scan(Lambda_bar, B_bar, C, u, chunk_size=1)
    with pytest.raises(TypeError, match="Bu must be complex"):
        diagonal_scan(Lambda_bar, u)
    with pytest.raises(ValueError, match="backend"):
        s5_scan(Lambda_bar, B_bar, C, u, backend="tpu")
    with pytest.raises(ValueError, match="mamba_ssm"):
        s5_scan(Lambda_bar, B_bar, C, u, backend="mamba_ssm")


# ---------------------------------------------------------------- gradients


@pytest.mark.parametrize("conj_sym", [True, False])
@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_s5_scan_gradients_match_loop(conj_sym, backend):
    Lambda_bar, B_bar, C, _ = random_system(P=5, H=3, seed=12)
    u = torch.randn(2, 150, 3, dtype=torch.float64)
    x0 = torch.complex(*torch.randn(2, 2, 5, dtype=torch.float64))
    w = torch.randn(2, 150, 3, dtype=torch.float64)
    w_state = torch.complex(*torch.randn(2, 2, 5, dtype=torch.float64))

    def grads(fn):
        leaves = [t.clone().requires_grad_() for t in (Lambda_bar, B_bar, C, u, x0)]
        y, x_last = fn(*leaves)
        loss = (y * w).sum() + (x_last * w_state.conj()).real.sum()
        return torch.autograd.grad(loss, leaves)

    fast = grads(lambda *a: s5_scan(*a[:4], conj_sym=conj_sym, x0=a[4], return_state=True, chunk_size=8,
                                    backend=backend))  # fmt: skip
    slow = grads(lambda *a: loop_scan(*a[:4], conj_sym=conj_sym, x0=a[4]))
    for name, g_fast, g_slow in zip(("Lambda_bar", "B_bar", "C_tilde", "u", "x0"), fast, slow):
        torch.testing.assert_close(g_fast, g_slow, rtol=1e-9, atol=1e-10, msg=lambda m, n=name: f"{n}: {m}")


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_s5_scan_gradients_float32_long_sequence(backend):
    Lambda_bar, B_bar, C, _ = random_system(P=8, H=4, dtype=C64, seed=13)
    u = torch.randn(1, 1024, 4)
    leaves = [t.clone().requires_grad_() for t in (Lambda_bar, B_bar, C, u)]
    y = s5_scan(*leaves, backend=backend)
    g_fast = torch.autograd.grad(y.square().mean(), leaves)
    leaves64 = [t.detach().to(C128 if t.is_complex() else torch.float64).requires_grad_() for t in leaves]
    y_ref, _ = loop_scan(*leaves64)
    g_ref = torch.autograd.grad(y_ref.square().mean(), leaves64)
    for g, r in zip(g_fast, g_ref):
        assert torch.isfinite(torch.view_as_real(g) if g.is_complex() else g).all()
        scale = r.abs().max().item()
        torch.testing.assert_close(g.to(r.dtype), r, rtol=0, atol=1e-4 * scale)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_s5_scan_gradcheck_small(backend):
    Lambda_bar, B_bar, C, _ = random_system(P=2, H=2, seed=14)
    u = torch.randn(1, 11, 2, dtype=torch.float64, requires_grad=True)
    x0 = torch.complex(*torch.randn(2, 1, 2, dtype=torch.float64)).requires_grad_()
    inputs = (Lambda_bar.requires_grad_(), B_bar.requires_grad_(), C.requires_grad_(), u, x0)

    def fn(a, b, c, v, x0):
        y, last = s5_scan(a, b, c, v, x0=x0, return_state=True, chunk_size=4, backend=backend)
        return y, torch.view_as_real(last)

    assert torch.autograd.gradcheck(fn, inputs)


@pytest.mark.gpu
def test_s5_scan_cuda_matches_cpu():
    Lambda_bar, B_bar, C, _ = random_system(P=32, H=16, dtype=C64, seed=15)
    u = torch.randn(4, 3000, 16, requires_grad=True)
    y_cpu = s5_scan(Lambda_bar, B_bar, C, u)
    y_cpu.square().sum().backward()
    u_cuda = u.detach().cuda().requires_grad_()
    y_cuda = s5_scan(Lambda_bar.cuda(), B_bar.cuda(), C.cuda(), u_cuda)
    y_cuda.square().sum().backward()
    scale = y_cpu.abs().max().item()
    torch.testing.assert_close(y_cuda.cpu(), y_cpu.detach(), rtol=0, atol=1e-5 * scale)
    torch.testing.assert_close(u_cuda.grad.cpu(), u.grad, rtol=0, atol=1e-5 * u.grad.abs().max().item())
    with torch.autocast("cuda", dtype=torch.bfloat16):
        assert s5_scan(Lambda_bar.cuda(), B_bar.cuda(), C.cuda(), u_cuda).dtype == torch.float32


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_diagonal_scan_gradcheck_three_levels_with_initial_state(backend):
    """L = 37 with chunk 3: 13 chunks -> 5 -> 2 -> 1, a padded tail at each level (the torch backend's
    chunked scan), and x0 carried through."""
    g = torch.Generator().manual_seed(16)
    a = torch.polar(torch.rand(3, generator=g, dtype=torch.float64) * 0.9 + 0.05,
                    torch.randn(3, generator=g, dtype=torch.float64)).requires_grad_()
    b = torch.complex(*torch.randn(2, 2, 37, 3, generator=g, dtype=torch.float64)).requires_grad_()
    x0 = torch.complex(*torch.randn(2, 2, 3, generator=g, dtype=torch.float64)).requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b, x0: diagonal_scan(a, b, x0, chunk_size=3, backend=backend),
                                    (a, b, x0))  # fmt: skip
