"""LSTM and GRU mixers and stacks: parallel == recurrent == prefill, against the cell equations written out."""

import pytest
import torch

from ssmcast.backbones.blocks import SequenceStack
from ssmcast.backbones.config import parameter_groups
from ssmcast.backbones.rnn import GRU, LSTM, GRUConfig, LSTMConfig

F64 = {"rtol": 0, "atol": 1e-10}


def lstm_reference(layer: LSTM, x: torch.Tensor, h=None, c=None):
    """The LSTM cell equations, a loop over time with the layer's weights: ``(y (B, L, H), (h, c))``."""
    W_ih, W_hh = layer.rnn.weight_ih_l0, layer.rnn.weight_hh_l0  # (4H, H), gate order i, f, g, o
    b = layer.rnn.bias_ih_l0 + layer.rnn.bias_hh_l0  # (4H,)
    B, L, H = x.shape
    h = torch.zeros(B, H, dtype=x.dtype) if h is None else h
    c = torch.zeros(B, H, dtype=x.dtype) if c is None else c
    ys = []
    for t in range(L):
        i, f, g, o = (x[:, t] @ W_ih.T + h @ W_hh.T + b).split(H, dim=-1)  # (B, H) each
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        ys.append(h)
    return torch.stack(ys, 1), (h, c)


def gru_reference(layer: GRU, x: torch.Tensor, h=None):
    """The GRU cell equations, a loop over time with the layer's weights: ``(y (B, L, H), h)``."""
    W_ir, W_iz, W_in = layer.rnn.weight_ih_l0.chunk(3)  # (H, H) each, gate order r, z, n
    W_hr, W_hz, W_hn = layer.rnn.weight_hh_l0.chunk(3)
    b_ir, b_iz, b_in = layer.rnn.bias_ih_l0.chunk(3)
    b_hr, b_hz, b_hn = layer.rnn.bias_hh_l0.chunk(3)
    B, L, H = x.shape
    h = torch.zeros(B, H, dtype=x.dtype) if h is None else h
    ys = []
    for t in range(L):
        x_t = x[:, t]
        r = torch.sigmoid(x_t @ W_ir.T + b_ir + h @ W_hr.T + b_hr)
        z = torch.sigmoid(x_t @ W_iz.T + b_iz + h @ W_hz.T + b_hz)
        n = torch.tanh(x_t @ W_in.T + b_in + r * (h @ W_hn.T + b_hn))
        h = (1 - z) * n + z * h
        ys.append(h)
    return torch.stack(ys, 1), h


def reference(layer, x, state=None):
    if isinstance(layer, LSTM):
        return lstm_reference(layer, x, *(state or (None, None)))
    return gru_reference(layer, x, state)


def stack_reference(stack: SequenceStack, x: torch.Tensor):
    """Pre-norm residual blocks around the reference cells, then the final norm."""
    states = []
    for block in stack.blocks:
        y, state = reference(block.mixer, block.norm(x))
        x = x + y
        states.append(state)
    return stack.norm_f(x), states


def unroll(mixer, x, state=None):
    state = mixer.initial_state(x.shape[0]) if state is None else state
    ys = []
    for t in range(x.shape[1]):
        y, state = mixer.step(x[:, t], state)  # (B, H)
        ys.append(y)
    return torch.stack(ys, 1), state


def leaves(state):
    if isinstance(state, torch.Tensor):
        return [state]
    return [t for s in state for t in leaves(s)]


def assert_states_close(a, b, **tol):
    la, lb = leaves(a), leaves(b)
    assert len(la) == len(lb)
    for s, t in zip(la, lb):
        assert s.shape == t.shape and s.dtype == t.dtype
        torch.testing.assert_close(s, t, **tol)


MIXERS = {"lstm": lambda H: LSTM(H), "gru": lambda H: GRU(H)}
CONFIGS = {"lstm": LSTMConfig, "gru": GRUConfig}


@pytest.mark.parametrize("kind", MIXERS)
@pytest.mark.parametrize("length", [1, 23])
def test_mixer_forward_step_and_prefill_follow_the_cell_equations(kind, length):
    torch.manual_seed(0)
    layer = MIXERS[kind](5).double()
    x = torch.randn(3, length + 7, 5, dtype=torch.float64)
    with torch.no_grad():
        want, want_state = reference(layer, x)
        torch.testing.assert_close(layer(x), want, **F64)
        stepped, step_state = unroll(layer, x)
        torch.testing.assert_close(stepped, want, **F64)
        assert_states_close(step_state, want_state, **F64)
        # prefill the first `length` steps, then continue with step from its state
        y, state = layer.prefill(x[:, :length])
        torch.testing.assert_close(y, want[:, :length], **F64)
        assert_states_close(state, reference(layer, x[:, :length])[1], **F64)
        rest, final = unroll(layer, x[:, length:], state)
        torch.testing.assert_close(rest, want[:, length:], **F64)
        assert_states_close(final, want_state, **F64)


