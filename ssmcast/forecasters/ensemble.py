"""Ensembles of forecasters: the median (or mean) of several members' forecasts.

Combining many models trained differently is what won M4 (and what N-BEATS does with 180 members): errors
that the members do not share cancel. :class:`EnsembleForecaster` takes its members as a list or a dict of
estimators, or one estimator expanded over a grid of seeds, input sizes, losses (or any other constructor
argument), and follows the ssmcast estimator API itself (``fit``, ``predict``, ``update``, ``predict_windows``,
``save``/:func:`ssmcast.load`), so ``compare``, ``backtest``, ``evaluate_ltsf``, the CLI and MLflow take it like
any other model.

A saved ensemble is a folder: ``ensemble.json`` (the constructor arguments, member estimators as JSON
``_target_`` nodes, and the members' names) and ``members/000``, ``members/001``... each written by that
member's own ``save``. Loading reads JSON and the members' weights-only folders; nothing is unpickled.
"""

from __future__ import annotations

import functools
import inspect
import itertools
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Mapping
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, clone
from sklearn.utils.validation import check_is_fitted

from ssmcast.data.frames import to_pandas
from ssmcast.forecasting import check_quantiles, forecast_frame, quantile_column

__all__ = ["EnsembleForecaster", "load_ensemble"]

COMBINES = ("median", "mean")
QUANTILE_COMBINES = ("average", "pool")
POOL_LEVELS = 100  # quantile_combine="pool": each member's distribution read at levels (k - 1/2) / 100
_AXES = (("seeds", "seed"), ("input_sizes", "input_size"), ("losses", "loss"))  # argument -> member parameter
_FORMAT_VERSION = 1
_INDEX = "ensemble.json"


class _if_every_member:
    """A method the ensemble has only when every member has it: ``hasattr(ens, "save")`` is False for an
    ensemble with a member that cannot save (so the CLI and MLflow treat it as they treat such a model), and
    calling it raises an ``AttributeError`` naming the members that lack it."""

    def __init__(self, fn):
        self.fn = fn
        functools.update_wrapper(self, fn)

    def __set_name__(self, owner, name):
        self.name = name

    def __get__(self, obj, owner=None):
        if obj is None:
            return self.fn
        lacking = obj._lacking(self.name)
        if lacking:
            raise AttributeError(
                f"{type(obj).__name__}.{self.name}() needs every member to have {self.name}(); "
                f"{', '.join(lacking)} {'does' if len(lacking) == 1 else 'do'} not"
            )
        return self.fn.__get__(obj, owner)


