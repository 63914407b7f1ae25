import math

import pytest
import torch

from ssmcast.backbones.blocks import MLP
from ssmcast.backbones.jamba import CausalSelfAttention, Jamba, JambaConfig, MixtureOfExperts
from ssmcast.backbones.mamba import Mamba
from ssmcast.backbones.mamba2 import Mamba2

# the scan ops compute in float32 whatever the input dtype; references run in float64
OPS_TOL = {"rtol": 1e-5, "atol": 1e-7}


def unroll(module, x: torch.Tensor) -> torch.Tensor:
    state = module.initial_state(x.shape[0])
    ys = []
    for t in range(x.shape[1]):
        y, state = module.step(x[:, t], state)
        ys.append(y)
    return torch.stack(ys, dim=1)


def tiny_config(**kwargs) -> JambaConfig:
    base = dict(
        d_model=16,
        n_layers=4,
        attn_every=2,
        attn_offset=1,
        n_heads=2,
        moe_every=2,
        moe_offset=0,
        n_experts=4,
        top_k=2,
        d_state=4,
        head_dim=8,
        chunk_size=4,
    )
    return JambaConfig(**{**base, **kwargs})


def test_jamba_layout_is_one_attention_in_eight_and_moe_every_other_layer():
    assert [k.split("+")[0] for k in JambaConfig().layer_kinds()] == ["mamba"] * 2 + ["attention", "mamba"]
    config = JambaConfig(n_layers=8, attn_every=8, attn_offset=4)  # the paper's block
    kinds = config.layer_kinds()
    assert len(kinds) == 8
    assert [k.split("+")[0] for k in kinds] == ["mamba"] * 4 + ["attention"] + ["mamba"] * 3
    assert [k.split("+")[1] for k in kinds] == ["mlp", "moe"] * 4
    stack = config.set_params(d_model=16, n_heads=2, d_state=4).build()
    assert isinstance(stack, Jamba) and stack.layer_kinds == kinds
    assert isinstance(stack.blocks[4].mixer, CausalSelfAttention)
    assert isinstance(stack.blocks[0].mixer, Mamba) and isinstance(stack.blocks[1].mlp, MixtureOfExperts)
    assert type(stack.blocks[0].mlp) is MLP
    v2 = JambaConfig(d_model=16, n_heads=2, d_state=4, head_dim=8, mamba_version=2).build()
    assert isinstance(v2.blocks[0].mixer, Mamba2)
    assert not any(isinstance(m, torch.nn.Embedding) for m in stack.modules())  # no positional encoding


def attention_reference(attn: CausalSelfAttention, x: torch.Tensor) -> torch.Tensor:
    """Dense masked softmax attention, written out."""
    Bsz, L, H = x.shape
    q, k, v = (x @ attn.qkv.weight.T).split(H, dim=-1)
    q, k, v = (t.reshape(Bsz, L, attn.n_heads, attn.head_dim).transpose(1, 2) for t in (q, k, v))
    scores = q @ k.transpose(-1, -2) / math.sqrt(attn.head_dim)  # (B, nh, L, L)
    mask = torch.ones(L, L, dtype=torch.bool).tril()
    weights = scores.masked_fill(~mask, float("-inf")).softmax(-1)
    return (weights @ v).transpose(1, 2).reshape(Bsz, L, H) @ attn.out_proj.weight.T


