"""The convolutional view of the linear time-invariant layers (S4, S4D, Liquid-S4's LTI part, S5): each layer's
kernel ``K`` (its impulse response) and the kernel's spectrum.

A discretised LTI state space layer ``x_k = Abar x_{k-1} + Bbar u_k``, ``y_k = C x_k + D u_k`` is the convolution
``y_k = sum_{j >= 0} K_j u_{k-j} + D u_k`` with ``K_j = C Abar^j Bbar``. :func:`kernels` reads ``K`` off each layer
with the layer's own code (:meth:`S4.kernel <ssmcast.backbones.s4.S4.kernel>` for S4, S4D and Liquid-S4; the
discretised ``(Lambda_bar, B_bar, C_tilde)`` of :meth:`S5.discrete_params <ssmcast.backbones.s5.S5.discrete_params>`
for S5, whose kernel is a matrix per lag, ``K_j = 2 Re(C_tilde diag(Lambda_bar)^j B_bar)``), so it is the kernel the
layer convolves with. The kernels act on the layer's own features (the ``d_model`` channels after the input
projection and the block's norm), not on the series' values: they show which lags each feature remembers and how
fast it forgets.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch
from torch import nn

from ssmcast.backbones.s4 import S4
from ssmcast.backbones.s5 import S5
from ssmcast.explain._common import is_forecaster, kinds, layers, positive_int

if TYPE_CHECKING:
    from ssmcast.forecasters import NeuralForecaster

__all__ = ["kernels", "spectrum"]

LTI_LAYERS = (S4, S5)  # Liquid-S4 is an S4 subclass: its kernel is the LTI (degree-1) part
COLUMNS = ["layer", "kind", "channel", "feature", "input_feature", "lag", "value"]


def _lti_layers(model, what: str):
    mixers, name = layers(model, what)
    lti = [(i, m) for i, m in mixers if isinstance(m, LTI_LAYERS)]
    if not lti:
        raise TypeError(
            f"{what} needs a linear time-invariant backbone (S4, S4D, S5, Liquid-S4); {name}'s layers are "
            f"{kinds(mixers)}, which have no fixed convolution kernel"
            + (" (a selective SSM: its step depends on the input; see ssmcast.explain.step_sizes)"
               if any(type(m).__name__ in ("Mamba", "Mamba2") for _, m in mixers) else "")
        )  # fmt: skip
    return lti


def _kind(layer) -> str:
    """The layer's name: ``"S4"`` (DPLR), ``"S4D"`` (an ``S4`` in ``mode="diag"``), ``"LiquidS4"``, ``"S5"``."""
    if type(layer) is S4 and layer.mode == "diag":
        return "S4D"
    return type(layer).__name__


def _s4_kernel(layer: S4, L: int, feedthrough: bool) -> tuple[np.ndarray, np.ndarray]:
    """``(lags, K (channels, H, H_in=1, n_lags))``: S4's causal kernels at lags ``0..L-1`` and, for a bidirectional
    layer, the anti-causal ones at ``-(L-1)..-1`` (``y_k`` gets ``K_back[s-1] u_{k+s}``, as its forward)."""
    if layer.mode == "dplr" and L > int(layer.l_kernel):
        layer = copy.deepcopy(layer)  # S4 lengthens its C~ in place for a longer kernel: not on the user's model
    K = layer.kernel(L).double().cpu().numpy()  # (n_kernels, H, L)
    forward = K[: layer.channels].copy()  # (channels, H, L)
    if feedthrough:
        forward[..., 0] += layer.D.detach().double().cpu().numpy()  # (channels, H)
    lags = np.arange(L)
    if layer.bidirectional:
        backward = K[layer.channels :, :, : L - 1][..., ::-1]  # lag -s <- K_back[s - 1], s = L-1 .. 1
        forward = np.concatenate([backward, forward], -1)
        lags = np.arange(-(L - 1), L)
    return lags, forward[:, :, None, :]  # (channels, H, 1, n_lags)


