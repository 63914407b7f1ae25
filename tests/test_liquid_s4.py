"""Liquid-S4 (ssmcast.backbones.liquid_s4): the PB liquid kernel against explicit loops of the liquid recurrence.

The layer computes, per feature (module docstring, (3)),
``y_k = (Kbar * u)_k + D u_k + sum_{p=2}^{P} K^PB_p u_k u_{k-1} ... u_{k-p+1}``, ``K^PB_p = 2 Re sum_n C_n Bbar_n^p``.
Checked here: that this is the recurrence (4) (an explicit loop), that its terms are exactly the gap-free terms
of the liquid recurrence ``x_k = (Abar + diag(Bbar) u_k) x_{k-1} + Bbar u_k`` (a brute-force expansion over input
subsets), that degree 1 is the S4D layer, and that ``step``/``prefill`` reproduce ``forward``.
"""

from __future__ import annotations

import itertools
import time

import numpy as np
import pandas as pd
import pytest
import torch

import ssmcast
from ssmcast.backbones.liquid_s4 import LiquidS4, LiquidS4Config
from ssmcast.backbones.s4 import S4

VARIANTS = [("legs", "bilinear"), ("inv", "zoh"), ("lin", "bilinear")]


def make(P, init="legs", discretization="bilinear", H=3, N=8, channels=1, dtype=torch.float64, seed=0):
    torch.manual_seed(seed)
    layer = LiquidS4(H, d_state=N, liquid_degree=P, init=init, discretization=discretization, channels=channels)
    with torch.no_grad():  # random B, C and larger steps dt than the init's: the liquid terms are then visible
        layer.B.copy_(torch.randn_like(layer.B))
        layer.C.copy_(torch.randn_like(layer.C))
        layer.log_dt.copy_(torch.empty_like(layer.log_dt).uniform_(0.05, 0.3).log())
    return layer.to(dtype).eval()


def raw(layer):
    """The layer with its output map (GELU, linear, GLU) removed: forward/step return the SSM output
    ``(B, L, channels H)`` / ``(B, channels H)`` itself."""
    layer._output = lambda y: y
    return layer


def discretised(layer):
    """``(Abar, Bbar, C, D)`` from the parameters by the textbook formulas (independent of the layer's code)."""
    dt = torch.exp(layer.log_dt)[:, None]  # (H, 1)
    A = torch.complex(-torch.exp(layer.log_A_real), layer.A_imag)  # (H, N2)
    B = torch.view_as_complex(layer.B)  # (H, N2)
    C = torch.view_as_complex(layer.C)  # (channels, H, N2)
    if layer.discretization == "bilinear":
        Abar, Bbar = (1 + dt * A / 2) / (1 - dt * A / 2), dt * B / (1 - dt * A / 2)
    else:
        Abar, Bbar = torch.exp(dt * A), (torch.exp(dt * A) - 1) / A * B
    return Abar, Bbar, C, layer.D


def pb_loop(layer, u):
    """Recurrence (4) in its state form, one time step at a time: the S4D state ``x`` and the liquid states
    ``z^(1)_k = Bbar u_k``, ``z^(p)_k = diag(Bbar) u_k z^(p-1)_{k-1}``, read out as ``2 Re C (x + sum_{p>=2} z^(p))``.
    ``u (B, L, H)`` -> ``(B, L, channels H)``."""
    Abar, Bbar, C, D = discretised(layer)
    P = layer.liquid_degree
    batch, L, H = u.shape
    x = torch.zeros(batch, H, Abar.shape[-1], dtype=Abar.dtype)
    z = [torch.zeros_like(x) for _ in range(P + 1)]  # z[p], p = 1..P (z[0] unused)
    ys = []
    for k in range(L):
        uk = u[:, k, :, None].to(Abar.dtype)  # (B, H, 1)
        x = Abar * x + Bbar * uk
        new = [None, Bbar * uk] + [Bbar * uk * z[p - 1] for p in range(2, P + 1)]
        z = [z[0]] + new[1:]
        total = x + sum(z[2:], torch.zeros_like(x))
        y = 2 * torch.einsum("bhn,chn->bch", total, C).real + D * u[:, k, None, :]  # (B, channels, H)
        ys.append(y.reshape(batch, -1))
    return torch.stack(ys, 1)


def unroll(layer, u, state=None):
    state = layer.initial_state(u.shape[0]) if state is None else state
    ys = []
    for k in range(u.shape[1]):
        y, state = layer.step(u[:, k], state)
        ys.append(y)
    return torch.stack(ys, 1), state


# ----- 1. forward = the explicit loop; degree 1 = S4D ------------------------------------------------------------


