"""The window models (issue #34): DLinear and PatchTST, their modules and their forecasters.

DLinear against the paper's formula in numpy with the module's weights; PatchTST's patching against an explicit
loop, its shapes, channel independence and gradients; the forecasters at their defaults (``update`` from the
last ``input_size`` observations) and the clear error where a recurrent state would be needed.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

import ssmcast
from ssmcast.backbones.dlinear import DLinear, DLinearConfig
from ssmcast.backbones.patchtst import EncoderLayer, PatchTST, PatchTSTConfig, n_patches
from ssmcast.training.module import ForecastNet, WindowForecastNet

TINY_PATCHTST = PatchTSTConfig(d_model=8, n_layers=2, n_heads=2, d_ff=16)
TINY = dict(input_size=16, horizon=4, max_epochs=1, batch_size=64, val_size=0, verbose=False)


def make_panel(n_series: int = 3, length: int = 60, covariates: bool = False) -> pd.DataFrame:
    """Hourly seasonal series at different levels (long format), optionally with a covariate."""
    rng = np.random.default_rng(0)
    t = np.arange(length)
    frames = [pd.DataFrame({"unique_id": f"s{i}", "ds": pd.date_range("2021-01-01", periods=length, freq="h"),
                            "y": 10 * i + np.sin(2 * np.pi * t / 12 + i) + 0.1 * rng.normal(size=length)})
              for i in range(n_series)]
    if covariates:
        frames = [f.assign(temp=rng.normal(size=length)) for f in frames]
    return pd.concat(frames, ignore_index=True)


# ---------------------------------------------------------------------------------------------------- DLinear
def dlinear_numpy(x: np.ndarray, W_s, b_s, W_t, b_t, kernel: int) -> np.ndarray:
    """The paper's DLinear on ``x (B, L, C)``, written out: replicate-padded moving average, then
    ``W_s (x - trend) + b_s + W_t trend + b_t`` per channel -> ``(B, h', C)`` (``h'`` = the maps' rows)."""
    B, L, C = x.shape
    pad = (kernel - 1) // 2
    out = np.zeros((B, W_s.shape[0], C))
    for b in range(B):
        for c in range(C):
            series = x[b, :, c]
            padded = np.concatenate([np.repeat(series[0], pad), series, np.repeat(series[-1], pad)])
            trend = np.array([padded[t : t + kernel].mean() for t in range(L)])
            seasonal = series - trend
            out[b, :, c] = W_s @ seasonal + b_s + W_t @ trend + b_t
    return out


@pytest.mark.parametrize("input_size, kernel", [(40, 25), (10, 25), (33, 5)])
def test_dlinear_is_the_papers_decomposition_and_two_linear_maps(input_size, kernel):
    torch.manual_seed(0)
    model = DLinearConfig(kernel_size=kernel).build(input_size, horizon=7).double()
    x = torch.randn(3, input_size, 2, dtype=torch.float64).cumsum(1)  # trending, so the trend part matters
    with torch.no_grad():
        got = model(x)  # (B, h, C, 1)
    w = {k: v.numpy() for k, v in model.state_dict().items()}
    want = dlinear_numpy(x.numpy(), w["seasonal.weight"], w["seasonal.bias"], w["trend.weight"], w["trend.bias"],
                         kernel)
    assert got.shape == (3, 7, 2, 1)
    np.testing.assert_allclose(got[..., 0].numpy(), want, rtol=1e-10, atol=1e-10)


def test_dlinear_with_several_outputs_lays_them_out_step_major():
    torch.manual_seed(0)
    model = DLinear(24, horizon=5, n_outputs=3).double()
    x = torch.randn(2, 24, 4, dtype=torch.float64)
    with torch.no_grad():
        got = model(x)  # (B, h, C, 3)
    w = {k: v.numpy() for k, v in model.state_dict().items()}
    want = dlinear_numpy(x.numpy(), w["seasonal.weight"], w["seasonal.bias"], w["trend.weight"], w["trend.bias"],
                         25)  # (B, h * 3, C): row i * 3 + k is output k of step i
    np.testing.assert_allclose(got.numpy(), want.reshape(2, 5, 3, 4).transpose(0, 1, 3, 2), rtol=1e-10, atol=1e-10)


def test_dlinear_checks_its_sizes():
    with pytest.raises(ValueError, match="kernel_size must be odd"):
        DLinear(24, 4, kernel_size=4)
    with pytest.raises(ValueError, match="horizon must be a positive int"):
        DLinear(24, 0)
    with pytest.raises(ValueError, match="windows of 24 steps; got 23"):
        DLinear(24, 4)(torch.randn(1, 23, 1))


# ---------------------------------------------------------------------------------------------------- PatchTST
def slow_patches(x: np.ndarray, patch_len: int, stride: int, pad_end: bool) -> np.ndarray:
    """Patches of every channel ``(B * C, n, patch_len)`` by an explicit loop (channel ``c`` of sample ``b`` at
    ``b * C + c``): the series, ``stride`` copies of its last value appended, cut every ``stride`` steps."""
    B, L, C = x.shape
    rows = []
    for b in range(B):
        for c in range(C):
            series = list(x[b, :, c]) + ([x[b, -1, c]] * stride if pad_end else [])
            patches, start = [], 0
            while start + patch_len <= len(series):
                patches.append(series[start : start + patch_len])
                start += stride
            rows.append(patches)
    return np.asarray(rows)


@pytest.mark.parametrize("input_size, patch_len, stride, padding", [
    (96, 16, 8, "end"), (512, 16, 8, "end"), (50, 16, 8, "end"), (12, 16, 8, "end"), (37, 6, 4, None),
])
def test_patchtst_patching_is_the_explicit_loop(input_size, patch_len, stride, padding):
    model = PatchTST(input_size, 4, patch_len=patch_len, stride=stride, padding_patch=padding, d_model=8, n_heads=2,
                     d_ff=8, n_layers=1)
    x = torch.randn(2, input_size, 3)
    got = model.patches(x).numpy()
    want = slow_patches(x.numpy(), patch_len, stride, padding == "end")
    assert got.shape == want.shape == (6, model.n_patches, patch_len)
    np.testing.assert_array_equal(got, want)
    if padding == "end" and input_size >= patch_len:  # the reference's patch_num
        assert model.n_patches == int((input_size - patch_len) / stride + 1) + 1
    assert n_patches(512, 16, 8) == 64  # "64 words": PatchTST/64


@pytest.mark.parametrize("n_outputs", [1, 3])
def test_patchtst_shapes_channel_independence_and_gradients(n_outputs):
    torch.manual_seed(0)
    config = PatchTSTConfig(d_model=8, n_layers=2, n_heads=2, d_ff=16, dropout=0.0)
    model = config.build(input_size=40, horizon=6, n_outputs=n_outputs)
    x = torch.randn(5, 40, 3)
    out = model(x)
    assert out.shape == (5, 6, 3, n_outputs)
    assert model.head.in_features == 8 * model.n_patches and model.pos.shape == (model.n_patches, 8)
    out.square().mean().backward()
    for name, param in model.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name
    model.eval()  # BatchNorm on its running statistics: every channel is forecast on its own
    with torch.no_grad():
        together = model(x)
        for c in range(3):
            torch.testing.assert_close(model(x[..., c : c + 1])[:, :, 0], together[:, :, c])


def test_patchtst_residual_attention_and_the_fused_path_agree_without_a_previous_layer():
    torch.manual_seed(0)
    layer = EncoderLayer(16, 4, 32, dropout=0.0).eval()
    x = torch.randn(3, 7, 16)
    with torch.no_grad():
        explicit, scores = layer(x, None, keep_scores=True)
        fused, none = layer(x, None, keep_scores=False)
        _, added = layer(x, scores, keep_scores=True)
    torch.testing.assert_close(explicit, fused)
    assert none is None and scores.shape == (3, 4, 7, 7)
    torch.testing.assert_close(added, 2 * scores)  # the previous layer's scores are added before the softmax


def test_patchtst_config_defaults_are_the_papers_and_it_checks_its_sizes():
    config = PatchTSTConfig()
    assert (config.n_layers, config.d_model, config.n_heads, config.d_ff, config.dropout, config.head_dropout,
            config.patch_len, config.stride, config.norm) == (3, 128, 16, 256, 0.2, 0.0, 16, 8, "batch")
    with pytest.raises(ValueError, match="holds no patch"):
        PatchTST(4, 4, patch_len=16, stride=8)
    with pytest.raises(ValueError, match="divisible by n_heads"):
        PatchTST(32, 4, d_model=10, n_heads=4)
    with pytest.raises(ValueError, match="norm must be"):
        PatchTST(32, 4, d_model=8, n_heads=2, norm="rms")


# ---------------------------------------------------------------------------------------------------- forecasters
def test_the_forecasters_defaults_follow_the_papers():
    dlinear, patchtst = ssmcast.DLinearForecaster(), ssmcast.PatchTSTForecaster()
    assert (dlinear.revin, dlinear.linear_skip, dlinear.scaler) == (False, False, "standard")
    assert (patchtst.revin, patchtst.linear_skip, patchtst.scaler) == (True, False, "standard")
    assert ssmcast.DLinearForecaster(24, 6).get_params()["horizon"] == 6  # positional arguments still work
    assert ssmcast.S5Forecaster().linear_skip is True  # the others keep theirs
    assert ssmcast.DLinearForecaster().get_params()["backbone__kernel_size"] == 25


@pytest.mark.parametrize("cls, backbone", [(ssmcast.DLinearForecaster, None),
                                           (ssmcast.PatchTSTForecaster, TINY_PATCHTST)])
@pytest.mark.parametrize("revin", [True, False])
def test_update_works_with_and_without_revin_and_full_context_says_why_not(cls, backbone, revin):
    panel = make_panel(n_series=3, length=60)
    est = cls(**TINY, backbone=backbone, revin=revin).fit(panel.groupby("unique_id").head(40))
    assert isinstance(est.net_, WindowForecastNet)
    streamed = est.update(panel.groupby("unique_id").nth(list(range(40, 46))))
    pd.testing.assert_frame_equal(streamed, est.predict(df=panel.groupby("unique_id").head(46)), rtol=1e-5, atol=1e-6)
    assert est.stream_ == {} and [len(u["X"]) for u in est.history_.values()] == [46, 46, 46]
    with pytest.raises(ValueError, match=r"context='full' needs a recurrent backbone; \w+Config is a window model"):
        est.predict(context="full")
    with pytest.raises(ValueError, match="is a window model: .* keeps no recurrent state"):
        est.net_.step(torch.zeros(1, 1), None)


def test_quantiles_mixed_channels_and_the_linear_skip_save_and_load(tmp_path):
    panel = make_panel(n_series=3, length=60)
    est = ssmcast.DLinearForecaster(**TINY, quantiles=[0.1, 0.9], channel_mode="mixed", linear_skip=True)
    est.fit(panel)
    assert est.net_.skip is not None and est.net_.n_params == 3
    pred = est.predict()
    assert pred.shape == (12, 5) and (pred["y_pred_q0.1"] <= pred["y_pred_q0.9"]).all()
    est.save(tmp_path / "m")
    pd.testing.assert_frame_equal(ssmcast.load(tmp_path / "m").predict(), pred)
    windows = np.stack([panel.pivot(index="ds", columns="unique_id", values="y").to_numpy()[-16:]])
    np.testing.assert_allclose(est.predict_windows(windows)[0], pred.pivot(index="ds", columns="unique_id",
                                                                           values="y_pred").to_numpy(), rtol=1e-5)


def test_covariates_are_refused_with_a_clear_error():
    panel = make_panel(n_series=2, length=60, covariates=True)
    est = ssmcast.PatchTSTForecaster(**TINY, backbone=TINY_PATCHTST, past_covariates=["temp"])
    with pytest.raises(ValueError, match="PatchTST maps the window of target values .* takes no covariates"):
        est.fit(panel)


def test_the_recurrent_models_keep_their_network():
    est = ssmcast.S4DForecaster(**TINY, backbone=ssmcast.backbones.S4DConfig(d_model=8, n_layers=1, d_state=4))
    est.fit(make_panel(n_series=2, length=40))
    assert type(est.net_) is ForecastNet


def test_patchtst_trains_on_a_batch_of_one_single_patch_window():
    model = PatchTST(12, 4, d_model=8, n_heads=2, d_ff=8, n_layers=1)  # 12 steps + 8 padded: one patch of 16
    assert model.n_patches == 1
    model(torch.randn(1, 12, 1)).sum().backward()  # BatchNorm has no batch statistics here: the running ones
