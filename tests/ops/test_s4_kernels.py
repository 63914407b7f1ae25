import math

import pytest
import torch
from torch.autograd import gradcheck
from torch.profiler import ProfilerActivity, profile

from ssmcast.ops.hippo import hippo_legs, nplr_legs
from ssmcast.ops.s4_kernels import (
    cauchy_conj,
    dplr_dense,
    dplr_kernel,
    lti_final_state,
    s4d_kernel,
    vandermonde_real,
)

# ----- slow, obvious references (float64) ------------------------------------------------------------------


def s4d_kernel_loop(dt, A, B, C, L, discretization):
    """Discretise each diagonal mode, then step the impulse response through time."""
    dt, A, B, C = dt.double(), A.to(torch.complex128), B.to(torch.complex128), C.to(torch.complex128)
    dtA = dt[:, None] * A
    if discretization == "zoh":
        Abar, Bbar = torch.exp(dtA), (torch.exp(dtA) - 1) / A * B
    else:
        Abar, Bbar = (1 + dtA / 2) / (1 - dtA / 2), dt[:, None] * B / (1 - dtA / 2)
    x, out = Bbar, []
    for _ in range(L):
        out.append(2 * (C * x).sum(-1).real)
        x = Abar * x
    return torch.stack(out, -1)


def dense_bilinear(dt, A, B):
    """Bilinear discretisation of a dense (H, N, N) system with explicit inverses."""
    eye = torch.eye(A.shape[-1], dtype=A.dtype)
    inv = torch.linalg.inv(eye - dt[:, None, None] / 2 * A)
    return inv @ (eye + dt[:, None, None] / 2 * A), dt[:, None] * (inv @ B[..., None])[..., 0]


def dense_kernel_loop(dA, dB, C, L):
    """K_l = C Abar^l Bbar by repeated matrix-vector products (C (*, H, N), dA (H, N, N), dB (H, N))."""
    x, out = dB, []
    for _ in range(L):
        out.append(torch.einsum("...hn,hn->...h", C, x))
        x = (dA @ x[..., None])[..., 0]
    return torch.stack(out, -1).real


def dplr_full(Lambda, P, B, C):
    """The conjugate-extended dense system (A, B_full, C_full) of a DPLR half-parametrisation."""
    Lambda_full = torch.cat([Lambda, Lambda.conj()], -1)
    P_full = torch.cat([P, P.conj()], -1)  # (R, H, 2N2)
    A = torch.diag_embed(Lambda_full) - torch.einsum("rhn,rhm->hnm", P_full, P_full.conj())
    return A, torch.cat([B, B.conj()], -1), torch.cat([C, C.conj()], -1)