@pytest.mark.parametrize(("init", "discretization"), VARIANTS)
def test_degree_one_is_exactly_the_s4d_layer(init, discretization):
    layer = make(1, init, discretization, channels=2)
    s4d = S4(3, d_state=8, mode="diag", init=init, discretization=discretization, channels=2).double().eval()
    s4d.load_state_dict(layer.state_dict())  # the same parameters, by name
    u = torch.randn(2, 37, 3, dtype=torch.float64)
    torch.testing.assert_close(layer(u), s4d(u), rtol=0, atol=1e-12)
    y_layer, _ = unroll(layer, u)
    y_s4d = torch.stack([s for s in _unroll_s4(s4d, u)], 1)
    torch.testing.assert_close(y_layer, y_s4d, rtol=0, atol=1e-12)


def _unroll_s4(layer, u):
    state = layer.initial_state(u.shape[0])
    for k in range(u.shape[1]):
        y, state = layer.step(u[:, k], state)
        yield y


@pytest.mark.parametrize("P", [1, 2, 3])
@pytest.mark.parametrize(("init", "discretization"), VARIANTS)
@pytest.mark.parametrize("channels", [1, 2])
def test_forward_equals_the_explicit_loop_of_the_liquid_recurrence(P, init, discretization, channels):
    layer = raw(make(P, init, discretization, channels=channels))
    u = torch.randn(2, 33, 3, dtype=torch.float64)
    expected = pb_loop(layer, u)
    torch.testing.assert_close(layer(u), expected, rtol=0, atol=1e-10)
    if P > 1:  # the liquid terms are not negligible here: the test would catch their absence
        assert (expected - pb_loop(raw(make(1, init, discretization, channels=channels)), u)).abs().max() > 1e-2


def _liquid_recurrence(Abar, Bbar, C, D, u):
    """The nonlinear recurrence (1), ``x_k = (Abar + diag(Bbar) u_k) x_{k-1} + Bbar u_k``, for one feature:
    ``Abar, Bbar, C (N2,)`` complex, ``u (L,)``; returns ``y (L,)``."""
    x, ys = torch.zeros_like(Abar), []
    for uk in u:
        x = (Abar + Bbar * uk) * x + Bbar * uk
        ys.append(2 * (C * x).sum().real + D * uk)
    return torch.stack(ys)


def _expansion(Abar, Bbar, C, D, u, keep):
    """(2): ``y_k = D u_k + sum over subsets i_1 < ... < i_p <= k of Kliq^(p)_m u_{i_1} ... u_{i_p}`` with
    ``m = k - i_1 - (p - 1)`` and ``Kliq^(p)_m = 2 Re sum_n C Abar^m Bbar^p``, over the subsets ``keep(p, m)``."""
    ys = []
    for k in range(len(u)):
        y = D * u[k]
        for p in range(1, k + 2):
            for subset in itertools.combinations(range(k + 1), p):
                m = k - subset[0] - (p - 1)
                if keep(p, m):
                    y = y + 2 * (C * Abar**m * Bbar**p).sum().real * torch.prod(u[list(subset)])
        ys.append(y)
    return torch.stack(ys)


@pytest.mark.parametrize("P", [1, 2, 3])
def test_the_pb_terms_are_the_gap_free_terms_of_the_liquid_recurrence(P):
    """Brute force over every subset of inputs (L = 7): the expansion (2) is the liquid recurrence (1) exactly
    (it is multilinear, so the expansion is finite), and the layer keeps exactly its terms with ``m = 0`` (no
    ``Abar`` between the liquid multiplications) of degree ``p <= P``, plus every degree-1 term."""
    layer = raw(make(P, H=1, N=4))
    Abar, Bbar, C, D = (t.detach() for t in discretised(layer))
    Abar, Bbar, C, D = Abar[0], Bbar[0], C[0, 0], D[0, 0]
    u = torch.randn(7, dtype=torch.float64)
    full = _liquid_recurrence(Abar, Bbar, C, D, u)
    torch.testing.assert_close(_expansion(Abar, Bbar, C, D, u, keep=lambda p, m: True), full, rtol=0, atol=1e-10)
    pb = _expansion(Abar, Bbar, C, D, u, keep=lambda p, m: p == 1 or (p <= P and m == 0))
    with torch.no_grad():
        y = layer(u[None, :, None])[0, :, 0]
    torch.testing.assert_close(y, pb, rtol=0, atol=1e-10)


# ----- 2. step (and prefill) = forward ---------------------------------------------------------------------------


@pytest.mark.parametrize("P", [1, 2, 3])
@pytest.mark.parametrize(("dtype", "atol"), [(torch.float64, 1e-10), (torch.float32, 2e-6)])
@pytest.mark.parametrize(("init", "discretization"), VARIANTS)
def test_step_reproduces_forward(P, dtype, atol, init, discretization):
    layer = make(P, init, discretization, channels=2, dtype=dtype)
    u = torch.randn(2, 40, 3, dtype=dtype)
    with torch.no_grad():
        y = layer(u)
        y_steps, state = unroll(layer, u)
    torch.testing.assert_close(y_steps, y, rtol=0, atol=atol)
    x, pi = state
    assert x.shape == (2, 3, 4) and pi.shape == (2, 3, P - 1)  # O(1): independent of the history length
    if P > 1:  # the running products are the products of the latest inputs
        torch.testing.assert_close(pi[..., -1], torch.prod(u[:, -(P - 1):], 1), rtol=1e-6, atol=0)


