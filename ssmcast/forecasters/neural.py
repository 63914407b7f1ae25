"""The neural forecasters: each is its backbone config on top of :class:`NeuralForecaster`.

Adding a backbone is one module in ``ssmcast/backbones`` (a ``BackboneConfig`` and its layers), a
three-line class here and one ``conf/model/*.yaml``; the tests find all three automatically.
"""

from __future__ import annotations

from ssmcast.backbones.dlinear import DLinearConfig
from ssmcast.backbones.jamba import JambaConfig
from ssmcast.backbones.liquid_s4 import LiquidS4Config
from ssmcast.backbones.mamba import MambaConfig
from ssmcast.backbones.mamba2 import Mamba2Config
from ssmcast.backbones.patchtst import PatchTSTConfig
from ssmcast.backbones.rnn import GRUConfig, LSTMConfig
from ssmcast.backbones.s4 import S4Config, S4DConfig
from ssmcast.backbones.s5 import S5Config
from ssmcast.forecasters.base import NeuralForecaster


class S4Forecaster(NeuralForecaster):
    """S4 (DPLR, HiPPO-LegS, Cauchy kernel + Woodbury). ``backbone``: :class:`~ssmcast.backbones.s4.S4Config`."""

    backbone_config = S4Config


class S4DForecaster(NeuralForecaster):
    """S4D (diagonal S4). ``backbone``: :class:`~ssmcast.backbones.s4.S4DConfig`."""

    backbone_config = S4DConfig


class S5Forecaster(NeuralForecaster):
    """S5 (MIMO, parallel scan). ``backbone``: :class:`~ssmcast.backbones.s5.S5Config`."""

    backbone_config = S5Config


class MambaForecaster(NeuralForecaster):
    """Mamba (selective scan). ``backbone``: :class:`~ssmcast.backbones.mamba.MambaConfig`."""

    backbone_config = MambaConfig


class Mamba2Forecaster(NeuralForecaster):
    """Mamba-2 (state space duality). ``backbone``: :class:`~ssmcast.backbones.mamba2.Mamba2Config`."""

    backbone_config = Mamba2Config


class JambaForecaster(NeuralForecaster):
    """Jamba-style hybrid (Mamba + attention, optional MoE).

    ``backbone``: :class:`~ssmcast.backbones.jamba.JambaConfig`."""

    backbone_config = JambaConfig


class LSTMForecaster(NeuralForecaster):
    """LSTM (gated RNN, cuDNN). ``backbone``: :class:`~ssmcast.backbones.rnn.LSTMConfig`."""

    backbone_config = LSTMConfig


class GRUForecaster(NeuralForecaster):
    """GRU (gated RNN, cuDNN). ``backbone``: :class:`~ssmcast.backbones.rnn.GRUConfig`."""

    backbone_config = GRUConfig


class DLinearForecaster(NeuralForecaster):
    """DLinear (moving-average decomposition + two linear maps over time; a window model, no recurrent state).

    ``backbone``: :class:`~ssmcast.backbones.dlinear.DLinearConfig`. As the paper: no RevIN and no extra skip
    by default (``revin=False, linear_skip=False``; the per-series ``scaler`` standardises as the reference's)."""

    backbone_config = DLinearConfig
    param_defaults = {"revin": False, "linear_skip": False}


class PatchTSTForecaster(NeuralForecaster):
    """PatchTST (patches, channel-independent Transformer encoder, flatten head; a window model).

    ``backbone``: :class:`~ssmcast.backbones.patchtst.PatchTSTConfig`. RevIN on as the paper, no extra linear
    skip by default (``linear_skip=False``)."""

    backbone_config = PatchTSTConfig
    param_defaults = {"linear_skip": False}


class LiquidS4Forecaster(NeuralForecaster):
    """Liquid-S4 (S4D plus the PB liquid kernel of input correlations up to ``liquid_degree``).

    ``backbone``: :class:`~ssmcast.backbones.liquid_s4.LiquidS4Config`."""

    backbone_config = LiquidS4Config
