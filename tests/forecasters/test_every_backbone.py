"""Every backbone module gets a forecaster: found automatically, fitted tiny, streamed and saved."""

import dataclasses
import importlib
import inspect
import pkgutil

import pandas as pd
import pytest
import torch
from panels_for_tests import make_panel

import ssmcast
import ssmcast.backbones
import ssmcast.forecasters
from ssmcast.backbones.config import BackboneConfig


def backbone_configs():
    found = []
    for info in pkgutil.iter_modules(ssmcast.backbones.__path__):
        module = importlib.import_module(f"ssmcast.backbones.{info.name}")
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if issubclass(obj, BackboneConfig) and obj is not BackboneConfig and obj.__module__ == module.__name__:
                found.append(obj)
    return found


def forecaster_for(config_cls):
    matches = [
        cls for _, cls in inspect.getmembers(ssmcast.forecasters, inspect.isclass)
        if issubclass(cls, ssmcast.NeuralForecaster) and cls.backbone_config is config_cls
    ]
    assert len(matches) == 1, f"{config_cls.__name__} needs exactly one forecaster class; found {matches}"
    return matches[0]


CONFIGS = backbone_configs()
RECURRENT = [c for c in CONFIGS if getattr(c, "recurrent", True)]  # window models (DLinear, PatchTST) keep no state


def test_the_six_backbones_are_found():
    names = {c.__name__ for c in CONFIGS}
    assert {"S4Config", "S4DConfig", "S5Config", "MambaConfig", "Mamba2Config", "JambaConfig"} <= names


def tiny_config(config_cls):
    fields = {f.name for f in dataclasses.fields(config_cls)}
    small = {"d_model": 8, "n_layers": 2, "d_state": 4, "head_dim": 4, "blocks": 1, "attn_every": 2, "attn_offset": 1,
             "n_heads": 2, "n_experts": 2, "top_k": 1, "chunk_size": 8, "d_ff": 16}
    return config_cls(**{k: v for k, v in small.items() if k in fields})


@pytest.mark.parametrize("config_cls", CONFIGS, ids=lambda c: c.__name__)
def test_forecaster_fits_streams_and_reloads(config_cls, tmp_path):
    cls = forecaster_for(config_cls)
    assert getattr(ssmcast, cls.__name__) is cls
    panel = make_panel(length=100)
    train = panel.groupby("unique_id").head(90)
    est = cls(input_size=16, horizon=4, max_epochs=1, batch_size=64, verbose=False, backbone=tiny_config(config_cls),
              loss="gaussian", val_size=0, revin=False)
    est.fit(train)
    pred = est.predict(quantiles=[0.1, 0.9])
    assert pred.shape == (8, 5) and pred["y_pred"].notna().all()
    assert (pred["y_pred_q0.1"] <= pred["y_pred_q0.9"]).all()
    streamed = est.update(panel.groupby("unique_id").nth(list(range(90, 100))))
    full = est.predict(df=panel, context="full" if config_cls in RECURRENT else "window")  # window models: no state
    pd.testing.assert_frame_equal(streamed, full, rtol=1e-4, atol=1e-4)
    est.save(tmp_path / "m")
    pd.testing.assert_frame_equal(ssmcast.load(tmp_path / "m").predict(df=panel), est.predict(df=panel))


def flat_states(state):
    if isinstance(state, torch.Tensor):
        return [state]
    return [t for s in state for t in flat_states(s)]


