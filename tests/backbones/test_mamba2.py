import pytest
import torch
import torch.nn.functional as F

from ssmcast.backbones.config import parameter_groups
from ssmcast.backbones.mamba2 import GatedRMSNorm, Mamba2, Mamba2Config


def mamba2_reference(layer: Mamba2, u: torch.Tensor) -> torch.Tensor:
    """The Mamba-2 block written out per token, head and group from its parameters (loops, no ops)."""
    Bsz, L, _ = u.shape
    ED, N, G, H, P, K = layer.d_inner, layer.d_state, layer.n_groups, layer.n_heads, layer.head_dim, layer.d_conv
    proj = u @ layer.in_proj.weight.T  # (B, L, d_in_proj)
    z, xBC, dt_raw = proj[..., :ED], proj[..., ED : ED + layer.conv_dim], proj[..., -H:]
    conv_w, conv_b = layer.conv1d.weight[:, 0, :], layer.conv1d.bias
    A = -torch.exp(layer.A_log)  # (H,)
    h = torch.zeros(Bsz, H, P, N, dtype=u.dtype)
    out = []
    for t in range(L):
        c = conv_b.expand(Bsz, -1).clone()
        for j in range(K):
            s = t - (K - 1 - j)
            if s >= 0:
                c = c + conv_w[:, j] * xBC[:, s]
        c = F.silu(c)
        x, Bt, Ct = c[:, :ED], c[:, ED : ED + G * N], c[:, ED + G * N :]
        dt = F.softplus(dt_raw[:, t] + layer.dt_bias)  # (B, H)
        ys = []
        for head in range(H):
            g = head // (H // G)
            Bg, Cg = Bt[:, g * N : (g + 1) * N], Ct[:, g * N : (g + 1) * N]  # (B, N)
            xh = x[:, head * P : (head + 1) * P]  # (B, P)
            decay = torch.exp(dt[:, head] * A[head])[:, None, None]
            h[:, head] = decay * h[:, head] + dt[:, head, None, None] * xh[:, :, None] * Bg[:, None, :]
            ys.append((h[:, head] * Cg[:, None, :]).sum(-1) + layer.D[head] * xh)  # (B, P)
        y = torch.cat(ys, dim=-1) * F.silu(z[:, t])  # (B, ED)
        groups = y.unflatten(-1, (G, ED // G))
        y = (groups / torch.sqrt(groups.pow(2).mean(-1, keepdim=True) + layer.norm.eps)).flatten(-2)
        out.append((y * layer.norm.weight) @ layer.out_proj.weight.T)
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


def tiny_layer(**kwargs) -> Mamba2:
    torch.manual_seed(0)
    kwargs = {"d_state": 4, "head_dim": 4, "chunk_size": 4, **kwargs}
    layer = Mamba2(d_model=8, **kwargs).double()
    with torch.no_grad():  # non-trivial norm weight so the reference checks where it is applied
        layer.norm.weight.uniform_(0.5, 1.5)
    return layer


@pytest.mark.parametrize("n_groups", [1, 2])
def test_forward_matches_per_head_reference(n_groups):
    layer = tiny_layer(n_groups=n_groups)
    assert layer.n_heads == 4
    u = torch.randn(2, 10, 8, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(layer(u), mamba2_reference(layer, u), **OPS_TOL)


@pytest.mark.parametrize(("n_groups", "chunk_size", "L"), [(1, 4, 12), (2, 4, 11), (4, 8, 5), (1, 64, 9)])
def test_layer_forward_equals_unrolled_step(n_groups, chunk_size, L):
    layer = tiny_layer(n_groups=n_groups, chunk_size=chunk_size)
    u = torch.randn(3, L, 8, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(unroll(layer, u), layer(u), **OPS_TOL)


def test_stack_forward_equals_unrolled_step_float32():
    torch.manual_seed(1)
    stack = Mamba2Config(d_model=16, n_layers=3, d_state=8, head_dim=8, chunk_size=8).build().eval()
    u = torch.randn(2, 21, 16)
    with torch.no_grad():
        torch.testing.assert_close(unroll(stack, u), stack(u), rtol=1e-4, atol=1e-5)


def test_step_states_shapes_and_not_modified_in_place():
    layer = tiny_layer(n_groups=2)
    conv_state, ssm_state = layer.initial_state(3)
    assert conv_state.shape == (3, 16 + 2 * 2 * 4, 4)
    assert ssm_state.shape == (3, 4, 4, 4)  # (B, heads, head_dim, N)
    state = (torch.randn_like(conv_state), torch.randn_like(ssm_state))
    before = tuple(s.clone() for s in state)
    _, new_state = layer.step(torch.randn(3, 8, dtype=torch.float64), state)
    for old, kept in zip(state, before):
        torch.testing.assert_close(old, kept, rtol=0, atol=0)
    assert not torch.equal(new_state[1], state[1])


def test_causal():
    torch.manual_seed(2)
    stack = Mamba2Config(d_model=8, n_layers=2, d_state=4, head_dim=4, chunk_size=4).build().double()
    u = torch.randn(2, 16, 8, dtype=torch.float64)
    v = u.clone()
    v[:, 9:] = torch.randn(2, 7, 8, dtype=torch.float64)
    with torch.no_grad():
        y, w = stack(u), stack(v)
    torch.testing.assert_close(y[:, :9], w[:, :9], rtol=0, atol=1e-12)
    assert (y[:, 9:] - w[:, 9:]).abs().max() > 1e-3


def test_gradients_finite_for_every_parameter():
    torch.manual_seed(3)
    stack = Mamba2Config(d_model=8, n_layers=2, d_state=4, head_dim=4, n_groups=2, chunk_size=4).build()
    stack(torch.randn(2, 10, 8)).pow(2).mean().backward()
    for name, p in stack.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_gated_rmsnorm_per_group():
    torch.manual_seed(4)
    norm = GatedRMSNorm(8, n_groups=2).double()
    y, z = torch.randn(3, 8, dtype=torch.float64), torch.randn(3, 8, dtype=torch.float64)
    g = y * z * torch.sigmoid(z)
    expected = torch.cat([part / part.pow(2).mean(-1, keepdim=True).add(1e-5).sqrt() for part in g.split(4, -1)], -1)
    torch.testing.assert_close(norm(y, z), expected)
    with pytest.raises(ValueError, match="n_groups"):
        GatedRMSNorm(8, n_groups=3)


def test_init():
    torch.manual_seed(5)
    layer = Mamba2(d_model=32, d_state=16, head_dim=16, dt_min=1e-3, dt_max=1e-1)
    assert layer.n_heads == 4
    A = -torch.exp(layer.A_log.detach())
    assert A.shape == (4,) and (A <= -1).all() and (A >= -16).all()
    dt = F.softplus(layer.dt_bias.detach())
    assert dt.min() >= 1e-3 * (1 - 1e-5) and dt.max() <= 1e-1 * (1 + 1e-5)
    torch.testing.assert_close(layer.D.detach(), torch.ones(4))
    groups = parameter_groups(layer, lr=1e-3, weight_decay=0.1)
    for group in groups:
        ids = {id(p) for p in group["params"]}
        if ids & {id(layer.A_log), id(layer.D), id(layer.dt_bias)}:
            assert group["weight_decay"] == 0.0


def test_bf16_autocast_on_cpu():
    torch.manual_seed(6)
    stack = Mamba2Config(d_model=16, n_layers=2, d_state=8, head_dim=8, chunk_size=8).build()
    u = torch.randn(2, 12, 16)
    with torch.no_grad():
        ref = stack(u)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = stack(u)
            y_step = unroll(stack, u)
    assert torch.isfinite(y).all() and torch.isfinite(y_step).all()
    torch.testing.assert_close(y.float(), ref, rtol=0.1, atol=0.1)
    torch.testing.assert_close(y_step.float(), ref, rtol=0.1, atol=0.1)


def test_validation():
    with pytest.raises(ValueError, match="head_dim"):
        Mamba2(d_model=8, head_dim=5)
    with pytest.raises(ValueError, match="n_groups"):
        Mamba2(d_model=8, head_dim=4, n_groups=3)
    with pytest.raises(ValueError, match="A_init_range"):
        Mamba2(d_model=8, head_dim=4, A_init_range=(0.0, 1.0))
    with pytest.raises(ValueError, match="n_layers"):
        Mamba2Config(n_layers=0).build()
    layer = tiny_layer()
    with pytest.raises(ValueError, match=r"u must have shape \(batch, length, 8\)"):
        layer(torch.randn(5, 8))
    with pytest.raises(ValueError, match=r"u_t must have shape \(batch, 8\)"):
        layer.step(torch.randn(2, 9), layer.initial_state(2))
    stack = Mamba2Config(d_model=8, n_layers=1, d_state=4, head_dim=4).set_params(n_groups=2).build()
    assert stack.blocks[0].mixer.n_groups == 2
    with pytest.raises(ValueError, match="invalid parameter"):
        Mamba2Config().set_params(heads=3)


@pytest.mark.gpu
def test_cuda_forward_and_step():
    torch.manual_seed(7)
    stack = Mamba2Config(d_model=16, n_layers=2, d_state=8, head_dim=8, chunk_size=8).build().cuda()
    u = torch.randn(2, 24, 16, device="cuda")
    with torch.no_grad():
        y = stack(u)
        assert y.device.type == "cuda"
        torch.testing.assert_close(unroll(stack, u), y, rtol=1e-3, atol=1e-3)
        torch.testing.assert_close(y.cpu(), stack.cpu()(u.cpu()), rtol=1e-3, atol=1e-3)
