"""LSTM and GRU: the gated recurrent networks, as baselines beside the SSMs, on torch's (cuDNN) kernels.

Each layer is one ``batch_first`` ``nn.LSTM``/``nn.GRU`` of hidden size ``H = d_model`` (cuDNN on CUDA,
oneDNN or the native kernel on the CPU), as torch documents its cells::

    LSTM (Hochreiter & Schmidhuber 1997, with the forget gate of Gers et al. 2000):
    i_t = sigmoid(W_ii x_t + b_ii + W_hi h_{t-1} + b_hi)      # (B, H) input gate
    f_t = sigmoid(W_if x_t + b_if + W_hf h_{t-1} + b_hf)      # (B, H) forget gate
    g_t = tanh(W_ig x_t + b_ig + W_hg h_{t-1} + b_hg)         # (B, H) cell candidate
    o_t = sigmoid(W_io x_t + b_io + W_ho h_{t-1} + b_ho)      # (B, H) output gate
    c_t = f_t * c_{t-1} + i_t * g_t                           # (B, H) cell state
    h_t = o_t * tanh(c_t)                                     # (B, H) output and hidden state

    GRU (Cho et al. 2014):
    r_t = sigmoid(W_ir x_t + b_ir + W_hr h_{t-1} + b_hr)      # (B, H) reset gate
    z_t = sigmoid(W_iz x_t + b_iz + W_hz h_{t-1} + b_hz)      # (B, H) update gate
    n_t = tanh(W_in x_t + b_in + r_t * (W_hn h_{t-1} + b_hn)) # (B, H) candidate
    h_t = (1 - z_t) * n_t + z_t * h_{t-1}                     # (B, H) output and hidden state

The configs stack ``n_layers`` single-layer RNNs as pre-norm residual blocks with a final norm, like the SSM
backbones (residual connections between stacked LSTMs as in Wu et al. 2016; layer normalisation was
introduced for RNNs, Ba et al. 2016), rather than one ``num_layers`` ``nn.LSTM``: the forecasters' input
projection, dropout and norms are then the same for every backbone. The recurrent state of a layer is
``(h, c)``, each ``(B, H)``, for the LSTM and ``h (B, H)`` for the GRU, batch first (``nn.LSTM`` keeps a
leading layer dimension, dropped here); a stack's is the list of its layers' states.

The recurrence runs in the weights' dtype with autocast off: under mixed precision the state, carried over
the whole history, stays in float32 (and oneDNN has no bf16 LSTM primitive for this case: it fails on the CPU).
Initialisation is torch's, uniform in ``+-1/sqrt(H)``, except the LSTM forget gate's bias: ``forget_bias``
(1 by default, Gers et al. 2000; Jozefowicz et al. 2015), so that the cell state starts by remembering.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from ssmcast.backbones.blocks import SequenceStack
from ssmcast.backbones.config import BackboneConfig
from ssmcast.backbones.mamba import check_sequence_input, check_step_input, state_dtype


class _Recurrent(nn.Module):
    """A single-layer ``batch_first`` torch RNN ``rnn`` as a mixer ``(B, L, H) -> (B, L, H)``, ``H = d_model``."""

    rnn: nn.RNNBase

    def __init__(self, d_model: int):
        super().__init__()
        if isinstance(d_model, bool) or not isinstance(d_model, int) or d_model < 1:
            raise ValueError(f"d_model must be a positive int, got {d_model!r}")
        self.d_model = d_model

    def _run(self, x: torch.Tensor, hx):
        """``rnn`` over ``x (B, L, H)`` from ``hx`` (torch's layout, layer dimension first; None: zeros), in the
        weights' dtype with autocast off: ``(y (B, L, H) in x's dtype, torch's last state)``."""
        dtype = self.rnn.weight_ih_l0.dtype
        with torch.autocast(device_type=x.device.type, enabled=False):
            y, last = self.rnn(x.to(dtype), hx)
        return y.to(x.dtype), last

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Parallel mode (one torch/cuDNN call over the sequence): ``x (B, L, H) -> (B, L, H)``, causal."""
        check_sequence_input(x, self.d_model)
        return self._run(x, None)[0]

    def _zeros(self, batch_size: int) -> torch.Tensor:
        param = self.rnn.weight_ih_l0
        return torch.zeros(batch_size, self.d_model, dtype=state_dtype(param), device=param.device)  # (B, H)

    def _check_state_tensor(self, t: torch.Tensor, batch_size: int, name: str) -> None:
        if not isinstance(t, torch.Tensor) or t.shape != (batch_size, self.d_model):
            got = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            raise ValueError(f"{name} must be a tensor (batch, d_model) = ({batch_size}, {self.d_model}), got {got}")


class LSTM(_Recurrent):
    """LSTM mixer ``(B, L, H) -> (B, L, H)``: one ``nn.LSTM`` layer of hidden size ``H = d_model``, whose
    outputs are its hidden states ``h_t``. State: ``(h, c)``, each ``(B, H)``.

    Args:
        d_model: ``H``, input, hidden and output features.
        forget_bias: initial value of the forget gate's bias ``b_if + b_hf`` (the whole of it in ``b_if``).
    """

    def __init__(self, d_model: int, forget_bias: float = 1.0):
        super().__init__(d_model)
        self.rnn = nn.LSTM(d_model, d_model, batch_first=True)
        H = d_model
        with torch.no_grad():  # gate order i, f, g, o
            self.rnn.bias_ih_l0[H : 2 * H].fill_(forget_bias)
            self.rnn.bias_hh_l0[H : 2 * H].zero_()

    def prefill(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """``forward`` plus the state ``(h, c)`` (each ``(B, H)``) after ``x``, in one call."""
        check_sequence_input(x, self.d_model)
        y, (h, c) = self._run(x, None)  # (B, L, H), (1, B, H) twice
        sd = state_dtype(self.rnn.weight_ih_l0)
        return y, (h[0].to(sd), c[0].to(sd))

    def initial_state(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(h, c)`` zeros, each ``(batch_size, H)``: the state before any input."""
        return self._zeros(batch_size), self._zeros(batch_size)

    def step(self, x_t: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]):
        """Recurrent mode, O(1) per observation: ``x_t (B, H) -> (y_t = h_t (B, H), new state (h_t, c_t))``.
        The given state is not modified."""
        check_step_input(x_t, self.d_model)
        if not isinstance(state, (tuple, list)) or len(state) != 2:
            raise TypeError("an LSTM state is a pair (h, c) from initial_state(), prefill() or a previous step()")
        h, c = state
        self._check_state_tensor(h, x_t.shape[0], "h")
        self._check_state_tensor(c, x_t.shape[0], "c")
        dtype = self.rnn.weight_ih_l0.dtype
        y, (h, c) = self._run(x_t[:, None], (h[None].to(dtype), c[None].to(dtype)))  # (B, 1, H), (1, B, H)
        sd = state_dtype(self.rnn.weight_ih_l0)
        return y[:, 0], (h[0].to(sd), c[0].to(sd))


