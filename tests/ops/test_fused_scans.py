"""The fused scan kernels (numba on the CPU; Triton, run here by its CPU interpreter) against slow references.

Every kernel is compared with the loop over time (forward and gradients, float64), with the torch backend, and
by gradcheck; over every optional argument, odd lengths, L = 1, several checkpoint chunks, initial and last
states, and grouped / time-invariant B and C. The backbones' recurrent ``step`` is compared with their parallel
``forward`` for each backend. tests/conftest.py sets ``TRITON_INTERPRET=1`` where there is no CUDA device, so
the Triton kernels run (slowly) on the CPU: their cases are kept small, with a checkpoint chunk of 4 steps
instead of 64 so that a few steps still cross chunks.
"""

from __future__ import annotations

import importlib

import pytest
import torch
from test_s5_ops import loop_scan, random_system
from test_selective_scan import loop_reference, make_inputs
from test_ssd import loop_reference as ssd_loop
from test_ssd import make_inputs as ssd_inputs

from ssmcast.backbones.jamba import JambaConfig
from ssmcast.backbones.mamba import Mamba
from ssmcast.backbones.mamba2 import Mamba2
from ssmcast.backbones.s5 import S5
from ssmcast.ops import backends
from ssmcast.ops.s5 import diagonal_scan, s5_scan
from ssmcast.ops.selective_scan import selective_scan
from ssmcast.ops.ssd import ssd

F64 = torch.float64
needs_triton = pytest.mark.skipif(not backends.available("triton", "cpu"), reason="triton is not installed")
FUSED = ["numba", pytest.param("triton", marks=needs_triton)]
LAYOUTS = [("shared", "shared"), ("dim", "groups"), ("groups", "per_channel"), ("per_channel", "dim")]


@pytest.fixture(autouse=True)
def small_triton_chunks(monkeypatch):
    """Checkpoints every 4 steps in the Triton kernels (64 by default): short sequences cross chunks."""
    if backends.available("triton", "cpu"):
        monkeypatch.setattr(importlib.import_module("ssmcast.ops.selective_scan_triton"), "CHUNK", 4)


def lengths(backend):
    """numba crosses its 64-step checkpoint chunks at 130; the Triton kernels (chunks of 4 here) at 9."""
    return [1, 9, 130] if backend == "numba" else [1, 9]


def leaves_of(*tensors):
    return [t.clone().requires_grad_(True) for t in tensors]


# ------------------------------------------------------------------------------------------ selective_scan


