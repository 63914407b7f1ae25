"""S5 layer and stack: recurrent == parallel, causality, HiPPO-N init against dense matrices, dtypes."""

import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from ssmcast.backbones.blocks import SequenceStack
from ssmcast.backbones.config import parameter_groups
from ssmcast.backbones.s5 import S5, S5Config, hippo_n_block_diag
from ssmcast.ops.hippo import hippo_legs

C128 = torch.complex128


def unroll(mixer, x):
    state = mixer.initial_state(x.shape[0])
    ys = []
    for t in range(x.shape[1]):
        y, state = mixer.step(x[:, t], state)
        ys.append(y)
    return torch.stack(ys, 1), state


def hippo_n_dense(size):
    """Normal part of HiPPO-LegS: S = A + p p^T with p_n = sqrt(n + 1/2)."""
    A, _ = hippo_legs(size)
    p = torch.sqrt(torch.arange(size, dtype=torch.float64) + 0.5)
    return A + p[:, None] * p[None, :]


# ---------------------------------------------------------------- initialisation


@pytest.mark.parametrize("conj_sym", [True, False])
def test_hippo_n_block_diag_reconstructs_dense_matrix(conj_sym):
    d_state, blocks = 24, 3
    Lambda, V = hippo_n_block_diag(d_state, blocks, conj_sym)
    assert Lambda.shape == (d_state // 2 if conj_sym else d_state,)
    assert V.shape == (d_state, Lambda.shape[0])
    if conj_sym:  # the dropped half are the complex conjugates
        Lambda, V = torch.cat([Lambda, Lambda.conj()]), torch.cat([V, V.conj()], 1)
    torch.testing.assert_close(V.conj().T @ V, torch.eye(d_state, dtype=C128), rtol=0, atol=1e-12)
    S = torch.block_diag(*[hippo_n_dense(d_state // blocks)] * blocks).to(C128)
    torch.testing.assert_close(V @ torch.diag(Lambda) @ V.conj().T, S, rtol=0, atol=1e-10)
    torch.testing.assert_close(Lambda.real, torch.full((d_state,), -0.5, dtype=torch.float64))


def test_parameter_shapes_and_initial_values():
    layer = S5(6, d_state=16, blocks=2, dt_min=1e-3, dt_max=1e-1)
    assert layer.n_states == 8
    assert layer.Lambda_re.shape == layer.Lambda_im.shape == layer.log_dt.shape == (8,)
    assert layer.B.shape == (8, 6, 2) and layer.C.shape == (6, 8, 2) and layer.D.shape == (6,)
    assert torch.all(layer.Lambda_re == -0.5)
    assert torch.all(layer.Lambda_im > 0)  # one member of each conjugate pair: Im > 0
    torch.testing.assert_close(layer.Lambda_im[:4], layer.Lambda_im[4:])  # the block repeated
    assert layer.log_dt.min() >= math.log(1e-3) and layer.log_dt.max() <= math.log(1e-1)
    full = S5(6, d_state=16, blocks=2, conj_sym=False, bidirectional=True)
    assert full.n_states == 16 and full.C.shape == (6, 32, 2)


def test_forward_matches_dense_real_hippo_n_ssm():
    """With real B, C and one dt, the conj-symmetric diagonal S5 equals the dense real SSM x' = S x + B u."""
    H, d_state, blocks, dt = 3, 8, 2, 0.07
    g = torch.Generator().manual_seed(0)
    B = torch.randn(d_state, H, generator=g, dtype=torch.float64)
    C = torch.randn(H, d_state, generator=g, dtype=torch.float64)
    S = torch.block_diag(*[hippo_n_dense(d_state // blocks)] * blocks)  # (P, P)
    Ad = torch.linalg.matrix_exp(S * dt)
    Bd = torch.linalg.solve(S, Ad - torch.eye(d_state, dtype=torch.float64)) @ B
    u = torch.randn(2, 40, H, generator=g, dtype=torch.float64)
    for conj_sym in (True, False):
        layer = S5(H, d_state=d_state, blocks=blocks, conj_sym=conj_sym, activation="gelu").double()
        Lambda, V = hippo_n_block_diag(d_state, blocks, conj_sym)
        # the layer was initialised in float32: same eigenvalues, rounded; put back the exact ones
        torch.testing.assert_close(torch.complex(layer.Lambda_re, layer.Lambda_im), Lambda, rtol=1e-7, atol=0)
        with torch.no_grad():
            layer.Lambda_re.copy_(Lambda.real)
            layer.Lambda_im.copy_(Lambda.imag)
            layer.B.copy_(torch.view_as_real(V.conj().T @ B.to(C128)))
            layer.C.copy_(torch.view_as_real(C.to(C128) @ V))
            layer.log_dt.fill_(math.log(dt))
        x = torch.zeros(2, d_state, dtype=torch.float64)
        ys = []
        for k in range(u.shape[1]):
            x = x @ Ad.T + u[:, k] @ Bd.T
            ys.append(x @ C.T + layer.D.detach() * u[:, k])
        ref = F.gelu(torch.stack(ys, 1))
        torch.testing.assert_close(layer(u), ref, rtol=1e-9, atol=1e-10)


# ---------------------------------------------------------------- parallel == recurrent


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"conj_sym": False},
        {"discretization": "bilinear", "activation": "gelu"},
        {"activation": "full_glu", "C_init": "complex_normal"},
        {"activation": "half_glu2", "C_init": "lecun_normal", "blocks": 1},
        {"activation": "glu", "clip_eigs": False, "ssm_lr": None},
    ],
)
def test_forward_equals_step_unrolled_float64(kwargs):
    torch.manual_seed(1)
    layer = S5(5, d_state=8, **{"blocks": 2, **kwargs}).double()
    x = torch.randn(3, 70, 5, dtype=torch.float64)
    y = layer(x)
    y_rec, state = unroll(layer, x)
    assert y.shape == (3, 70, 5)
    torch.testing.assert_close(y_rec, y, rtol=1e-10, atol=1e-12)
    _, last = layer.scan(x)
    torch.testing.assert_close(state, last, rtol=1e-10, atol=1e-12)


def test_stack_forward_equals_step_unrolled_float64():
    torch.manual_seed(2)
    stack = S5Config(d_model=6, n_layers=3, d_state=8, blocks=2).build().double()
    assert isinstance(stack, SequenceStack) and len(stack.blocks) == 3
    x = torch.randn(2, 50, 6, dtype=torch.float64)
    y_rec, _ = unroll(stack, x)
    torch.testing.assert_close(y_rec, stack(x), rtol=1e-10, atol=1e-12)


def test_scan_continues_from_a_state():
    torch.manual_seed(3)
    layer = S5(4, d_state=8, blocks=2).double()
    x = torch.randn(2, 90, 4, dtype=torch.float64)
    y_full, last_full = layer.scan(x)
    y_a, state = layer.scan(x[:, :37])
    y_b, last = layer.scan(x[:, 37:], state)
    torch.testing.assert_close(torch.cat([y_a, y_b], 1), y_full, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(last, last_full, rtol=1e-10, atol=1e-12)
    # then the recurrent mode picks up where the parallel mode stopped
    _, state_c = layer.scan(x[:, :-1])
    torch.testing.assert_close(layer.step(x[:, -1], state_c)[0], y_full[:, -1], rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------- causality and gradients


def test_causal():
    torch.manual_seed(4)
    stack = S5Config(d_model=4, n_layers=2, d_state=8, blocks=2).build().double()
    x = torch.randn(2, 40, 4, dtype=torch.float64)
    x2 = x.clone()
    x2[:, 25:] += torch.randn(2, 15, 4, dtype=torch.float64)
    y, y2 = stack(x), stack(x2)
    torch.testing.assert_close(y[:, :25], y2[:, :25], rtol=0, atol=1e-12)
    assert (y[:, 25:] - y2[:, 25:]).abs().max() > 1e-3


def test_bidirectional_is_non_causal_and_has_no_step():
    torch.manual_seed(5)
    layer = S5(4, d_state=8, blocks=2, bidirectional=True).double()
    x = torch.randn(1, 30, 4, dtype=torch.float64)
    x2 = x.clone()
    x2[:, -1] += 1.0
    assert (layer(x)[:, 0] - layer(x2)[:, 0]).abs().max() > 1e-8
    with pytest.raises(RuntimeError, match="non-causal"):
        layer.initial_state(1)
    with pytest.raises(RuntimeError, match="non-causal"):
        layer.step(x[:, 0], torch.zeros(1, layer.n_states, dtype=C128))
    with pytest.raises(ValueError, match="non-causal"):
        layer.scan(x, torch.zeros(1, layer.n_states, dtype=C128))
    with pytest.raises(RuntimeError, match="non-causal"):
        layer.prefill(x)


def test_gradients_are_finite_and_reach_every_parameter():
    torch.manual_seed(6)
    stack = S5Config(d_model=8, n_layers=2, d_state=16, blocks=2, activation="full_glu").build()
    x = torch.randn(2, 300, 8, requires_grad=True)
    stack(x).square().mean().backward()
    assert torch.isfinite(x.grad).all()
    for name, param in stack.named_parameters():
        assert param.grad is not None, name
        assert torch.isfinite(param.grad).all(), name
        assert param.grad.abs().sum() > 0, name


def test_training_reduces_loss():
    """A few AdamW steps with the S5 parameter groups learn an exponential moving average of the input."""
    torch.manual_seed(7)
    stack = S5Config(d_model=8, n_layers=1, d_state=16, blocks=2).build()
    model = nn.Sequential(nn.Linear(1, 8), stack, nn.Linear(8, 1))
    opt = torch.optim.AdamW(parameter_groups(model, lr=1e-2, weight_decay=0.01))
    u = torch.randn(8, 48, 1)
    target = torch.zeros_like(u)
    for t in range(48):
        target[:, t] = 0.8 * target[:, t - 1] + 0.2 * u[:, t] if t else 0.2 * u[:, 0]
    losses = []
    for _ in range(40):
        loss = F.mse_loss(model(u), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0]


# ---------------------------------------------------------------- dtypes and devices


def test_bf16_autocast_on_cpu():
    torch.manual_seed(8)
    stack = S5Config(d_model=8, n_layers=2, d_state=16, blocks=2).build()
    x = torch.randn(2, 128, 8, requires_grad=True)
    y32 = stack(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = stack(x)
        state = stack.initial_state(2)
        y_t, _ = stack.step(x[:, 0], state)
    assert torch.isfinite(y).all() and torch.isfinite(y_t).all()
    torch.testing.assert_close(y.float(), y32, rtol=0.1, atol=0.1)
    y.float().sum().backward()
    assert torch.isfinite(x.grad).all()
    assert state[0].dtype == torch.complex64  # the recurrent state stays in complex64


def test_bf16_parameters_compute_in_float32():
    torch.manual_seed(9)
    layer = S5(8, d_state=16, blocks=2)
    x = torch.randn(2, 64, 8)
    y32 = layer(x)
    layer_bf16 = layer.to(torch.bfloat16)
    y = layer_bf16(x.to(torch.bfloat16))
    assert y.dtype == torch.bfloat16
    torch.testing.assert_close(y.float(), y32, rtol=0.1, atol=0.1)
    y_t, state = layer_bf16.step(x[:, 0].to(torch.bfloat16), layer_bf16.initial_state(2))
    assert y_t.dtype == torch.bfloat16 and state.dtype == torch.complex64


def test_does_not_modify_input():
    layer = S5(4, d_state=8, blocks=2)
    x = torch.randn(2, 20, 4)
    x_copy = x.clone()
    layer(x)
    state = layer.initial_state(2)
    state_copy = state.clone()
    layer.step(x[:, 0], state)
    assert torch.equal(x, x_copy) and torch.equal(state, state_copy)


@pytest.mark.gpu
def test_cuda_matches_cpu():
    torch.manual_seed(10)
    stack = S5Config(d_model=16, n_layers=2, d_state=32, blocks=4).build().double()
    x = torch.randn(2, 500, 16, dtype=torch.float64)
    y_cpu = stack(x)
    stack_cuda = stack.cuda()
    torch.testing.assert_close(stack_cuda(x.cuda()).cpu(), y_cpu, rtol=1e-9, atol=1e-10)
    y_rec, _ = unroll(stack_cuda, x[:, :50].cuda())
    torch.testing.assert_close(y_rec.cpu(), y_cpu[:, :50], rtol=1e-9, atol=1e-10)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        assert torch.isfinite(stack_cuda.float()(x.float().cuda())).all()


# ---------------------------------------------------------------- optimiser groups, config, validation


def test_parameter_groups_tag_ssm_parameters():
    layer = S5(4, d_state=8, blocks=2, ssm_lr=3e-4)
    groups = parameter_groups(layer, lr=1e-2, weight_decay=0.05)
    names = {id(p): n for n, p in layer.named_parameters()}
    by_name = {names[id(p)]: g for g in groups for p in g["params"]}
    assert sorted(by_name) == sorted(names.values())  # every parameter exactly once
    assert sum(len(g["params"]) for g in groups) == len(names)
    for ssm_name in ("Lambda_re", "Lambda_im", "B", "log_dt"):
        assert by_name[ssm_name]["lr"] == 3e-4 and by_name[ssm_name]["weight_decay"] == 0.0
    assert by_name["C"]["lr"] == 1e-2 and by_name["C"]["weight_decay"] == 0.05
    assert by_name["D"]["weight_decay"] == 0.0 and by_name["out2.weight"]["weight_decay"] == 0.05
    default_lr = parameter_groups(S5(4, d_state=8, blocks=2, ssm_lr=None), lr=1e-2, weight_decay=0.05)
    assert all(g["lr"] == 1e-2 for g in default_lr)


def test_config_params_roundtrip():
    cfg = S5Config()
    assert cfg.get_params()["d_state"] == 32 and cfg.get_params()["blocks"] == 4
    cfg.set_params(d_model=8, d_state=16, n_layers=1)
    stack = cfg.build()
    assert stack.blocks[0].mixer.n_states == 8
    with pytest.raises(ValueError, match="invalid parameter 'P'"):
        cfg.set_params(P=3)
    with pytest.raises(ValueError, match="n_layers"):
        S5Config(n_layers=0).build()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"d_state": 12, "blocks": 4}, "d_state/blocks must be an even"),
        ({"d_state": 10, "blocks": 4}, "d_state/blocks must be an even"),
        ({"d_state": 0}, "d_state must be a positive int"),
        ({"discretization": "euler"}, "discretization"),
        ({"dt_min": 0.2, "dt_max": 0.1}, "dt_min"),
        ({"C_init": "zeros"}, "C_init"),
        ({"activation": "relu"}, "activation"),
        ({"dropout": 1.0}, "dropout"),
    ],
)
def test_invalid_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        S5(4, **kwargs)


def test_invalid_inputs():
    layer = S5(4, d_state=8, blocks=2)
    with pytest.raises(ValueError, match=r"\(batch, length, d_model\) with d_model=4"):
        layer(torch.randn(2, 10, 5))
    with pytest.raises(ValueError, match=r"\(batch, d_model\)"):
        layer.step(torch.randn(2, 1, 4), layer.initial_state(2))
    with pytest.raises(ValueError, match=r"state must have shape \(batch, n_states\) = \(2, 4\)"):
        layer.step(torch.randn(2, 4), layer.initial_state(3))
    with pytest.raises(TypeError, match="complex"):
        layer.step(torch.randn(2, 4), torch.zeros(2, 4))


def test_clip_eigs_and_step_rescale():
    layer = S5(4, d_state=8, blocks=2, clip_eigs=True)
    with torch.no_grad():
        layer.Lambda_re.fill_(0.3)  # an unstable value after training is clipped to a decaying one
    Lambda_bar, _, _ = layer.discrete_params()
    assert Lambda_bar.abs().max() < 1
    fast = S5(4, d_state=8, blocks=2, step_rescale=2.0)
    fast.load_state_dict(layer.state_dict())
    torch.testing.assert_close(fast.discrete_params()[0], layer.discrete_params()[0] ** 2)


def test_inference_cache_of_discrete_params_follows_parameter_updates():
    torch.manual_seed(11)
    layer = S5(4, d_state=8, blocks=2)
    x = torch.randn(2, 4)
    with torch.no_grad():
        first = layer.discrete_params()
        assert layer.discrete_params()[0] is first[0]  # cached while nothing changes
    opt = torch.optim.SGD(layer.parameters(), lr=0.1)
    layer(torch.randn(2, 10, 4)).square().sum().backward()
    opt.step()  # in-place update: the cache must not serve stale values
    with torch.no_grad():
        updated = layer.discrete_params()
        torch.testing.assert_close(updated[0], layer._discrete_params()[0], rtol=0, atol=0)
        assert not torch.equal(updated[0], first[0])
        other = S5(4, d_state=8, blocks=2)
        layer.load_state_dict(other.state_dict())
        torch.testing.assert_close(layer.step(x, layer.initial_state(2))[0],
                                   other.step(x, other.initial_state(2))[0])
    layer_double = layer.double()
    with torch.no_grad():
        assert layer_double.discrete_params()[0].dtype == torch.complex128