def test_attention_matches_dense_reference_and_kv_cache_steps():
    torch.manual_seed(0)
    attn = CausalSelfAttention(16, n_heads=4).double()
    x = torch.randn(2, 9, 16, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(attn(x), attention_reference(attn, x))
        torch.testing.assert_close(unroll(attn, x), attn(x))
        state = attn.initial_state(2)
        assert state[0].shape == (2, 4, 0, 4)
        for t in range(3):
            _, state = attn.step(x[:, t], state)
        assert state[0].shape == (2, 4, 3, 4) and state[1].shape == (2, 4, 3, 4)  # the cache grows: O(t)


def moe_reference(moe: MixtureOfExperts, x: torch.Tensor) -> torch.Tensor:
    """Every expert on every token, combined with the top-k softmax weights (zero elsewhere)."""
    logits = moe.router(x)  # (..., E)
    top, idx = logits.topk(moe.top_k, dim=-1)
    gates = torch.zeros_like(logits).scatter(-1, idx, top.softmax(-1))  # (..., E)
    outputs = torch.stack([expert(x) for expert in moe.experts], dim=-2)  # (..., E, H)
    return (gates.unsqueeze(-1) * outputs).sum(-2)


@pytest.mark.parametrize("top_k", [1, 2, 3])
def test_moe_matches_dense_reference_and_aux_loss_formula(top_k):
    torch.manual_seed(1)
    moe = MixtureOfExperts(8, n_experts=4, top_k=top_k, aux_loss_coef=0.5).double()
    x = torch.randn(3, 7, 8, dtype=torch.float64)
    x_copy = x.clone()
    y = moe(x)
    assert y.shape == x.shape
    torch.testing.assert_close(y, moe_reference(moe, x))
    torch.testing.assert_close(x, x_copy, rtol=0, atol=0)
    probs = moe.router(x).softmax(-1).reshape(-1, 4)
    chosen = moe.router(x).topk(top_k, -1).indices.reshape(-1, top_k)
    counts = torch.stack([(chosen == e).sum() for e in range(4)]).double()
    expected = 0.5 * 4 * (counts / counts.sum() * probs.mean(0)).sum()
    torch.testing.assert_close(moe.last_aux_loss, expected)


def test_aux_loss_is_positive_minimal_when_balanced_and_sums_over_layers():
    moe = MixtureOfExperts(4, n_experts=4, top_k=1, aux_loss_coef=1.0)
    with torch.no_grad():
        moe.router.weight.copy_(torch.eye(4))
    moe(torch.eye(4) * 10)  # each token to its own expert with probability ~1: perfect balance
    torch.testing.assert_close(moe.last_aux_loss, torch.tensor(1.0), atol=1e-3, rtol=0)
    with torch.no_grad():
        moe.router.weight.zero_()
        moe.router.weight[0, 0] = 10.0
    moe(torch.ones(6, 4))  # everything to expert 0: the loss grows towards n_experts
    assert moe.last_aux_loss > 3.9

    torch.manual_seed(2)
    stack = tiny_config(n_layers=4).build()
    assert stack.aux_loss() == 0.0  # nothing before the first forward
    stack(torch.randn(2, 10, 16))
    moes = [m for m in stack.modules() if isinstance(m, MixtureOfExperts)]
    assert len(moes) == 2
    expected = moes[0].last_aux_loss + moes[1].last_aux_loss
    total = stack.aux_loss()
    assert total > 0
    torch.testing.assert_close(total, expected)
    assert all(m.last_aux_loss is None for m in moes) and stack.aux_loss() == 0.0  # consumed: no graph kept


@pytest.mark.parametrize("mamba_version", [1, 2])
def test_stack_forward_equals_unrolled_step(mamba_version):
    torch.manual_seed(3)
    stack = tiny_config(mamba_version=mamba_version).build().double()
    x = torch.randn(2, 11, 16, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(unroll(stack, x), stack(x), **OPS_TOL)


@pytest.mark.parametrize("mamba_version", [1, 2])
def test_causal(mamba_version):
    torch.manual_seed(4)
    stack = tiny_config(mamba_version=mamba_version).build().double()
    u = torch.randn(2, 14, 16, dtype=torch.float64)
    v = u.clone()
    v[:, 8:] = torch.randn(2, 6, 16, dtype=torch.float64)
    with torch.no_grad():
        y, w = stack(u), stack(v)
    torch.testing.assert_close(y[:, :8], w[:, :8], rtol=0, atol=1e-12)
    assert (y[:, 8:] - w[:, 8:]).abs().max() > 1e-3


def test_gradients_finite_and_every_expert_and_router_reached():
    torch.manual_seed(5)
    stack = tiny_config(n_experts=4, top_k=2).build()
    out = stack(torch.randn(4, 32, 16))
    (out.pow(2).mean() + stack.aux_loss()).backward()
    for name, p in stack.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name
    routers = [n for n, _ in stack.named_parameters() if "router" in n]
    assert len(routers) == 2


def test_aux_loss_gradient_reaches_the_router():
    torch.manual_seed(6)
    moe = MixtureOfExperts(8, n_experts=4, top_k=2)
    moe(torch.randn(20, 8))
    moe.last_aux_loss.backward()
    assert moe.router.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in moe.experts.parameters())


def test_bf16_autocast_on_cpu():
    torch.manual_seed(7)
    for version in (1, 2):
        stack = tiny_config(mamba_version=version).build()
        x = torch.randn(2, 10, 16)
        with torch.no_grad():
            ref = stack(x)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                y = stack(x)
                y_step = unroll(stack, x)
        assert torch.isfinite(y).all() and torch.isfinite(y_step).all()
        torch.testing.assert_close(y.float(), ref, rtol=0.1, atol=0.15)
        torch.testing.assert_close(y_step.float(), ref, rtol=0.1, atol=0.15)


def test_moe_off_and_attention_off():
    stack = tiny_config(moe_every=0).build()
    assert not any(isinstance(m, MixtureOfExperts) for m in stack.modules())
    stack = tiny_config(attn_every=0).build()
    assert not any(isinstance(m, CausalSelfAttention) for m in stack.modules())
    stack(torch.randn(1, 5, 16))
    assert stack.aux_loss() > 0


def test_validation():
    with pytest.raises(ValueError, match="no attention layer"):
        JambaConfig(n_layers=2).build()  # attn_offset=2 never reached
    with pytest.raises(ValueError, match="mamba_version"):
        tiny_config(mamba_version=3).build()
    with pytest.raises(ValueError, match="attn_offset"):
        tiny_config(attn_every=2, attn_offset=2).build()
    with pytest.raises(ValueError, match="n_heads"):
        tiny_config(n_heads=3).build()
    with pytest.raises(ValueError, match="top_k"):
        tiny_config(n_experts=2, top_k=3).build()
    with pytest.raises(ValueError, match="n_layers"):
        tiny_config(n_layers=0).build()
    attn = CausalSelfAttention(16, n_heads=2)
    with pytest.raises(ValueError, match=r"x must have shape \(batch, length, 16\)"):
        attn(torch.randn(2, 16))
    with pytest.raises(ValueError, match=r"x_t must have shape \(batch, 16\)"):
        attn.step(torch.randn(2, 3, 16), attn.initial_state(2))
    cfg = tiny_config()
    assert cfg.set_params(n_experts=8).build().blocks[0].mlp.n_experts == 8


def test_dropout_only_in_training():
    torch.manual_seed(8)
    stack = tiny_config(dropout=0.5).build().eval()
    x = torch.randn(2, 6, 16)
    with torch.no_grad():
        torch.testing.assert_close(stack(x), stack(x))
        torch.testing.assert_close(unroll(stack, x), stack(x), rtol=1e-4, atol=1e-5)


@pytest.mark.gpu
def test_cuda_forward_and_step():
    torch.manual_seed(9)
    for version in (1, 2):
        stack = tiny_config(mamba_version=version).build().cuda()
        x = torch.randn(2, 12, 16, device="cuda")
        with torch.no_grad():
            y = stack(x)
            assert y.device.type == "cuda"
            torch.testing.assert_close(unroll(stack, x), y, rtol=1e-3, atol=1e-3)
