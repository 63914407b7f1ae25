"""``ForecastNet``'s linear skip against an explicit formula."""

import pytest
import torch

from ssmcast.backbones.s4 import S4DConfig
from ssmcast.training.losses import ForecastLoss
from ssmcast.training.module import ForecastNet


@pytest.mark.parametrize("kind", ["mse", "quantile", "gaussian", "student_t"])
def test_linear_skip_shifts_exactly_the_locations(kind):
    torch.manual_seed(0)
    loss = ForecastLoss(kind, [0.1, 0.9] if kind == "quantile" else None)
    L, h, C = 12, 5, 3
    kwargs = dict(d_model=8, n_inputs=C + 1, n_targets=C, horizon=h, n_params=loss.n_params)
    net = ForecastNet(S4DConfig(d_model=8, n_layers=1, d_state=4).build(), skip_window=L,
                      n_location=loss.n_location, **kwargs).eval()
    x = torch.randn(2, L, C + 1)
    out = net(x)
    base = net.decode(net.encode(x), None, None, torch.zeros(2, L, C))  # a zero window shifts by the bias only
    W, b = net.skip.weight, net.skip.bias  # (h, L), (h,)
    shift = torch.einsum("tl,blc->btc", W, x[..., :C])  # (B, h, C)
    k = loss.n_location
    assert k == (3 if kind == "quantile" else 1)
    torch.testing.assert_close(out[..., :k], base[..., :k] + shift.unsqueeze(-1))
    torch.testing.assert_close(out[..., k:], base[..., k:])  # scales and degrees of freedom are not shifted
    no_skip = ForecastNet(net.backbone, **kwargs)
    no_skip.embed, no_skip.head = net.embed, net.head
    torch.testing.assert_close(base[..., :k], no_skip(x)[..., :k] + b.view(1, h, 1, 1))
    with pytest.raises(ValueError, match="linear_skip needs the last 12 target values"):
        net.decode(net.encode(x), None, None, x[:, -6:, :C])


@pytest.mark.parametrize("precision,fused", [("32-true", True), ("bf16-mixed", None)])
def test_adamw_is_fused_in_full_precision_and_steps_like_the_loop(precision, fused):
    """The fused AdamW (one kernel for every tensor) in float32; not under mixed precision, where Lightning's AMP
    plugin refuses gradient clipping with it. Its step equals AdamW's per-tensor loop up to rounding."""
    from types import SimpleNamespace

    from ssmcast.training.module import ForecastModule

    torch.manual_seed(0)
    net = ForecastNet(S4DConfig(d_model=8, n_layers=1, d_state=4).build(), 8, 2, 1, 3, 1)
    module = ForecastModule(net, ForecastLoss("mse"), lr_schedule=None)
    module._trainer = SimpleNamespace(precision=precision)
    optimizer = module.configure_optimizers()
    assert optimizer.defaults["fused"] is fused
    groups = [{**{k: v for k, v in g.items() if k not in ("params", "fused", "foreach")},
               "params": [p.detach().clone().requires_grad_() for p in g["params"]]} for g in optimizer.param_groups]
    loop = torch.optim.AdamW(groups, foreach=False)  # fmt: skip
    assert loop.defaults["fused"] is None and all(g.get("fused") is None for g in loop.param_groups)
    params = [p for g in optimizer.param_groups for p in g["params"]]
    twins = [p for g in loop.param_groups for p in g["params"]]
    for _ in range(3):
        for p, q in zip(params, twins):
            p.grad = torch.randn_like(p)
            q.grad = p.grad.clone()
        optimizer.step()
        loop.step()
    for p, q in zip(params, twins):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)


def test_rng_states_round_trip_through_a_weights_only_checkpoint(tmp_path):
    """What ForecastModule puts in a checkpoint restores torch's, numpy's and Python's generators exactly."""
    import random

    import numpy as np

    from ssmcast.training.module import rng_states, set_rng_states

    torch.manual_seed(3)
    np.random.seed(3)
    random.seed(3)
    torch.save({"ssmcast_rng_states": rng_states()}, tmp_path / "c.ckpt")
    expected = (torch.rand(3), np.random.rand(3), random.random())
    torch.rand(5), np.random.rand(5), random.random()  # move every generator on
    set_rng_states(torch.load(tmp_path / "c.ckpt", weights_only=True)["ssmcast_rng_states"])
    again = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(expected[0], again[0]) and np.array_equal(expected[1], again[1]) and expected[2] == again[2]


def test_halving_schedule_halves_the_rate_each_epoch_and_unknown_ones_are_named():
    """``lr_schedule="halving"``: the long-horizon reference code's "type1" (lr * 0.5**epoch), stepped per epoch."""
    from types import SimpleNamespace

    from ssmcast.training.module import ForecastModule

    net = ForecastNet(S4DConfig(d_model=8, n_layers=1, d_state=4).build(), 8, 2, 1, 3, 1)
    module = ForecastModule(net, ForecastLoss("mse"), learning_rate=4e-3, lr_schedule="halving")
    module._trainer = SimpleNamespace(precision="32-true", estimated_stepping_batches=10)
    config = module.configure_optimizers()
    assert config["lr_scheduler"]["interval"] == "epoch"
    optimizer, scheduler = config["optimizer"], config["lr_scheduler"]["scheduler"]
    seen = []
    for _ in range(4):
        seen.append([g["lr"] for g in optimizer.param_groups])
        optimizer.step()
        scheduler.step()
    base = seen[0]
    assert max(base) == pytest.approx(4e-3)  # the backbone's groups may scale it (S4's SSM parameters)
    for epoch, lrs in enumerate(seen):
        assert lrs == pytest.approx([lr * 0.5**epoch for lr in base])
    module = ForecastModule(net, ForecastLoss("mse"), lr_schedule="steps")
    module._trainer = SimpleNamespace(precision="32-true", estimated_stepping_batches=10)
    with pytest.raises(ValueError, match="unknown lr_schedule 'steps'.*halving"):
        module.configure_optimizers()
