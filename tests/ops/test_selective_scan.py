"""selective_scan / selective_state_update against a plain Python loop over time (float64)."""

from __future__ import annotations

import importlib

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from ssmcast.ops.selective_scan import has_cuda_kernel, selective_scan, selective_state_update

F64 = torch.float64


def loop_reference(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False, h0=None):
    """The recurrence one time step at a time, in float64. Returns y (b, d, L) and the last state."""
    u, delta, A = u.to(F64), delta.to(F64), A.to(F64)
    b, d, L = u.shape
    N = A.shape[1]
    if delta_bias is not None:
        delta = delta + delta_bias.to(F64)[:, None]
    if delta_softplus:
        delta = F.softplus(delta)

    def at(M, t):  # B or C at time t as (b, d, N)
        M = M.to(F64)
        if M.dim() == 2:
            return M.expand(b, d, N)
        if M.dim() == 3:
            return M[:, None, :, t].expand(b, d, N)
        return M[:, :, :, t].repeat_interleave(d // M.shape[1], dim=1)

    x = torch.zeros(b, d, N, dtype=F64) if h0 is None else h0.to(F64)
    ys = []
    for t in range(L):
        x = torch.exp(delta[:, :, t, None] * A) * x + (delta[:, :, t] * u[:, :, t])[..., None] * at(B, t)
        ys.append((x * at(C, t)).sum(-1))
    y = torch.stack(ys, dim=-1)
    if D is not None:
        y = y + u * D.to(F64)[:, None]
    if z is not None:
        y = y * F.silu(z.to(F64))
    return y, x


def make_bc(layout, b, d, N, L, gen, dtype=torch.float32):
    shapes = {"dim": (d, N), "shared": (b, N, L), "groups": (b, 2, N, L), "per_channel": (b, d, N, L)}
    return torch.randn(*shapes[layout], generator=gen, dtype=dtype)


def make_inputs(b=2, d=4, N=3, L=13, B_layout="shared", C_layout="shared", dtype=torch.float32, seed=0):
    gen = torch.Generator().manual_seed(seed)
    u = torch.randn(b, d, L, generator=gen, dtype=dtype)
    delta = torch.rand(b, d, L, generator=gen, dtype=dtype) * 0.6
    A = -torch.rand(d, N, generator=gen, dtype=dtype) * 2 - 0.1
    B = make_bc(B_layout, b, d, N, L, gen, dtype)
    C = make_bc(C_layout, b, d, N, L, gen, dtype)
    extras = {
        "D": torch.randn(d, generator=gen, dtype=dtype),
        "z": torch.randn(b, d, L, generator=gen, dtype=dtype),
        "delta_bias": torch.randn(d, generator=gen, dtype=dtype) * 0.3,
        "h0": torch.randn(b, d, N, generator=gen, dtype=dtype),
    }
    return u, delta, A, B, C, extras


LAYOUTS = [("dim", "dim"), ("shared", "shared"), ("groups", "groups"), ("per_channel", "shared"),
           ("dim", "groups"), ("groups", "per_channel")]  # fmt: skip
THREE_LAYOUTS = [("dim", "dim"), ("shared", "groups"), ("per_channel", "shared")]
SCANS = ["chunked", "logdepth"]  # the torch backend's two-level scan (CPU default) and Blelloch's (CUDA default)
CPU_BACKENDS = ["torch", "numba"]  # Triton's kernels, under its interpreter: tests/ops/test_fused_scans.py


@pytest.mark.parametrize("B_layout,C_layout", LAYOUTS)
@pytest.mark.parametrize("L", [1, 7, 40])
@pytest.mark.parametrize("chunk_size", [None, 4, 9])
@pytest.mark.parametrize("scan", SCANS)
def test_matches_loop_all_options(B_layout, C_layout, L, chunk_size, scan):
    u, delta, A, B, C, ex = make_inputs(L=L, B_layout=B_layout, C_layout=C_layout)
    y, last = selective_scan(u, delta, A, B, C, ex["D"], ex["z"], ex["delta_bias"], True, True,
                             initial_state=ex["h0"], chunk_size=chunk_size, scan=scan, backend="torch")  # fmt: skip
    y_ref, last_ref = loop_reference(u, delta, A, B, C, ex["D"], ex["z"], ex["delta_bias"], True, ex["h0"])
    assert y.shape == u.shape and y.dtype == torch.float32
    assert last.shape == (2, 4, 3) and last.dtype == torch.float32
    torch.testing.assert_close(y.double(), y_ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(last.double(), last_ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("use_D", [False, True])
@pytest.mark.parametrize("use_z", [False, True])
@pytest.mark.parametrize("use_bias", [False, True])
@pytest.mark.parametrize("softplus", [False, True])
@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_each_optional_argument_alone(use_D, use_z, use_bias, softplus, backend):
    u, delta, A, B, C, ex = make_inputs(L=21, B_layout="groups", C_layout="shared")
    kwargs = dict(D=ex["D"] if use_D else None, z=ex["z"] if use_z else None,
                  delta_bias=ex["delta_bias"] if use_bias else None, delta_softplus=softplus)  # fmt: skip
    y = selective_scan(u, delta, A, B, C, **kwargs, backend=backend)
    y_ref, _ = loop_reference(u, delta, A, B, C, *kwargs.values())
    torch.testing.assert_close(y.double(), y_ref, rtol=1e-5, atol=1e-5)
    assert isinstance(y, torch.Tensor)  # no state unless asked


@settings(max_examples=25)
@given(
    b=st.integers(1, 3),
    d=st.sampled_from([2, 4, 6]),
    N=st.integers(1, 5),
    L=st.integers(1, 70),
    layout=st.sampled_from([("dim", "shared"), ("groups", "groups"), ("shared", "per_channel")]),
    chunk_size=st.one_of(st.none(), st.integers(1, 80)),
    seed=st.integers(0, 2**16),
    scan=st.sampled_from(SCANS),
)
def test_random_shapes_match_loop(b, d, N, L, layout, chunk_size, seed, scan):
    u, delta, A, B, C, ex = make_inputs(b, d, N, L, *layout, seed=seed)
    y, last = selective_scan(u, delta, A, B, C, ex["D"], None, ex["delta_bias"], True, True,
                             initial_state=ex["h0"], chunk_size=chunk_size, scan=scan, backend="torch")  # fmt: skip
    y_ref, last_ref = loop_reference(u, delta, A, B, C, ex["D"], None, ex["delta_bias"], True, ex["h0"])
    torch.testing.assert_close(y.double(), y_ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(last.double(), last_ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("scan", SCANS)
def test_block_and_sub_chunk_boundaries_agree(scan):
    """Every block size (including blocks of 1 step and one block for all) gives the same result."""
    u, delta, A, B, C, ex = make_inputs(L=50, d=3, N=2)
    outs = [selective_scan(u, delta, A, B, C, return_last_state=True, chunk_size=cs, scan=scan, backend="torch")
            for cs in (1, 2, 5, 64)]  # fmt: skip
    for y, last in outs[1:]:
        torch.testing.assert_close(y, outs[0][0], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(last, outs[0][1], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_state_carry_equals_one_long_scan(backend):
    """Scanning two halves, passing the state, equals scanning the whole sequence."""
    u, delta, A, B, C, ex = make_inputs(L=150, B_layout="shared", C_layout="groups")
    y, last = selective_scan(u, delta, A, B, C, ex["D"], return_last_state=True, backend=backend)
    y1, s1 = selective_scan(u[..., :71], delta[..., :71], A, B[..., :71], C[..., :71], ex["D"],
                            return_last_state=True, backend=backend)  # fmt: skip
    y2, s2 = selective_scan(u[..., 71:], delta[..., 71:], A, B[..., 71:], C[..., 71:], ex["D"],
                            return_last_state=True, initial_state=s1, backend=backend)  # fmt: skip
    torch.testing.assert_close(torch.cat([y1, y2], -1), y, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(s2, last, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("B_layout,C_layout", THREE_LAYOUTS)
@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_token_by_token_step_matches_scan(B_layout, C_layout, backend):
    u, delta, A, B, C, ex = make_inputs(L=17, B_layout=B_layout, C_layout=C_layout)
    y, last = selective_scan(u, delta, A, B, C, ex["D"], ex["z"], ex["delta_bias"], True, True,
                             initial_state=ex["h0"], backend=backend)  # fmt: skip

    def at(M, t):  # the step function takes (dim, N) matrices only through a batch: (batch, groups, N)
        if M.dim() == 2:
            return None
        return M[..., t]

    state = ex["h0"].clone()
    ys = []
    for t in range(u.shape[-1]):
        if B.dim() == 2 or C.dim() == 2:  # time-invariant: express as per-channel groups
            Bt = B.expand(2, 4, 3) if B.dim() == 2 else at(B, t)
            Ct = C.expand(2, 4, 3) if C.dim() == 2 else at(C, t)
        else:
            Bt, Ct = at(B, t), at(C, t)
        ys.append(selective_state_update(state, u[..., t], delta[..., t], A, Bt, Ct, ex["D"], ex["z"][..., t],
                                         ex["delta_bias"], True))  # fmt: skip
    torch.testing.assert_close(torch.stack(ys, -1), y, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(state, last, rtol=1e-5, atol=1e-5)


def test_step_with_heads_matches_loop():
    """The (batch, heads, dim, N) form of the step equals one loop step with dim = heads * dim."""
    gen = torch.Generator().manual_seed(3)
    b, nh, dh, N = 2, 3, 2, 4
    state = torch.randn(b, nh, dh, N, generator=gen)
    h0 = state.reshape(b, nh * dh, N).clone()
    x, dt, z = (torch.randn(b, nh, dh, generator=gen) for _ in range(3))
    A = -torch.rand(nh, dh, N, generator=gen)
    B, C = torch.randn(b, 1, N, generator=gen), torch.randn(b, 3, N, generator=gen)
    D, bias = torch.randn(nh, dh, generator=gen), torch.randn(nh, dh, generator=gen)
    y = selective_state_update(state, x, dt, A, B, C, D, z, bias, True)
    y_ref, s_ref = loop_reference(x.reshape(b, -1, 1), dt.reshape(b, -1, 1), A.reshape(-1, N), B[..., None],
                                  C[..., None], D.reshape(-1), z.reshape(b, -1, 1), bias.reshape(-1), True,
                                  h0=h0)  # fmt: skip
    torch.testing.assert_close(y.reshape(b, -1).double(), y_ref[..., 0])
    torch.testing.assert_close(state.reshape(b, -1, N).double(), s_ref)


def test_step_is_in_place_and_keeps_dtype():
    u, delta, A, B, C, _ = make_inputs(L=1)
    state = torch.zeros(2, 4, 3)
    before = state.data_ptr()
    y = selective_state_update(state, u[..., 0].half(), delta[..., 0], A, B[..., 0], C[..., 0])
    assert y.dtype == torch.float16 and state.data_ptr() == before and state.abs().sum() > 0


@pytest.mark.parametrize("B_layout,C_layout", THREE_LAYOUTS)
@pytest.mark.parametrize("with_state", [False, True])
@pytest.mark.parametrize("scan", SCANS)
def test_gradients_match_loop_reference(B_layout, C_layout, with_state, scan):
    u, delta, A, B, C, ex = make_inputs(L=19, B_layout=B_layout, C_layout=C_layout, dtype=F64, seed=4)
    ex["delta_bias"] = ex["delta_bias"] - 1.0  # softplus(delta - 1) keeps dt moderate
    leaves = [u, delta, A, B, C, ex["D"], ex["z"], ex["delta_bias"]] + ([ex["h0"]] if with_state else [])
    for t in leaves:
        t.requires_grad_(True)
    h0 = ex["h0"] if with_state else None
    y, last = selective_scan(u, delta, A, B, C, ex["D"], ex["z"], ex["delta_bias"], True, True,
                             initial_state=h0, chunk_size=8, scan=scan, backend="torch")  # fmt: skip
    gen = torch.Generator().manual_seed(9)
    gy, gl = torch.randn(y.shape, generator=gen, dtype=F64), torch.randn(last.shape, generator=gen, dtype=F64)
    grads = torch.autograd.grad((y * gy).sum() + (last * gl).sum(), leaves)
    y_ref, last_ref = loop_reference(u, delta, A, B, C, ex["D"], ex["z"], ex["delta_bias"], True, h0)
    grads_ref = torch.autograd.grad((y_ref * gy).sum() + (last_ref * gl).sum(), leaves)
    for g, g_ref in zip(grads, grads_ref):
        torch.testing.assert_close(g, g_ref, rtol=1e-9, atol=1e-10)


def test_auto_scan_is_the_chunked_scan_on_the_cpu():
    u, delta, A, B, C, ex = make_inputs(L=37, B_layout="groups", C_layout="shared")
    outs = {scan: selective_scan(u, delta, A, B, C, ex["D"], return_last_state=True, scan=scan, backend="torch")
            for scan in ("auto", "chunked", "logdepth")}  # fmt: skip
    assert all(torch.equal(a, b) for a, b in zip(outs["auto"], outs["chunked"]))
    assert not torch.equal(outs["auto"][0], outs["logdepth"][0])  # another order of float32 sums
    torch.testing.assert_close(outs["logdepth"][0], outs["chunked"][0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_gradients_float32_and_output_only(backend):
    u, delta, A, B, C, ex = make_inputs(L=33, B_layout="groups", C_layout="groups", seed=5)
    leaves = [u, delta, A, B, C]
    for t in leaves:
        t.requires_grad_(True)
    y = selective_scan(u, delta, A, B, C, chunk_size=16, backend=backend)
    gy = torch.randn(y.shape, generator=torch.Generator().manual_seed(1))
    grads = torch.autograd.grad((y * gy).sum(), leaves)
    y_ref, _ = loop_reference(u, delta, A, B, C)
    grads_ref = torch.autograd.grad((y_ref * gy.double()).sum(), leaves)
    for g, g_ref in zip(grads, grads_ref):
        assert g.dtype == torch.float32
        torch.testing.assert_close(g, g_ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_gradients_when_only_some_inputs_require_them(backend):
    u, delta, A, B, C, ex = make_inputs(L=14, B_layout="shared", C_layout="dim", seed=8)
    u.requires_grad_(True)
    ex["D"].requires_grad_(True)
    y = selective_scan(u, delta, A, B, C, ex["D"], chunk_size=4, backend=backend)
    gu, gD = torch.autograd.grad(y.square().sum(), (u, ex["D"]))
    y_ref, _ = loop_reference(u, delta, A, B, C, ex["D"])
    gu_ref, gD_ref = torch.autograd.grad(y_ref.square().sum(), (u, ex["D"]))
    torch.testing.assert_close(gu, gu_ref, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(gD, gD_ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("scan", SCANS)
def test_gradcheck_tiny(scan):
    u, delta, A, B, C, ex = make_inputs(b=1, d=2, N=2, L=6, B_layout="shared", C_layout="dim", dtype=F64)
    inputs = tuple(t.requires_grad_(True) for t in (u, delta, A, B, C, ex["D"], ex["z"], ex["h0"]))

    def fn(u, delta, A, B, C, D, z, h0):
        return selective_scan(u, delta, A, B, C, D, z, None, True, True, initial_state=h0, chunk_size=4, scan=scan,
                              backend="torch")

    assert torch.autograd.gradcheck(fn, inputs)


@pytest.mark.parametrize("scan", SCANS)
def test_long_sequence_with_strong_decay_is_finite_and_exact(scan):
    """Cumulative dt*A reaches about -2e5: nothing may overflow (no exp of positive cumulative sums)."""
    u, delta, A, B, C, _ = make_inputs(b=1, d=2, N=3, L=3000, seed=6)
    delta = delta * 5
    A = A * 20
    y, last = selective_scan(u, delta, A, B, C, return_last_state=True, chunk_size=512, scan=scan, backend="torch")
    assert torch.isfinite(y).all() and torch.isfinite(last).all()
    y_ref, last_ref = loop_reference(u, delta, A, B, C)
    torch.testing.assert_close(y.double(), y_ref, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(last.double(), last_ref, rtol=1e-4, atol=1e-4)
    leaves = [t.requires_grad_(True) for t in (u, delta, A)]
    grads = torch.autograd.grad(selective_scan(u, delta, A, B, C, scan=scan, backend="torch").sum(), leaves)
    assert all(torch.isfinite(g).all() for g in grads)


def _saved_bytes(L, b=1, d=16, N=16, scan="auto", backend="torch"):
    """Bytes autograd keeps for backward, and the bytes of one (batch, dim, L, N) float32 state tensor."""
    u, delta, A, B, C, _ = make_inputs(b=b, d=d, N=N, L=L, seed=7)
    for t in (u, delta, A, B, C):
        t.requires_grad_(True)
    total = 0

    def pack(t):
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y = selective_scan(u, delta, A, B, C, delta_softplus=True, scan=scan, backend=backend)
    y.sum().backward()
    assert torch.isfinite(u.grad).all()
    return total, b * d * L * N * 4


@pytest.mark.parametrize("scan,backend", [(scan, "torch") for scan in SCANS] + [("auto", "numba")])
def test_memory_linear_in_length(scan, backend):
    """L=16k trains fine; what autograd keeps grows linearly with L and stays far below all the states."""
    small, _ = _saved_bytes(4096, scan=scan, backend=backend)
    large, all_states = _saved_bytes(16384, scan=scan, backend=backend)
    assert 3.5 < large / small < 4.5
    assert large < all_states / 2


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_low_precision_inputs_return_their_dtype(backend):
    u, delta, A, B, C, ex = make_inputs(L=12)
    y, last = selective_scan(u.bfloat16(), delta.bfloat16(), A, B.bfloat16(), C.bfloat16(), ex["D"],
                             ex["z"].bfloat16(), return_last_state=True, backend=backend)  # fmt: skip
    assert y.dtype == torch.bfloat16 and last.dtype == torch.float32
    low = [t.bfloat16() for t in (u, delta, B, C, ex["z"])]
    y_ref, _ = loop_reference(low[0], low[1], A, low[2], low[3], ex["D"], low[4])
    torch.testing.assert_close(y.double(), y_ref, rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize("scan,backend", [(scan, "torch") for scan in SCANS] + [("auto", "numba")])
def test_inputs_are_not_modified(scan, backend):
    u, delta, A, B, C, ex = make_inputs(L=10)
    args = [u, delta, A, B, C, ex["D"], ex["z"], ex["delta_bias"]]
    copies = [t.clone() for t in args] + [ex["h0"].clone()]
    selective_scan(*args, delta_softplus=True, return_last_state=True, initial_state=ex["h0"], scan=scan,
                   backend=backend)  # fmt: skip
    for t, c in zip(args + [ex["h0"]], copies):
        assert torch.equal(t, c)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_non_contiguous_inputs(backend):
    u, delta, A, B, C, _ = make_inputs(L=16, B_layout="shared", C_layout="shared")
    big = torch.randn(2, 16, 12)  # like slices of one projection, (b, L, *) transposed to (b, *, L)
    Bt, Ct = big[..., :3].transpose(1, 2), big[..., 3:6].transpose(1, 2)
    y = selective_scan(u.transpose(1, 2).contiguous().transpose(1, 2), delta, A, Bt, Ct, backend=backend)
    y_ref, _ = loop_reference(u, delta, A, Bt, Ct)
    torch.testing.assert_close(y.double(), y_ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "change,match",
    [
        (dict(delta=torch.zeros(2, 4, 5)), "delta"),
        (dict(A=torch.zeros(3, 3)), "A"),
        (dict(B=torch.zeros(2, 3, 9)), "B"),
        (dict(C=torch.zeros(2, 3, 3, 13)), "C"),
        (dict(D=torch.zeros(5)), "D"),
        (dict(z=torch.zeros(2, 4)), "z"),
        (dict(delta_bias=torch.zeros(4, 1)), "delta_bias"),
        (dict(initial_state=torch.zeros(2, 4)), "initial_state"),
        (dict(backend="tpu"), "backend"),
        (dict(chunk_size=0), "chunk_size"),
        (dict(scan="parallel"), "scan"),
    ],
)
def test_bad_input_raises_value_error_naming_it(change, match):
    u, delta, A, B, C, _ = make_inputs(L=13)
    kwargs = dict(u=u, delta=delta, A=A, B=B, C=C) | change
    with pytest.raises(ValueError, match=match):
        selective_scan(**kwargs)


def test_type_errors():
    u, delta, A, B, C, _ = make_inputs(L=5)
    with pytest.raises(TypeError, match="complex"):
        selective_scan(u, delta, A.to(torch.complex64), B, C)
    with pytest.raises(TypeError, match="u must be a torch.Tensor"):
        selective_scan(u.numpy(), delta, A, B, C)


def test_step_bad_shapes():
    state = torch.zeros(2, 4, 3)
    x = torch.zeros(2, 4)
    with pytest.raises(ValueError, match="dt"):
        selective_state_update(state, x, torch.zeros(2, 5), torch.zeros(4, 3), x[:, :3], x[:, :3])
    with pytest.raises(ValueError, match="B"):
        selective_state_update(state, x, x, torch.zeros(4, 3), torch.zeros(2, 3, 3), torch.zeros(2, 3))


@pytest.mark.skipif(has_cuda_kernel(), reason="mamba_ssm is installed")
def test_cuda_backend_without_kernel_is_a_clear_error():
    u, delta, A, B, C, _ = make_inputs(L=5)
    with pytest.raises(ValueError, match="mamba_ssm"):
        selective_scan(u, delta, A, B, C, backend="mamba_ssm")


@pytest.mark.gpu
def test_cuda_torch_backend_and_kernel_match_loop():
    u, delta, A, B, C, ex = make_inputs(L=300, d=8, N=4, B_layout="groups", C_layout="groups")
    y_ref, last_ref = loop_reference(u, delta, A, B, C, ex["D"], ex["z"], ex["delta_bias"], True)
    cuda = [t.cuda() for t in (u, delta, A, B, C, ex["D"], ex["z"], ex["delta_bias"])]
    runs = [("torch", scan) for scan in ["auto", *SCANS]] + ([("cuda", "auto")] if has_cuda_kernel() else [])
    for backend, scan in runs:
        y, last = selective_scan(*cuda, True, True, backend=backend, scan=scan)
        assert y.is_cuda
        torch.testing.assert_close(y.double().cpu(), y_ref, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(last.double().cpu(), last_ref, rtol=1e-4, atol=1e-4)
    leaves = [t.detach().requires_grad_(True) for t in cuda[:5]]
    grads = {scan: torch.autograd.grad(selective_scan(*leaves, backend="torch", scan=scan).square().sum(), leaves)
             for scan in SCANS}  # fmt: skip
    for g_chunked, g_logdepth in zip(*grads.values()):
        torch.testing.assert_close(g_logdepth, g_chunked, rtol=1e-4, atol=1e-4)


def test_cuda_backend_hands_every_argument_to_the_mamba_ssm_kernel(monkeypatch):
    """The dispatch glue, checked on the CPU with a stand-in that has ``selective_scan_fn``'s exact signature
    (mamba_ssm.ops.selective_scan_interface) and computes the loop reference: what reaches the kernel, and what
    comes back, is what the torch backend computes. The kernel's own numerics are checked by the gpu test."""
    module = importlib.import_module("ssmcast.ops.selective_scan")  # the package attribute is the function

    calls = []

    def selective_scan_fn(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                          return_last_state=False):  # fmt: skip
        calls.append(dict(u=u, delta=delta, A=A, B=B, C=C, D=D, z=z, delta_bias=delta_bias,
                          delta_softplus=delta_softplus, return_last_state=return_last_state))  # fmt: skip
        y, last = loop_reference(u, delta, A, B, C, D, z, delta_bias, delta_softplus)
        return (y.to(u.dtype), last.to(u.dtype)) if return_last_state else y.to(u.dtype)

    monkeypatch.setattr(module, "_cuda_selective_scan_fn", selective_scan_fn)
    u, delta, A, B, C, ex = make_inputs(L=11, B_layout="groups", C_layout="shared")
    y, last = selective_scan(u, delta, A, B, C, ex["D"], ex["z"], ex["delta_bias"], True, True, backend="cuda")
    (call,) = calls
    for name, value in dict(u=u, delta=delta, A=A, B=B, C=C, D=ex["D"], z=ex["z"], delta_bias=ex["delta_bias"]).items():
        assert call[name] is value, name
    assert call["delta_softplus"] is True and call["return_last_state"] is True
    y_torch, last_torch = selective_scan(u, delta, A, B, C, ex["D"], ex["z"], ex["delta_bias"], True, True,
                                         backend="torch")  # fmt: skip
    torch.testing.assert_close(y, y_torch, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(last, last_torch, rtol=1e-4, atol=1e-5)
    assert torch.is_tensor(selective_scan(u, delta, A, B, C, backend="cuda"))  # y alone without return_last_state
    with pytest.raises(ValueError, match="initial_state is not supported"):
        selective_scan(u, delta, A, B, C, initial_state=ex["h0"], backend="cuda")
    # "auto" keeps CPU tensors off the mamba_ssm kernel even when it is importable
    n_calls = len(calls)
    selective_scan(u, delta, A, B, C)
    assert len(calls) == n_calls