class EnsembleForecaster(BaseEstimator):
    """The median (or mean) of several forecasters' forecasts; quantiles averaged level by level.

    Parameters
    ----------
    members : the member estimators, a list (named ``"0"``, ``"1"``... in parameter names) or a dict
        ``{name: estimator}`` (names without ``"__"``). Each is cloned at ``fit``; the ones given stay unfitted.
        Their parameters are reachable as ``members__<name>__<param>`` through ``get_params``/``set_params``
        (``members__<name>`` replaces a member), as in scikit-learn's ``VotingRegressor``.
    base : one estimator instead of ``members`` (its parameters are ``base__<param>``): the ensemble is
        ``base`` over the grid below.
    seeds, input_sizes, losses : lists of values of the members' ``seed``, ``input_size`` and ``loss``
        parameters. Every member is expanded over the product of the lists: ``base=S4DForecaster(),
        seeds=[0, 1, 2], input_sizes=[96, 192]`` has six members, named ``base[seed=0, input_size=96]``...
        A list applies to the members that have that parameter; the others are fitted once (an ETS member of
        an ensemble with ``seeds=[0, 1, 2]`` stays one member). None: not varied.
    grid : other constructor arguments to vary in the same way, ``{"learning_rate": [1e-3, 3e-4]}``.
    combine : "median" (default; robust to one bad member) or "mean" of the members' point forecasts ``y_pred``.
    quantile_combine : how the quantile columns are combined. "average" (default): the mean of the members'
        values at each level (quantile averaging; ``y_pred_q0.5`` is the mean of their medians, not necessarily
        ``y_pred``). "pool": the quantiles of the members' pooled predictive distributions (the equal-weight
        mixture, a linear opinion pool): each member is asked for its quantiles at the levels
        ``(k - 1/2) / 100``, k = 1..100 — a deterministic sample of 100 draws from its distribution — and the
        requested levels are read off the pooled draws (wider than averaging where the members disagree). Pooling
        needs members that give any level: the classical baselines, neural members with ``loss="gaussian"`` or
        ``"student_t"``; a member that cannot is named in the error.
    horizon : None keeps each member's own; an integer sets the ``horizon`` of every member that has one
        (the members must forecast the same steps for their forecasts to be combined).

    Members are fitted one after the other, in order, on the same data (no ``n_jobs``: Lightning fits seed
    the process-wide random generators and share the device, so parallel fits in threads would not be
    reproducible, and process pools would copy the data and the models). A member that fails stops ``fit``
    with an error naming it; the ensemble is then left as it was.

    ``update``, ``predict_windows`` and ``save`` exist when every member has them (``hasattr`` says so).
    ``save`` needs members with ``save`` (the neural forecasters): an ensemble with a classical baseline is
    stored, like the baseline itself, as its config (``ssmcast.config.save_config``) and refitted from it
    (what the CLI and ``ssmcast.tracking.log_forecaster`` do for a model without ``save``). Refitting from the
    config alone cannot restore the trained neural members: the MLflow model of such a mixed ensemble refits
    every member on each history it is given, which must be long enough to train them (the short example
    history ``log_forecaster`` checks it on is not, so logging it fails with a ``TrackingWarning``).

    Fitted attributes: ``members_`` (``{name: fitted member}``, in order), ``fit_time_s_`` (the members' fit
    times added up).
    """

    def __init__(
        self,
        members=None,
        base=None,
        seeds=None,
        input_sizes=None,
        losses=None,
        grid: dict | None = None,
        combine: str = "median",
        horizon: int | None = None,
        quantile_combine: str = "average",
    ):
        self.members = members
        self.base = base
        self.seeds = seeds
        self.input_sizes = input_sizes
        self.losses = losses
        self.grid = grid
        self.combine = combine
        self.horizon = horizon
        self.quantile_combine = quantile_combine

    # ------------------------------------------------------------------ sklearn plumbing
    def _given(self) -> dict:
        """``{name: estimator}`` of ``members`` as given (lenient: for ``get_params``/``set_params``)."""
        if isinstance(self.members, Mapping):
            return {str(k): v for k, v in self.members.items()}
        if isinstance(self.members, (list, tuple)):
            return {str(i): m for i, m in enumerate(self.members)}
        return {}

    def get_params(self, deep: bool = True) -> dict:
        params = super().get_params(deep=deep)  # base: base__<param> when deep
        if deep:
            for name, est in self._given().items():
                params[f"members__{name}"] = est
                if hasattr(est, "get_params") and not isinstance(est, type):
                    params.update((f"members__{name}__{k}", v) for k, v in est.get_params(deep=True).items())
        return params

    def set_params(self, **params):
        if "members" in params:  # first, so that members__... below refer to the new members
            self.members = params.pop("members")
        given = self._given()
        replace, nested = {}, {}
        for key in [k for k in params if k.startswith("members__")]:
            name, _, sub = key[len("members__"):].partition("__")
            if name not in given:
                raise ValueError(f"Invalid parameter {key!r} for estimator {type(self).__name__}: no member "
                                 f"named {name!r} (members: {list(given)})")  # fmt: skip
            if sub:
                nested.setdefault(name, {})[sub] = params.pop(key)
            else:
                replace[name] = params.pop(key)
        if replace:  # a new container: the caller's list or dict is not modified
            if isinstance(self.members, Mapping):
                keys = {str(k): k for k in self.members}
                self.members = {**self.members, **{keys[n]: est for n, est in replace.items()}}
            else:
                members = list(self.members)
                for name, est in replace.items():
                    members[int(name)] = est
                self.members = type(self.members)(members) if isinstance(self.members, tuple) else members
            given = self._given()
        for name, sub in nested.items():
            given[name].set_params(**sub)
        return super().set_params(**params) if params else self

    # ------------------------------------------------------------------ members
    def _templates(self) -> dict:
        """``{name: estimator}`` as given, checked."""
        if self.members is not None and self.base is not None:
            raise ValueError("give members=[...] or base=..., not both")
        if self.base is not None:
            named = {"base": self.base}
        elif self.members is None:
            raise ValueError("EnsembleForecaster needs members=[est, ...] (or {name: est}) or base=est")
        elif isinstance(self.members, Mapping):
            bad = [k for k in self.members if not isinstance(k, str) or not k or "__" in k]
            if bad:
                raise ValueError(f"member names must be non-empty strings without '__'; got {bad[:3]}")
            named = dict(self.members)
        elif isinstance(self.members, (list, tuple)):
            named = self._given()
        else:
            raise ValueError(f"members must be a list or a dict of estimators; got {type(self.members).__name__}")
        if not named:
            raise ValueError("members is empty: give at least one estimator")
        for name, est in named.items():
            if isinstance(est, type) or not all(hasattr(est, a) for a in ("fit", "predict", "get_params")):
                raise ValueError(f"member {name!r} is not an estimator with fit, predict and get_params: {est!r}"
                                 + (" (pass an instance, not the class)" if isinstance(est, type) else ""))
        return named

    def _axes(self) -> list[tuple[str, str, list]]:
        """``(argument, member parameter, values)`` of every grid axis."""
        axes = []
        for attr, param in _AXES:
            if getattr(self, attr) is not None:
                axes.append((attr, param, _values(getattr(self, attr), attr)))
        if self.grid is not None:
            if not isinstance(self.grid, Mapping):
                raise ValueError(f"grid must be a dict {{parameter: [values]}}; got {type(self.grid).__name__}")
            taken = {param: attr for attr, param, _ in axes}
            for key, values in self.grid.items():
                if key in taken:
                    raise ValueError(f"grid[{key!r}] repeats {taken[key]}=; give it once")
                axes.append((f"grid[{key!r}]", str(key), _values(values, f"grid[{key!r}]")))
        return axes

    def _expand(self) -> dict:
        """``{name: unfitted member}``: every given member cloned over the grid, ``horizon`` set."""
        templates = self._templates()
        axes = self._axes()
        own = {name: est.get_params(deep=False) for name, est in templates.items()}
        for attr, param, _ in axes:
            if not any(param in p for p in own.values()):
                raise ValueError(f"{attr}: no member has a parameter {param!r}")
        members = {}
        for name, template in templates.items():
            applied = [(param, values) for _, param, values in axes if param in own[name]]
            for combo in itertools.product(*[values for _, values in applied]):
                settings = dict(zip([param for param, _ in applied], combo))
                label = f"{name}[{', '.join(f'{k}={v}' for k, v in settings.items())}]" if settings else name
                try:
                    member = clone(template)
                except Exception as err:  # noqa: BLE001 - say which member
                    raise ValueError(f"member {name!r} cannot be cloned ({type(err).__name__}: {err})") from None
                if self.horizon is not None and "horizon" in own[name]:
                    settings["horizon"] = self.horizon
                member.set_params(**settings)
                members[label] = member
        # members that would share a checkpoint folder get one each (a shared last.ckpt would resume the wrong one)
        dirs = {label: m.get_params(deep=False).get("checkpoint_dir") for label, m in members.items()}
        shared = [d for d in set(dirs.values()) if d is not None and list(dirs.values()).count(d) > 1]
        for (label, member), safe in zip(members.items(), _safe_names(members)):
            if dirs[label] in shared:
                member.set_params(checkpoint_dir=str(Path(dirs[label]) / safe))
        return members

    def _check_params(self) -> dict:
        """Check the arguments and every member's (before any data is read); returns the unfitted members."""
        if self.combine not in COMBINES:
            raise ValueError(f"combine must be one of {COMBINES}; got {self.combine!r}")
        if self.quantile_combine not in QUANTILE_COMBINES:
            raise ValueError(f"quantile_combine must be one of {QUANTILE_COMBINES}; got {self.quantile_combine!r}")
        h = self.horizon
        if h is not None and (isinstance(h, bool) or not isinstance(h, (int, np.integer)) or h < 1):
            raise ValueError(f"horizon must be a positive integer or None; got {h!r}")
        members = self._expand()
        for label, member in members.items():
            check = getattr(member, "_check_params", None)
            if callable(check):
                try:
                    check()
                except ValueError as err:
                    raise ValueError(f"ensemble member {label!r}: {err}") from None
        return members

    def _lacking(self, method: str) -> list[str]:
        members = self.__dict__.get("members_")
        if members is None:
            try:
                members = self._templates()
            except ValueError:
                return []  # the method's own checks report bad arguments
        return [f"{name!r} ({type(m).__name__})" for name, m in members.items()
                if not callable(getattr(m, method, None))]

    @property
    def input_size(self) -> int | None:
        """The longest context a member reads (the largest member ``input_size``; None when no member has one):
        the history ``predict(df=...)`` needs at least, and the window length ``predict_windows`` takes."""
        members = self.__dict__.get("members_") or self._expand()
        sizes = [_param(m, "input_size") for m in members.values()]
        sizes = [int(s) for s in sizes if s is not None]
        return max(sizes) if sizes else None

    # ------------------------------------------------------------------ fit / predict
    def fit(self, df, val_df=None, **fit_params):
        """Fit every member on ``df`` (one after the other, in order; see the class docstring).

        ``val_df`` goes to the members whose ``fit`` takes it (the neural forecasters), other keyword
        arguments to every member. Returns ``self``.
        """
        members = self._check_params()
        df = to_pandas(df, "df")  # polars/Arrow converted once for all members (and any third-party member)
        val_df = None if val_df is None else to_pandas(val_df, "val_df")
        fitted, fit_time = {}, 0.0
        for (label, member), safe in zip(members.items(), _safe_names(members)):
            kwargs = dict(fit_params)
            if val_df is not None and _takes(member.fit, "val_df"):
                kwargs["val_df"] = val_df
            tic = time.perf_counter()
            with _member_metrics(safe):
                try:
                    member.fit(df, **kwargs)
                except Exception as err:
                    _reraise(err, label, "fit")
            fit_time += getattr(member, "fit_time_s_", None) or time.perf_counter() - tic
            fitted[label] = member
        for attr in [a for a in vars(self) if a.endswith("_") and not a.startswith("_")]:
            delattr(self, attr)
        self.members_ = fitted
        self.fit_time_s_ = fit_time
        return self

    def predict(self, h: int | None = None, df=None, quantiles=None, **kwargs) -> pd.DataFrame:
        """Forecast with every member and combine: ``unique_id, ds, y_pred[, y_pred_q{q}...]``.

        ``h``, ``df`` and ``quantiles`` as in each member's ``predict`` (``h=None``: the members' horizon);
        other keyword arguments (``context``, ``future_df``) go to every member. ``y_pred`` is the median (or
        mean, ``combine``) of the members' ``y_pred``; each quantile column the mean of theirs. Requested
        ``quantiles`` must come from every member (else a ``ValueError`` names the member); ``quantiles=None``
        gives the levels every member returns by default (a neural member fitted with ``quantiles``).
        """
        check_is_fitted(self, "members_")
        levels, args = self._call_args(h, quantiles, kwargs)
        if df is not None:
            args["df"] = to_pandas(df, "df")
        frames = {}
        for label, member in self.members_.items():
            try:
                frames[label] = member.predict(**args)
            except Exception as err:
                _reraise(err, label, "predict")
        return self._combine(frames, levels)

    @_if_every_member
    def update(self, df_new, h: int | None = None, quantiles=None, **kwargs) -> pd.DataFrame:
        """Stream new observations into every member (each member's ``update``) and combine their forecasts.

        Returns what :meth:`predict` combines from the members' ``update`` frames (the members' forecasts from
        the new end). Atomic: if a member fails (or the forecasts cannot be combined), every member is put
        back as it was before the call, so the call can be repeated. (The fitted state is restored from a
        shallow snapshot: ssmcast's forecasters replace, never modify in place, what ``update`` changes.)
        """
        check_is_fitted(self, "members_")
        levels, args = self._call_args(h, quantiles, kwargs)
        df_new = to_pandas(df_new, "df_new")
        saved = {label: _state(member) for label, member in self.members_.items()}
        try:
            frames = {}
            for label, member in self.members_.items():
                try:
                    frames[label] = member.update(df_new, **args)
                except Exception as err:
                    _reraise(err, label, "update")
            return self._combine(frames, levels)
        except BaseException:
            for label, member in self.members_.items():
                _restore(member, saved[label])
            raise

    @_if_every_member
    def predict_windows(self, context) -> np.ndarray:
        """Point forecasts of many windows at once, the median (or mean) of the members':
        ``context`` ``(n_windows, L, n_channels)`` -> ``(n_windows, horizon, n_channels)`` (see
        :mod:`ssmcast.forecasting`). A member with a shorter ``input_size`` reads the last ``input_size``
        values of each window (what ``predict(df=window)`` does); ``L`` must be at least :attr:`input_size`.
        """
        check_is_fitted(self, "members_")
        context = np.asarray(context)
        if context.ndim != 3:
            raise ValueError(f"context must have shape (n_windows, L, n_channels); got {context.shape}")
        outputs, first = [], None
        for label, member in self.members_.items():
            size = _param(member, "input_size")
            window = context
            if size is not None:
                if context.shape[1] < size:
                    raise ValueError(f"ensemble member {label!r} reads input_size={size} values; the windows have "
                                     f"{context.shape[1]} (give at least the ensemble's input_size={self.input_size})")
                window = context[:, context.shape[1] - size :]
            try:
                out = np.asarray(member.predict_windows(window), dtype=float)
            except Exception as err:
                _reraise(err, label, "predict_windows")
            if outputs and out.shape != outputs[0].shape:
                raise ValueError(f"ensemble members {first!r} and {label!r} forecast windows of different shapes "
                                 f"{outputs[0].shape} and {out.shape}: give them the same horizon (or set horizon=)")
            first = first or label
            outputs.append(out)
        stack = np.stack(outputs)
        return np.median(stack, axis=0) if self.combine == "median" else stack.mean(axis=0)

    def _call_args(self, h, quantiles, kwargs) -> tuple[list[float] | None, dict]:
        levels = None if quantiles is None else check_quantiles(quantiles)
        args = {"h": h, **kwargs}
        if self._pooled():
            if levels is None:  # the levels every member was fitted to give (a neural member's quantiles)
                fitted = [getattr(m, "quantiles", None) for m in self.members_.values()]
                levels = sorted(set.intersection(*[set(check_quantiles(q)) for q in fitted])) if all(fitted) else []
            if levels:
                args["quantiles"] = pool_levels()
        elif levels is not None:
            args["quantiles"] = levels
        return levels, args

    def _pooled(self) -> bool:
        if self.quantile_combine not in QUANTILE_COMBINES:
            raise ValueError(f"quantile_combine must be one of {QUANTILE_COMBINES}; got {self.quantile_combine!r}")
        return self.quantile_combine == "pool"

    def _combine(self, frames: dict, levels: list[float] | None) -> pd.DataFrame:
        """The members' forecast frames, row-aligned on (unique_id, ds), combined into one."""
        labels = list(frames)
        for label, frame in frames.items():
            if not isinstance(frame, pd.DataFrame) or not {"unique_id", "ds", "y_pred"} <= set(frame.columns):
                raise ValueError(f"ensemble member {label!r} returned no forecast frame (unique_id, ds, y_pred)")
        if levels is None:  # the levels every member gives by default
            levels = sorted(set.intersection(*[_levels(f) for f in frames.values()]))
        pooled = self._pooled() and bool(levels)
        first = frames[labels[0]]
        key = _rows(first, labels[0])
        wanted = pool_levels() if pooled else levels
        points, quants = [], {q: [] for q in wanted}
        for label, frame in frames.items():
            missing = [q for q in wanted if quantile_column(q) not in frame.columns]
            if missing:
                how = (" quantile_combine='pool' reads every member's distribution at 100 levels: use members that "
                       "give any level, or quantile_combine='average'" if pooled else "")
                raise ValueError(f"ensemble member {label!r} ({type(self.members_[label]).__name__}) gives no "
                                 f"quantile(s) {missing[:3]}{'...' if len(missing) > 3 else ''}; it gives "
                                 f"{sorted(_levels(frame))[:5]} (a neural forecaster gives other levels than its "
                                 f"fitted quantiles with loss='gaussian' or 'student_t').{how}")
            position = _rows(frame, label).get_indexer(key)
            if len(frame) != len(first) or (position < 0).any():
                raise ValueError(
                    f"ensemble members {labels[0]!r} and {label!r} forecast different rows ({len(first)} and "
                    f"{len(frame)} rows): give every member the same horizon (the ensemble's horizon= sets it) "
                    "and series"
                )
            points.append(frame["y_pred"].to_numpy(float)[position])
            for q in wanted:
                quants[q].append(frame[quantile_column(q)].to_numpy(float)[position])
        stack = np.stack(points)
        y = np.median(stack, axis=0) if self.combine == "median" else stack.mean(axis=0)
        if pooled:
            return forecast_frame(first["unique_id"], first["ds"], y, pool_quantiles(quants, levels))
        return forecast_frame(first["unique_id"], first["ds"], y, {q: np.mean(v, axis=0) for q, v in quants.items()})

    # ------------------------------------------------------------------ persistence
    @_if_every_member
    def save(self, path) -> None:
        """Write the fitted ensemble to directory ``path``: ``ensemble.json`` and ``members/000``... (each by
        the member's own ``save``); :func:`ssmcast.load` reads it back. Written beside ``path`` and renamed into
        place, like the neural forecasters' ``save``; ``path`` must be new, empty or an earlier saved ensemble.
        """
        check_is_fitted(self, "members_")
        path = Path(path)
        if path.exists():
            others = sorted(p.name for p in path.iterdir() if p.name not in (_INDEX, "members")) if path.is_dir() \
                else [path.name]
            if others:
                raise ValueError(f"cannot save into {path}: it holds {others[:5]}, which are not a saved ensemble's "
                                 "files; save into a new or empty folder")  # fmt: skip
        from ssmcast.forecasters.persistence import _qualname

        folders = [f"members/{i:03d}" for i in range(len(self.members_))]
        index = {
            "format": _FORMAT_VERSION,
            "_target_": _qualname(self),
            "params": {k: _encode(v, k) for k, v in self.get_params(deep=False).items()},
            "members": [{"name": label, "folder": folder} for label, folder in zip(self.members_, folders)],
            "fit_time_s": self.fit_time_s_,
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.saving-", dir=path.parent))
        try:
            for member, folder in zip(self.members_.values(), folders):
                member.save(tmp / folder)
            (tmp / _INDEX).write_text(json.dumps(index, indent=2))
            if path.exists():  # an earlier ensemble: swap the folders, then drop the old one
                old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old-", dir=path.parent))
                os.replace(path, old / "model")
                os.replace(tmp, path)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, path)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise


