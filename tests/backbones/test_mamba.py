import math

import pytest
import torch
import torch.nn.functional as F

from ssmcast.backbones.config import parameter_groups
from ssmcast.backbones.mamba import Mamba, MambaConfig


def mamba_reference(layer: Mamba, u: torch.Tensor) -> torch.Tensor:
    """The Mamba block written out token by token from its parameters: loops, no ops, no conv module."""
    Bsz, L, _ = u.shape
    ED, N, K = layer.d_inner, layer.d_state, layer.d_conv
    W_in = layer.in_proj.weight
    conv_w, conv_b = layer.conv1d.weight[:, 0, :], layer.conv1d.bias  # (ED, K), (ED,)
    A = -torch.exp(layer.A_log)  # (ED, N)
    xs, zs = (u @ W_in.T).split(ED, dim=-1)  # (B, L, ED)
    h = torch.zeros(Bsz, ED, N, dtype=u.dtype)
    out = []
    for t in range(L):
        x = conv_b.clone().expand(Bsz, ED)
        for j in range(K):  # tap j sees input t - (K - 1 - j)
            s = t - (K - 1 - j)
            if s >= 0:
                x = x + conv_w[:, j] * xs[:, s]
        x = F.silu(x)  # (B, ED)
        proj = x @ layer.x_proj.weight.T
        dt_low, Bt, Ct = proj[:, : layer.dt_rank], proj[:, layer.dt_rank : layer.dt_rank + N], proj[:, -N:]
        dt = F.softplus(dt_low @ layer.dt_proj.weight.T + layer.dt_proj.bias)  # (B, ED)
        for d in range(ED):
            h[:, d] = torch.exp(dt[:, d, None] * A[d]) * h[:, d] + dt[:, d, None] * Bt * x[:, d, None]
        y = (h * Ct[:, None, :]).sum(-1) + layer.D * x
        y = y * F.silu(zs[:, t])
        out.append(y @ layer.out_proj.weight.T)
    return torch.stack(out, dim=1)


# the scan ops compute in float32 whatever the input dtype; references run in float64
OPS_TOL = {"rtol": 1e-5, "atol": 1e-7}


def unroll(module, x: torch.Tensor) -> torch.Tensor:
    state = module.initial_state(x.shape[0])
    ys = []
    for t in range(x.shape[1]):
        y, state = module.step(x[:, t], state)
        ys.append(y)
    return torch.stack(ys, dim=1)


def tiny_layer(**kwargs) -> Mamba:
    torch.manual_seed(0)
    return Mamba(d_model=8, d_state=4, **kwargs).double()