def _s5_kernel(layer: S5, L: int, feedthrough: bool) -> tuple[np.ndarray, np.ndarray]:
    """``(lags, K (1, H, H, n_lags))``: ``K_j[h, i] = factor Re(sum_p C_tilde[h, p] Lambda_bar[p]^j B_bar[p, i])``,
    the response of output feature ``h`` to a unit impulse on input feature ``i`` ``j`` steps earlier (``factor``
    2 with ``conj_sym``). A bidirectional layer reads the backward scan with ``C_tilde``'s second half: lags
    ``-(L-1)..0``, lag 0 taking both."""
    Lambda_bar, B_bar, C_tilde = (t.to(torch.complex128) for t in layer.discrete_params())  # (P,), (P, H), (H, nP)
    P = Lambda_bar.shape[0]
    powers = Lambda_bar[None, :] ** torch.arange(L, dtype=torch.float64, device=Lambda_bar.device)[:, None]  # (L, P)
    factor = 2.0 if layer.conj_sym else 1.0

    def response(C: torch.Tensor) -> np.ndarray:
        return factor * torch.einsum("hp,jp,pi->hij", C, powers, B_bar).real.cpu().numpy()  # (H, H_in, L)

    K = response(C_tilde[:, :P])  # (H, H, L)
    lags = np.arange(L)
    if layer.bidirectional:
        back = response(C_tilde[:, P:])  # (H, H, L): lag -j
        K[..., 0] += back[..., 0]
        K = np.concatenate([back[..., 1:][..., ::-1], K], -1)
        lags = np.arange(-(L - 1), L)
    if feedthrough:
        K[..., lags == 0] += np.diag(layer.D.detach().double().cpu().numpy())[..., None]
    return lags, K[None]  # (1, H, H, n_lags)


def kernels(model: NeuralForecaster | nn.Module, length: int | None = None, feedthrough: bool = False) -> pd.DataFrame:
    """Each LTI layer's convolution kernel (impulse response), long format.

    Args:
        model: a fitted forecaster with an S4, S4D, S5 or Liquid-S4 backbone, or such a backbone (a
            ``SequenceStack``, a ``ForecastNet``, or one ``S4``/``S5`` layer).
        length: number of lags ``L`` (default: the forecaster's ``input_size``; required for a module).
        feedthrough: add the layer's direct term ``D`` at lag 0 (the whole impulse response of
            ``y = K * u + D u``); by default the kernel ``K`` alone.

    Returns:
        One row per ``(layer, channel, feature, input_feature, lag)``: ``layer`` the block's index in the stack,
        ``kind`` the layer (``"S4"``, ``"S4D"``, ``"LiquidS4"``, ``"S5"``), ``channel`` S4's output channel
        (``channels`` per feature; 0 for S5), ``feature`` the output feature ``h``, ``input_feature`` the input
        feature (``== feature`` for S4's single-input SSMs; S5 is multi-input: every pair), ``lag`` ``j`` (the
        output at step ``k`` takes ``value * u_{k-j}``; negative lags only for bidirectional layers) and ``value``.

    Raises:
        TypeError: the model has no LTI layer (Mamba, Mamba-2, Jamba, RNNs, DLinear, PatchTST).

    Liquid-S4's kernel is its degree-1 (LTI) part; its liquid terms of degree ``2..P`` multiply the latest inputs
    (:func:`ssmcast.backbones.liquid_s4.pb_coefficients`) and are not a convolution.
    """
    lti = _lti_layers(model, "kernels()")
    if length is None:
        if not is_forecaster(model):
            raise ValueError("length is required for a module (a fitted forecaster uses its input_size)")
        length = model.input_size
    L = positive_int(length, "length")
    frames = []
    with torch.no_grad():
        for index, layer in lti:
            lags, K = _s5_kernel(layer, L, feedthrough) if isinstance(layer, S5) else _s4_kernel(layer, L, feedthrough)
            channel, feature, inp, lag = np.meshgrid(*(np.arange(n) for n in K.shape[:3]), lags, indexing="ij")
            if not isinstance(layer, S5):
                inp = feature  # single-input SSMs: feature h reads feature h
            frames.append(pd.DataFrame({
                "layer": index, "kind": _kind(layer), "channel": channel.ravel(), "feature": feature.ravel(),
                "input_feature": inp.ravel(), "lag": lag.ravel(), "value": K.ravel(),
            }))  # fmt: skip
    return pd.concat(frames, ignore_index=True)[COLUMNS]