def pool_levels() -> list[float]:
    """The levels ``(k - 1/2) / POOL_LEVELS`` at which ``quantile_combine="pool"`` reads each member."""
    return [round((k - 0.5) / POOL_LEVELS, 10) for k in range(1, POOL_LEVELS + 1)]


def pool_quantiles(draws: dict[float, list[np.ndarray]], levels: list[float]) -> dict[float, np.ndarray]:
    """Quantiles at ``levels`` of the equal-weight mixture of the members' distributions, each given by its
    quantiles at :func:`pool_levels` (``draws[level]``: one array of rows per member): the pooled values, sorted
    per row, are a sample of the mixture whose i-th of n sits at level (i - 1/2) / n, read off by linear
    interpolation ("hazen")."""
    pooled = np.concatenate([np.stack(v) for v in draws.values()], axis=0)  # (members * levels, rows)
    return {q: np.quantile(pooled, q, axis=0, method="hazen") for q in levels}


def load_ensemble(path) -> EnsembleForecaster:
    """Read an ensemble written by :meth:`EnsembleForecaster.save` (use :func:`ssmcast.load`, which dispatches
    here): JSON, and each member through :func:`ssmcast.load`."""
    from ssmcast.forecasters.persistence import load, resolve_class

    path = Path(path)
    index = json.loads((path / _INDEX).read_text())
    if index.get("format") != _FORMAT_VERSION:
        raise ValueError(f"unsupported saved-ensemble format {index.get('format')!r} (expected {_FORMAT_VERSION})")
    cls = resolve_class(index["_target_"], EnsembleForecaster)
    est = cls(**{k: _decode(v) for k, v in index["params"].items()})
    members = {}
    root = path.resolve()
    for entry in index["members"]:
        folder = (path / entry["folder"]).resolve()
        if root not in folder.parents:
            raise ValueError(f"{path}: member folder {entry['folder']!r} lies outside the saved ensemble")
        members[str(entry["name"])] = load(folder)
    est.members_ = members
    est.fit_time_s_ = index.get("fit_time_s")
    return est


