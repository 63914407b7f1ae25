"""What the explanations share: the fitted network of a forecaster, its backbone's layers, and the input windows
the forecaster itself would feed it (its own data preparation: scaling, covariates, stamps)."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterable, Iterator

import numpy as np
import torch
from sklearn.utils.validation import check_is_fitted
from torch import nn

from ssmcast.backbones.blocks import ResidualBlock, SequenceStack


def is_forecaster(obj) -> bool:
    from ssmcast.forecasters.base import NeuralForecaster

    return isinstance(obj, NeuralForecaster)


def fitted_net(forecaster, what: str) -> nn.Module:
    """The fitted network ``net_`` of a neural forecaster; a clear error for anything else."""
    if not is_forecaster(forecaster):
        raise TypeError(f"{what} needs a fitted ssmcast neural forecaster (S4Forecaster, MambaForecaster, ...); got "
                        f"{type(forecaster).__name__}")  # fmt: skip
    check_is_fitted(forecaster, "net_")
    return forecaster.net_


def layers(model, what: str) -> tuple[list[tuple[int, nn.Module]], str]:
    """``([(layer index, mixer)], name)`` of a fitted forecaster, a network (``ForecastNet``), a stack
    (``SequenceStack``), a residual block or a single mixer; ``name`` says what ``model`` is in error messages."""
    if is_forecaster(model):
        net, name = fitted_net(model, what), type(model).__name__
    elif isinstance(model, nn.Module):
        net, name = model, type(model).__name__
    else:
        raise TypeError(f"{what} takes a fitted neural forecaster or a torch module (a backbone or one of its "
                        f"layers); got {type(model).__name__}")  # fmt: skip
    backbone = getattr(net, "backbone", net)  # ForecastNet / WindowForecastNet -> the backbone
    if isinstance(backbone, SequenceStack):
        return [(i, block.mixer) for i, block in enumerate(backbone.blocks)], name
    if isinstance(backbone, ResidualBlock):
        return [(0, backbone.mixer)], name
    return [(0, backbone)], name


def kinds(mixers: Iterable[tuple[int, nn.Module]]) -> str:
    """``"Mamba, CausalSelfAttention"``: the distinct layer classes, for error messages."""
    return ", ".join(dict.fromkeys(type(m).__name__ for _, m in mixers))


def positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer; got {value!r}")
    return int(value)


@dataclasses.dataclass
class Windows:
    """The last ``input_size`` observations of each unit, as the forecaster feeds them to its network.

    ``X (U, L, n_inputs)`` scaled (targets first), ``future (U, h, F)``, ``static (U, S)`` float32; ``ids[u]``
    the unit's series (one, or every series with ``channel_mode="mixed"``), ``ds[u] (L,)`` the input stamps,
    ``target_ds[u] (h,)`` the forecast stamps, ``loc``/``scale (U, C)`` each target channel's fitted scaling.
    """

    ids: list[list]
    X: np.ndarray
    future: np.ndarray
    static: np.ndarray
    ds: list[np.ndarray]
    target_ds: list
    loc: np.ndarray
    scale: np.ndarray

    def tensors(self, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        as_tensor = lambda a: torch.as_tensor(a, dtype=torch.float32, device=device)
        return as_tensor(self.X), as_tensor(self.future), as_tensor(self.static)


def forecast_windows(forecaster, df=None, unique_ids=None, future_df=None) -> Windows:
    """The windows ``forecaster.predict(df=df)`` forecasts from (the training history when ``df`` is None),
    for the series ``unique_ids`` (default: all)."""
    units = dict(forecaster.history_) if df is None else forecaster._history_units(df)
    keys = list(units)
    if unique_ids is not None:
        wanted = [unique_ids] if isinstance(unique_ids, str) else list(unique_ids)
        unknown = [u for u in wanted if u not in forecaster.unit_of_]
        if unknown:
            raise ValueError(f"unknown unique_id(s) {unknown[:5]}: the model was fitted on {forecaster.ids_[:5]}...")
        present = {uid for k in keys for uid in units[k]["ids"]}
        absent = [u for u in wanted if u not in present]
        if absent:
            raise ValueError(f"series {absent[:5]} are not in df")
        keys = [k for k in keys if set(units[k]["ids"]) & set(wanted)]
    L, h = forecaster.input_size, forecaster.horizon
    short = [units[k]["ids"] for k in keys if len(units[k]["X"]) < L]
    if short:
        raise ValueError(f"history shorter than input_size={L} for series {short[:5]}")
    after = forecaster._stamps_after([units[k]["ds"][-1] for k in keys], h)
    future_rows = forecaster._future_rows(future_df)
    cache: dict = {}
    index = {uid: i for i, uid in enumerate(forecaster.ids_)}
    rows = [[index[uid] for uid in units[k]["ids"]] for k in keys]
    return Windows(
        ids=[list(units[k]["ids"]) for k in keys],
        X=np.stack([units[k]["X"][-L:] for k in keys]).astype(np.float32),
        future=np.stack([forecaster._future_block(units[k], after[units[k]["ds"][-1]], future_rows, h, cache)
                         for k in keys]),  # fmt: skip
        static=np.stack([units[k]["static"] for k in keys]).astype(np.float32),
        ds=[np.asarray(units[k]["ds"][-L:]) for k in keys],
        target_ds=[after[units[k]["ds"][-1]] for k in keys],
        loc=np.stack([forecaster.loc_[r, 0] for r in rows]),
        scale=np.stack([forecaster.scale_[r, 0] for r in rows]),
    )


@contextlib.contextmanager
def on_device(forecaster, net: nn.Module) -> Iterator[torch.device]:
    """The network on the forecaster's inference device (as ``predict`` runs it), back on the CPU afterwards."""
    device = forecaster._inference_device()
    net.to(device)
    try:
        yield device
    finally:
        net.cpu()


@contextlib.contextmanager
def frozen(module: nn.Module) -> Iterator[None]:
    """No gradient for ``module``'s parameters meanwhile (gradients with respect to the inputs only)."""
    flags = [(p, p.requires_grad) for p in module.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