@pytest.mark.parametrize("length", [2, 37])
@pytest.mark.parametrize("config_cls", RECURRENT, ids=lambda c: c.__name__)
def test_prefill_equals_forward_and_unrolled_steps(config_cls, length):
    """``prefill`` (used by ``context="full"``) gives ``forward``'s outputs and the state ``step`` reaches."""
    torch.manual_seed(0)
    net = tiny_config(config_cls).build().eval()
    x = torch.randn(3, length, net.d_model)
    with torch.no_grad():
        y, state = net.prefill(x)
        stepped = net.initial_state(3)
        for t in range(length):
            _, stepped = net.step(x[:, t], stepped)
        nxt = torch.randn(3, net.d_model)
        after_prefill, _ = net.step(nxt, state)
        after_steps, _ = net.step(nxt, stepped)
    torch.testing.assert_close(y, net(x))
    a, b = flat_states(state), flat_states(stepped)
    assert [t.shape for t in a] == [t.shape for t in b] and [t.dtype for t in a] == [t.dtype for t in b]
    for p, s in zip(a, b, strict=True):
        torch.testing.assert_close(p, s, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(after_prefill, after_steps, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("config_cls", RECURRENT, ids=lambda c: c.__name__)
def test_batched_streaming_equals_one_series_at_a_time(config_cls, monkeypatch):
    """``update`` and ``context="full"`` run the series' recurrent states as batches (equal history lengths
    prefill together, equal row counts step together); the reference steps each series alone, row by row."""
    import copy

    import ssmcast.forecasters.streaming as streaming

    panel = make_panel(n_series=5, length=60)
    cut = {"s0": 40, "s1": 40, "s2": 43, "s3": 46, "s4": 40}
    extra = {"s0": 5, "s1": 5, "s2": 2, "s4": 8}  # s3 gets no new rows
    position = panel.groupby("unique_id").cumcount()
    limit = panel["unique_id"].map(cut)
    train = panel[position < limit]
    new = panel[(position >= limit) & (position < limit + panel["unique_id"].map(extra).fillna(0))]
    est = forecaster_for(config_cls)(input_size=16, horizon=4, max_epochs=1, batch_size=64, verbose=False,
                                     backbone=tiny_config(config_cls), val_size=0, revin=False).fit(train)
    alone = copy.deepcopy(est)
    monkeypatch.setattr(streaming, "_PREFILL_ROWS", 80)  # two 40-row histories a prefill batch
    streamed = est.update(new)
    for uid in extra:
        alone.update(new[new.unique_id == uid])
    pd.testing.assert_frame_equal(streamed, alone.predict(context="full"), rtol=1e-4, atol=1e-5)

    net = est.net_
    for k, unit in est.history_.items():
        assert len(unit["X"]) == cut[unit["ids"][0]] + extra.get(unit["ids"][0], 0)
        with torch.no_grad():
            state = net.initial_state(1)
            for row in torch.as_tensor(unit["X"]):
                z, state = net.step(row[None], state)  # (1, d_model)
        torch.testing.assert_close(est.stream_[k]["z"], z, rtol=1e-4, atol=1e-5)
        for a, b in zip(flat_states(est.stream_[k]["state"]), flat_states(state), strict=True):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


WITH_BACKEND = [c for c in CONFIGS if "backend" in {f.name for f in dataclasses.fields(c)}]


def test_the_scanning_backbones_have_the_backend_switch():
    assert {c.__name__ for c in WITH_BACKEND} >= {"S5Config", "MambaConfig", "Mamba2Config", "JambaConfig"}


@pytest.mark.parametrize("config_cls", WITH_BACKEND, ids=lambda c: c.__name__)
def test_backend_is_a_forecaster_parameter_and_the_fused_fit_follows_the_reference(config_cls):
    """``backbone__backend`` reaches every scan; a fit with the fused kernels (``auto``: numba here) follows the
    same fit with the plain PyTorch reference, step for step, to float32 rounding."""
    from sklearn.base import clone

    panel = make_panel(n_series=2, length=80)
    est = forecaster_for(config_cls)(input_size=16, horizon=4, max_epochs=1, batch_size=32, verbose=False,
                                     backbone=tiny_config(config_cls), val_size=0, seed=0)
    reference = clone(est).set_params(backbone__backend="torch")
    assert reference.get_params()["backbone__backend"] == "torch" and est.get_params()["backbone__backend"] == "auto"
    est.fit(panel)
    reference.fit(panel)
    assert {m.backend for m in reference.net_.modules() if hasattr(m, "backend")} == {"torch"}
    pd.testing.assert_frame_equal(est.predict(), reference.predict(), rtol=1e-3, atol=1e-4)
    with pytest.raises(ValueError, match="backend='gpu'"):
        clone(est).set_params(backbone__backend="gpu").fit(panel)
