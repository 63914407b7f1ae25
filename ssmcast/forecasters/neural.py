"""The neural forecasters: each is its backbone config on top of :class:`NeuralForecaster`.

Adding a backbone is one module in ``ssmcast/backbones`` (a ``BackboneConfig`` and its layers), a
three-line class here and one ``conf/model/*.yaml``; the tests find all three automatically.
"""

from __future__ import annotations

from ssmcast.backbones.jamba import JambaConfig
from ssmcast.backbones.mamba import MambaConfig
from ssmcast.backbones.mamba2 import Mamba2Config
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
