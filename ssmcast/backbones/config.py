"""The small config every backbone module declares, and the optimiser parameter groups.

Each backbone module (``s4.py``, ``mamba.py``, ...) defines a dataclass ``XConfig(BackboneConfig)``
whose fields are the backbone's hyper-parameters and whose ``build()`` returns the stack, a mixer
``(B, L, d_model) -> (B, L, d_model)`` with ``initial_state``/``step``. Forecasters take the config as
their ``backbone`` parameter; ``get_params``/``set_params`` make its fields visible to scikit-learn as
``backbone__<field>`` (so ``clone``, grid searches and Hydra overrides reach them).

SSM parameters that want their own optimiser settings (S4's rule: a smaller learning rate and no
weight decay for ``A``, ``B``, ``dt``...) are tagged with :func:`tag_optim`; :func:`parameter_groups`
turns a module into AdamW parameter groups.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from torch import nn


@dataclasses.dataclass
class BackboneConfig:
    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def set_params(self, **params: Any) -> BackboneConfig:
        valid = {f.name for f in dataclasses.fields(self)}
        for key, value in params.items():
            if key not in valid:
                raise ValueError(
                    f"invalid parameter {key!r} for {type(self).__name__}; valid parameters: {sorted(valid)}"
                )
            setattr(self, key, value)
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def build(self) -> nn.Module:
        raise NotImplementedError

    def residual_stack(self, make_mixer: Callable[[], nn.Module]) -> nn.Module:
        """``n_layers`` pre-norm residual blocks around ``make_mixer()``, then a final norm (uses the config's
        ``d_model``, ``n_layers``, ``norm`` and ``dropout`` fields)."""
        from ssmcast.backbones.blocks import ResidualBlock, SequenceStack

        n_layers, dropout = self.n_layers, self.dropout
        if isinstance(n_layers, bool) or not isinstance(n_layers, int) or n_layers < 1:
            raise ValueError(f"n_layers must be a positive int, got {n_layers!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        blocks = [ResidualBlock(make_mixer(), self.d_model, norm=self.norm, dropout=dropout) for _ in range(n_layers)]
        return SequenceStack(blocks, self.d_model, norm=self.norm)


def tag_optim(param: nn.Parameter, **settings: Any) -> nn.Parameter:
    """Mark ``param`` for its own optimiser settings, e.g. ``tag_optim(A, lr=1e-3, weight_decay=0.0)``."""
    param._optim = dict(settings)
    return param


def parameter_groups(module: nn.Module, lr: float, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: untagged parameters get ``lr``/``weight_decay`` (none for biases and norms);
    tagged ones (:func:`tag_optim`) one group per distinct setting. Every parameter appears once."""
    decay, no_decay, special = [], [], {}
    for name, param in module.named_parameters():
        if not param.requires_grad:
            continue
        settings = getattr(param, "_optim", None)
        if settings:
            key = tuple(sorted(settings.items()))
            special.setdefault(key, []).append(param)
        elif param.ndim < 2 or name.endswith(".bias"):
            no_decay.append(param)
        else:
            decay.append(param)
    groups = []
    if decay:
        groups.append({"params": decay, "lr": lr, "weight_decay": weight_decay})
    if no_decay:
        groups.append({"params": no_decay, "lr": lr, "weight_decay": 0.0})
    for key, params in special.items():
        group = {"params": params, "lr": lr, "weight_decay": weight_decay}
        group.update(dict(key))
        groups.append(group)
    return groups