# ---------------------------------------------------------------------------------------------- helpers


def _values(values, what: str) -> list:
    if isinstance(values, (str, bytes)) or not isinstance(values, (list, tuple)):
        raise ValueError(f"{what} must be a list of values; got {values!r}")
    values = list(values)
    if not values:
        raise ValueError(f"{what} is empty: give at least one value (or None not to vary it)")
    repeated = [v for i, v in enumerate(values) if v in values[:i]]
    if repeated:
        raise ValueError(f"{what} repeats {repeated[:3]}: each value would give the same member twice")
    return values


def _param(est, name: str):
    get_params = getattr(est, "get_params", None)
    return get_params(deep=False).get(name) if callable(get_params) else None


def _takes(fn, name: str) -> bool:
    try:
        parameters = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return name in parameters or any(p.kind is p.VAR_KEYWORD for p in parameters.values())


def _safe_names(members) -> list[str]:
    """Folder- and metric-safe versions of the member names, distinct: ``s4d[seed=0]`` -> ``s4d_seed_0``."""
    out = []
    for label in members:
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(label)).strip("_") or "member"
        while safe in out:
            safe += "_"
        out.append(safe)
    return out


@contextmanager
def _member_metrics(name: str):
    """A member's per-epoch metrics go to ``<outer prefix>/<member>/...`` of the active MLflow run."""
    from ssmcast.training import loggers

    outer = loggers._STATE.prefix
    with loggers.metric_prefix(f"{outer}/{name}" if outer else name):
        yield


