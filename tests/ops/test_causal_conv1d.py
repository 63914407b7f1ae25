"""causal_conv1d (Mamba's short depthwise convolution + SiLU): both backends against a loop over taps."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ssmcast.ops.conv import causal_conv1d

F64 = torch.float64
BACKENDS = ["torch", "numba"]


def loop_reference(x, w, bias=None, activation=None):
    """y[b, c, t] = bias[c] + sum_k w[c, k] x[b, c, t - K + 1 + k], one output at a time."""
    b, C, L = x.shape
    K = w.shape[1]
    y = torch.zeros(b, C, L, dtype=F64)
    for t in range(L):
        acc = torch.zeros(b, C, dtype=F64) if bias is None else bias.to(F64).expand(b, C).clone()
        for k in range(K):
            s = t - K + 1 + k
            if s >= 0:
                acc = acc + w[:, k].to(F64) * x[:, :, s].to(F64)
        y[:, :, t] = acc
    return F.silu(y) if activation == "silu" else y


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("L,K", [(1, 4), (3, 4), (4, 4), (37, 4), (20, 1), (9, 2)])
@pytest.mark.parametrize("use_bias", [True, False])
@pytest.mark.parametrize("activation", [None, "silu"])
def test_forward_and_gradients_match_the_loop(backend, L, K, use_bias, activation):
    g = torch.Generator().manual_seed(L * 10 + K)
    x = torch.randn(2, 5, L, dtype=F64, generator=g, requires_grad=True)
    w = torch.randn(5, K, dtype=F64, generator=g, requires_grad=True)
    bias = torch.randn(5, dtype=F64, generator=g, requires_grad=True) if use_bias else None
    leaves = [x, w] + ([bias] if use_bias else [])
    y = causal_conv1d(x, w, bias, activation, backend=backend)
    y_ref = loop_reference(x, w, bias, activation)
    torch.testing.assert_close(y, y_ref, rtol=1e-12, atol=1e-12)
    gy = torch.randn(y.shape, dtype=F64, generator=g)
    grads = torch.autograd.grad((y * gy).sum(), leaves)
    grads_ref = torch.autograd.grad((y_ref * gy).sum(), leaves)
    for a, b in zip(grads, grads_ref):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-11)


@pytest.mark.parametrize("backend", BACKENDS)
def test_gradcheck_and_float32_and_conv1d_weights(backend):
    x = torch.randn(1, 3, 6, dtype=F64, requires_grad=True)
    w = torch.randn(3, 1, 4, dtype=F64, requires_grad=True)  # nn.Conv1d's layout is accepted
    b = torch.randn(3, dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, w, b: causal_conv1d(x, w, b, "silu", backend=backend), (x, w, b))
    conv = torch.nn.Conv1d(8, 8, 4, groups=8, padding=3)
    x32 = torch.randn(4, 8, 50)
    y = causal_conv1d(x32, conv.weight, conv.bias, "silu", backend=backend)
    assert y.dtype == torch.float32
    torch.testing.assert_close(y, F.silu(conv(x32)[..., :50]), rtol=1e-5, atol=1e-6)
    assert causal_conv1d(x32.bfloat16(), conv.weight, conv.bias, backend=backend).dtype == torch.bfloat16


def test_bad_inputs_name_the_problem():
    x, w = torch.randn(2, 3, 5), torch.randn(3, 4)
    with pytest.raises(ValueError, match="x must be"):
        causal_conv1d(x[0], w)
    with pytest.raises(ValueError, match="weight must be"):
        causal_conv1d(x, torch.randn(4, 4))
    with pytest.raises(ValueError, match="bias must be"):
        causal_conv1d(x, w, torch.randn(2))
    with pytest.raises(ValueError, match="activation"):
        causal_conv1d(x, w, activation="relu")
    with pytest.raises(ValueError, match="backend"):
        causal_conv1d(x, w, backend="tpu")