def spectrum(model: NeuralForecaster | nn.Module | pd.DataFrame, length: int | None = None, feedthrough: bool = False,
             freq: str | int | None = None,
             n_fft: int | None = None) -> pd.DataFrame:
    """The magnitude of each kernel's discrete Fourier transform: which frequencies a layer passes.

    Args:
        model: what :func:`kernels` takes, or the frame it returned.
        length: number of lags (as :func:`kernels`; ignored for a frame).
        feedthrough: as :func:`kernels`.
        freq: the data's frequency (a pandas alias such as ``"h"``); default the fitted forecaster's. With a fixed
            frequency (hours, minutes, days...) ``period_time`` gives each period as a duration.
        n_fft: transform length (default the number of lags); a longer one zero-pads the kernel, which samples the
            same spectrum (the kernel's DTFT) on a finer grid of frequencies.

    Returns:
        One row per ``(layer, channel, feature, input_feature, frequency)``: ``frequency`` in cycles per step
        (``0 .. 0.5``, ``rfftfreq(n_fft)``), ``period`` in steps (``1 / frequency``, inf at 0),
        ``period_time`` when the frequency is fixed, and ``magnitude`` ``|sum_j K_j e^{-2 pi i f j}|``.
    """
    if freq is None and is_forecaster(model):
        freq = getattr(model, "freq_", None)
    frame = model if isinstance(model, pd.DataFrame) else kernels(model, length, feedthrough)
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"spectrum() takes a model or the frame kernels() returns; this frame lacks {missing}")
    keys = ["layer", "kind", "channel", "feature", "input_feature"]
    ordered = frame.sort_values([*keys, "lag"], kind="stable")
    n_lags = ordered.groupby(keys, sort=False).size().unique()
    if len(n_lags) != 1:
        raise ValueError(f"every kernel needs the same number of lags for one spectrum; got {sorted(n_lags)}")
    n = int(n_lags[0])
    n_fft = n if n_fft is None else positive_int(n_fft, "n_fft")
    if n_fft < n:
        raise ValueError(f"n_fft={n_fft} is shorter than the kernels ({n} lags)")
    values = ordered["value"].to_numpy().reshape(-1, n)  # (n_kernels, n)
    magnitude = np.abs(np.fft.rfft(values, n=n_fft, axis=-1))  # (n_kernels, n_fft // 2 + 1)
    frequency = np.fft.rfftfreq(n_fft)
    heads = ordered.iloc[::n][keys].reset_index(drop=True)
    out = heads.loc[heads.index.repeat(len(frequency))].reset_index(drop=True)
    out["frequency"] = np.tile(frequency, len(heads))
    with np.errstate(divide="ignore"):
        out["period"] = 1.0 / out["frequency"]
    step = _fixed_step(freq)
    if step is not None:
        out["period_time"] = pd.to_timedelta(np.where(np.isfinite(out["period"]), out["period"], np.nan) * step)
    out["magnitude"] = magnitude.ravel()
    return out


def _fixed_step(freq) -> pd.Timedelta | None:
    """The duration of one step of ``freq`` when it is fixed (``"h"``, ``"15min"``, ``"D"``), else None."""
    if freq is None or isinstance(freq, (int, np.integer)):
        return None
    try:
        offset = pd.tseries.frequencies.to_offset(freq)
    except (TypeError, ValueError):
        return None
    return pd.Timedelta(offset) if isinstance(offset, pd.offsets.Tick) else None