class GRU(_Recurrent):
    """GRU mixer ``(B, L, H) -> (B, L, H)``: one ``nn.GRU`` layer of hidden size ``H = d_model``, whose outputs
    are its hidden states ``h_t``. State: ``h (B, H)``.

    Args:
        d_model: ``H``, input, hidden and output features.
    """

    def __init__(self, d_model: int):
        super().__init__(d_model)
        self.rnn = nn.GRU(d_model, d_model, batch_first=True)

    def prefill(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``forward`` plus the state ``h (B, H)`` after ``x``, in one call."""
        check_sequence_input(x, self.d_model)
        y, h = self._run(x, None)  # (B, L, H), (1, B, H)
        return y, h[0].to(state_dtype(self.rnn.weight_ih_l0))

    def initial_state(self, batch_size: int) -> torch.Tensor:
        """``h`` zeros ``(batch_size, H)``: the state before any input."""
        return self._zeros(batch_size)

    def step(self, x_t: torch.Tensor, state: torch.Tensor):
        """Recurrent mode, O(1) per observation: ``x_t (B, H) -> (y_t = h_t (B, H), new state h_t (B, H))``."""
        check_step_input(x_t, self.d_model)
        self._check_state_tensor(state, x_t.shape[0], "the GRU state h")
        y, h = self._run(x_t[:, None], state[None].to(self.rnn.weight_ih_l0.dtype))  # (B, 1, H), (1, B, H)
        return y[:, 0], h[0].to(state_dtype(self.rnn.weight_ih_l0))


@dataclasses.dataclass
class LSTMConfig(BackboneConfig):
    """A stack of ``n_layers`` pre-norm residual blocks around single-layer :class:`LSTM` mixers."""

    d_model: int = 32
    n_layers: int = 2
    forget_bias: float = 1.0
    dropout: float = 0.0
    norm: str = "layer"

    def build(self) -> SequenceStack:
        return self.residual_stack(lambda: LSTM(self.d_model, forget_bias=self.forget_bias))


@dataclasses.dataclass
class GRUConfig(BackboneConfig):
    """A stack of ``n_layers`` pre-norm residual blocks around single-layer :class:`GRU` mixers."""

    d_model: int = 32
    n_layers: int = 2
    dropout: float = 0.0
    norm: str = "layer"

    def build(self) -> SequenceStack:
        return self.residual_stack(lambda: GRU(self.d_model))
