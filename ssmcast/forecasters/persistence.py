"""``save``/``load`` of the neural forecasters: JSON for parameters and metadata, tensors through
``torch.save`` and ``torch.load(weights_only=True)``. Nothing is pickled, and a saved model may only name
``ssmcast`` classes.

A saved model is a folder: ``params.json`` (the constructor arguments, backbone config included),
``meta.json`` (series ids, time stamps, frequency) and ``weights.pt`` (network weights, per-series scaling,
the scaled history that ``predict``/``update`` continue from).
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from sklearn.utils.validation import check_is_fitted

from ssmcast.backbones.config import BackboneConfig
from ssmcast.forecasting import check_quantiles

_FORMAT_VERSION = 2  # 2: evenly spaced stamps as start, step, n (1: every stamp; still read)
_READABLE_FORMATS = (1, 2)
_FILES = ("params.json", "meta.json", "weights.pt")


class SavedModel:
    """Mixin of :class:`ssmcast.forecasters.base.NeuralForecaster`: ``save(path)`` and the inverse of it."""

    def save(self, path) -> None:
        """Write the fitted model to directory ``path``: ``params.json``, ``meta.json``, ``weights.pt``.

        Loading (:func:`ssmcast.load`) reads the tensors with ``torch.load(weights_only=True)``; nothing is
        unpickled. The folder is written beside ``path`` and renamed into place, so a failed save (a full disk)
        leaves an earlier model at ``path`` whole. ``path`` must be new, empty, or an earlier saved model.
        """
        import torch

        check_is_fitted(self, "net_")
        path = Path(path)
        if path.exists():
            others = sorted(p.name for p in path.iterdir() if p.name not in _FILES) if path.is_dir() else [path.name]
            if others:
                raise ValueError(f"cannot save into {path}: it holds {others[:5]}, which are not a saved model's "
                                 "files; save into a new or empty folder")  # fmt: skip
        params = _jsonable_params(self)
        meta = {
            "format": _FORMAT_VERSION,
            "freq": self.freq_,
            "ids": self.ids_,
            "n_targets": self.n_targets_,
            "n_inputs": self.n_inputs_,
            "units": [
                {"ids": u["ids"], "ds": _stamps_to_json(u["ds"]), "static": u["static"].tolist()}
                for u in self.history_.values()
            ],
            "static_values": {k: v.tolist() for k, v in self.static_values_.items()},
            "unit_keys": [int(k) for k in self.history_],  # after a sharded fit: the rank's series' places in ids
        }
        tensors = {
            "state_dict": self.net_.state_dict(),
            "loc": torch.tensor(self.loc_),
            "scale": torch.tensor(self.scale_),
            "history": [torch.tensor(u["X"]) for u in self.history_.values()],
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.saving-", dir=path.parent))
        try:
            (tmp / "params.json").write_text(json.dumps(params, indent=2))
            (tmp / "meta.json").write_text(json.dumps(meta))
            torch.save(tensors, tmp / "weights.pt")
            if path.exists():  # an earlier model: swap the folders, then drop the old one
                old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old-", dir=path.parent))
                os.replace(path, old / "model")
                os.replace(tmp, path)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, path)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    @classmethod
    def _from_saved(cls, params: dict, meta: dict, tensors: dict) -> SavedModel:
        from ssmcast.forecasters.streaming import StreamStates
        from ssmcast.training.losses import ForecastLoss
        from ssmcast.training.module import ForecastNet

        params.setdefault("linear_skip", False)  # saved before the option existed
        est = cls(**params)
        est.freq_ = meta["freq"]
        est.ids_ = list(meta["ids"])
        est.n_targets_, est.n_inputs_ = meta["n_targets"], meta["n_inputs"]
        est.loc_, est.scale_ = tensors["loc"].numpy(), tensors["scale"].numpy()
        est.static_values_ = {k: np.asarray(v, np.float32) for k, v in meta["static_values"].items()}
        keys = meta.get("unit_keys") or range(len(meta["units"]))  # (saved before sharded fits: 0, 1, ...)
        est.history_ = {
            i: {"ids": u["ids"], "ds": _stamps_from_json(u["ds"]), "X": x.numpy(),
                "static": np.asarray(u["static"], np.float32)}
            for i, u, x in zip(keys, meta["units"], tensors["history"])
        }
        if est.channel_mode == "mixed":
            est.unit_of_ = {uid: i for i, u in est.history_.items() for uid in u["ids"]}
        else:  # unit i is series ids_[i], held here or not (a sharded fit holds its own series' histories only)
            est.unit_of_ = {uid: i for i, uid in enumerate(est.ids_)}
        est.loss_fn_ = ForecastLoss("quantile" if est.quantiles else est.loss, check_quantiles(est.quantiles))
        est.backbone_ = est._backbone()
        _, _, static = est._columns()
        n_future = est.n_inputs_ - est._future_slice.start
        net = ForecastNet.for_config(est.backbone_, est.input_size, est.n_inputs_, est.n_targets_,
                                     est.horizon, est.loss_fn_.n_params, n_future=n_future, n_static=len(static),
                                     revin=est.revin, skip_window=est.input_size if est.linear_skip else None,
                                     n_location=est.loss_fn_.n_location)
        net.load_state_dict(tensors["state_dict"])
        est.net_ = net.eval()
        est.stream_ = StreamStates()
        return est



def _stamps_to_json(ds: np.ndarray) -> dict:
    """A series' time stamps for ``meta.json``: ``start, step, n`` when they are evenly spaced (hourly, daily,
    integer steps: a few bytes a series, issue #36), every value otherwise (months, business days...)."""
    ds = np.asarray(ds)
    if np.issubdtype(ds.dtype, np.datetime64):
        unit = str(np.datetime_data(ds.dtype)[0])
        values, kind = ds.astype(np.int64), "datetime"
    else:
        unit, values, kind = None, ds.astype(np.int64), "int"
    steps = np.diff(values)
    out = {"kind": kind} if unit is None else {"kind": kind, "unit": unit}
    if len(values) > 1 and (steps == steps[0]).all():
        return {**out, "start": int(values[0]), "step": int(steps[0]), "n": len(values)}
    return {**out, "values": values.tolist()}


