import math

import pytest
import torch

from ssmcast.ops.hippo import hippo_legs, nplr_legs, s4d_init


def test_hippo_legs_matches_definition():
    N = 7
    A, B = hippo_legs(N)
    assert A.dtype == torch.float64 and A.shape == (N, N) and B.shape == (N,)
    for n in range(N):
        assert B[n].item() == pytest.approx(math.sqrt(2 * n + 1))
        for k in range(N):
            if n > k:
                expected = -math.sqrt(2 * n + 1) * math.sqrt(2 * k + 1)
            elif n == k:
                expected = -(n + 1)
            else:
                expected = 0.0
            assert A[n, k].item() == pytest.approx(expected, abs=1e-12)


def test_hippo_legs_dtype_kwarg():
    A, B = hippo_legs(4, dtype=torch.float32)
    assert A.dtype == B.dtype == torch.float32


def _full(Lambda, P, B, V):
    V_full = torch.cat([V, V.conj()], 1)  # (N, N)
    Lambda_full = torch.cat([Lambda, Lambda.conj()])  # (N,)
    P_full = torch.cat([P, P.conj()], 1)  # (R, N)
    B_full = torch.cat([B, B.conj()])  # (N,)
    return V_full, Lambda_full, P_full, B_full


@pytest.mark.parametrize("N", [2, 8, 64, 128])
def test_nplr_legs_reconstructs_hippo(N):
    A, B = hippo_legs(N)
    Lambda, P, B_half, V = nplr_legs(N)
    V_full, Lambda_full, P_full, B_full = _full(Lambda, P, B_half, V)
    A_rebuilt = V_full @ (torch.diag(Lambda_full) - P_full.T @ P_full.conj()) @ V_full.conj().T  # (N, N)
    assert torch.allclose(A_rebuilt.real, A, atol=1e-8, rtol=0)
    assert A_rebuilt.imag.abs().max() < 1e-8
    assert torch.allclose((V_full @ B_full).real, B, atol=1e-8, rtol=0)
    assert torch.allclose(V_full.conj().T @ V_full, torch.eye(N, dtype=V.dtype), atol=1e-10)


def test_nplr_legs_shapes_and_conjugate_half():
    N, R = 16, 3
    Lambda, P, B, V = nplr_legs(N, rank=R)
    assert Lambda.shape == (N // 2,) and P.shape == (R, N // 2) and B.shape == (N // 2,) and V.shape == (N, N // 2)
    assert Lambda.dtype == torch.complex128
    assert torch.allclose(Lambda.real, torch.full((N // 2,), -0.5, dtype=torch.float64), atol=1e-10)
    assert (Lambda.imag > 1e-6).all()  # one member of each pair, no zero eigenvalue
    assert (P[1:] == 0).all()  # LegS is rank 1; extra rows are zero
    assert P[0].abs().min() > 0
    Lambda32, *_ = nplr_legs(N, dtype=torch.complex64)
    assert Lambda32.dtype == torch.complex64


def test_nplr_legs_eigenvalues_match_dense_normal_part():
    N = 10
    A, _ = hippo_legs(N)
    P = torch.sqrt(torch.arange(N, dtype=torch.float64) + 0.5)
    normal = A + P[:, None] * P[None, :]  # (N, N)
    dense = torch.linalg.eigvals(normal)  # (N,)
    Lambda, *_ = nplr_legs(N)
    ours = torch.cat([Lambda, Lambda.conj()])
    assert torch.allclose(torch.sort(ours.imag).values, torch.sort(dense.imag).values, atol=1e-8)


def test_s4d_init_values():
    N2 = 5
    n = torch.arange(N2, dtype=torch.float64)
    A, B = s4d_init(N2, "lin", dtype=torch.complex128)
    assert torch.allclose(A, torch.complex(torch.full_like(n, -0.5), math.pi * n))
    assert torch.allclose(B, torch.ones(N2, dtype=torch.complex128))
    A, _ = s4d_init(N2, "inv", dtype=torch.complex128)
    N = 2 * N2
    assert torch.allclose(A.imag, N / math.pi * (N / (2 * n + 1) - 1))
    assert torch.allclose(A.real, torch.full_like(n, -0.5))
    A, _ = s4d_init(N2, "real", dtype=torch.complex128)
    assert torch.allclose(A, torch.complex(-(n + 1), torch.zeros_like(n)))
    A, B = s4d_init(N2, "legs", dtype=torch.complex128)
    Lambda, _, B_legs, _ = nplr_legs(2 * N2)
    assert torch.allclose(A, Lambda) and torch.allclose(B, B_legs)
    assert s4d_init(N2)[0].dtype == torch.complex64


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: hippo_legs(0), ValueError, "N must be"),
        (lambda: hippo_legs(2.0), TypeError, "N must be an int"),
        (lambda: nplr_legs(7), ValueError, "even"),
        (lambda: nplr_legs(8, rank=0), ValueError, "rank"),
        (lambda: s4d_init(4, "foo"), ValueError, "unknown init 'foo'"),
        (lambda: s4d_init(0, "lin"), ValueError, "N2"),
    ],
)
def test_bad_arguments(call, error, match):
    with pytest.raises(error, match=match):
        call()