def random_dplr(H, N2, R, M=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    dt = torch.exp(torch.rand(H, generator=g, dtype=torch.float64) * math.log(100)) * 1e-3
    Lambda = torch.complex(
        -torch.rand(H, N2, generator=g, dtype=torch.float64) - 0.1,
        torch.randn(H, N2, generator=g, dtype=torch.float64) * 10,
    )
    P = torch.randn(R, H, N2, generator=g, dtype=torch.complex128) / math.sqrt(N2)
    B = torch.randn(H, N2, generator=g, dtype=torch.complex128)
    C = torch.randn(*(() if M is None else (M,)), H, N2, generator=g, dtype=torch.complex128)
    return dt, Lambda, P, B, C


def dplr_reference(dt, Lambda, P, B, C, L):
    A, B_full, C_full = dplr_full(Lambda, P, B, C)
    dA, dB = dense_bilinear(dt, A, B_full)
    return dense_kernel_loop(dA, dB, C_full, L)


def to32(*xs):
    return [x.float() if not x.is_complex() else x.to(torch.complex64) for x in xs]


# ----- s4d_kernel ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("discretization", ["zoh", "bilinear"])
@pytest.mark.parametrize("L", [1, 2, 33])
@pytest.mark.parametrize("chunk_size", [None, 5])
def test_s4d_kernel_matches_loop(discretization, L, chunk_size):
    dt, A, _, B, C = random_dplr(3, 4, 1, M=2, seed=L)
    K = s4d_kernel(dt, A, B, C, L, discretization, chunk_size=chunk_size)
    assert K.shape == (2, 3, L) and K.dtype == torch.float64
    assert torch.allclose(K, s4d_kernel_loop(dt, A, B, C, L, discretization), atol=1e-12)


@pytest.mark.parametrize("discretization", ["zoh", "bilinear"])
def test_s4d_kernel_float32_long_matches_float64_loop(discretization):
    dt, A, _, B, C = random_dplr(4, 16, 1, seed=1)
    L = 4096
    K = s4d_kernel(*to32(dt, A, B, C), L, discretization)
    ref = s4d_kernel_loop(dt, A, B, C, L, discretization)
    assert K.dtype == torch.float32
    assert (K.double() - ref).abs().max() < 1e-5 * ref.abs().max()


def test_s4d_kernel_real_inputs_and_untouched():
    dt = torch.full((2,), 0.1, dtype=torch.float64)
    A = -torch.arange(1, 5, dtype=torch.float64).repeat(2, 1)  # S4D-Real: real A
    B, C = torch.ones(2, 4, dtype=torch.float64), torch.randn(2, 4, dtype=torch.float64)
    copies = [x.clone() for x in (dt, A, B, C)]
    K = s4d_kernel(dt, A, B, C, 20)
    assert torch.allclose(K, s4d_kernel_loop(dt, A, B, C, 20, "zoh"), atol=1e-12)
    for x, c in zip((dt, A, B, C), copies):
        assert torch.equal(x, c)


@pytest.mark.slow
def test_kernels_memory_is_bounded():
    """Forward and backward never hold an (H, N2, L) complex tensor: per-op allocations stay at block size."""
    H, N2, L, chunk = 2, 16, 1 << 14, 256
    dt, A, _, B, C = (x.detach() for x in to32(*random_dplr(H, N2, 1, seed=2)))
    A.requires_grad_(True)
    C.requires_grad_(True)
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        s4d_kernel(dt, A, B, C, L, chunk_size=chunk).square().sum().backward()
    biggest = max(event.cpu_memory_usage for event in prof.events())  # an op's allocations, children included
    chunk_bytes = H * N2 * chunk * 8  # one complex64 (H, N2, chunk) tensor
    full_vandermonde = H * N2 * L * 8  # one complex64 (H, N2, L) tensor
    assert biggest <= max(4 * chunk_bytes, H * L * 8) < full_vandermonde / 8
    assert A.grad is not None and torch.isfinite(A.grad).all()

    # dplr: the Cauchy kernel is chunked over the L/2 + 1 nodes, forward and backward
    H, N2, chunk = 2, 64, 128
    dt, Lambda, P, B, C = (x.detach() for x in to32(*random_dplr(H, N2, 1, seed=3)))
    Lambda.requires_grad_(True)
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        dplr_kernel(dt, Lambda, P, B, C, L, tilde=True, chunk_size=chunk).square().sum().backward()
    biggest = max(event.cpu_memory_usage for event in prof.events())
    chunk_bytes = H * N2 * chunk * 8
    full_cauchy = H * N2 * (L // 2) * 8  # one complex64 (H, N2, L/2) tensor of 1/(z_k - w_n)
    assert biggest <= max(4 * chunk_bytes, 4 * H * (L // 2 + 1) * 8) < full_cauchy / 8
    assert torch.isfinite(Lambda.grad).all()


def test_vandermonde_and_cauchy_gradcheck():
    g = torch.Generator().manual_seed(3)
    H, N2 = 2, 3
    W = torch.randn(2, H, N2, dtype=torch.complex128, generator=g).requires_grad_()
    logZ = torch.complex(-torch.rand(H, N2, generator=g), torch.randn(H, N2, generator=g)).to(torch.complex128)
    logZ.requires_grad_()
    assert gradcheck(lambda W, z: vandermonde_real(W, z, 9, chunk_size=4), (W, logZ), fast_mode=True)
    v = torch.randn(2, H, N2, dtype=torch.complex128, generator=g).requires_grad_()
    z = torch.randn(H, 5, dtype=torch.complex128, generator=g).requires_grad_()
    w = torch.randn(H, N2, dtype=torch.complex128, generator=g).requires_grad_()
    assert gradcheck(lambda v, z, w: cauchy_conj(v, z, w, chunk_size=2), (v, z, w), fast_mode=True)


def test_cauchy_conj_matches_direct_sum():
    g = torch.Generator().manual_seed(4)
    v = torch.randn(3, 2, 4, dtype=torch.complex128, generator=g)
    z = torch.randn(2, 6, dtype=torch.complex128, generator=g)
    w = torch.randn(2, 4, dtype=torch.complex128, generator=g)
    out = cauchy_conj(v, z, w, chunk_size=4)
    ref = torch.zeros(3, 2, 6, dtype=torch.complex128)
    for h in range(2):
        for k in range(6):
            for n in range(4):
                ref[:, h, k] += v[:, h, n] / (z[h, k] - w[h, n]) + v[:, h, n].conj() / (z[h, k] - w[h, n].conj())
    assert torch.allclose(out, ref, atol=1e-12)


# ----- dplr_kernel -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("L", [1, 2, 7, 64, 65])
@pytest.mark.parametrize("R", [1, 2])
def test_dplr_kernel_matches_dense_bilinear(L, R):
    dt, Lambda, P, B, C = random_dplr(3, 5, R, M=2, seed=L)
    K = dplr_kernel(dt, Lambda, P, B, C, L)
    assert K.shape == (2, 3, L) and K.dtype == torch.float64
    assert torch.allclose(K, dplr_reference(dt, Lambda, P, B, C, L), atol=1e-10)


def test_dplr_kernel_n64_l1024():
    dt, Lambda, P, B, C = random_dplr(2, 32, 1, seed=5)
    L = 1024
    ref = dplr_reference(dt, Lambda, P, B, C, L)
    assert (dplr_kernel(dt, Lambda, P, B, C, L) - ref).abs().max() < 1e-9 * ref.abs().max()
    K32 = dplr_kernel(*to32(dt, Lambda, P, B, C), L)
    assert K32.dtype == torch.float32
    assert (K32.double() - ref).abs().max() < 1e-4 * ref.abs().max()


def test_dplr_kernel_float32_l4096():
    dt, Lambda, P, B, C = random_dplr(2, 16, 1, seed=6)
    L = 4096
    ref = dplr_reference(dt, Lambda, P, B, C, L)
    K32 = dplr_kernel(*to32(dt, Lambda, P, B, C), L)
    assert (K32.double() - ref).abs().max() < 1e-4 * ref.abs().max()


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_dplr_kernel_of_nplr_legs_matches_dense_hippo(dtype):
    N, H, L = 64, 2, 1024
    A, B = hippo_legs(N)
    Lambda, P, B_half, V = nplr_legs(N)
    dt = torch.tensor([1e-2, 1e-3], dtype=torch.float64)
    C_dense = torch.randn(H, N, dtype=torch.float64, generator=torch.Generator().manual_seed(7))
    dA, dB = dense_bilinear(dt, A.expand(H, N, N), B.expand(H, N))
    ref = dense_kernel_loop(dA, dB, C_dense, L)
    C = C_dense.to(torch.complex128) @ V  # (H, N/2): C_full = C_dense V_full
    args = (dt, Lambda.expand(H, -1), P[:, None].expand(-1, H, -1), B_half.expand(H, -1), C)
    if dtype == torch.float32:
        args = to32(*args)
    K = dplr_kernel(*args, L)
    tol = 1e-9 if dtype == torch.float64 else 1e-4
    assert (K.double() - ref).abs().max() < tol * ref.abs().max()


def test_dplr_kernel_tilde_skips_correction():
    dt, Lambda, P, B, C = random_dplr(2, 4, 1, seed=8)
    L = 16
    dA, _ = dplr_dense(dt, Lambda, P, B)
    C_full = torch.cat([C, C.conj()], -1)
    C_tilde = (C_full - torch.einsum("hn,hnm->hm", C_full, torch.linalg.matrix_power(dA, L)))[..., :4]
    assert torch.allclose(dplr_kernel(dt, Lambda, P, B, C_tilde, L, tilde=True), dplr_kernel(dt, Lambda, P, B, C, L))


def test_dplr_dense_matches_reference():
    dt, Lambda, P, B, C = random_dplr(2, 3, 2, seed=9)
    A, B_full, _ = dplr_full(Lambda, P, B, C)
    dA_ref, dB_ref = dense_bilinear(dt, A, B_full)
    dA, dB = dplr_dense(dt, Lambda, P, B)
    assert torch.allclose(dA, dA_ref, atol=1e-12) and torch.allclose(dB, dB_ref, atol=1e-12)


@pytest.mark.parametrize("L", [6, 7])
def test_dplr_kernel_gradcheck(L):
    dt, Lambda, P, B, C = random_dplr(2, 3, 2, seed=L)
    inputs = [x.clone().requires_grad_() for x in (dt * 10, Lambda / 5, P, B, C)]
    assert gradcheck(lambda *a: dplr_kernel(*a, L), inputs, fast_mode=True)
    assert gradcheck(lambda *a: dplr_kernel(*a, L, tilde=True, chunk_size=2), inputs, fast_mode=True)


def test_dplr_kernel_inputs_untouched():
    args = random_dplr(2, 3, 1, seed=10)
    copies = [x.clone() for x in args]
    dplr_kernel(*args, 12)
    for x, c in zip(args, copies):
        assert torch.equal(x, c)


@pytest.mark.parametrize(
    ("fn", "kwargs", "match"),
    [
        (s4d_kernel, {"B": torch.ones(3, 4, dtype=torch.complex64)}, "B must have shape"),
        (s4d_kernel, {"C": torch.ones(2, 5, dtype=torch.complex64)}, "C must have shape"),
        (s4d_kernel, {"dt": torch.ones(3)}, "dt must be"),
        (s4d_kernel, {"L": 0}, "L must be"),
        (s4d_kernel, {"discretization": "euler"}, "unknown discretization 'euler'"),
        (dplr_kernel, {"P": torch.ones(2, 4, dtype=torch.complex64)}, "P must have shape"),
        (dplr_kernel, {"C": torch.ones(2, 3, dtype=torch.complex64)}, "C must have shape"),
        (dplr_kernel, {"L": 2.5}, "L must be"),
    ],
)
def test_kernels_reject_bad_input(fn, kwargs, match):
    H, N2 = 2, 4
    base = {
        "dt": torch.ones(H),
        "B": torch.ones(H, N2, dtype=torch.complex64),
        "C": torch.ones(H, N2, dtype=torch.complex64),
        "L": 8,
    }
    if fn is s4d_kernel:
        base["A"] = -torch.ones(H, N2, dtype=torch.complex64)
    else:
        base["Lambda"] = -torch.ones(H, N2, dtype=torch.complex64)
        base["P"] = torch.ones(1, H, N2, dtype=torch.complex64)
    base.update(kwargs)
    with pytest.raises(ValueError, match=match):
        fn(**base)


def final_state_loop(dA, dB, u):
    x = torch.zeros(u.shape[0], *dB.shape, dtype=dB.dtype)  # (B, H, N)
    for t in range(u.shape[-1]):
        Ax = dA * x if dA.ndim == 2 else torch.einsum("hnm,bhm->bhn", dA, x)
        x = Ax + dB * u[..., t, None]
    return x


@pytest.mark.parametrize("dense", [False, True])
@pytest.mark.parametrize("L, chunk_size", [(1, 4096), (37, 4096), (37, 8), (1000, 64)])
def test_lti_final_state_matches_loop(dense, L, chunk_size):
    g = torch.Generator().manual_seed(L)
    H, N = 3, 6
    if dense:
        M = torch.randn(H, N, N, generator=g)
        dA = torch.linalg.matrix_exp(-0.01 * torch.eye(N) + 0.3 * (M - M.mT))  # (H, N, N): damped rotations, stable
        dB = torch.randn(H, N, generator=g)
    else:
        dA = torch.exp(torch.complex(-torch.rand(H, N, generator=g) * 0.1, torch.randn(H, N, generator=g)))
        dB = torch.complex(*torch.randn(2, H, N, generator=g))
    u = torch.randn(2, H, L, generator=g)
    got = lti_final_state(dA, dB, u, chunk_size=chunk_size)
    want = final_state_loop(dA.to(torch.float64 if dense else torch.complex128), dB.to(torch.float64 if dense else
                            torch.complex128), u.double())
    assert got.dtype == dB.dtype and got.shape == (2, H, N)
    torch.testing.assert_close(got, want.to(got.dtype), rtol=1e-4, atol=1e-4)


def test_lti_final_state_rejects_bad_input():
    with pytest.raises(ValueError, match="expected dA"):
        lti_final_state(torch.ones(3), torch.ones(3, 2), torch.ones(1, 3, 5))
    with pytest.raises(ValueError, match="chunk_size must be a positive int"):
        lti_final_state(torch.ones(3, 2), torch.ones(3, 2), torch.ones(1, 3, 5), chunk_size=0)