@pytest.mark.parametrize("kind", CONFIGS)
def test_stack_forward_step_and_prefill_agree_with_the_reference(kind):
    torch.manual_seed(1)
    net = CONFIGS[kind](d_model=6, n_layers=3).build().double().eval()
    x = torch.randn(2, 19, 6, dtype=torch.float64)
    with torch.no_grad():
        want, want_state = stack_reference(net, x)
        torch.testing.assert_close(net(x), want, **F64)
        stepped, step_state = unroll(net, x)
        torch.testing.assert_close(stepped, want, **F64)
        assert_states_close(step_state, want_state, **F64)
        y, state = net.prefill(x[:, :11])
        torch.testing.assert_close(y, want[:, :11], **F64)
        rest, final = unroll(net, x[:, 11:], state)
        torch.testing.assert_close(rest, want[:, 11:], **F64)
        assert_states_close(final, want_state, **F64)


def test_states_are_batch_first_per_layer_and_step_leaves_its_input_alone():
    lstm, gru = LSTMConfig(d_model=4, n_layers=2).build(), GRUConfig(d_model=4, n_layers=3).build()
    s = lstm.initial_state(5)
    assert isinstance(s, list) and len(s) == 2 and all(isinstance(p, tuple) and len(p) == 2 for p in s)
    assert all(t.shape == (5, 4) and t.dtype == torch.float32 and not t.any() for t in leaves(s))
    g = gru.initial_state(5)
    assert len(g) == 3 and all(t.shape == (5, 4) for t in g)
    x = torch.randn(5, 7, 4)
    with torch.no_grad():
        _, s = lstm.prefill(x)
        _, g = gru.prefill(x)
        assert all(t.shape == (5, 4) for t in leaves(s) + leaves(g))
        before = [t.clone() for t in leaves(s)]
        lstm.step(x[:, 0], s)
        assert all(torch.equal(a, b) for a, b in zip(before, leaves(s)))
        # one series' state (batch row 2) continues as it would in the batch
        y_all, _ = lstm.step(x[:, 0], s)
        y_one, _ = lstm.step(x[2:3, 0], [tuple(t[2:3] for t in p) for p in s])
        torch.testing.assert_close(y_one, y_all[2:3])


def test_forget_bias_and_checks():
    layer = LSTM(3, forget_bias=2.5)
    torch.testing.assert_close((layer.rnn.bias_ih_l0 + layer.rnn.bias_hh_l0)[3:6], torch.full((3,), 2.5))
    with pytest.raises(ValueError, match="d_model"):
        GRU(0)
    with pytest.raises(ValueError, match="n_layers"):
        LSTMConfig(n_layers=0).build()
    with pytest.raises(ValueError, match=r"shape \(batch, 3\)"):
        layer.step(torch.randn(2, 4), layer.initial_state(2))
    with pytest.raises(ValueError, match="h must be"):
        layer.step(torch.randn(2, 3), layer.initial_state(3))
    with pytest.raises(TypeError, match=r"pair \(h, c\)"):
        layer.step(torch.randn(2, 3), torch.zeros(2, 3))


@pytest.mark.parametrize("kind", CONFIGS)
def test_gradients_reach_every_parameter_through_forward_and_step(kind):
    torch.manual_seed(2)
    net = CONFIGS[kind](d_model=4, n_layers=2).build()
    x = torch.randn(2, 9, 4, requires_grad=True)
    net(x)[:, -1].pow(2).sum().backward()
    assert x.grad[:, 0].abs().sum() > 0  # the first step reaches the last output
    for name, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name
    grads = {n: p.grad.clone() for n, p in net.named_parameters()}
    net.zero_grad()
    y, _ = unroll(net, x.detach())
    y[:, -1].pow(2).sum().backward()
    for n, p in net.named_parameters():
        torch.testing.assert_close(p.grad, grads[n], rtol=1e-4, atol=1e-6)
    groups = parameter_groups(net, lr=1e-3, weight_decay=0.1)
    no_decay = {id(p) for g in groups if g["weight_decay"] == 0 for p in g["params"]}
    assert all((id(p) in no_decay) == ("bias" in n or "norm" in n) for n, p in net.named_parameters())


def test_mixed_precision_runs_the_recurrence_in_float32():
    net = LSTMConfig(d_model=4).build()
    x = torch.randn(2, 6, 4)
    with torch.no_grad():
        want = net(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y, state = net.prefill(x)
            y_t, next_state = net.step(x[:, 0], state)
    assert all(t.dtype == torch.float32 for t in leaves(state) + leaves(next_state))
    torch.testing.assert_close(y.float(), want, rtol=0.05, atol=0.05)
    assert torch.isfinite(y_t).all()
