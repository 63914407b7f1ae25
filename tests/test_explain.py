"""``ssmcast.explain`` on models whose answer is known: hand-set S4D/S5 layers (kernels in closed form and as the
recurrence's impulse response), Delta recomputed by hand, linear models' attributions, completeness."""

from __future__ import annotations

import copy
import math

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from sklearn.exceptions import NotFittedError

import ssmcast
from ssmcast import explain
from ssmcast.backbones import DLinearConfig, JambaConfig, LiquidS4, LSTMConfig, Mamba2Config, MambaConfig, S4DConfig
from ssmcast.backbones.s4 import S4
from ssmcast.backbones.s5 import S5
from ssmcast.baselines import NaiveForecaster

FAST = dict(max_epochs=1, batch_size=64, verbose=False, accelerator="cpu", trainer_kwargs={"limit_train_batches": 2})


def panel(n_series: int = 2, length: int = 80, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    t = np.arange(length)
    ds = pd.date_range("2021-01-01", periods=length, freq="h")
    return pd.concat([
        pd.DataFrame({"unique_id": f"s{i}", "ds": ds,
                      "y": 5 * i + 3 + np.sin(2 * np.pi * t / 12 + i) + 0.1 * rng.normal(size=length)})
        for i in range(n_series)
    ], ignore_index=True)  # fmt: skip


def identity_output(layer):
    """The layer without its output nonlinearity (S4: GELU + GLU; S5: its activation): the bare SSM ``K * u + D u``."""
    if isinstance(layer, S5):
        layer._activate = lambda y: y
    else:
        layer._output = lambda y: y
    return layer


def kernel_array(frame: pd.DataFrame, layer: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(lags, K (channel, feature, input_feature, lag))`` of one layer from :func:`explain.kernels`' frame (zero
    for the pairs it has no row for: S4's features read only themselves)."""
    rows = frame[frame["layer"] == layer]
    lags = np.sort(rows["lag"].unique())
    H = rows["feature"].nunique()
    K = np.zeros([rows["channel"].nunique(), H, H, len(lags)])
    K[rows["channel"], rows["feature"], rows["input_feature"], np.searchsorted(lags, rows["lag"])] = rows["value"]
    return lags, K


def own(K: np.ndarray) -> np.ndarray:
    """``K[c, h, h, lag]``: each feature's kernel on itself, ``(channel, feature, lag)``."""
    return np.einsum("chhl->chl", K)


# ----------------------------------------------------------------------------------------------- kernels


def hand_set_s4d(a, dt, c, d=0.25, discretization="zoh") -> S4:
    """One complex state per feature with ``A = -a`` (real), ``B = 1``, ``C = c / 2`` (output ``2 Re(C x) = c x``)."""
    layer = S4(len(a), d_state=2, mode="diag", init="real", discretization=discretization)
    with torch.no_grad():
        layer.log_A_real.copy_(torch.log(torch.tensor(a))[:, None])
        layer.A_imag.zero_()
        layer.B.zero_()
        layer.B[..., 0] = 1.0
        layer.C.zero_()
        layer.C[..., 0] = torch.tensor(c)[:, None] / 2
        layer.log_dt.copy_(torch.log(torch.tensor(dt)))
        layer.D.fill_(d)
    return layer


@pytest.mark.parametrize("discretization", ["zoh", "bilinear"])
def test_s4d_kernel_of_a_hand_set_layer_is_the_closed_form_and_the_impulse_response(discretization):
    a, dt, c, L = [0.7, 0.2], [0.3, 1.1], [1.5, -2.0], 16
    layer = hand_set_s4d(a, dt, c, discretization=discretization)
    frame = explain.kernels(layer, length=L)
    assert set(frame["kind"]) == {"S4D"} and (frame["feature"] == frame["input_feature"]).all()
    lags, K = kernel_array(frame)
    assert list(lags) == list(range(L)) and K.shape == (1, 2, 2, L) and (K[0, 0, 1] == 0).all()
    K = own(K)  # (1, 2, L)
    j = np.arange(L)
    for h in range(2):
        z = a[h] * dt[h]
        if discretization == "zoh":  # Abar = exp(-a dt), Bbar = (1 - exp(-a dt)) / a
            expected = c[h] * (1 - math.exp(-z)) / a[h] * math.exp(-z) ** j
        else:  # Abar = (1 - a dt / 2) / (1 + a dt / 2), Bbar = dt / (1 + a dt / 2)
            expected = c[h] * dt[h] / (1 + z / 2) * ((1 - z / 2) / (1 + z / 2)) ** j
        np.testing.assert_allclose(K[0, h], expected, rtol=1e-5, atol=1e-7)
    # the recurrence (step) fed a unit impulse gives the same numbers, plus D at lag 0
    bare = identity_output(copy.deepcopy(layer))
    state, ys = bare.initial_state(1), []
    with torch.no_grad():
        for k in range(L):
            y, state = bare.step(torch.ones(1, 2) if k == 0 else torch.zeros(1, 2), state)
            ys.append(y[0].numpy())
    K_D = own(kernel_array(explain.kernels(layer, length=L, feedthrough=True))[1])
    np.testing.assert_allclose(np.stack(ys, 1), K_D[0], rtol=1e-5, atol=1e-6)
    assert K_D[0, 0, 0] == pytest.approx(K[0, 0, 0] + 0.25)


def test_spectrum_of_a_geometric_kernel_is_its_dtft():
    a, dt, c, L = [0.5], [0.4], [2.0], 20
    frame = explain.spectrum(hand_set_s4d(a, dt, c), length=L, n_fft=64)
    r = math.exp(-a[0] * dt[0])
    gain = c[0] * (1 - r) / a[0]
    w = 2 * np.pi * frame["frequency"].to_numpy()
    expected = gain * np.abs((1 - (r * np.exp(-1j * w)) ** L) / (1 - r * np.exp(-1j * w)))
    np.testing.assert_allclose(frame["magnitude"], expected, rtol=1e-5)
    assert frame["frequency"].iloc[0] == 0 and frame["frequency"].iloc[-1] == 0.5 and len(frame) == 33
    assert np.isinf(frame["period"].iloc[0]) and frame["period"].iloc[-1] == 2.0
    assert "period_time" not in frame  # no data frequency for a bare layer
    with pytest.raises(ValueError, match="n_fft=10 is shorter"):
        explain.spectrum(hand_set_s4d(a, dt, c), length=L, n_fft=10)


def test_s5_kernel_is_the_impulse_response_of_its_step():
    torch.manual_seed(0)
    H, L = 3, 12
    layer = S5(H, d_state=4, blocks=1, activation="gelu", dt_min=0.1, dt_max=0.5)
    frame = explain.kernels(layer, length=L, feedthrough=True)
    assert set(frame["kind"]) == {"S5"} and frame["input_feature"].nunique() == H  # MIMO: every pair
    _, K = kernel_array(frame)  # (1, H_out, H_in, L)
    bare = identity_output(copy.deepcopy(layer))
    state, ys = bare.initial_state(H), []
    with torch.no_grad():
        for k in range(L):  # batch row i: a unit impulse on input feature i
            y, state = bare.step(torch.eye(H) if k == 0 else torch.zeros(H, H), state)
            ys.append(y.numpy())  # (H_in, H_out)
    np.testing.assert_allclose(np.stack(ys, -1).transpose(1, 0, 2), K[0], rtol=1e-4, atol=1e-6)
    assert np.abs(K[0, :, :, 1:]).max() > 1e-3  # a real, decaying response, not zeros


def convolve(lags: np.ndarray, K: np.ndarray, u: np.ndarray) -> np.ndarray:
    """``y[c, h, t] = sum_{i, lag} K[c, h, i, lag] u[i, t - lag]`` (0 outside): ``u (H, T)`` -> ``(channels, H, T)``."""
    T = u.shape[-1]
    y = np.zeros(K.shape[:2] + (T,))
    for n, lag in enumerate(lags):
        shifted = np.zeros_like(u)  # u[:, t - lag]
        if lag >= 0:
            shifted[:, lag:] = u[:, : T - lag]
        else:
            shifted[:, :lag] = u[:, -lag:]
        y += np.einsum("chi,it->cht", K[..., n], shifted)
    return y


@pytest.mark.parametrize("make", [
    lambda: S4(3, d_state=8, mode="dplr"),
    lambda: S4(3, d_state=8, mode="dplr", bidirectional=True),
    lambda: S4(3, d_state=8, mode="diag", init="inv", channels=2),
    lambda: S4(3, d_state=8, mode="diag", bidirectional=True),
    lambda: LiquidS4(3, d_state=8, liquid_degree=1),
    lambda: S5(3, d_state=4, blocks=2),
    lambda: S5(3, d_state=4, blocks=2, bidirectional=True, conj_sym=False, discretization="bilinear"),
], ids=["s4", "s4-bidirectional", "s4d-2-channels", "s4d-bidirectional", "liquid-s4", "s5", "s5-bidirectional"])
def test_forward_is_the_convolution_with_the_kernels(make):
    torch.manual_seed(1)
    layer = make()
    state = copy.deepcopy(layer.state_dict())
    L = 10
    lags, K = kernel_array(explain.kernels(layer, length=L, feedthrough=True))
    for key, value in layer.state_dict().items():  # kernels() reads the layer and never changes it
        assert torch.equal(value, state[key]), key
    u = torch.randn(1, L, 3)
    with torch.no_grad():
        y = identity_output(layer)(u)[0].numpy().T  # (channels H, L)
    expected = convolve(lags, K, u[0].numpy().T)  # (channels, H, L)
    np.testing.assert_allclose(y, expected.reshape(-1, L), rtol=1e-4, atol=1e-5)
    assert lags.min() == (-(L - 1) if layer.bidirectional else 0) and lags.max() == L - 1


def test_kernels_of_a_fitted_forecaster_per_layer_with_the_data_frequency():
    est = ssmcast.S4DForecaster(input_size=16, horizon=4, backbone=S4DConfig(d_model=4, n_layers=2, d_state=4),
                                **FAST).fit(panel())  # fmt: skip
    frame = explain.kernels(est)
    assert sorted(frame["layer"].unique()) == [0, 1] and frame["lag"].max() == 15 and set(frame["kind"]) == {"S4D"}
    by_hand = est.net_.backbone.blocks[1].mixer.kernel(16).detach().numpy()  # (1, H, L)
    np.testing.assert_allclose(own(kernel_array(frame, layer=1)[1]), by_hand, rtol=1e-6)
    spec = explain.spectrum(est)
    assert spec["period_time"].iloc[1] == pd.Timedelta(hours=16)  # hourly data: period 16 steps = 16 hours
    assert len(spec) == 2 * 4 * 9  # layers x features x (16 // 2 + 1) frequencies


# ----------------------------------------------------------------------------------------------- step sizes


def delta_by_hand(mixer, u: torch.Tensor) -> torch.Tensor:
    """Mamba's ``softplus(dt_proj(x_proj(silu(conv(in_proj(u)))))[:dt_rank])`` ``(B, L, ED)``, from its weights."""
    L = u.shape[1]
    x = mixer.in_proj(u)[..., : mixer.d_inner].transpose(1, 2)  # (B, ED, L)
    x = F.conv1d(x, mixer.conv1d.weight, mixer.conv1d.bias, padding=mixer.d_conv - 1, groups=mixer.d_inner)[..., :L]
    x = F.silu(x).transpose(1, 2)  # (B, L, ED)
    dt = x @ mixer.x_proj.weight.T
    return F.softplus(dt[..., : mixer.dt_rank] @ mixer.dt_proj.weight.T + mixer.dt_proj.bias)


def test_step_sizes_of_a_mamba_forecaster_are_softplus_of_dt_proj_by_hand():
    df = panel()
    est = ssmcast.MambaForecaster(input_size=12, horizon=3, backbone=MambaConfig(d_model=4, n_layers=2, d_state=4),
                                  **FAST).fit(df)  # fmt: skip
    frame = explain.step_sizes(est, df, unique_ids=["s1"])
    assert list(frame.columns) == ["unique_id", "layer", "kind", "channel", "ds", "delta"]
    assert set(frame["unique_id"]) == {"s1"} and sorted(frame["layer"].unique()) == [0, 1]
    window = df[df["unique_id"] == "s1"].tail(12)
    assert list(frame.loc[frame["channel"] == 0, "ds"].iloc[:12]) == list(window["ds"])
    i = est.ids_.index("s1")
    x = torch.tensor((window["y"].to_numpy() - est.loc_[i, 0]) / est.scale_[i, 0], dtype=torch.float32)[None, :, None]
    net = est.net_
    with torch.no_grad():
        h = net.embed(net.normalize(x)[0])  # (1, L, d_model)
        for layer, block in enumerate(net.backbone.blocks):
            expected = delta_by_hand(block.mixer, block.norm(h))[0].numpy()  # (L, ED)
            got = frame[frame["layer"] == layer].pivot(index="ds", columns="channel", values="delta").to_numpy()
            np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)
            h = block(h)
    assert explain.step_sizes(est)["unique_id"].unique().tolist() == ["s0", "s1"]  # default: the training data


def test_step_sizes_of_mamba2_heads_and_of_jamba_mamba_layers_only():
    torch.manual_seed(0)
    stack = Mamba2Config(d_model=8, n_layers=1, d_state=4, head_dim=4, chunk_size=8).build().eval()
    u = torch.randn(2, 9, 8)
    frame = explain.step_sizes(stack, x=u)
    mixer = stack.blocks[0].mixer
    with torch.no_grad():
        dt = mixer.in_proj(stack.blocks[0].norm(u))[..., -mixer.n_heads :]
        expected = F.softplus(dt + mixer.dt_bias)  # (B, L, heads)
    assert frame["channel"].nunique() == mixer.n_heads == 4 and set(frame["kind"]) == {"Mamba2"}
    got = frame.sort_values(["unique_id", "ds", "channel"])["delta"].to_numpy().reshape(2, 9, 4)
    np.testing.assert_allclose(got, expected.numpy(), rtol=1e-5)

    config = JambaConfig(d_model=8, n_layers=4, attn_every=4, attn_offset=2, n_heads=2, moe_every=2, n_experts=2,
                         top_k=1, d_state=4)  # fmt: skip
    jamba = config.build().eval()
    frame = explain.step_sizes(jamba, x=u)
    mamba_layers = [i for i, kind in enumerate(config.layer_kinds()) if kind.startswith("mamba")]
    assert sorted(frame["layer"].unique()) == mamba_layers == [0, 1, 3]
    assert all(m.last_aux_loss is None for m in jamba.modules() if hasattr(m, "last_aux_loss"))


# ----------------------------------------------------------------------------------------------- attribution


@pytest.fixture(scope="module")
def s4d_skip():
    """S4D with RevIN and the linear skip, briefly trained: a nonlinear model."""
    est = ssmcast.S4DForecaster(input_size=16, horizon=4, backbone=S4DConfig(d_model=8, n_layers=1, d_state=8),
                                **FAST).fit(panel())  # fmt: skip
    return est


def per_step(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.groupby(["unique_id", "step"]).agg(
        total=("attribution", "sum"), forecast=("forecast", "first"), baseline=("baseline_forecast", "first"))


def test_dlinear_attribution_is_its_weight_times_the_input():
    """DLinear with a moving average of 1 step is ``W_t x + b`` on the scaled window: attribution = weight x input."""
    df = panel()
    est = ssmcast.DLinearForecaster(input_size=12, horizon=3, backbone=DLinearConfig(kernel_size=1), **FAST).fit(df)
    W = est.net_.backbone.trend.weight.detach().double().numpy()  # (h, L)
    for method in explain.METHODS:
        frame = explain.attribution(est, method=method, steps=3)
        assert list(frame.columns) == ["unique_id", "step", "target_ds", "input_id", "ds", "lag", "y", "attribution",
                                       "linear_skip", "network", "forecast", "baseline_forecast"]  # fmt: skip
        for i, uid in enumerate(est.ids_):
            rows = frame[frame["unique_id"] == uid]
            y = df[df["unique_id"] == uid]["y"].to_numpy()[-12:]
            assert np.allclose(rows["y"].to_numpy()[:12], y)
            expected = W * (y - est.loc_[i, 0])  # baseline "location": weight x (input - the series' mean)
            np.testing.assert_allclose(rows["attribution"].to_numpy().reshape(3, 12), expected, rtol=1e-4, atol=1e-6)
        assert (frame["linear_skip"] == 0).all()
        steps = per_step(frame)
        np.testing.assert_allclose(steps["total"], steps["forecast"] - steps["baseline"], atol=1e-4)
    np.testing.assert_allclose(per_step(frame)["forecast"], est.predict()["y_pred"], rtol=1e-6)


def test_linear_skip_alone_is_weight_times_input_and_the_network_gets_nothing():
    df = panel()
    est = ssmcast.S4DForecaster(input_size=12, horizon=3, revin=False, backbone=S4DConfig(d_model=4, n_layers=1,
                                d_state=4), **FAST).fit(df)  # fmt: skip
    with torch.no_grad():  # only the skip is left: F(x) = scale (W u + b) + loc
        est.net_.head.weight.zero_()
        est.net_.head.bias.zero_()
    W = est.net_.skip.weight.detach().double().numpy()  # (h, L)
    frame = explain.attribution(est, baseline=2.5, unique_ids="s1")
    y = df[df["unique_id"] == "s1"]["y"].to_numpy()[-12:]
    expected = W * (y - 2.5)  # in the data's units: weight x (input - baseline)
    np.testing.assert_allclose(frame["attribution"].to_numpy().reshape(3, 12), expected, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(frame["linear_skip"], frame["attribution"], rtol=1e-4, atol=1e-6)
    assert np.abs(frame["network"]).max() < 1e-5
    assert set(frame["unique_id"]) == {"s1"} and frame["lag"].min() == 1 and frame["lag"].max() == 12
    np.testing.assert_allclose(per_step(frame)["forecast"], est.predict()["y_pred"].iloc[3:], rtol=1e-6)


def test_revin_mean_is_attributed_through_the_window_statistics(s4d_skip):
    """With RevIN, no head and no skip bias, ``F(x) = mean(x) + W (x - mean(x))``: linear, the network's part is the
    window mean's, ``(x_i - x'_i) / L`` per input for every step (zero if the statistics were detached)."""
    est = copy.deepcopy(s4d_skip)
    with torch.no_grad():
        for p in (est.net_.head.weight, est.net_.head.bias, est.net_.skip.bias):
            p.zero_()
    W = est.net_.skip.weight.detach().double().numpy()  # (h, L)
    frame = explain.attribution(est, method="gradient_x_input", unique_ids=["s0"])
    y = panel().query("unique_id == 's0'")["y"].to_numpy()[-16:]
    delta = y - est.loc_[0, 0]  # baseline: the location
    skip = (W - W.mean(1, keepdims=True)) * delta
    np.testing.assert_allclose(frame["linear_skip"].to_numpy().reshape(4, 16), skip, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(frame["network"].to_numpy().reshape(4, 16), np.tile(delta / 16, (4, 1)),
                               rtol=1e-3, atol=1e-5)  # fmt: skip
    steps = per_step(frame)
    np.testing.assert_allclose(steps["total"], steps["forecast"] - steps["baseline"], rtol=1e-4, atol=1e-4)


def test_integrated_gradients_are_complete_for_a_nonlinear_model(s4d_skip):
    est = s4d_skip
    ig = explain.attribution(est, steps=32)
    steps = per_step(ig)
    gap = (steps["forecast"] - steps["baseline"]).abs()
    assert gap.max() > 0.1  # a real difference to explain
    np.testing.assert_allclose(steps["total"], steps["forecast"] - steps["baseline"], atol=1e-3 * gap.max())
    np.testing.assert_allclose(steps["forecast"], est.predict()["y_pred"], rtol=1e-5)  # F(x) is predict's forecast
    assert (ig["network"].abs() > 1e-4).any()
    # one gradient is not complete for a nonlinear model: the path matters
    gxi = per_step(explain.attribution(est, method="gradient_x_input"))
    assert (gxi["total"] - (gxi["forecast"] - gxi["baseline"])).abs().max() > 3 * (
        steps["total"] - (steps["forecast"] - steps["baseline"])).abs().max()
    window = explain.attribution(est, baseline="window_mean", steps=8, unique_ids=["s0"])
    level = window.drop_duplicates("ds")["y"].mean()  # RevIN forecasts a constant window at about its level
    np.testing.assert_allclose(window["baseline_forecast"], level, atol=0.02)


def test_mixed_channels_attribute_to_every_series_window():
    df = panel(n_series=2)
    est = ssmcast.MambaForecaster(input_size=8, horizon=2, channel_mode="mixed",
                                  backbone=MambaConfig(d_model=4, n_layers=1, d_state=4), **FAST).fit(df)  # fmt: skip
    frame = explain.attribution(est, steps=48)
    assert len(frame) == 2 * 2 * 2 * 8  # series x steps x input series x lags
    assert set(zip(frame["unique_id"], frame["input_id"])) == {("s0", "s0"), ("s0", "s1"), ("s1", "s0"), ("s1", "s1")}
    cross = frame[frame["unique_id"] != frame["input_id"]]
    assert (cross["linear_skip"] == 0).all() and (cross["network"].abs() > 0).any()  # the skip is per channel
    steps = per_step(frame)
    np.testing.assert_allclose(steps["total"], steps["forecast"] - steps["baseline"],
                               atol=0.02 * (steps["forecast"] - steps["baseline"]).abs().max())  # fmt: skip
    assert explain.step_sizes(est)["unique_id"].unique().tolist() == ["s0,s1"]


def test_save_figures_of_a_selective_model(tmp_path):
    est = ssmcast.MambaForecaster(input_size=8, horizon=2, backbone=MambaConfig(d_model=4, n_layers=1, d_state=4),
                                  **FAST).fit(panel())  # fmt: skip
    paths = explain.save_figures(est, tmp_path, df=panel().tail(30), steps=2)
    assert [p.name for p in paths] == ["step_sizes.png", "attribution.png"] and all(p.is_file() for p in paths)


# ----------------------------------------------------------------------------------------------- figures


def test_figures_and_save_figures(s4d_skip, tmp_path):
    from matplotlib.figure import Figure

    est = s4d_skip
    figures = [explain.plot_kernels(explain.kernels(est)), explain.plot_spectrum(explain.spectrum(est)),
               explain.plot_attribution(explain.attribution(est, steps=4), unique_id="s1", step=2)]  # fmt: skip
    torch.manual_seed(0)
    stack = MambaConfig(d_model=4, n_layers=2, d_state=4).build()
    figures.append(explain.plot_step_sizes(explain.step_sizes(stack, x=torch.randn(1, 6, 4))))
    assert all(isinstance(f, Figure) and f.axes for f in figures)
    paths = explain.save_figures(est, tmp_path / "explain", steps=4)
    assert [p.name for p in paths] == ["kernels.png", "spectrum.png", "attribution.png"]
    assert all(p.stat().st_size > 1000 for p in paths)


# ----------------------------------------------------------------------------------------------- bad input


def test_bad_input_errors(s4d_skip):
    with pytest.raises(NotFittedError):
        explain.attribution(ssmcast.S4DForecaster())
    with pytest.raises(NotFittedError):
        explain.kernels(ssmcast.S4DForecaster())
    with pytest.raises(TypeError, match="neural forecaster"):
        explain.attribution(NaiveForecaster())
    with pytest.raises(TypeError, match=r"Mamba.*step_sizes"):
        explain.kernels(MambaConfig(d_model=4, n_layers=1).build(), length=4)
    with pytest.raises(TypeError, match=r"S4D?.*kernels"):
        explain.step_sizes(s4d_skip)
    with pytest.raises(TypeError, match="LSTM"):
        explain.kernels(LSTMConfig(d_model=4, n_layers=1).build(), length=4)
    with pytest.raises(ValueError, match="length is required"):
        explain.kernels(S4(2, d_state=2, mode="diag"))
    with pytest.raises(ValueError, match="unknown method 'shap'"):
        explain.attribution(s4d_skip, method="shap")
    with pytest.raises(ValueError, match="baseline must be one of"):
        explain.attribution(s4d_skip, baseline="zero")
    with pytest.raises(ValueError, match="16 \\(input_size\\)"):
        explain.attribution(s4d_skip, baseline=np.zeros(3))
    with pytest.raises(ValueError, match="steps must be a positive integer"):
        explain.attribution(s4d_skip, steps=0)
    with pytest.raises(ValueError, match="unknown unique_id"):
        explain.attribution(s4d_skip, unique_ids=["nope"])
    with pytest.raises(ValueError, match="shorter than input_size=16"):
        explain.attribution(s4d_skip, df=panel().groupby("unique_id").head(10))
    with pytest.raises(ValueError, match="needs its input x"):
        explain.step_sizes(MambaConfig(d_model=4, n_layers=1).build())
    with pytest.raises(ValueError, match="plot_attribution takes the frame"):
        explain.plot_attribution(explain.kernels(s4d_skip))
    with pytest.raises(ValueError, match="unique_id 'nope'"):
        explain.plot_attribution(explain.attribution(s4d_skip, steps=2), unique_id="nope")