def _reraise(err: Exception, label: str, what: str):
    """Raise ``err`` saying which member raised it (the same type for the common builtin errors)."""
    if type(err) in (ValueError, TypeError, RuntimeError):
        raise type(err)(f"ensemble member {label!r} ({what}): {err}") from err
    err.add_note(f"raised by ensemble member {label!r} ({what})")
    raise err


def _levels(frame: pd.DataFrame) -> set[float]:
    prefix = "y_pred_q"
    return {float(c[len(prefix):]) for c in frame.columns if isinstance(c, str) and c.startswith(prefix)}


def _rows(frame: pd.DataFrame, label: str) -> pd.MultiIndex:
    rows = pd.MultiIndex.from_arrays([frame["unique_id"].astype(str).to_numpy(), pd.Index(frame["ds"])])
    if not rows.is_unique:
        raise ValueError(f"ensemble member {label!r} returned repeated (unique_id, ds) rows")
    return rows


def _state(est):
    """What ``update`` may change: the fitted attributes (dicts copied one level), and a nested ensemble's
    members' states."""
    fitted = {k: dict(v) if isinstance(v, dict) else v for k, v in vars(est).items()
              if k.endswith("_") and not k.startswith("__")}  # fmt: skip
    nested = {}
    if isinstance(est, EnsembleForecaster) and isinstance(fitted.get("members_"), dict):
        nested = {label: _state(m) for label, m in fitted["members_"].items()}
    return fitted, nested


