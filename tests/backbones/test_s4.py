import io

import pytest
import torch

from ssmcast.backbones.blocks import SequenceStack
from ssmcast.backbones.config import parameter_groups
from ssmcast.backbones.s4 import S4, S4Config, S4DConfig
from ssmcast.ops.conv import fft_conv

VARIANTS = [
    ("dplr", "legs", "bilinear"),
    ("diag", "inv", "zoh"),
    ("diag", "lin", "bilinear"),
    ("diag", "legs", "zoh"),
    ("diag", "real", "bilinear"),
]


def unroll(mixer, x):
    """Run the recurrent mode over a (B, L, H) sequence, one step at a time."""
    state = mixer.initial_state(x.shape[0])
    ys = []
    for t in range(x.shape[1]):
        y, state = mixer.step(x[:, t], state)
        ys.append(y)
    return torch.stack(ys, 1)


def make(mode, init, discretization, H=4, N=8, **kwargs):
    return S4(H, d_state=N, mode=mode, init=init, discretization=discretization, **kwargs)


@pytest.mark.parametrize(("mode", "init", "discretization"), VARIANTS)
@pytest.mark.parametrize("channels", [1, 2])
def test_forward_equals_step(mode, init, discretization, channels):
    torch.manual_seed(0)
    layer = make(mode, init, discretization, channels=channels).double().eval()
    x = torch.randn(2, 40, 4, dtype=torch.float64)
    y = layer(x)
    assert y.shape == (2, 40, 4)
    assert torch.allclose(y, unroll(layer, x), atol=1e-10)


def test_dplr_step_reproduces_forward_for_shorter_and_longer_sequences():
    torch.manual_seed(1)
    layer = make("dplr", "legs", "bilinear", l_max=32).double().eval()
    assert int(layer.l_kernel) == 32
    short = torch.randn(1, 20, 4, dtype=torch.float64)
    assert torch.allclose(layer(short), unroll(layer, short), atol=1e-10)
    long = torch.randn(1, 100, 4, dtype=torch.float64)
    y = layer(long)  # doubles C~ from 32 to 128
    assert int(layer.l_kernel) == 128
    assert torch.allclose(y, unroll(layer, long), atol=1e-10)


def test_dplr_c_tilde_setup_keeps_the_system():
    """Before any forward, C is the output matrix; setting up C~ (S4's parametrisation) must not change the map."""
    torch.manual_seed(2)
    layer = make("dplr", "legs", "bilinear").double().eval()
    x = torch.randn(2, 24, 4, dtype=torch.float64)
    before = unroll(layer, x)
    C_before = layer.C.detach().clone()
    y = layer(x)
    assert int(layer.l_kernel) == 24 and not torch.allclose(layer.C, C_before)
    assert torch.allclose(y, before, atol=1e-10)
    assert torch.allclose(unroll(layer, x), before, atol=1e-10)


@pytest.mark.parametrize("config_cls", [S4Config, S4DConfig])
def test_stack_forward_equals_step(config_cls):
    torch.manual_seed(3)
    stack = config_cls(d_model=8, n_layers=2, d_state=8, dropout=0.1).build().double().eval()
    assert isinstance(stack, SequenceStack) and len(stack.blocks) == 2
    x = torch.randn(2, 30, 8, dtype=torch.float64)
    assert torch.allclose(stack(x), unroll(stack, x), atol=1e-9)


def unroll_state(mixer, x):
    """The state after a (B, L, H) sequence, by the recurrent mode one step at a time."""
    state = mixer.initial_state(x.shape[0])
    for t in range(x.shape[1]):
        _, state = mixer.step(x[:, t], state)
    return state


@pytest.mark.parametrize(("mode", "init", "discretization"), VARIANTS)
@pytest.mark.parametrize("channels", [1, 2])
def test_prefill_state_and_last_output_equal_the_step_loop(mode, init, discretization, channels):
    """The state after a history is a linear map of it (one matrix product per channel with the Krylov vectors
    dA^k dB, issue #36); ``last=True`` reads the last output out of that state instead of convolving."""
    torch.manual_seed(4)
    layer = make(mode, init, discretization, channels=channels).double().eval()
    x = torch.randn(3, 57, 4, dtype=torch.float64)
    y, state = layer.prefill(x)
    last, last_state = layer.prefill(x, last=True)
    assert y.shape == (3, 57, 4) and last.shape == (3, 1, 4)
    torch.testing.assert_close(y, unroll(layer, x), rtol=0, atol=1e-10)
    torch.testing.assert_close(state, unroll_state(layer, x), rtol=0, atol=1e-10)
    torch.testing.assert_close(last, y[:, -1:], rtol=0, atol=1e-10)
    torch.testing.assert_close(last_state, state, rtol=0, atol=0)


