"""SSM backbones as ``nn.Module`` mixers (parallel ``forward`` and recurrent ``step``), each with its config."""

from ssmcast.backbones.blocks import MLP, ResidualBlock, SequenceStack
from ssmcast.backbones.config import BackboneConfig, parameter_groups, tag_optim
from ssmcast.backbones.dlinear import DLinear, DLinearConfig
from ssmcast.backbones.jamba import JambaConfig
from ssmcast.backbones.liquid_s4 import LiquidS4, LiquidS4Config
from ssmcast.backbones.mamba import Mamba, MambaConfig
from ssmcast.backbones.mamba2 import Mamba2, Mamba2Config
from ssmcast.backbones.patchtst import PatchTST, PatchTSTConfig
from ssmcast.backbones.rnn import GRU, LSTM, GRUConfig, LSTMConfig
from ssmcast.backbones.s4 import S4, S4Config, S4DConfig
from ssmcast.backbones.s5 import S5, S5Config

__all__ = [
    "BackboneConfig", "MLP", "ResidualBlock", "SequenceStack", "parameter_groups", "tag_optim",
    "S4", "S4Config", "S4DConfig", "LiquidS4", "LiquidS4Config", "S5", "S5Config", "Mamba", "MambaConfig",
    "Mamba2", "Mamba2Config",
    "JambaConfig", "LSTM", "LSTMConfig", "GRU", "GRUConfig",
    "DLinear", "DLinearConfig", "PatchTST", "PatchTSTConfig",
]