def test_forward_matches_token_by_token_reference():
    layer = tiny_layer()
    u = torch.randn(2, 9, 8, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(layer(u), mamba_reference(layer, u), **OPS_TOL)


@pytest.mark.parametrize("d_conv", [1, 4])
def test_layer_forward_equals_unrolled_step(d_conv):
    layer = tiny_layer(d_conv=d_conv)
    u = torch.randn(3, 13, 8, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(unroll(layer, u), layer(u), **OPS_TOL)


def test_stack_forward_equals_unrolled_step_float32():
    torch.manual_seed(1)
    stack = MambaConfig(d_model=16, n_layers=3, d_state=8).build().eval()
    u = torch.randn(2, 20, 16)
    with torch.no_grad():
        torch.testing.assert_close(unroll(stack, u), stack(u), rtol=1e-4, atol=1e-5)


def test_step_states_shapes_and_not_modified_in_place():
    layer = tiny_layer()
    conv_state, ssm_state = layer.initial_state(2)
    assert conv_state.shape == (2, 16, 4) and ssm_state.shape == (2, 16, 4)
    state = (torch.randn_like(conv_state), torch.randn_like(ssm_state))
    before = tuple(s.clone() for s in state)
    u_t = torch.randn(2, 8, dtype=torch.float64)
    u_copy = u_t.clone()
    _, new_state = layer.step(u_t, state)
    for old, kept in zip(state, before):
        torch.testing.assert_close(old, kept, rtol=0, atol=0)
    assert not torch.equal(new_state[1], state[1])
    torch.testing.assert_close(u_t, u_copy, rtol=0, atol=0)


def test_causal():
    torch.manual_seed(2)
    stack = MambaConfig(d_model=8, n_layers=2, d_state=4).build().double()
    u = torch.randn(2, 16, 8, dtype=torch.float64)
    v = u.clone()
    v[:, 10:] = torch.randn(2, 6, 8, dtype=torch.float64)
    with torch.no_grad():
        y, w = stack(u), stack(v)
    torch.testing.assert_close(y[:, :10], w[:, :10], rtol=0, atol=1e-12)
    assert (y[:, 10:] - w[:, 10:]).abs().max() > 1e-3


def test_gradients_finite_for_every_parameter():
    torch.manual_seed(3)
    stack = MambaConfig(d_model=8, n_layers=2, d_state=4).build()
    stack(torch.randn(2, 12, 8)).pow(2).mean().backward()
    for name, p in stack.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_init_follows_the_paper():
    torch.manual_seed(4)
    dt_min, dt_max = 1e-3, 1e-1
    layer = Mamba(d_model=32, d_state=16, dt_min=dt_min, dt_max=dt_max)
    assert layer.dt_rank == math.ceil(32 / 16) and layer.d_inner == 64
    A = -torch.exp(layer.A_log)
    torch.testing.assert_close(A, -torch.arange(1, 17, dtype=torch.float32).expand(64, 16))
    torch.testing.assert_close(layer.D.detach(), torch.ones(64))
    dt = F.softplus(layer.dt_proj.bias.detach())
    assert dt.min() >= dt_min * (1 - 1e-5) and dt.max() <= dt_max * (1 + 1e-5)
    assert dt.min() < 3 * dt_min and dt.max() > dt_max / 3  # log-uniform spread, not a constant
    bound = layer.dt_rank**-0.5
    assert layer.dt_proj.weight.abs().max() <= bound
    assert layer.conv1d.weight.shape == (64, 1, 4)


def test_no_weight_decay_on_A_log_and_D():
    layer = Mamba(d_model=8, d_state=4)
    groups = parameter_groups(layer, lr=1e-3, weight_decay=0.1)
    for group in groups:
        ids = {id(p) for p in group["params"]}
        if id(layer.A_log) in ids or id(layer.D) in ids:
            assert group["weight_decay"] == 0.0
    assert sum(len(g["params"]) for g in groups) == len(list(layer.parameters()))


def test_bf16_autocast_on_cpu():
    torch.manual_seed(5)
    stack = MambaConfig(d_model=16, n_layers=2, d_state=8).build()
    u = torch.randn(2, 12, 16)
    with torch.no_grad():
        ref = stack(u)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = stack(u)
            y_step = unroll(stack, u)
    assert torch.isfinite(y).all() and torch.isfinite(y_step).all()
    torch.testing.assert_close(y.float(), ref, rtol=0.1, atol=0.1)
    torch.testing.assert_close(y_step.float(), ref, rtol=0.1, atol=0.1)


def test_config_roundtrip_and_validation():
    cfg = MambaConfig(d_model=8, n_layers=2, d_state=4)
    assert cfg.get_params()["d_state"] == 4
    stack = cfg.set_params(n_layers=3).build()
    assert len(stack.blocks) == 3 and isinstance(stack.blocks[0].mixer, Mamba)
    assert isinstance(stack.norm_f, torch.nn.RMSNorm)
    with pytest.raises(ValueError, match="n_layers"):
        MambaConfig(n_layers=0).build()
    with pytest.raises(ValueError, match="dt_rank"):
        Mamba(d_model=8, dt_rank=0)
    with pytest.raises(ValueError, match="dt_min"):
        Mamba(d_model=8, dt_min=0.2, dt_max=0.1)
    layer = Mamba(d_model=8, d_state=4)
    with pytest.raises(ValueError, match=r"u must have shape \(batch, length, 8\)"):
        layer(torch.randn(2, 5, 7))
    with pytest.raises(ValueError, match=r"u_t must have shape \(batch, 8\)"):
        layer.step(torch.randn(2, 5, 8), layer.initial_state(2))
    with pytest.raises(TypeError, match="torch.Tensor"):
        layer([[0.0] * 8])


@pytest.mark.gpu
def test_cuda_forward_and_step():
    torch.manual_seed(6)
    stack = MambaConfig(d_model=16, n_layers=2, d_state=8).build().cuda()
    u = torch.randn(2, 24, 16, device="cuda")
    with torch.no_grad():
        y = stack(u)
        assert y.device.type == "cuda"
        torch.testing.assert_close(unroll(stack, u), y, rtol=1e-3, atol=1e-3)
        torch.testing.assert_close(y.cpu(), stack.cpu()(u.cpu()), rtol=1e-3, atol=1e-3)
