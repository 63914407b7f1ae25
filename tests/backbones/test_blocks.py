import pytest
import torch
from torch import nn

from ssmcast.backbones.blocks import MLP, ResidualBlock, SequenceStack, make_norm
from ssmcast.backbones.config import BackboneConfig, parameter_groups, tag_optim


class EMA(nn.Module):
    """A tiny causal mixer with an obvious recurrence: x_t = a x_{t-1} + (1-a) u_t."""

    def __init__(self, H):
        super().__init__()
        self.logit = nn.Parameter(torch.zeros(H))
        tag_optim(self.logit, lr=1e-3, weight_decay=0.0)

    def forward(self, u):  # (B, L, H)
        a = torch.sigmoid(self.logit)
        state, ys = torch.zeros_like(u[:, 0]), []
        for t in range(u.shape[1]):
            state = a * state + (1 - a) * u[:, t]
            ys.append(state)
        return torch.stack(ys, 1)

    def initial_state(self, batch_size):
        return torch.zeros(batch_size, self.logit.shape[0])

    def step(self, u, state):
        a = torch.sigmoid(self.logit)
        state = a * state + (1 - a) * u
        return state, state


def test_stack_step_matches_forward():
    torch.manual_seed(0)
    H = 6
    stack = SequenceStack([ResidualBlock(EMA(H), H, mlp=MLP(H)) for _ in range(3)], H, norm="rms")
    x = torch.randn(2, 11, H)
    y = stack(x)
    state = stack.initial_state(2)
    steps = []
    for t in range(x.shape[1]):
        y_t, state = stack.step(x[:, t], state)
        steps.append(y_t)
    torch.testing.assert_close(torch.stack(steps, 1), y)
    assert stack.aux_loss() == 0.0


def test_make_norm_rejects_unknown():
    with pytest.raises(ValueError, match="unknown norm 'batch'"):
        make_norm("batch", 4)


def test_parameter_groups_cover_every_parameter_once():
    H = 4
    model = SequenceStack([ResidualBlock(EMA(H), H, mlp=MLP(H))], H)
    groups = parameter_groups(model, lr=1e-2, weight_decay=0.1)
    seen = [id(p) for g in groups for p in g["params"]]
    assert sorted(seen) == sorted(id(p) for p in model.parameters())
    special = [g for g in groups if g["lr"] == 1e-3]
    assert len(special) == 1 and special[0]["weight_decay"] == 0.0
    decayed = [g for g in groups if g["weight_decay"] == 0.1]
    assert all(p.ndim == 2 for g in decayed for p in g["params"])


def test_backbone_config_params():
    import dataclasses

    @dataclasses.dataclass
    class Toy(BackboneConfig):
        d_model: int = 8
        n_layers: int = 2

    cfg = Toy()
    assert cfg.get_params() == {"d_model": 8, "n_layers": 2}
    assert cfg.set_params(d_model=16).d_model == 16
    with pytest.raises(ValueError, match="invalid parameter 'width'"):
        cfg.set_params(width=3)


def test_prefill_falls_back_to_steps_for_a_mixer_without_it():
    torch.manual_seed(0)
    H = 4
    stack = SequenceStack([ResidualBlock(EMA(H), H, mlp=MLP(H)) for _ in range(2)], H)
    x = torch.randn(2, 9, H)
    y, state = stack.prefill(x)
    torch.testing.assert_close(y, stack(x))
    stepped = stack.initial_state(2)
    for t in range(x.shape[1]):
        _, stepped = stack.step(x[:, t], stepped)
    for a, b in zip(state, stepped, strict=True):
        torch.testing.assert_close(a, b)