def _stamps_from_json(data: dict) -> np.ndarray:
    if "values" in data:
        values = np.asarray(data["values"], dtype=np.int64)
    else:
        values = data["start"] + data["step"] * np.arange(data["n"], dtype=np.int64)
    if data["kind"] == "datetime":
        return values.astype(f"datetime64[{data['unit']}]")
    return values


def _qualname(obj_or_cls) -> str:
    cls = obj_or_cls if isinstance(obj_or_cls, type) else type(obj_or_cls)
    return f"{cls.__module__}.{cls.__qualname__}"


def _jsonable_params(est) -> dict:
    params = est.get_params(deep=False)
    out = {"_target_": _qualname(est)}
    for key, value in params.items():
        if isinstance(value, BackboneConfig):
            value = {"_target_": _qualname(value), **value.to_dict()}
        try:
            json.dumps(value)
        except TypeError:
            raise ValueError(f"cannot save parameter {key}={value!r}: it is not JSON-serialisable") from None
        out[key] = value
    return out


def resolve_class(path: str, base: type) -> type:
    """Import ``module.Class`` for a saved model, refusing anything outside the ``ssmcast`` package."""
    module, _, name = path.rpartition(".")
    if not (module == "ssmcast" or module.startswith("ssmcast.")):
        raise ValueError(f"refusing to load {path!r}: saved models may only name ssmcast classes")
    cls = getattr(importlib.import_module(module), name, None)
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise ValueError(f"{path!r} is not a {base.__name__}")
    return cls


def load(path):
    """Load a model written by ``save(path)``; tensors via ``torch.load(weights_only=True)``, no pickle.

    A folder written by ``EnsembleForecaster.save`` (it holds ``ensemble.json``) loads as that ensemble."""
    import torch

    path = Path(path)
    if (path / "ensemble.json").is_file():
        from ssmcast.forecasters.ensemble import load_ensemble

        return load_ensemble(path)
    for name in ("params.json", "meta.json", "weights.pt"):
        if not (path / name).exists():
            raise ValueError(f"{path} is not a saved ssmcast model: {name} is missing")
    params = json.loads((path / "params.json").read_text())
    meta = json.loads((path / "meta.json").read_text())
    if meta.get("format") not in _READABLE_FORMATS:
        raise ValueError(f"unsupported saved-model format {meta.get('format')!r} (this ssmcast reads "
                         f"{', '.join(map(str, _READABLE_FORMATS))})")
    cls = resolve_class(params.pop("_target_"), SavedModel)
    backbone = params.get("backbone")
    if isinstance(backbone, dict):
        config_cls = resolve_class(backbone.pop("_target_"), BackboneConfig)
        params["backbone"] = config_cls(**backbone)
    tensors = torch.load(path / "weights.pt", map_location="cpu", weights_only=True)
    return cls._from_saved(params, meta, tensors)
