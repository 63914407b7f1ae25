"""HiPPO-LegS state matrices, their normal-plus-low-rank (NPLR) form, and the S4D diagonal inits.

References: Gu et al., "HiPPO" (2020), "Efficiently Modeling Long Sequences with Structured State
Spaces" (S4, 2022) and "On the Parameterization and Initialization of Diagonal State Space Models"
(S4D, 2022).
"""

from __future__ import annotations

import math

import torch


def _check_size(N: int, name: str = "N", even: bool = False) -> None:
    if isinstance(N, bool) or not isinstance(N, int):
        raise TypeError(f"{name} must be an int, got {type(N).__name__}")
    if N < 1 or (even and (N < 2 or N % 2)):
        need = "an even integer >= 2" if even else "a positive integer"
        raise ValueError(f"{name} must be {need}, got {N}")


def hippo_legs(N: int, dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    """Dense HiPPO-LegS ``(A, B)``: ``A[n, k] = -sqrt(2n+1) sqrt(2k+1)`` below the diagonal,
    ``-(n+1)`` on it, 0 above; ``B[n] = sqrt(2n+1)``. Shapes ``(N, N)`` and ``(N,)``."""
    _check_size(N)
    q = torch.sqrt(2 * torch.arange(N, dtype=torch.float64) + 1)  # (N,)
    A = -torch.tril(q[:, None] * q[None, :], diagonal=-1)  # (N, N)
    A = A - torch.diag(torch.arange(1, N + 1, dtype=torch.float64))  # (N, N)
    return A.to(dtype), q.clone().to(dtype)


def nplr_legs(
    N: int, rank: int = 1, dtype: torch.dtype = torch.complex128
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """HiPPO-LegS in normal-plus-low-rank form, in the eigenbasis of its normal part.

    With ``V_full = [V, conj(V)]`` (unitary), ``Lambda_full = (Lambda, conj(Lambda))``,
    ``P_full = (P, conj(P))`` and ``B_full = (B, conj(B))``::

        A = V_full (diag(Lambda_full) - P_full^T conj(P_full)) V_full^*,   B = V_full B_full

    Only one member of each conjugate pair is returned: ``Lambda (N/2,)`` with real part -1/2 and
    positive imaginary part, ``P (rank, N/2)`` (rows beyond the first are zero: LegS is rank 1),
    ``B (N/2,)``, ``V (N, N/2)``. Computed in float64/complex128, then cast to ``dtype``.
    """
    _check_size(N, even=True)
    _check_size(rank, "rank")
    A, B = hippo_legs(N)  # (N, N), (N,)
    P = torch.sqrt(torch.arange(N, dtype=torch.float64) + 0.5)  # (N,)
    S = A + P[:, None] * P[None, :]  # (N, N) = -I/2 + skew-symmetric
    skew = S + 0.5 * torch.eye(N, dtype=torch.float64)  # (N, N)
    # i * skew is Hermitian: eigh gives real w and orthonormal V with skew V = -i w V
    w, V = torch.linalg.eigh(1j * skew.to(torch.complex128))  # (N,), (N, N)
    keep = w < 0  # eigenvalue -i w with positive imaginary part; the other half are their conjugates
    if int(keep.sum()) != N // 2:
        raise RuntimeError("nplr_legs: the skew-symmetric part has a zero eigenvalue")
    w, V = w[keep], V[:, keep]  # (N/2,), (N, N/2)
    Lambda = torch.complex(torch.full_like(w, -0.5), -w)  # (N/2,)
    Vh = V.conj().T  # (N/2, N)
    P_half = Vh @ P.to(torch.complex128)  # (N/2,)
    B_half = Vh @ B.to(torch.complex128)  # (N/2,)
    P_half = torch.cat([P_half[None], torch.zeros(rank - 1, N // 2, dtype=torch.complex128)])  # (rank, N/2)
    return Lambda.to(dtype), P_half.to(dtype), B_half.to(dtype), V.to(dtype)


def s4d_init(N2: int, init: str = "inv", dtype: torch.dtype = torch.complex64) -> tuple[torch.Tensor, torch.Tensor]:
    """Diagonal state matrix and input vector ``(A, B)``, each ``(N2,)`` complex, of the S4D inits.

    ``N2`` is the number of kept conjugate pairs (state size ``N = 2 N2``):

    * ``"legs"``: S4D-LegS, the diagonal (normal) part of :func:`nplr_legs`, with its ``B``;
    * ``"lin"``: S4D-Lin, ``A_n = -1/2 + i pi n``, ``B_n = 1``;
    * ``"inv"``: S4D-Inv, ``A_n = -1/2 + i (N/pi) (N/(2n+1) - 1)``, ``B_n = 1``;
    * ``"real"``: S4D-Real, ``A_n = -(n+1)``, ``B_n = 1``.
    """
    _check_size(N2, "N2")
    n = torch.arange(N2, dtype=torch.float64)  # (N2,)
    ones = torch.ones(N2, dtype=torch.complex128)
    if init == "legs":
        Lambda, _, B, _ = nplr_legs(2 * N2)
        return Lambda.to(dtype), B.to(dtype)
    if init == "lin":
        A = torch.complex(torch.full_like(n, -0.5), math.pi * n)
    elif init == "inv":
        N = 2 * N2
        A = torch.complex(torch.full_like(n, -0.5), N / math.pi * (N / (2 * n + 1) - 1))
    elif init == "real":
        A = torch.complex(-(n + 1), torch.zeros_like(n))
    else:
        raise ValueError(f"unknown init {init!r}: expected 'legs', 'lin', 'inv' or 'real'")
    return A.to(dtype), ones.to(dtype)