@pytest.mark.parametrize("backend", FUSED)
@pytest.mark.parametrize("B_layout,C_layout", LAYOUTS)
def test_selective_scan_all_options_forward_and_gradients_match_loop(backend, B_layout, C_layout):
    for L in lengths(backend):
        u, delta, A, B, C, ex = make_inputs(b=2, d=4, N=3, L=L, B_layout=B_layout, C_layout=C_layout, dtype=F64)
        leaves = leaves_of(u, delta, A, B, C, ex["D"], ex["z"], ex["delta_bias"] - 0.5, ex["h0"])
        y, last = selective_scan(*leaves[:8], True, True, initial_state=leaves[8], backend=backend)
        y_ref, last_ref = loop_reference(*leaves[:8], True, leaves[8])
        torch.testing.assert_close(y, y_ref, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(last, last_ref, rtol=1e-10, atol=1e-12)
        gen = torch.Generator().manual_seed(L)
        gy, gl = torch.randn(y.shape, generator=gen, dtype=F64), torch.randn(last.shape, generator=gen, dtype=F64)
        grads = torch.autograd.grad((y * gy).sum() + (last * gl).sum(), leaves)
        grads_ref = torch.autograd.grad((y_ref * gy).sum() + (last_ref * gl).sum(), leaves)
        for name, g, g_ref in zip(("u", "delta", "A", "B", "C", "D", "z", "bias", "h0"), grads, grads_ref):
            torch.testing.assert_close(g, g_ref, rtol=1e-9, atol=1e-10, msg=lambda m, n=name, L=L: f"{n}, L={L}: {m}")


@pytest.mark.parametrize("backend", FUSED)
@pytest.mark.parametrize("use_D,use_z,use_bias,softplus,use_h0,last_state", [
    (False, False, False, False, False, False), (True, False, False, False, False, False),
    (False, True, False, False, False, False), (False, False, True, False, False, True),
    (False, False, False, True, False, False), (False, False, False, False, True, True),
    (True, True, True, True, False, False),
])  # fmt: skip
def test_selective_scan_each_optional_argument(backend, use_D, use_z, use_bias, softplus, use_h0, last_state):
    u, delta, A, B, C, ex = make_inputs(L=9, B_layout="groups", C_layout="shared")
    kw = dict(D=ex["D"] if use_D else None, z=ex["z"] if use_z else None,
              delta_bias=ex["delta_bias"] if use_bias else None, delta_softplus=softplus)  # fmt: skip
    h0 = ex["h0"] if use_h0 else None
    out = selective_scan(u, delta, A, B, C, **kw, return_last_state=last_state, initial_state=h0, backend=backend)
    y_ref, last_ref = loop_reference(u, delta, A, B, C, *kw.values(), h0=h0)
    y = out[0] if last_state else out
    assert y.dtype == torch.float32 and y.shape == u.shape
    torch.testing.assert_close(y.double(), y_ref, rtol=1e-5, atol=1e-5)
    if last_state:
        torch.testing.assert_close(out[1].double(), last_ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("backend", FUSED)
def test_selective_scan_float32_matches_the_torch_backend(backend):
    u, delta, A, B, C, ex = make_inputs(b=3, d=8, N=16, L=40, B_layout="shared", C_layout="shared", seed=3)
    args = (u, delta, A, B, C, ex["D"], ex["z"], ex["delta_bias"], True, True)
    leaves = leaves_of(u, delta, A, B, C)
    y, last = selective_scan(*args, backend=backend)
    y_t, last_t = selective_scan(*args, backend="torch")
    torch.testing.assert_close(y, y_t, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(last, last_t, rtol=1e-5, atol=1e-5)
    grads = torch.autograd.grad(selective_scan(*leaves, backend=backend).square().sum(), leaves)
    grads_t = torch.autograd.grad(selective_scan(*leaves, backend="torch").square().sum(), leaves)
    for g, g_t in zip(grads, grads_t):
        assert g.dtype == torch.float32
        torch.testing.assert_close(g, g_t, rtol=1e-4, atol=1e-4)


def gradcheck(fn, inputs, backend):
    """torch's gradcheck; its fast mode (a few random directions instead of every input element, so a few dozen
    calls instead of hundreds) for the Triton kernels, which the CPU interpreter runs slowly."""
    return torch.autograd.gradcheck(fn, inputs, fast_mode=backend == "triton")


@pytest.mark.parametrize("backend", FUSED)
def test_selective_scan_and_ssd_gradcheck(backend):
    u, delta, A, B, C, ex = make_inputs(b=2, d=2, N=2, L=6, B_layout="shared", C_layout="groups", dtype=F64)

    def fn(u, delta, A, B, C, D, z, bias, h0):
        return selective_scan(u, delta, A, B, C, D, z, bias, True, True, initial_state=h0, backend=backend)

    assert gradcheck(fn, tuple(leaves_of(u, delta, A, B, C, ex["D"], ex["z"], ex["delta_bias"], ex["h0"])), backend)
    x, dt, A, B, C, ex = ssd_inputs(b=1, L=5, h=2, p=2, g=1, n=2, dtype=F64)  # one decay per head

    def fn_ssd(x, dt, A, B, C, D, bias, S0):
        return ssd(x, dt, A, B, C, None, D, None, bias, True, S0, True, backend=backend)

    assert gradcheck(fn_ssd, tuple(leaves_of(x, dt, A, B, C, ex["D"], ex["dt_bias"], ex["S0"])), backend)


def test_numba_selective_scan_long_sequence_with_strong_decay():
    """L = 3000 (47 checkpoint chunks) with cumulative dt*A near -2e5: finite and exact."""
    u, delta, A, B, C, _ = make_inputs(b=1, d=2, N=3, L=3000, seed=6)
    delta, A = delta * 5, A * 20
    y, last = selective_scan(u, delta, A, B, C, return_last_state=True, backend="numba")
    y_ref, last_ref = loop_reference(u, delta, A, B, C)
    torch.testing.assert_close(y.double(), y_ref, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(last.double(), last_ref, rtol=1e-4, atol=1e-4)
    leaves = leaves_of(u, delta, A)
    grads = torch.autograd.grad(selective_scan(*leaves, B, C, backend="numba").sum(), leaves)
    assert all(torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("backend", FUSED)
def test_selective_scan_nan_in_an_input_propagates(backend):
    """A NaN in the input reaches the output of its own (batch, channel) pair: nothing swallows it."""
    u, delta, A, B, C, _ = make_inputs(L=7)
    u[1, 2, 3] = float("nan")
    y = selective_scan(u, delta, A, B, C, backend=backend)
    assert torch.isnan(y[1, 2, 3:]).all() and torch.isfinite(y[0]).all() and torch.isfinite(y[1, 2, :3]).all()


def test_numba_kernels_follow_torch_threads(monkeypatch):
    """One thread (as under pytest-xdist) or two give the same result; numba takes torch's thread count."""
    import numba

    u, delta, A, B, C, ex = make_inputs(b=1, d=16, N=4, L=50, seed=2)
    outs = []
    before = torch.get_num_threads()
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            outs.append(selective_scan(u, delta, A, B, C, ex["D"], backend="numba"))
            assert numba.get_num_threads() == min(threads, numba.config.NUMBA_NUM_THREADS)
    finally:
        torch.set_num_threads(before)
    torch.testing.assert_close(outs[0], outs[1], rtol=1e-6, atol=1e-6)


# ------------------------------------------------------------------------------------------ ssd


@pytest.mark.parametrize("backend", FUSED)
@pytest.mark.parametrize("g", [1, 2])
def test_ssd_forward_and_gradients_match_loop(backend, g):
    for L in lengths(backend):
        x, dt, A, B, C, ex = ssd_inputs(L=L, g=g, dtype=F64, D_per_channel=g == 2)
        leaves = leaves_of(x, dt, A, B, C, ex["D"], ex["z"], ex["dt_bias"], ex["S0"])
        y, S = ssd(*leaves[:5], None, *leaves[5:8], True, leaves[8], True, backend=backend)
        y_ref, S_ref = ssd_loop(*leaves[:8], True, leaves[8])
        torch.testing.assert_close(y, y_ref, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(S, S_ref, rtol=1e-10, atol=1e-12)
        grads = torch.autograd.grad(y.square().sum() + S.sum(), leaves)
        grads_ref = torch.autograd.grad(y_ref.square().sum() + S_ref.sum(), leaves)
        for g_, g_ref in zip(grads, grads_ref):
            torch.testing.assert_close(g_, g_ref, rtol=1e-9, atol=1e-10)


# ------------------------------------------------------------------------------------------ s5_scan


@pytest.mark.parametrize("backend", FUSED)
@pytest.mark.parametrize("conj_sym", [True, False])
def test_s5_scan_forward_and_gradients_match_loop(backend, conj_sym):
    for L in lengths(backend):
        Lambda_bar, B_bar, C, _ = random_system(P=5, H=3, seed=L)
        u = torch.randn(2, L, 3, dtype=F64, generator=torch.Generator().manual_seed(L))
        x0 = torch.complex(*torch.randn(2, 2, 5, dtype=F64, generator=torch.Generator().manual_seed(L + 1)))
        leaves = leaves_of(Lambda_bar, B_bar, C, u, x0)
        y, last = s5_scan(*leaves[:4], conj_sym=conj_sym, x0=leaves[4], return_state=True, backend=backend)
        y_ref, last_ref = loop_scan(*leaves[:4], conj_sym=conj_sym, x0=leaves[4])
        torch.testing.assert_close(y, y_ref, rtol=1e-10, atol=1e-11)
        torch.testing.assert_close(last, last_ref, rtol=1e-10, atol=1e-11)
        w = torch.randn(y.shape, dtype=F64)
        grads = torch.autograd.grad((y * w).sum() + last.abs().square().sum(), leaves)
        grads_ref = torch.autograd.grad((y_ref * w).sum() + last_ref.abs().square().sum(), leaves)
        for g, g_ref in zip(grads, grads_ref):
            torch.testing.assert_close(g, g_ref, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("backend", FUSED)
def test_diagonal_scan_gradcheck_and_bidirectional(backend):
    g = torch.Generator().manual_seed(16)
    a = torch.polar(torch.rand(3, generator=g, dtype=F64) * 0.9 + 0.05, torch.randn(3, generator=g, dtype=F64))
    b = torch.complex(*torch.randn(2, 2, 7, 3, generator=g, dtype=F64))
    x0 = torch.complex(*torch.randn(2, 2, 3, generator=g, dtype=F64))
    assert gradcheck(lambda a, b, x0: diagonal_scan(a, b, x0, backend=backend), tuple(leaves_of(a, b, x0)), backend)
    Lambda_bar, B_bar, C_fwd, _ = random_system(P=4, H=3, seed=6)
    _, _, C_bwd, _ = random_system(P=4, H=3, seed=7)
    u = torch.randn(2, 8, 3, dtype=F64)
    y = s5_scan(Lambda_bar, B_bar, torch.cat([C_fwd, C_bwd], 1), u, bidirectional=True, backend=backend)
    y_fwd, _ = loop_scan(Lambda_bar, B_bar, C_fwd, u)
    y_bwd, _ = loop_scan(Lambda_bar, B_bar, C_bwd, u.flip(1))
    torch.testing.assert_close(y, y_fwd + y_bwd.flip(1), rtol=1e-10, atol=1e-11)


# ------------------------------------------------------------------------------------------ backbones


def unroll(module, x):
    state = module.initial_state(x.shape[0])
    ys = []
    for t in range(x.shape[1]):
        y, state = module.step(x[:, t], state)
        ys.append(y)
    return torch.stack(ys, 1), state


@pytest.mark.parametrize("backend", ["torch", *FUSED])
@pytest.mark.parametrize("mixer", ["mamba", "mamba2", "s5"])
def test_backbone_step_unrolled_equals_parallel_forward_and_prefill(backend, mixer):
    torch.manual_seed(0)
    layer = {"mamba": lambda: Mamba(8, d_state=4, backend=backend),
             "mamba2": lambda: Mamba2(8, d_state=4, head_dim=4, backend=backend),
             "s5": lambda: S5(8, d_state=8, blocks=2, backend=backend)}[mixer]().double().eval()  # fmt: skip
    x = torch.randn(2, 9 if backend == "triton" else 70, 8, dtype=F64)
    with torch.no_grad():
        y = layer(x)
        y_step, state = unroll(layer, x)
        y_pre, state_pre = layer.prefill(x)
    torch.testing.assert_close(y, y_step, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(y_pre, y, rtol=1e-9, atol=1e-10)
    for s, s_pre in zip(state if isinstance(state, tuple) else (state,),
                        state_pre if isinstance(state_pre, tuple) else (state_pre,)):  # fmt: skip
        torch.testing.assert_close(s_pre, s, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("backend", FUSED)
def test_jamba_stack_backend_reaches_every_mamba_layer_and_matches_torch(backend):
    torch.manual_seed(1)
    config = JambaConfig(d_model=8, n_layers=2, attn_every=2, attn_offset=1, d_state=4, backend=backend)
    stack = config.build().double().eval()
    assert [m.backend for m in stack.modules() if isinstance(m, Mamba)] == [backend]
    reference = JambaConfig(**(config.to_dict() | {"backend": "torch"})).build().double().eval()
    reference.load_state_dict(stack.state_dict())
    x = torch.randn(2, 7, 8, dtype=F64)
    with torch.no_grad():
        torch.testing.assert_close(stack(x), reference(x), rtol=1e-9, atol=1e-10)


def test_backend_validation_and_resolution():
    with pytest.raises(ValueError, match="backend='tpu'"):
        Mamba(8, backend="tpu")
    with pytest.raises(ValueError, match="mamba_ssm"):
        S5(8, backend="mamba_ssm")
    assert backends.check_backend("cuda") == "mamba_ssm"  # the old name stays an alias
    cpu = torch.device("cpu")
    assert backends.resolve("auto", cpu, "op") == "numba"
    assert backends.resolve("torch", cpu, "op") == "torch"
    with pytest.raises(ValueError, match="runs on the CPU"):
        backends.resolve("numba", torch.device("cuda"), "op")


def test_triton_backend_on_the_cpu_without_the_interpreter_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    u, delta, A, B, C, _ = make_inputs(L=5)
    with pytest.raises(ValueError, match="TRITON_INTERPRET|triton package"):
        selective_scan(u, delta, A, B, C, backend="triton")


@pytest.mark.gpu
@pytest.mark.parametrize("backend", ["triton", "auto"])
def test_cuda_kernels_match_the_cpu(backend):
    """On a GPU: the Triton kernels (and auto's choice) against numba on the CPU, at a forecaster's shape."""
    u, delta, A, B, C, ex = make_inputs(b=8, d=64, N=16, L=200, B_layout="shared", C_layout="shared", seed=11)
    args = [u, delta, A, B, C, ex["D"], ex["z"], ex["delta_bias"]]
    y_cpu, last_cpu = selective_scan(*args, True, True, backend="numba")
    y, last = selective_scan(*[t.cuda() for t in args], True, True, backend=backend)
    torch.testing.assert_close(y.cpu(), y_cpu, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(last.cpu(), last_cpu, rtol=1e-4, atol=1e-4)
    leaves = leaves_of(u, delta, A, B, C)
    g_cpu = torch.autograd.grad(selective_scan(*leaves, backend="numba").square().sum(), leaves)
    leaves_cuda = [t.detach().cuda().requires_grad_(True) for t in leaves]
    g = torch.autograd.grad(selective_scan(*leaves_cuda, backend=backend).square().sum(), leaves_cuda)
    for a, b in zip(g, g_cpu):
        torch.testing.assert_close(a.cpu(), b, rtol=1e-3, atol=1e-3)
    Lambda_bar, B_bar, Ct, _ = random_system(P=32, H=16, dtype=torch.complex64, seed=3)
    x = torch.randn(4, 500, 16)
    y_cpu = s5_scan(Lambda_bar, B_bar, Ct, x, backend="numba")
    y = s5_scan(Lambda_bar.cuda(), B_bar.cuda(), Ct.cuda(), x.cuda(), backend=backend)
    torch.testing.assert_close(y.cpu(), y_cpu, rtol=1e-4, atol=1e-4 * y_cpu.abs().max().item())


def test_auto_falls_back_to_torch_without_numba(monkeypatch):
    """An environment without numba (or a device it cannot serve) still runs every op, on the torch reference."""
    real = backends._installed
    monkeypatch.setattr(backends, "_installed", lambda name: False if name == "numba" else real(name))
    assert backends.resolve("auto", torch.device("cpu"), "op") == "torch"
    u, delta, A, B, C, ex = make_inputs(L=9)
    y = selective_scan(u, delta, A, B, C, ex["D"])
    torch.testing.assert_close(y, selective_scan(u, delta, A, B, C, ex["D"], backend="torch"))
    with pytest.raises(ValueError, match="needs the numba package"):
        selective_scan(u, delta, A, B, C, backend="numba")


def test_numba_kernels_run_from_several_threads_at_once():
    """numba's OpenMP layer is thread-safe: concurrent calls (e.g. fits in a thread pool) give the serial results."""
    from concurrent.futures import ThreadPoolExecutor

    cases = [make_inputs(b=2, d=8, N=4, L=70, seed=s) for s in range(6)]
    serial = [selective_scan(*c[:5], backend="numba") for c in cases]
    with ThreadPoolExecutor(3) as pool:
        parallel = list(pool.map(lambda c: selective_scan(*c[:5], backend="numba"), cases))
    for a, b in zip(serial, parallel):
        torch.testing.assert_close(a, b)
