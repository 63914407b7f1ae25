"""ssd / ssd_state_update against a plain Python loop over time (float64) and against selective_scan."""

from __future__ import annotations

import importlib

import pytest
import torch
import torch.nn.functional as F

from ssmcast.ops.selective_scan import selective_scan
from ssmcast.ops.ssd import has_ssd_kernel, ssd, ssd_state_update

F64 = torch.float64
CPU_BACKENDS = ["torch", "numba"]  # Triton's kernels, under its interpreter: tests/ops/test_fused_scans.py


def loop_reference(x, dt, A, B, C, D=None, z=None, dt_bias=None, dt_softplus=False, S0=None):
    """Mamba-2 recurrence one step at a time in float64; returns y (b, L, h, p) and the final state."""
    x, dt, A, B, C = (t.to(F64) for t in (x, dt, A, B, C))
    b, L, h, p = x.shape
    g, n = B.shape[2:]
    if dt_bias is not None:
        dt = dt + dt_bias.to(F64)
    if dt_softplus:
        dt = F.softplus(dt)
    Bh, Ch = B.repeat_interleave(h // g, dim=2), C.repeat_interleave(h // g, dim=2)  # (b, L, h, n)
    S = torch.zeros(b, h, p, n, dtype=F64) if S0 is None else S0.to(F64)
    ys = []
    for t in range(L):
        decay = torch.exp(dt[:, t] * A)[:, :, None, None]  # (b, h, 1, 1)
        S = decay * S + (dt[:, t, :, None] * x[:, t])[..., None] * Bh[:, t, :, None, :]
        ys.append((S * Ch[:, t, :, None, :]).sum(-1))
    y = torch.stack(ys, dim=1)
    if D is not None:
        y = y + x * (D.to(F64) if D.dim() == 2 else D.to(F64)[:, None])
    if z is not None:
        y = y * F.silu(z.to(F64))
    return y, S


def make_inputs(b=2, L=13, h=4, p=3, g=2, n=5, dtype=torch.float32, seed=0, D_per_channel=False):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(b, L, h, p, generator=gen, dtype=dtype)
    dt = torch.rand(b, L, h, generator=gen, dtype=dtype) * 0.6
    A = -torch.rand(h, generator=gen, dtype=dtype) * 2 - 0.1
    B = torch.randn(b, L, g, n, generator=gen, dtype=dtype)
    C = torch.randn(b, L, g, n, generator=gen, dtype=dtype)
    extras = {
        "D": torch.randn((h, p) if D_per_channel else (h,), generator=gen, dtype=dtype),
        "z": torch.randn(b, L, h, p, generator=gen, dtype=dtype),
        "dt_bias": torch.randn(h, generator=gen, dtype=dtype) * 0.3,
        "S0": torch.randn(b, h, p, n, generator=gen, dtype=dtype),
    }
    return x, dt, A, B, C, extras


@pytest.mark.parametrize("L,chunk", [(1, 4), (7, 4), (16, 4), (16, 16), (33, 8), (20, 64), (9, 1)])
@pytest.mark.parametrize("g", [1, 2, 4])
@pytest.mark.parametrize("D_per_channel", [False, True])
@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_matches_loop_all_options(L, chunk, g, D_per_channel, backend):
    x, dt, A, B, C, ex = make_inputs(L=L, g=g, D_per_channel=D_per_channel)
    y, S = ssd(x, dt, A, B, C, chunk, ex["D"], ex["z"], ex["dt_bias"], True, ex["S0"], True, backend=backend)
    y_ref, S_ref = loop_reference(x, dt, A, B, C, ex["D"], ex["z"], ex["dt_bias"], True, ex["S0"])
    assert y.shape == x.shape and y.dtype == x.dtype and S.shape == (2, 4, 3, 5) and S.dtype == torch.float32
    torch.testing.assert_close(y.double(), y_ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(S.double(), S_ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("use_D", [False, True])
@pytest.mark.parametrize("use_z", [False, True])
@pytest.mark.parametrize("use_bias", [False, True])
@pytest.mark.parametrize("softplus", [False, True])
@pytest.mark.parametrize("use_S0", [False, True])
@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_each_optional_argument_alone(use_D, use_z, use_bias, softplus, use_S0, backend):
    x, dt, A, B, C, ex = make_inputs(L=11)
    D, z = (ex["D"] if use_D else None), (ex["z"] if use_z else None)
    bias, S0 = (ex["dt_bias"] if use_bias else None), (ex["S0"] if use_S0 else None)
    y = ssd(x, dt, A, B, C, 4, D=D, z=z, dt_bias=bias, dt_softplus=softplus, initial_states=S0, backend=backend)
    y_ref, _ = loop_reference(x, dt, A, B, C, D, z, bias, softplus, S0)
    torch.testing.assert_close(y.double(), y_ref, rtol=1e-5, atol=1e-5)


def test_default_chunk_size_gives_the_same_result():
    x, dt, A, B, C, ex = make_inputs(L=150)
    y, S = ssd(x, dt, A, B, C, None, ex["D"], return_final_states=True, backend="torch")
    y_ref, S_ref = loop_reference(x, dt, A, B, C, ex["D"])
    torch.testing.assert_close(y.double(), y_ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(S.double(), S_ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_dt_limit_clamps(backend):
    x, dt, A, B, C, ex = make_inputs(L=9)
    y = ssd(x, dt, A, B, C, 4, dt_limit=(0.1, 0.3), backend=backend)
    y_ref, _ = loop_reference(x, dt.clamp(0.1, 0.3), A, B, C)
    torch.testing.assert_close(y.double(), y_ref, rtol=1e-5, atol=1e-5)
    y = ssd(x, dt, A, B, C, 4, dt_bias=ex["dt_bias"], dt_softplus=True, dt_limit=(0.2, 0.5), backend=backend)
    y_ref, _ = loop_reference(x, F.softplus(dt + ex["dt_bias"]).clamp(0.2, 0.5), A, B, C)
    torch.testing.assert_close(y.double(), y_ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("g", [1, 2])
@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_equals_selective_scan_with_scalar_A_per_head(g, backend):
    """dim = heads*head_dim, A broadcast over head_dim and N, B/C shared per group."""
    x, dt, A, B, C, ex = make_inputs(L=37, g=g, D_per_channel=True)
    b, L, h, p = x.shape
    n = B.shape[-1]
    y, S = ssd(x, dt, A, B, C, 8, ex["D"], ex["z"], ex["dt_bias"], True, ex["S0"], True, backend=backend)
    u = x.reshape(b, L, h * p).transpose(1, 2)  # (b, h*p, L)
    delta = dt.repeat_interleave(p, dim=2).transpose(1, 2)  # (b, h*p, L)
    y2, S2 = selective_scan(u, delta, A.repeat_interleave(p)[:, None].expand(h * p, n), B.permute(0, 2, 3, 1),
                            C.permute(0, 2, 3, 1), ex["D"].reshape(-1), ex["z"].reshape(b, L, h * p).transpose(1, 2),
                            ex["dt_bias"].repeat_interleave(p), True, True,
                            initial_state=ex["S0"].reshape(b, h * p, n), backend="torch")  # fmt: skip
    torch.testing.assert_close(y2, y.reshape(b, L, h * p).transpose(1, 2), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(S2, S.reshape(b, h * p, n), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("g", [1, 4])
@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_token_by_token_step_matches_chunked(g, backend):
    x, dt, A, B, C, ex = make_inputs(L=15, g=g)
    y, S = ssd(x, dt, A, B, C, 4, ex["D"], ex["z"], ex["dt_bias"], True, ex["S0"], True, backend=backend)
    state = ex["S0"].clone()
    ys = [ssd_state_update(state, x[:, t], dt[:, t], A, B[:, t], C[:, t], ex["D"], ex["z"][:, t], ex["dt_bias"], True)
          for t in range(x.shape[1])]  # fmt: skip
    torch.testing.assert_close(torch.stack(ys, 1), y, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(state, S, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_chunk_carry_equals_one_long_scan(backend):
    x, dt, A, B, C, ex = make_inputs(L=140)
    kw = dict(return_final_states=True, backend=backend)
    y, S = ssd(x, dt, A, B, C, 8, **kw)
    y1, S1 = ssd(x[:, :70], dt[:, :70], A, B[:, :70], C[:, :70], 8, **kw)
    y2, S2 = ssd(x[:, 70:], dt[:, 70:], A, B[:, 70:], C[:, 70:], 8, initial_states=S1, **kw)
    torch.testing.assert_close(torch.cat([y1, y2], 1), y, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(S2, S, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("chunk,backend", [(4, "torch"), (7, "torch"), (None, "numba")])
@pytest.mark.parametrize("L", [18, 70])
def test_gradients_match_loop_reference(chunk, backend, L):
    x, dt, A, B, C, ex = make_inputs(L=L, dtype=F64, seed=2, D_per_channel=True)
    leaves = [x, dt, A, B, C, ex["D"], ex["z"], ex["dt_bias"], ex["S0"]]
    for t in leaves:
        t.requires_grad_(True)
    y, S = ssd(x, dt, A, B, C, chunk, ex["D"], ex["z"], ex["dt_bias"], True, ex["S0"], True, backend=backend)
    gen = torch.Generator().manual_seed(5)
    gy, gS = torch.randn(y.shape, generator=gen, dtype=F64), torch.randn(S.shape, generator=gen, dtype=F64)
    grads = torch.autograd.grad((y * gy).sum() + (S * gS).sum(), leaves)
    y_ref, S_ref = loop_reference(x, dt, A, B, C, ex["D"], ex["z"], ex["dt_bias"], True, ex["S0"])
    grads_ref = torch.autograd.grad((y_ref * gy).sum() + (S_ref * gS).sum(), leaves)
    for g, g_ref in zip(grads, grads_ref):
        assert torch.isfinite(g).all()
        torch.testing.assert_close(g, g_ref, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_long_sequence_with_strong_decay_is_finite_and_exact(backend):
    x, dt, A, B, C, _ = make_inputs(b=1, L=2000, h=2, p=2, g=1, n=3, seed=3)
    dt, A = dt * 5, A * 20  # cumulative dt*A about -1e5
    leaves = [t.requires_grad_(True) for t in (x, dt, A)]
    y, S = ssd(x, dt, A, B, C, 256, return_final_states=True, backend=backend)
    y_ref, S_ref = loop_reference(x.detach(), dt.detach(), A.detach(), B, C)
    torch.testing.assert_close(y.detach().double(), y_ref, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(S.detach().double(), S_ref, rtol=1e-4, atol=1e-4)
    grads = torch.autograd.grad(y.sum(), leaves)
    assert all(torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_memory_linear_in_length(backend):
    """L=16k trains; what autograd keeps grows linearly with L."""

    def saved_bytes(L):
        x, dt, A, B, C, _ = make_inputs(b=1, L=L, h=2, p=4, g=1, n=4, seed=4)
        for t in (x, dt, A, B, C):
            t.requires_grad_(True)
        total = 0

        def pack(t):
            nonlocal total
            total += t.numel() * t.element_size()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            y = ssd(x, dt, A, B, C, 64, dt_softplus=True, backend=backend)
        y.sum().backward()
        assert torch.isfinite(x.grad).all()
        return total

    small, large = saved_bytes(4096), saved_bytes(16384)
    assert 3.5 < large / small < 4.5


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_inputs_are_not_modified_and_low_precision(backend):
    x, dt, A, B, C, ex = make_inputs(L=10)
    args = [x, dt, A, B, C]
    copies = [t.clone() for t in args] + [ex["S0"].clone()]
    ssd(*args, 4, dt_softplus=True, initial_states=ex["S0"], return_final_states=True, backend=backend)
    for t, c in zip(args + [ex["S0"]], copies):
        assert torch.equal(t, c)
    y, S = ssd(x.bfloat16(), dt, A, B.bfloat16(), C.bfloat16(), 4, return_final_states=True, backend=backend)
    assert y.dtype == torch.bfloat16 and S.dtype == torch.float32


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_non_contiguous_slices_of_one_projection(backend):
    b, L, h, p, n = 2, 12, 2, 3, 4
    proj = torch.randn(b, L, h * p + 2 * n + h)
    x = proj[..., : h * p].unflatten(-1, (h, p))
    B, C = proj[..., h * p : h * p + n].unsqueeze(2), proj[..., h * p + n : h * p + 2 * n].unsqueeze(2)
    dt = proj[..., -h:].abs()
    A = -torch.rand(h)
    y = ssd(x, dt, A, B, C, 5, backend=backend)
    y_ref, _ = loop_reference(x, dt, A, B, C)
    torch.testing.assert_close(y.double(), y_ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "change,match",
    [
        (dict(dt=torch.zeros(2, 13, 3)), "dt"),
        (dict(A=torch.zeros(4, 1)), "A"),
        (dict(B=torch.zeros(2, 13, 3, 5)), "B"),
        (dict(C=torch.zeros(2, 13, 2, 4)), "C"),
        (dict(D=torch.zeros(3)), "D"),
        (dict(z=torch.zeros(2, 13, 4)), "z"),
        (dict(dt_bias=torch.zeros(2)), "dt_bias"),
        (dict(initial_states=torch.zeros(2, 4, 3)), "initial_states"),
        (dict(chunk_size=0), "chunk_size"),
        (dict(backend="tpu"), "backend"),
    ],
)
def test_bad_input_raises_value_error_naming_it(change, match):
    x, dt, A, B, C, _ = make_inputs(L=13)
    kwargs = dict(x=x, dt=dt, A=A, B=B, C=C, chunk_size=4) | change
    with pytest.raises(ValueError, match=match):
        ssd(**kwargs)


def test_step_bad_shapes():
    state = torch.zeros(2, 4, 3, 5)
    x = torch.zeros(2, 4, 3)
    with pytest.raises(ValueError, match="dt"):
        ssd_state_update(state, x, torch.zeros(2, 4, 3), torch.zeros(4), torch.zeros(2, 1, 5), torch.zeros(2, 1, 5))
    with pytest.raises(ValueError, match="A"):
        ssd_state_update(state, x, torch.zeros(2, 4), torch.zeros(4, 3), torch.zeros(2, 1, 5), torch.zeros(2, 1, 5))


@pytest.mark.skipif(has_ssd_kernel(), reason="mamba_ssm is installed")
def test_cuda_backend_without_kernel_is_a_clear_error():
    x, dt, A, B, C, _ = make_inputs(L=5)
    with pytest.raises(ValueError, match="mamba_ssm"):
        ssd(x, dt, A, B, C, 4, backend="mamba_ssm")


@pytest.mark.gpu
def test_cuda_matches_loop():
    x, dt, A, B, C, ex = make_inputs(L=200, h=4, p=8, g=2, n=16)
    y_ref, S_ref = loop_reference(x, dt, A, B, C, ex["D"], ex["z"], ex["dt_bias"], True, ex["S0"])
    args = [t.cuda() for t in (x, dt, A, B, C)]
    kw = {k: v.cuda() for k, v in ex.items()}
    backends = ["torch"] + (["cuda"] if has_ssd_kernel() else [])
    for backend in backends:
        y, S = ssd(*args, 64, kw["D"], kw["z"], kw["dt_bias"], True, kw["S0"], True, backend=backend)
        assert y.is_cuda
        torch.testing.assert_close(y.double().cpu(), y_ref, rtol=1e-3, atol=1e-3)
        torch.testing.assert_close(S.double().cpu(), S_ref, rtol=1e-3, atol=1e-3)


def test_cuda_backend_hands_every_argument_to_the_mamba_ssm_kernel(monkeypatch):
    """The dispatch glue, checked on the CPU with a stand-in that has ``mamba_chunk_scan_combined``'s signature
    (mamba_ssm.ops.triton.ssd_combined) and computes the loop reference. The kernel itself: the gpu test."""
    module = importlib.import_module("ssmcast.ops.ssd")  # the package attribute is the function

    calls = []

    def mamba_chunk_scan_combined(x, dt, A, B, C, chunk_size, D=None, z=None, dt_bias=None, initial_states=None,
                                  seq_idx=None, cu_seqlens=None, dt_softplus=False, dt_limit=(0.0, float("inf")),
                                  return_final_states=False, return_varlen_states=False):  # fmt: skip
        calls.append(dict(chunk_size=chunk_size, D=D, z=z, dt_bias=dt_bias, initial_states=initial_states,
                          dt_softplus=dt_softplus, dt_limit=dt_limit, return_final_states=return_final_states))
        assert seq_idx is None and cu_seqlens is None and not return_varlen_states
        y, S = loop_reference(x, dt, A, B, C, D, z, dt_bias, dt_softplus, initial_states)
        return (y.to(x.dtype), S.to(x.dtype)) if return_final_states else y.to(x.dtype)

    monkeypatch.setattr(module, "_cuda_chunk_scan", mamba_chunk_scan_combined)
    x, dt, A, B, C, ex = make_inputs(L=10)
    y, S = ssd(x, dt, A, B, C, 4, ex["D"], ex["z"], ex["dt_bias"], True, ex["S0"], True, backend="cuda")
    (call,) = calls
    assert call["chunk_size"] == 4 and call["dt_softplus"] is True and call["return_final_states"] is True
    for name in ("D", "z", "dt_bias"):
        assert call[name] is ex[name], name
    assert call["initial_states"] is ex["S0"]
    y_torch, S_torch = ssd(x, dt, A, B, C, 4, ex["D"], ex["z"], ex["dt_bias"], True, ex["S0"], True, backend="torch")
    torch.testing.assert_close(y, y_torch, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(S, S_torch, rtol=1e-4, atol=1e-5)
    assert torch.is_tensor(ssd(x, dt, A, B, C, 4, backend="cuda"))
    assert calls[-1]["chunk_size"] == 4 and calls[-1]["return_final_states"] is False
    n_calls = len(calls)
    ssd(x, dt, A, B, C, 4)  # "auto" keeps CPU tensors off the mamba_ssm kernel
    assert len(calls) == n_calls
