"""Attribution of a forecast to the past inputs it was made from.

The function explained is the forecaster's point forecast as ``predict`` makes it, in the data's units: the window
of the last ``input_size`` target values ``x`` (each series scaled by its fitted scaler, RevIN over the window,
the network, RevIN undone, the scaling undone) -> ``F(x)`` ``(horizon, C)``. Covariates, calendar features and
static features are held at their values: the attributions are to the target history only.

Each input ``x_i`` gets a share ``a_i`` of ``F(x) - F(x')``, the forecast's difference from the forecast of a
*baseline* window ``x'`` (by default every value at the series' fitted location, the value the scaler maps to 0):

* ``"integrated_gradients"`` (Sundararajan, Taly & Yan, 2017): ``a_i = (x_i - x'_i) * int_0^1 dF/dx_i(x' + alpha
  (x - x')) d alpha``, the gradient integrated along the straight path from the baseline, by the midpoint rule in
  ``t = sqrt(alpha)``: ``steps`` points ``alpha_k = t_k^2``, ``t_k = (k + 1/2) / steps``, weighted ``2 t_k / steps``.
  The substitution puts more points near the baseline, where RevIN's normalisation moves fast (a constant baseline
  window has spread 0, and RevIN divides by ``sqrt(var + 1e-5)``); with uniform points that stretch alone cost
  ~1e-3 of completeness at any number of steps. Complete: ``sum_i a_i = F(x) - F(x')`` up to the rule's error,
  ``O(1 / steps^2)`` for a smooth model;
* ``"gradient_x_input"``: ``a_i = (x_i - x'_i) * dF/dx_i(x)``, one gradient; complete only for a model linear in
  ``x``.

The attributions are in the forecast's units (the data's), per input: ``a_i`` is how much of the forecast's
departure from the baseline forecast input ``i`` accounts for. Both methods give the same (exact) answer for
a model linear in ``x``.

The forecast is split into the linear skip (``linear_skip=True``: a linear map ``W (horizon, input_size)``
from the window the network sees straight to the forecast) and the rest (the network: backbone and head, and
RevIN's level and scale). The skip's part is exact, whichever the method: in the units the network sees it is
``sum_i W_hi u_i`` with ``u`` the scaled window (RevIN: the window minus its mean, so the skip's weight on input
``i`` is ``W_hi - mean_j W_hj``), so its attribution is ``scale * (W_hi - [RevIN] mean_j W_hj) (u_i - u'_i)``,
weight times input, ``scale`` the series' fitted scale. The network's part is the method's attribution minus that.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch

from ssmcast.explain._common import fitted_net, forecast_windows, frozen, on_device, positive_int

if TYPE_CHECKING:
    from ssmcast.forecasters import NeuralForecaster

__all__ = ["attribution", "METHODS"]

METHODS = ("integrated_gradients", "gradient_x_input")
BASELINES = ("location", "window_mean")
COLUMNS = ["unique_id", "step", "target_ds", "input_id", "ds", "lag", "y", "attribution", "linear_skip", "network",
           "forecast", "baseline_forecast"]


def _revin(net, X: torch.Tensor):
    """:meth:`ForecastNet.normalize <ssmcast.training.module.ForecastNet.normalize>` with the statistics left
    in the graph: the forecast depends on the window through them too (training detaches them)."""
    if not net.revin:
        return X, None
    C = net.n_targets
    target = X[..., :C]  # (B, L, C)
    mean = target.mean(1, keepdim=True)  # (B, 1, C)
    std = (target.var(1, keepdim=True, unbiased=False) + 1e-5).sqrt()  # (B, 1, C)
    return torch.cat([(target - mean) / std, X[..., C:]], -1), (mean, std)


def _point(net, loss_fn, X: torch.Tensor, future: torch.Tensor, static: torch.Tensor) -> torch.Tensor:
    """The point forecast ``(B, h, C)`` in scaled units (the per-series scaler's), differentiable in ``X``."""
    from ssmcast.training.module import denormalize

    z, stats = _revin(net, X)
    return denormalize(loss_fn.point(net(z, future, static)), stats)


def _path_gradients(net, loss_fn, X, x0, future, static, alphas, weights, batch_size: int) -> torch.Tensor:
    """``sum_k w_k dF_{h, c}/dx(x0 + alpha_k (x - x0))`` for every output: ``(U, h, C, L, C)``.

    One row per ``(output (h, c), alpha, unit)``, each backpropagating its own output, ``batch_size`` rows a pass."""
    U, L, _ = X.shape
    C, h, S = net.n_targets, net.horizon, len(alphas)
    x, rest = X[..., :C], X[..., C:]  # (U, L, C), (U, L, n_in - C)
    n_rows = h * C * S * U
    grads = X.new_zeros(h * C, U, L, C)
    for start in range(0, n_rows, batch_size):
        r = torch.arange(start, min(start + batch_size, n_rows), device=X.device)
        out, s, u = r // (S * U), (r // U) % S, r % U
        xt = (x0[u] + alphas[s, None, None] * (x[u] - x0[u])).requires_grad_(True)  # (R, L, C)
        pred = _point(net, loss_fn, torch.cat([xt, rest[u]], -1), future[u], static[u])  # (R, h, C)
        chosen = pred[torch.arange(len(r), device=X.device), out // C, out % C]  # (R,)
        (g,) = torch.autograd.grad(chosen.sum(), xt)  # (R, L, C)
        grads.index_put_((out, u), g * weights[s, None, None], accumulate=True)
    return grads.view(h, C, U, L, C).permute(2, 0, 1, 3, 4)  # (U, h, C, L, C)


def _path(steps: int, power: float):
    """Points ``alpha_k = t_k^power`` and weights ``power t_k^(power-1) / steps`` of the midpoint rule on
    ``t_k = (k + 1/2) / steps`` after the substitution ``alpha = t^power``."""
    t = (np.arange(steps) + 0.5) / steps
    return t**power, power * t ** (power - 1) / steps


POWER = 2.0  # alpha = t^2: see the module docstring


def _skip_weights(net, L: int) -> np.ndarray:
    """``J (h, L)``: the linear skip's derivative in the scaled window (0 without a skip)."""
    if getattr(net, "skip", None) is None:
        return np.zeros((net.horizon, L))
    W = net.skip.weight.detach().double().cpu().numpy()  # (h, skip_window)
    J = np.zeros((net.horizon, L))
    J[:, L - W.shape[1] :] = W
    if net.revin:
        J -= J.sum(1, keepdims=True) / L  # u = x - mean(x): the mean is a linear function of every input
    return J


def _baseline(baseline, x: np.ndarray, loc: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """The baseline window in scaled units ``(U, L, C)``; ``baseline`` in the data's units when a number/array."""
    if isinstance(baseline, str):
        if baseline == "location":
            return np.zeros_like(x)
        if baseline == "window_mean":
            return np.broadcast_to(x.mean(1, keepdims=True), x.shape).copy()
        raise ValueError(f"baseline must be one of {BASELINES}, a number or an array of input_size values (in the "
                         f"data's units); got {baseline!r}")  # fmt: skip
    values = np.asarray(baseline, dtype=np.float64)
    if values.ndim > 1 or (values.ndim == 1 and len(values) != x.shape[1]) or not np.isfinite(values).all():
        raise ValueError(f"baseline must be one of {BASELINES}, a finite number or {x.shape[1]} (input_size) finite "
                         f"values in the data's units; got shape {values.shape}")  # fmt: skip
    values = values.reshape(1, -1, 1) if values.ndim == 1 else values.reshape(1, 1, 1)
    return ((values - loc[:, None, :]) / scale[:, None, :]).astype(np.float32) * np.ones_like(x)


def attribution(
    forecaster: NeuralForecaster,
    df: pd.DataFrame | None = None,
    method: str = "integrated_gradients",
    baseline: str | float | np.ndarray = "location",
    steps: int = 32,
    unique_ids: str | Iterable[str] | None = None,
    future_df: pd.DataFrame | None = None,
    batch_size: int = 512,
) -> pd.DataFrame:
    """Attribute each forecast to the inputs of its window (see the module docstring for the definitions).

    Args:
        forecaster: a fitted neural forecaster (any backbone).
        df: the history whose last ``input_size`` observations are the window (what ``predict(df=df)`` forecasts
            from); default the training data.
        method: ``"integrated_gradients"`` (default) or ``"gradient_x_input"``.
        baseline: the reference window ``x'``: ``"location"`` (default: each series' fitted location, the value its
            scaler maps to 0: the training mean with ``scaler="standard"``, the median with ``"robust"``, 0 without
            a scaler), ``"window_mean"`` (the window's own mean), a number or ``input_size`` values, in the data's
            units. With RevIN any constant window is forecast the same: its level.
        steps: integrated gradients' number of points on the path (ignored by ``"gradient_x_input"``); the cost is
            ``steps * horizon * C`` forward and backward passes per series (in batches of ``batch_size``).
        unique_ids: the series to explain (default all; with ``channel_mode="mixed"`` the panel is one window: all).
        future_df: future covariates over the forecast steps, when the model uses them (as ``predict``).
        batch_size: rows (output x path point x series) per forward/backward pass.

    Returns:
        One row per ``(unique_id, step, input_id, ds)``: the forecast of series ``unique_id`` ``step`` steps ahead
        (at ``target_ds``) and the input of series ``input_id`` at ``ds`` (``lag`` steps before the forecast origin,
        1 the last observation; ``input_id == unique_id`` unless ``channel_mode="mixed"``, where every series'
        window feeds every forecast), ``y`` that input's value, ``attribution = linear_skip + network`` in the
        data's units, and per ``(unique_id, step)`` the ``forecast`` ``F(x)`` (what ``predict`` gives) and the
        ``baseline_forecast`` ``F(x')``: ``attribution`` sums over the inputs to their difference (exactly for
        gradient x input of a linear model, up to the midpoint rule's error for integrated gradients).
    """
    net = fitted_net(forecaster, "attribution()")
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}: expected one of {METHODS}")
    steps = positive_int(steps, "steps") if method == "integrated_gradients" else 1
    batch_size = positive_int(batch_size, "batch_size")
    windows = forecast_windows(forecaster, df, unique_ids, future_df)
    C = forecaster.n_targets_
    x = windows.X[..., :C].astype(np.float64)  # (U, L, C), scaled
    x0 = _baseline(baseline, x, windows.loc, windows.scale)  # (U, L, C), scaled
    alphas, weights = _path(steps, POWER) if method == "integrated_gradients" else (np.ones(1), np.ones(1))
    was_training = net.training
    net.eval()
    try:
        # cuDNN's RNN kernels have no backward in eval mode (LSTM/GRU on a GPU): plain kernels for the gradients
        with on_device(forecaster, net) as device, frozen(net), torch.backends.cudnn.flags(enabled=False):
            X, fut, sta = windows.tensors(device)
            X0 = torch.cat([torch.as_tensor(x0, dtype=torch.float32, device=device), X[..., C:]], -1)
            with torch.no_grad():
                forecast = _point(net, forecaster.loss_fn_, X, fut, sta).double().cpu().numpy()  # (U, h, C)
                base = _point(net, forecaster.loss_fn_, X0, fut, sta).double().cpu().numpy()
            grads = _path_gradients(net, forecaster.loss_fn_, X, X0[..., :C], fut, sta,
                                    torch.as_tensor(alphas, dtype=torch.float32, device=device),
                                    torch.as_tensor(weights, dtype=torch.float32, device=device), batch_size)
            grads = grads.double().cpu().numpy()  # (U, h, C, L, C)
    finally:
        net.train(was_training)
        backbone = getattr(net, "backbone", None)
        if callable(getattr(backbone, "aux_loss", None)):
            backbone.aux_loss()  # MoE losses left by the forwards (Jamba)
    delta = x - x0  # (U, L, C)
    total = grads * delta[:, None, None]  # (U, h, C, L, C)
    J = _skip_weights(net, x.shape[1])  # (h, L)
    skip = np.einsum("hl,ulc,cd->uhcld", J, delta, np.eye(C))  # the skip maps channel c to channel c
    scale, loc = windows.scale[:, None, :], windows.loc[:, None, :]  # (U, 1, C): the forecast's series
    to_units = scale[:, :, :, None, None]  # (U, 1, C, 1, 1)
    return _frame(windows, total * to_units, skip * to_units, forecast * scale + loc, base * scale + loc,
                  x * windows.scale[:, None, :] + windows.loc[:, None, :])  # fmt: skip


def _frame(windows, total, skip, forecast, base, y) -> pd.DataFrame:
    """The long frame of :func:`attribution` from ``(U, h, C, L, C)`` arrays (ordered unit, series, step, input)."""
    U, h, C, L, _ = total.shape
    frames = []
    for u in range(U):
        ids = np.asarray(windows.ids[u], dtype=object)
        out_c, step, in_c, pos = np.meshgrid(np.arange(C), np.arange(h), np.arange(C), np.arange(L), indexing="ij")
        out_c, step, in_c, pos = out_c.ravel(), step.ravel(), in_c.ravel(), pos.ravel()
        target_ds = np.asarray(windows.target_ds[u])
        frames.append(pd.DataFrame({
            "unique_id": ids[out_c],
            "step": step + 1,
            "target_ds": target_ds[step],
            "input_id": ids[in_c],
            "ds": windows.ds[u][pos],
            "lag": L - pos,
            "y": y[u][pos, in_c],
            "attribution": total[u].transpose(1, 0, 3, 2).ravel(),  # (h, C, L, C) -> (C, h, C, L)
            "linear_skip": skip[u].transpose(1, 0, 3, 2).ravel(),
            "forecast": forecast[u][step, out_c],
            "baseline_forecast": base[u][step, out_c],
        }))  # fmt: skip
    out = pd.concat(frames, ignore_index=True)
    out["network"] = out["attribution"] - out["linear_skip"]
    return out[COLUMNS]
