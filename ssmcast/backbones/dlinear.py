"""DLinear: Zeng, Chen, Zhang & Xu, "Are Transformers Effective for Time Series Forecasting?" (AAAI 2023).

A *window model*: it maps the whole input window of each channel straight to the forecast, and has no
recurrent state (``recurrent = False``; the forecaster wraps it in
:class:`~ssmcast.training.module.WindowForecastNet`). As in the reference code (``models/DLinear.py`` of
LTSF-Linear):

* the window ``x (L,)`` of a channel is decomposed by a moving average of ``kernel_size`` (25) steps, stride 1,
  with the window padded at both ends by repeating its first and last values ``(kernel_size - 1) // 2`` times
  (``moving_avg``): the trend ``t = MA(x)`` and the seasonal remainder ``s = x - t``, both of length ``L``;
* two linear maps over time, ``y = W_s s + b_s + W_t t + b_t`` with ``W (h, L)``, shared by every channel
  (``individual=False``, the paper's default), initialised as ``nn.Linear`` (the reference's ``1/L`` averaging
  initialisation is commented out there).

The original has no instance normalisation (its data are standardised per channel on the training split, which
is ssmcast's ``scaler="standard"``); :class:`~ssmcast.forecasters.DLinearForecaster` therefore defaults to
``revin=False`` and ``linear_skip=False``. With a distributional or quantile loss every map has ``h * n_outputs``
rows: output ``k`` of step ``i`` is row ``i * n_outputs + k`` (the point forecast / location is output 0).
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from ssmcast.backbones.config import BackboneConfig


def moving_average(x: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """The reference's ``moving_avg``: ``x (B, L, C)`` -> ``(B, L', C)``, the mean over ``kernel_size`` steps
    with ``(kernel_size - 1) // 2`` copies of the first and last rows padded on; ``L' = L`` for odd kernels."""
    pad = (kernel_size - 1) // 2
    padded = torch.cat([x[:, :1].expand(-1, pad, -1), x, x[:, -1:].expand(-1, pad, -1)], 1)  # (B, L + 2 pad, C)
    return nn.functional.avg_pool1d(padded.transpose(1, 2), kernel_size, stride=1).transpose(1, 2)


class DLinear(nn.Module):
    """Window model ``(B, L, C) -> (B, h, C, n_outputs)``: moving-average decomposition + two linear maps over
    time, shared by the channels."""

    recurrent = False

    def __init__(self, input_size: int, horizon: int, n_outputs: int = 1, kernel_size: int = 25):
        super().__init__()
        for name, value in (("input_size", input_size), ("horizon", horizon), ("n_outputs", n_outputs),
                            ("kernel_size", kernel_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd (the trend keeps the window's length), got {kernel_size}")
        self.input_size, self.horizon, self.n_outputs, self.kernel_size = input_size, horizon, n_outputs, kernel_size
        self.seasonal = nn.Linear(input_size, horizon * n_outputs)
        self.trend = nn.Linear(input_size, horizon * n_outputs)

    def decompose(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x (B, L, C)`` -> ``(seasonal, trend)``, each ``(B, L, C)``."""
        trend = moving_average(x, self.kernel_size)
        return x - trend, trend

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] != self.input_size:
            raise ValueError(f"DLinear was built for windows of {self.input_size} steps; got {x.shape[1]}")
        seasonal, trend = self.decompose(x)  # (B, L, C)
        out = self.seasonal(seasonal.transpose(1, 2)) + self.trend(trend.transpose(1, 2))  # (B, C, h * P)
        B, C = out.shape[:2]
        return out.view(B, C, self.horizon, self.n_outputs).transpose(1, 2)  # (B, h, C, P)


@dataclasses.dataclass
class DLinearConfig(BackboneConfig):
    """DLinear (a window model: ``recurrent = False``): the moving average's ``kernel_size`` (25 in the paper).

    ``build(input_size, horizon, n_outputs)`` returns :class:`DLinear`; the window length and the horizon come
    from the forecaster."""

    kernel_size: int = 25

    recurrent = False  # a class attribute, not a field: maps the last input_size steps, keeps no state

    def build(self, input_size: int, horizon: int, n_outputs: int = 1) -> DLinear:
        return DLinear(input_size, horizon, n_outputs, kernel_size=self.kernel_size)
