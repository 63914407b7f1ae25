"""ForecastLoss against the obvious formulas on explicitly de-normalised outputs (RevIN)."""

import math

import pytest
import torch
from torch.nn import functional as F

from ssmcast.training.losses import ForecastLoss
from ssmcast.training.module import ForecastModule, ForecastNet, denormalize


def window_batch(B=4, h=5, C=3, P=1, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = torch.randn(B, h, C, P, generator=g)
    y = torch.randn(B, h, C, generator=g) * 3 + 1
    mean = torch.randn(B, 1, C, generator=g)
    std = torch.rand(B, 1, C, generator=g) * 2 + 0.1
    return out, y, (mean, std)


@pytest.mark.parametrize("kind", ["mse", "mae", "huber"])
def test_point_losses_are_taken_on_denormalised_forecasts(kind):
    out, y, (mean, std) = window_batch()
    reference = {"mse": F.mse_loss, "mae": F.l1_loss, "huber": F.huber_loss}[kind]
    torch.testing.assert_close(ForecastLoss(kind)(out, y, (mean, std)), reference(out[..., 0] * std + mean, y))
    torch.testing.assert_close(ForecastLoss(kind)(out, y), reference(out[..., 0], y))


def test_pinball_loss_on_denormalised_quantiles():
    loss = ForecastLoss("quantile", [0.1, 0.9])
    out, y, (mean, std) = window_batch(P=3)
    expected = 0.0
    for k, q in enumerate(loss.levels):
        err = y - (out[..., k] * std + mean)
        expected = expected + torch.maximum(q * err, (q - 1) * err).mean()
    torch.testing.assert_close(loss(out, y, (mean, std)), expected / 3)


@pytest.mark.parametrize("kind", ["gaussian", "student_t"])
def test_likelihoods_of_the_affinely_mapped_distribution(kind):
    out, y, (mean, std) = window_batch(P=3 if kind == "student_t" else 2, seed=1)
    mu = out[..., 0] * std + mean
    scale = (F.softplus(out[..., 1]) + 1e-4) * std
    if kind == "gaussian":
        dist = torch.distributions.Normal(mu, scale)
    else:
        dist = torch.distributions.StudentT(2 + F.softplus(out[..., 2]), mu, scale)
    torch.testing.assert_close(ForecastLoss(kind)(out, y, (mean, std)), -dist.log_prob(y).mean())
    # the change of variables: NLL in the data's space = NLL in the window's space + mean log std
    y_n = (y - mean) / std
    shifted = ForecastLoss(kind)(out, y_n) + torch.log(std).expand_as(y).mean()
    torch.testing.assert_close(ForecastLoss(kind)(out, y, (mean, std)), shifted, rtol=1e-5, atol=1e-5)
    assert math.isfinite(ForecastLoss(kind)(out, y, (mean, std)).item())


def test_a_flat_context_window_does_not_dominate_the_loss():
    """A window whose context barely moves has a RevIN std of ~sqrt(1e-5): in the window's space its target
    error is ~300x larger, in the data's space it is just its error."""
    torch.manual_seed(0)
    backbone = torch.nn.Identity()
    backbone.initial_state, backbone.step = None, None
    net = ForecastNet(backbone, d_model=4, n_inputs=1, n_targets=1, horizon=3, n_params=1, revin=True)
    module = ForecastModule(net, ForecastLoss("mse"))
    context = torch.randn(2, 6, 1)
    context[1] = 0.5  # flat context
    target = torch.randn(2, 3, 1)
    batch = {"context": context, "target": target}
    loss = module._loss(batch)
    x, stats = net.normalize(context)
    forecast = denormalize(net(x)[..., 0], stats)  # what predict() returns
    torch.testing.assert_close(loss, F.mse_loss(forecast, target))
    assert loss.item() < 100