def _restore(est, state) -> None:
    fitted, nested = state
    for attr in [a for a in vars(est) if a.endswith("_") and not a.startswith("__") and a not in fitted]:
        delattr(est, attr)
    for attr, value in fitted.items():
        setattr(est, attr, value)
    for label, member_state in nested.items():
        _restore(est.members_[label], member_state)


def _encode(value, where: str):
    """A constructor argument as JSON; estimators and backbone configs as ``{"_target_": class, **params}``."""
    from ssmcast.backbones.config import BackboneConfig
    from ssmcast.forecasters.persistence import _qualname

    if isinstance(value, BackboneConfig):
        return {"_target_": _qualname(value), **value.to_dict()}
    if hasattr(value, "get_params") and not isinstance(value, type):
        params = value.get_params(deep=False)
        return {"_target_": _qualname(value), **{k: _encode(v, f"{where}.{k}") for k, v in params.items()}}
    if isinstance(value, (list, tuple)):
        return [_encode(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, Mapping):
        bad = [k for k in value if not isinstance(k, str)]
        if bad or "_target_" in value:
            raise ValueError(f"cannot save parameter {where}: a dict with keys {list(value)[:5]} (strings other than "
                             "_target_ only)")  # fmt: skip
        return {k: _encode(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, np.generic):
        return value.item()
    try:
        json.dumps(value)
    except TypeError:
        raise ValueError(f"cannot save parameter {where}={value!r}: it is not JSON-serialisable") from None
    return value


def _decode(value):
    if isinstance(value, list):
        return [_decode(v) for v in value]
    if isinstance(value, dict):
        if "_target_" not in value:
            return {k: _decode(v) for k, v in value.items()}
        cls = _saved_class(value["_target_"])
        return cls(**{k: _decode(v) for k, v in value.items() if k != "_target_"})
    return value


def _saved_class(path: str) -> type:
    """The class a saved ensemble names: only ssmcast forecasters (with ``save``) and backbone configs."""
    from ssmcast.backbones.config import BackboneConfig
    from ssmcast.forecasters.persistence import SavedModel, resolve_class

    for base in (BackboneConfig, SavedModel, EnsembleForecaster):
        try:
            return resolve_class(path, base)
        except (ValueError, ImportError):
            continue
    raise ValueError(f"refusing to load {path!r}: a saved ensemble may only name ssmcast forecasters and backbone "
                     "configs")
