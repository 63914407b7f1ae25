"""Every forecaster trained in bf16 mixed precision (on the CPU here, on a GPU by default) and on a CUDA GPU.

On the CPU the bf16-mixed (autocast) path must run without a warning and stay close to the float32 fit. The GPU
test is skipped without CUDA. In float32 the GPU fit follows the CPU fit: the same seed gives the same initial
weights and the same batches (the backbones are built on the CPU, the sampler is seeded, dropout is off), so only
the devices' reduction order differs. The default precision on a GPU is bf16 mixed precision, which must train
to finite forecasts close to the float32 ones. Window forecasts run on the GPU when ``accelerator`` allows one and
CUDA is present (and must match the same weights predicting on the CPU); the fitted net rests on the CPU.
"""

import dataclasses

import numpy as np
import pandas as pd
import pytest
from panels_for_tests import make_panel
from test_every_backbone import CONFIGS, forecaster_for, tiny_config

import ssmcast


def settings(config_cls, **extra):
    config = tiny_config(config_cls)
    if "dropout" in {f.name for f in dataclasses.fields(config)}:
        config.dropout = 0.0  # CPU and CUDA draw dropout masks from different generators
    return dict(input_size=16, horizon=4, max_epochs=2, batch_size=32, verbose=False, backbone=config,
                val_size=4, seed=0, **extra)


@pytest.mark.gpu
@pytest.mark.parametrize("config_cls", CONFIGS, ids=lambda c: c.__name__)
def test_gpu_fit_follows_cpu_fit_in_float32_and_trains_in_bf16(config_cls, tmp_path, monkeypatch):
    import torch

    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)  # cuDNN convolutions default to TF32
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    cls = forecaster_for(config_cls)
    panel = make_panel(length=100)
    train = panel.groupby("unique_id").head(90)
    cpu = cls(**settings(config_cls, accelerator="cpu")).fit(train)
    gpu32 = cls(**settings(config_cls, accelerator="gpu", precision="32-true")).fit(train)
    bf16 = cls(**settings(config_cls, accelerator="gpu")).fit(train)  # precision "auto"
    assert (cpu.device_, cpu.precision_) == ("cpu", "32-true")
    assert gpu32.device_.startswith("cuda") and gpu32.precision_ == "32-true"
    assert bf16.device_.startswith("cuda") and bf16.precision_ == "bf16-mixed"
    assert cpu._inference_device().type == "cpu"
    for est in (gpu32, bf16):
        assert est._inference_device().type == "cuda"
    p_cpu, p_gpu32, p_bf16 = cpu.predict(), gpu32.predict(), bf16.predict()
    for est in (gpu32, bf16):
        assert all(p.device.type == "cpu" for p in est.net_.parameters())  # at rest on the CPU after predicting
    pd.testing.assert_frame_equal(p_gpu32, p_cpu, rtol=1e-3, atol=1e-3)
    assert np.isfinite(p_bf16.y_pred).all()
    # the series swing by +-1 around their levels: bf16 rounding must not move the forecast by a quarter of that
    assert (p_bf16.y_pred - p_gpu32.y_pred).abs().max() < 0.25
    gpu32.save(tmp_path / "m")
    pd.testing.assert_frame_equal(ssmcast.load(tmp_path / "m").predict(), p_gpu32, rtol=1e-5, atol=1e-5)
    on_cpu = ssmcast.load(tmp_path / "m").set_params(accelerator="cpu")  # the same weights, predicting on the CPU
    assert on_cpu._inference_device().type == "cpu"
    pd.testing.assert_frame_equal(on_cpu.predict(), p_gpu32, rtol=1e-4, atol=1e-4)
    windows = np.random.default_rng(0).normal(size=(5, 16, 1))
    np.testing.assert_allclose(gpu32.predict_windows(windows), on_cpu.predict_windows(windows), rtol=1e-4, atol=1e-4)


def test_window_forecasts_run_on_the_cpu_without_cuda_or_when_asked():
    import torch

    est = ssmcast.S4DForecaster(accelerator="cpu")
    assert est._inference_device() == torch.device("cpu")
    if not torch.cuda.is_available():
        assert est.set_params(accelerator="auto")._inference_device() == torch.device("cpu")


@pytest.mark.parametrize("config_cls", CONFIGS, ids=lambda c: c.__name__)
def test_forecaster_trains_in_bf16_mixed_precision_on_the_cpu(config_cls):
    """No warning (the suite turns warnings into errors; an RMSNorm fed bf16 against a float32 weight used to warn
    on every call), finite forecasts close to the float32 fit's."""
    cls = forecaster_for(config_cls)
    panel = make_panel(length=100)
    bf16 = cls(**settings(config_cls, accelerator="cpu", precision="bf16-mixed")).fit(panel)
    fp32 = cls(**settings(config_cls, accelerator="cpu")).fit(panel)
    assert bf16.precision_ == "bf16-mixed" and fp32.precision_ == "32-true"
    p_bf16, p_fp32 = bf16.predict().y_pred, fp32.predict().y_pred
    assert p_bf16.notna().all() and (p_bf16 - p_fp32).abs().max() < 0.25  # the series swing by +-1