@pytest.mark.parametrize("config_cls", [S4Config, S4DConfig])
def test_stack_prefill_of_the_last_step_equals_the_full_prefill(config_cls):
    from ssmcast.backbones.blocks import prefill

    torch.manual_seed(5)
    stack = config_cls(d_model=8, n_layers=3, d_state=8).build().eval()
    x = torch.randn(4, 45, 8)
    with torch.no_grad():
        y, states = prefill(stack, x)
        last, last_states = prefill(stack, x, last=True)
    assert last.shape == (4, 1, 8)
    torch.testing.assert_close(last, y[:, -1:], rtol=1e-5, atol=1e-5)
    for a, b in zip(last_states, states, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize(("mode", "init", "discretization"), VARIANTS[:2])
def test_causal(mode, init, discretization):
    torch.manual_seed(4)
    layer = make(mode, init, discretization).double().eval()
    x = torch.randn(2, 32, 4, dtype=torch.float64)
    x2 = x.clone()
    x2[:, 20:] += torch.randn(2, 12, 4, dtype=torch.float64)
    y, y2 = layer(x), layer(x2)
    assert torch.allclose(y[:, :20], y2[:, :20], atol=1e-12)
    assert not torch.allclose(y[:, 20:], y2[:, 20:])


def test_bidirectional_matches_direct_sum_and_has_no_step():
    torch.manual_seed(5)
    layer = make("diag", "inv", "zoh", bidirectional=True).double().eval()
    x = torch.randn(1, 16, 4, dtype=torch.float64)
    u = x.transpose(1, 2)  # (B, H, L)
    K = layer.kernel(16)  # (2, H, L): causal, anti-causal
    pre = fft_conv(u, K[0], layer.D[0])  # (B, H, L)
    for t in range(16):
        for m in range(1, 16 - t):
            pre[..., t] = pre[..., t] + K[1, :, m - 1] * u[..., t + m]
    expected = torch.nn.functional.glu(layer.output_linear(torch.nn.functional.gelu(pre.transpose(1, 2))), dim=-1)
    assert torch.allclose(layer(x), expected, atol=1e-10)
    x2 = x.clone()
    x2[:, -1] += 1.0
    assert not torch.allclose(layer(x2)[:, 0], layer(x)[:, 0])  # non-causal
    with pytest.raises(RuntimeError, match="bidirectional"):
        layer.step(x[:, 0], layer.initial_state(1))
    with pytest.raises(RuntimeError, match="bidirectional"):
        layer.prefill(x)


@pytest.mark.parametrize("mode", ["dplr", "diag"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_gradients_finite_for_every_parameter(mode, bidirectional):
    torch.manual_seed(6)
    layer = S4(4, d_state=8, mode=mode, init="legs", channels=2, bidirectional=bidirectional)
    x = torch.randn(2, 33, 4, requires_grad=True)
    layer(x).square().mean().backward()
    for name, p in layer.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name
    assert torch.isfinite(x.grad).all()


@pytest.mark.parametrize("mode", ["dplr", "diag"])
def test_step_gradients_flow_in_training(mode):
    torch.manual_seed(7)
    layer = S4(4, d_state=8, mode=mode).train()
    y, _ = layer.step(torch.randn(2, 4), layer.initial_state(2))
    y.sum().backward()
    assert layer.log_dt.grad is not None and torch.isfinite(layer.log_dt.grad).all()


@pytest.mark.parametrize("mode", ["dplr", "diag"])
def test_step_cache_follows_parameter_updates(mode):
    torch.manual_seed(8)
    layer = S4(4, d_state=8, mode=mode).double().eval()
    x = torch.randn(1, 12, 4, dtype=torch.float64)
    with torch.no_grad():
        unroll(layer, x)  # fills the step cache
        first = layer._step_cache
        unroll(layer, x)
        assert layer._step_cache is first  # reused while parameters are unchanged
        layer.log_dt.add_(0.3)
        layer.B.mul_(1.5)
        assert torch.allclose(layer(x), unroll(layer, x), atol=1e-10)


def test_gradient_update_then_step_mode_still_matches():
    torch.manual_seed(9)
    layer = S4(4, d_state=8).double()
    x = torch.randn(2, 16, 4, dtype=torch.float64)
    layer.eval()
    with torch.no_grad():
        unroll(layer, x)
    layer.train()
    layer(x).square().mean().backward()
    with torch.no_grad():
        for p in layer.parameters():
            p.sub_(0.1 * p.grad)  # in place, as optimizers do
    layer.eval()
    with torch.no_grad():
        assert torch.allclose(layer(x), unroll(layer, x), atol=1e-10)


@pytest.mark.parametrize("mode", ["dplr", "diag"])
def test_bf16_autocast_cpu(mode):
    torch.manual_seed(10)
    stack = S4Config(d_model=8, n_layers=2, d_state=8, mode=mode, init="legs", dropout=0.0).build().eval()
    x = torch.randn(2, 16, 8)
    reference = stack(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = stack(x)
        y_step = unroll(stack, x)
    assert torch.isfinite(y).all() and torch.isfinite(y_step).all()
    assert (y.float() - reference).abs().max() < 0.1
    assert (y_step.float() - reference).abs().max() < 0.1


def test_parameter_groups_use_ssm_lr_and_no_weight_decay():
    layer = S4(4, d_state=8, ssm_lr=5e-4)
    groups = parameter_groups(layer, lr=1e-2, weight_decay=0.1)
    ssm = {id(p) for p in (layer.log_A_real, layer.A_imag, layer.P, layer.B, layer.log_dt)}
    (ssm_group,) = [g for g in groups if {id(p) for p in g["params"]} & ssm]
    assert {id(p) for p in ssm_group["params"]} == ssm
    assert ssm_group["lr"] == 5e-4 and ssm_group["weight_decay"] == 0.0
    decayed = [g for g in groups if g["weight_decay"] == 0.1]
    assert any(layer.output_linear.weight is p for g in decayed for p in g["params"])
    assert sum(len(g["params"]) for g in groups) == len(list(layer.parameters()))
    diag = S4(4, d_state=8, mode="diag", init="lin", ssm_lr=None)
    groups = parameter_groups(diag, lr=1e-2, weight_decay=0.1)
    (ssm_group,) = [g for g in groups if any(p is diag.log_dt for p in g["params"])]
    assert ssm_group["lr"] == 1e-2 and ssm_group["weight_decay"] == 0.0
    assert not any(p is diag.C for p in ssm_group["params"])


def test_configs_defaults_params_and_build():
    cfg = S4Config()
    assert (cfg.d_model, cfg.n_layers, cfg.d_state, cfg.mode, cfg.init) == (32, 2, 32, "dplr", "legs")
    assert (cfg.discretization, cfg.dropout, cfg.norm, cfg.bidirectional, cfg.ssm_lr) == (
        "bilinear",
        0.1,
        "layer",
        False,
        1e-3,
    )
    d = S4DConfig()
    assert (d.mode, d.init, d.discretization) == ("diag", "inv", "zoh")
    d.set_params(d_model=8, n_layers=3, d_state=4)
    assert d.get_params()["n_layers"] == 3
    stack = d.build()
    layer = stack.blocks[0].mixer
    assert isinstance(layer, S4) and layer.mode == "diag" and layer.init == "inv" and len(stack.blocks) == 3
    with pytest.raises(ValueError, match="invalid parameter"):
        d.set_params(nope=1)


def test_state_dict_round_trip_keeps_c_tilde_length():
    torch.manual_seed(11)
    layer = S4(4, d_state=8).eval()
    x = torch.randn(1, 20, 4)
    y = layer(x)
    buffer = io.BytesIO()
    torch.save(layer.state_dict(), buffer)
    buffer.seek(0)
    fresh = S4(4, d_state=8).eval()
    with torch.no_grad():
        unroll(fresh, x)  # fills the step cache with the fresh parameters
    fresh.load_state_dict(torch.load(buffer, weights_only=True), assign=True)
    assert int(fresh.l_kernel) == 20
    assert torch.allclose(fresh(x), y, atol=1e-6)
    with torch.no_grad():
        assert torch.allclose(unroll(fresh, x), y, atol=1e-4)


def test_inputs_not_modified():
    layer = S4(4, d_state=8).eval()
    x = torch.randn(2, 10, 4)
    copy = x.clone()
    layer(x)
    layer.step(x[:, 0], layer.initial_state(2))
    assert torch.equal(x, copy)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"d_state": 7}, "d_state must be an even"),
        ({"mode": "dense"}, "unknown mode 'dense'"),
        ({"mode": "dplr", "init": "lin"}, "not available for mode 'dplr'"),
        ({"mode": "dplr", "discretization": "zoh"}, "only discretization='bilinear'"),
        ({"mode": "diag", "discretization": "euler"}, "unknown discretization 'euler'"),
        ({"dt_min": 0.5, "dt_max": 0.1}, "dt_min <= dt_max"),
        ({"channels": 0}, "channels"),
        ({"dropout": 1.5}, "dropout"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        S4(4, **kwargs)


def test_bad_input_shapes():
    layer = S4(4, d_state=8)
    with pytest.raises(ValueError, match=r"\(batch, length, 4\)"):
        layer(torch.randn(2, 10, 5))
    with pytest.raises(ValueError, match=r"\(batch, 4\)"):
        layer.step(torch.randn(2, 3), layer.initial_state(2))


@pytest.mark.gpu
@pytest.mark.parametrize("mode", ["dplr", "diag"])
def test_cuda_forward_and_step_match_cpu(mode):
    torch.manual_seed(12)
    layer = S4(8, d_state=16, mode=mode, init="legs", l_max=64).eval()
    x = torch.randn(2, 64, 8)
    y_cpu = layer(x)
    gpu = layer.to("cuda")
    y_gpu = gpu(x.cuda())
    assert torch.allclose(y_gpu.cpu(), y_cpu, atol=1e-4)
    with torch.no_grad():
        y_step = unroll(gpu, x.cuda())
    assert torch.allclose(y_step.cpu(), y_cpu, atol=1e-3)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        assert torch.isfinite(gpu(x.cuda())).all()
