"""Estimators as Hydra configs: ``to_config(est)`` writes the ``_target_`` call that rebuilds ``est``.

The constructor is the only schema: a config is the estimator's class plus its constructor arguments
(``get_params(deep=False)``), nested configs (backbones) as nested ``_target_`` nodes. ``build(config)``
replays it with ``hydra.utils.instantiate``::

    est = MambaForecaster(input_size=64, backbone=MambaConfig(d_model=16))
    config = to_config(est)            # {"_target_": "ssmcast.MambaForecaster", ...}
    save_config(est, "mamba.yaml")     # the same as YAML, usable as a conf/model/ option
    assert build(config).get_params() == est.get_params()
"""

from __future__ import annotations

import dataclasses
import importlib
from pathlib import Path
from typing import Any

__all__ = ["to_config", "save_config", "build", "target_name"]

_PUBLIC_MODULES = ("ssmcast", "ssmcast.baselines")


def target_name(cls: type) -> str:
    """The shortest public import path of ``cls``: ``ssmcast.MambaForecaster``, ``ssmcast.baselines.ETSForecaster``."""
    for module in _PUBLIC_MODULES:
        try:
            if getattr(importlib.import_module(module), cls.__name__, None) is cls:
                return f"{module}.{cls.__name__}"
        except (ImportError, AttributeError):
            continue
    return f"{cls.__module__}.{cls.__qualname__}"


def _value(value: Any, where: str) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, tuple):  # YAML has no tuples: replay through builtins.tuple
        return {"_target_": "builtins.tuple", "_args_": [[_value(v, where) for v in value]]}
    if isinstance(value, list):
        return [_value(v, where) for v in value]
    if isinstance(value, dict):
        bad = [k for k in value if not isinstance(k, str)]
        if bad:
            raise ValueError(f"{where}: dict keys must be strings to be written as a config; got {bad[:3]}")
        return {k: _value(v, f"{where}.{k}") for k, v in value.items()}
    if hasattr(value, "get_params"):  # a nested estimator or backbone config
        return to_config(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: _value(getattr(value, f.name), f"{where}.{f.name}") for f in dataclasses.fields(value)}
        return {"_target_": target_name(type(value)), **fields}
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    raise ValueError(
        f"{where}={value!r} ({type(value).__name__}) cannot be written as a config: use plain numbers, "
        "strings, lists, dicts or ssmcast configs"
    )


def to_config(estimator) -> dict[str, Any]:
    """A plain dict ``{"_target_": class path, "_convert_": "all", **constructor arguments}``.

    Works for every ssmcast estimator and backbone config (anything with ``get_params(deep=False)``).
    Raises ``ValueError`` for a parameter that has no config form (an arbitrary Python object).
    """
    if not hasattr(estimator, "get_params"):
        raise TypeError(f"to_config needs an estimator with get_params; got {type(estimator).__name__}")
    name = type(estimator).__name__
    params = estimator.get_params(deep=False)
    config: dict[str, Any] = {"_target_": target_name(type(estimator)), "_convert_": "all"}
    for key, value in params.items():
        config[key] = _value(value, f"{name}.{key}")
    return config


def save_config(estimator, path) -> Path:
    """Write ``to_config(estimator)`` as YAML to ``path`` (e.g. ``conf/model/my_mamba.yaml``); returns it."""
    from omegaconf import OmegaConf

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(OmegaConf.to_yaml(OmegaConf.create(to_config(estimator))))
    return path


def build(config):
    """``hydra.utils.instantiate(config)`` with plain Python containers (dicts and lists, not OmegaConf's).

    ``config`` is a dict, a DictConfig or the path of a YAML file holding one ``_target_`` node.
    """
    from hydra.utils import instantiate
    from omegaconf import DictConfig, OmegaConf

    if isinstance(config, (str, Path)):
        config = OmegaConf.load(config)
    if not isinstance(config, (dict, DictConfig)) or "_target_" not in config:
        raise ValueError(f"build needs a config with a _target_ key; got {type(config).__name__}")
    return instantiate(config, _convert_="all")