@pytest.mark.parametrize("P", [1, 2, 3])
@pytest.mark.parametrize("split", [1, 2, 25])
def test_prefill_then_steps_equals_forward_on_the_whole_sequence(P, split):
    """``prefill`` gives ``forward``'s outputs and the state ``step`` reaches; stepping on from it continues
    ``forward`` over the concatenation (short prefixes exercise the zero inputs before the sequence)."""
    layer = make(P, channels=2)
    u = torch.randn(2, 30, 3, dtype=torch.float64)
    with torch.no_grad():
        y_pre, state = layer.prefill(u[:, :split])
        torch.testing.assert_close(y_pre, layer(u[:, :split]), rtol=0, atol=1e-12)
        _, stepped = unroll(layer, u[:, :split])
        for a, b in zip(state, stepped, strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-10)
        y_rest, _ = unroll(layer, u[:, split:], state)
        torch.testing.assert_close(y_rest, layer(u)[:, split:], rtol=0, atol=1e-10)


# ----- 3. gradients, the forecaster ----------------------------------------------------------------------------


def test_gradients_reach_every_parameter_and_the_liquid_terms_have_some():
    torch.manual_seed(0)
    stack = LiquidS4Config(d_model=4, n_layers=2, d_state=8, liquid_degree=3, dropout=0.0).build()
    x = torch.randn(3, 24, 4)
    stack(x).square().mean().backward()
    for name, param in stack.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name
        assert param.grad.abs().sum() > 0, name
    # the liquid terms are differentiable: d y / d B differs from S4D's (liquid_degree=1) with the same parameters
    layer = make(3, dtype=torch.float32)
    plain = make(1, dtype=torch.float32)
    u = torch.randn(2, 20, 3)
    grads = []
    for m in (layer, plain):
        m(u).sum().backward()
        grads.append(m.B.grad.clone())
    assert (grads[0] - grads[1]).abs().max() > 1e-4


def _panel(n_series=2, length=80):
    rng = np.random.default_rng(0)
    frames = []
    for i in range(n_series):
        t = np.arange(length)
        y = 10 * i + np.sin(2 * np.pi * t / 12 + i) + 0.1 * rng.normal(size=length)
        ds = pd.date_range("2021-01-01", periods=length, freq="h")
        frames.append(pd.DataFrame({"unique_id": f"s{i}", "ds": ds, "y": y}))
    return pd.concat(frames, ignore_index=True)


def test_forecaster_fits_a_tiny_model_and_predicts_finite_values():
    panel = _panel()
    est = ssmcast.LiquidS4Forecaster(
        input_size=16, horizon=4, max_epochs=2, batch_size=32, verbose=False, val_size=0, revin=False, seed=0,
        backbone=LiquidS4Config(d_model=8, n_layers=1, d_state=4, liquid_degree=3),
    )
    start = time.perf_counter()
    est.fit(panel.groupby("unique_id").head(70))
    elapsed = time.perf_counter() - start
    pred = est.predict()
    assert pred.shape == (8, 3) and np.isfinite(pred["y_pred"]).all()
    streamed = est.update(panel.groupby("unique_id").nth(list(range(70, 80))))
    pd.testing.assert_frame_equal(streamed, est.predict(df=panel, context="full"), rtol=1e-4, atol=1e-4)
    assert est.backbone_.liquid_degree == 3 and est.get_params()["backbone__liquid_degree"] == 3
    print(f"LiquidS4Forecaster tiny fit: {elapsed:.2f} s")


# ----- 4. configuration errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [0, -1, 2.5, 2.0, True, "2", None])
def test_a_bad_liquid_degree_is_a_value_error_that_names_it(bad):
    with pytest.raises(ValueError, match="liquid_degree"):
        LiquidS4(4, d_state=8, liquid_degree=bad)
    with pytest.raises(ValueError, match="liquid_degree"):
        LiquidS4Config(liquid_degree=bad).build()
    est = ssmcast.LiquidS4Forecaster(input_size=8, horizon=2, max_epochs=1, verbose=False, val_size=0,
                                     backbone=LiquidS4Config(d_model=4, n_layers=1, d_state=4, liquid_degree=bad))
    with pytest.raises(ValueError, match="liquid_degree"):
        est.fit(_panel(length=40))


def test_other_bad_settings_are_refused_by_the_s4_checks():
    with pytest.raises(ValueError, match="d_state"):
        LiquidS4(4, d_state=3)
    with pytest.raises(ValueError, match="init"):
        LiquidS4(4, init="nope")
    with pytest.raises(ValueError, match="discretization"):
        LiquidS4(4, discretization="euler")
