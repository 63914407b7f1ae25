import pytest
import torch

from ssmcast.ops.conv import fft_conv


def direct_conv(u, K, D=None):
    """Causal convolution as a Python loop over output time: y[t] = sum_{s<=t} K[s] u[t-s] + D u[t]."""
    L = u.shape[-1]
    y = torch.zeros(torch.broadcast_shapes(u.shape, K.shape), dtype=torch.float64)
    u, K = u.double(), K.double()
    for t in range(L):
        y[..., t] = (K[..., : t + 1] * u[..., : t + 1].flip(-1)).sum(-1)
    if D is not None:
        y = y + D.double()[..., None] * u
    return y


@pytest.mark.parametrize("L", [1, 2, 7, 64])
@pytest.mark.parametrize("with_D", [False, True])
def test_fft_conv_matches_direct_float64(L, with_D):
    torch.manual_seed(L)
    u = torch.randn(3, 4, L, dtype=torch.float64)
    K = torch.randn(4, L, dtype=torch.float64)
    D = torch.randn(4, dtype=torch.float64) if with_D else None
    y = fft_conv(u, K, D)
    assert y.shape == (3, 4, L) and y.dtype == torch.float64
    assert torch.allclose(y, direct_conv(u, K, D), atol=1e-12)


def test_fft_conv_float32_long_matches_float64_reference():
    torch.manual_seed(0)
    L = 4096
    u = torch.randn(2, 2, L)
    K = torch.randn(2, L) * torch.exp(-torch.arange(L) / 500.0)
    D = torch.randn(2)
    y = fft_conv(u, K, D)
    ref = direct_conv(u, K, D)
    assert y.dtype == torch.float32
    assert (y.double() - ref).abs().max() < 1e-4 * ref.abs().max()


def test_fft_conv_broadcasts_channels():
    torch.manual_seed(1)
    u = torch.randn(2, 1, 3, 16, dtype=torch.float64)
    K = torch.randn(4, 3, 16, dtype=torch.float64)
    D = torch.randn(4, 3, dtype=torch.float64)
    y = fft_conv(u, K, D)
    assert y.shape == (2, 4, 3, 16)
    assert torch.allclose(y, direct_conv(u, K, D), atol=1e-12)


def test_fft_conv_is_causal():
    torch.manual_seed(2)
    u = torch.randn(1, 2, 32, dtype=torch.float64)
    K = torch.randn(2, 32, dtype=torch.float64)
    v = u.clone()
    v[..., 20:] += 1.0
    assert torch.allclose(fft_conv(u, K)[..., :20], fft_conv(v, K)[..., :20], atol=1e-12)
    assert not torch.allclose(fft_conv(u, K)[..., 20:], fft_conv(v, K)[..., 20:])


def test_fft_conv_bf16_upcasts_and_casts_back():
    torch.manual_seed(3)
    u = torch.randn(2, 4, 128)
    K = torch.randn(4, 128) / 16
    y = fft_conv(u.bfloat16(), K.bfloat16())
    assert y.dtype == torch.bfloat16
    ref = direct_conv(u.bfloat16().float(), K.bfloat16().float())
    assert (y.double() - ref).abs().max() < 0.02 * ref.abs().max()


def test_fft_conv_gradients_and_inputs_untouched():
    torch.manual_seed(4)
    u = torch.randn(2, 3, 9, dtype=torch.float64, requires_grad=True)
    K = torch.randn(3, 9, dtype=torch.float64, requires_grad=True)
    D = torch.randn(3, dtype=torch.float64, requires_grad=True)
    copies = [t.detach().clone() for t in (u, K, D)]
    assert torch.autograd.gradcheck(fft_conv, (u, K, D), fast_mode=True)
    for t, c in zip((u, K, D), copies):
        assert torch.equal(t.detach(), c)


@pytest.mark.parametrize(
    ("u", "K", "D", "error", "match"),
    [
        (torch.randn(2, 3, 8), torch.randn(3, 7), None, ValueError, "must end in"),
        (torch.randn(2, 3, 8), torch.randn(4, 8), None, ValueError, "must end in"),
        (torch.randn(2, 3, 8), torch.randn(3, 8), torch.randn(4), ValueError, "D"),
        (torch.randn(8), torch.randn(3, 8), None, ValueError, "shape"),
        (torch.randn(2, 3, 8, dtype=torch.complex64), torch.randn(3, 8), None, TypeError, "real"),
    ],
)
def test_fft_conv_bad_input(u, K, D, error, match):
    with pytest.raises(error, match=match):
        fft_conv(u, K, D)
