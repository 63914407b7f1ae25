"""The shared machinery of the classical baselines: one model per series, fitted in parallel, with fallbacks.

A baseline subclasses :class:`BaselineForecaster` and implements ``_fit_series(y, m) -> SeriesFit`` (estimate
one series; raise on failure) and, for state space models, ``_filter(fit, y, new_history)`` (the model with the
fitted parameters, filtered on a history ``y``) and ``_model_forecast(results, h, levels)``. ``new_history`` is
False for the fitted series itself, possibly extended (``update``), and True for any history that does not
start where the fitted series started (``predict(df=...)`` windows, other series).
"""

from __future__ import annotations

import sys
import warnings
from dataclasses import dataclass, field
from numbers import Integral

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, clone
from sklearn.utils.validation import check_is_fitted
from threadpoolctl import ThreadpoolController

from ssmcast.data.frames import future_timestamps, infer_freq, validate
from ssmcast.forecasting import check_quantiles, forecast_frame, season_length_from_freq

from . import parallel
from .simple import naive2_forecast, naive_forecast, normal_quantile, seasonal_naive_forecast

__all__ = ["BaselineForecaster", "FallbackWarning", "SeriesFit"]


class FallbackWarning(UserWarning):
    """A series' model could not be fitted; a simpler, documented model forecasts that series instead."""


@dataclass
class SeriesFit:
    """What a fitted series keeps: enough to re-filter its model on any history without re-estimation.

    ``method`` is ``"model"`` for the estimator's own model, else one of the parameter-free methods
    ``"naive"``, ``"seasonal_naive"``, ``"naive2"``, ``"constant"``.
    """

    name: str
    method: str = "model"
    spec: dict = field(default_factory=dict)
    params: np.ndarray | None = None
    param_names: list[str] = field(default_factory=list)
    season_length: int = 1
    fallback: str | None = None
    stats: dict = field(default_factory=dict)


@dataclass
class _Panel:
    """Series as arrays: ``ids`` (k,) in id order; series ``j``'s values ``y[starts[j] : starts[j] + lengths[j]]``;
    ``first`` / ``last`` its first and last stamps (Index of k)."""

    ids: np.ndarray
    y: np.ndarray
    starts: np.ndarray
    lengths: np.ndarray
    first: pd.Index
    last: pd.Index

    def series(self) -> list[tuple[str, np.ndarray, object, object]]:
        """``(unique_id, y (copied), first ds, last ds)`` per series."""
        return [(uid, self.y[a : a + n].copy(), f, l)
                for uid, a, n, f, l in zip(self.ids, self.starts, self.lengths, self.first, self.last)]  # fmt: skip

    @classmethod
    def from_histories(cls, ids: list[str], histories: list[np.ndarray], last: list) -> _Panel:
        lengths = np.array([len(y) for y in histories], dtype=np.int64)
        starts = np.r_[0, np.cumsum(lengths)[:-1]].astype(np.int64) if len(ids) else lengths
        y = np.concatenate(histories) if histories else np.zeros(0)
        return cls(np.asarray(ids, dtype=object), y, starts, lengths, pd.Index([]), pd.Index(last))


def _check_int(value, name: str, *, minimum: int, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, Integral) or value < minimum:
        none = " or None" if allow_none else ""
        raise ValueError(f"{name} must be an integer >= {minimum}{none}; got {value!r}")


_CONTROLLER: list = [None, -1]  # a ThreadpoolController and len(sys.modules) when it was made


def _one_blas_thread():
    """``threadpool_limits(limits=1, user_api="blas")`` from a cached controller: building one scans every loaded
    shared library (~10 ms with torch loaded), which was paid once a task; it is rebuilt when modules were imported
    since (a BLAS loaded later is then found)."""
    if _CONTROLLER[0] is None or _CONTROLLER[1] != len(sys.modules):
        _CONTROLLER[:] = [ThreadpoolController(), len(sys.modules)]
    return _CONTROLLER[0].limit(limits=1, user_api="blas")


def _messages(caught: list) -> list[str]:
    return [f"{w.category.__name__}: {w.message}" for w in caught]


def _fit_one(estimator, uid: str, y: np.ndarray, m: int) -> tuple[str, SeriesFit]:
    try:
        fit = estimator._fit_series(y, m)
    except Exception as err:  # noqa: BLE001 - any failure of one series must not crash the batch
        fit = estimator._fallback(y, m, f"{type(err).__name__}: {err}")
    return uid, fit


def _fit_task(estimator, uid: str, y: np.ndarray, m: int) -> tuple[str, SeriesFit, list[str]]:
    """Fit one series (in a worker): the model, else its fallback. Warnings are recorded, not raised."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        uid, fit = _fit_one(estimator, uid, y, m)
    return uid, fit, _messages(caught)


def _fit_batch(estimator, batch: list, m: int) -> list[tuple[str, SeriesFit, list[str]]]:
    """Fit a batch of series ``[(uid, y), ...]`` in one task: the per-task costs (joblib's dispatch, the BLAS
    thread limit, the warnings' recorder) are paid once a batch, not once a series (they were most of a naive
    forecaster's fit); each series gets the warnings raised while it was fitted, as :func:`_fit_task` gives."""
    # one BLAS thread: the matrices are tiny and multithreaded OpenBLAS is up to 8x slower on them;
    # parallelism comes from n_jobs over series
    out = []
    with _one_blas_thread(), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for uid, y in batch:
            out.append((*_fit_one(estimator, uid, y, m), _messages(caught)))
            caught.clear()
    return out


def _forecast_batch(estimator, batch: list, h: int, levels: list[float]) -> list:
    """Forecasts of a batch ``[(fit, y, new_history), ...]`` in one task (see :func:`_fit_batch`)."""
    with _one_blas_thread():
        return estimator._forecast_many(batch, h, levels)


def _batches(items: list, n_jobs) -> list[list]:
    """``items`` cut into about four batches a local worker (see :func:`ssmcast.baselines.parallel.batches`)."""
    return parallel.batches(items, parallel.workers("local", n_jobs))


def _windows_task(estimator, fit: SeriesFit, windows: np.ndarray, h: int, affine_map, build_map: bool):
    """Point forecasts ``(n, h)`` of one series' windows ``(n, L)``; returns them and the affine map used.

    ``affine_map`` ``(W (h, L), b (h,))`` or None; with ``build_map`` (a linear model, enough windows) it is
    computed from the forecasts of the first window ``y0`` and of ``y0 + delta e_i`` for the L unit vectors,
    then checked against the direct forecast of another history (a map that fails the check, or cannot be
    computed, is not used: ``False`` is returned instead).
    """
    with _one_blas_thread():
        n, L = windows.shape
        direct = lambda y: estimator._forecast(fit, y, h, [], True)[0]  # noqa: E731
        if affine_map is None and build_map:
            affine_map = False
            y0 = windows[0]
            delta = float(np.abs(y0).max()) or 1.0
            y1 = windows[-1] + 0.5 * delta * np.linspace(0.0, 1.0, L)  # not y0 even when the windows repeat
            try:
                f0 = direct(y0)  # (h,)
                W = np.stack([direct(y0 + delta * e) - f0 for e in np.eye(L)], axis=1) / delta  # (h, L)
                b = f0 - W @ y0
                check = direct(y1)
            except Exception:  # noqa: BLE001 - e.g. a multiplicative model refusing a history: no map
                check = None
            if check is not None:
                scale = 1.0 + np.abs(check).max() + np.abs(y1).max()
                if np.allclose(W @ y1 + b, check, rtol=1e-10, atol=1e-10 * scale):  # linear models: ~1e-15
                    affine_map = (W, b)
        if affine_map:
            W, b = affine_map
            return windows @ W.T + b, affine_map  # (n, h)
        return np.stack([direct(y) for y in windows]), affine_map


class BaselineForecaster(BaseEstimator):
    """Base of the classical baselines (see the module docstring); not used directly.

    Fitted attributes: ``freq_``, ``season_length_``, ``models_`` (``unique_id -> SeriesFit``),
    ``fallbacks_`` (``unique_id -> reason`` for the series that fell back), ``fit_warnings_``
    (``unique_id -> [messages]`` caught while fitting, e.g. statsmodels ``ConvergenceWarning``),
    ``history_`` (``unique_id -> (y, last stamp)``, extended by :meth:`update`), ``starts_`` (first stamps).
    """

    has_parameters = True  # False: the model is recomputed from any history, so unknown ids are fine
    _vectorised = False  # True: _fit_panel / _forecast_panel take the whole panel at once (the naive family)
    _caches: tuple[str, ...] = ()  # names of dict attributes that forecasting workers share (see _worker)
    min_length = 1

    # ------------------------------------------------------------------ hooks for subclasses

    def _check_params(self) -> None:
        """Validate the constructor arguments (called by ``fit``)."""

    def _check_season_length(self, m: int) -> None:
        """Validate the arguments that depend on the resolved season length (called by ``fit``)."""

    def _fit_series(self, y: np.ndarray, m: int) -> SeriesFit:
        raise NotImplementedError

    def _filter(self, fit: SeriesFit, y: np.ndarray, new_history: bool = False):
        raise NotImplementedError

    def _model_forecast(self, results, h: int, levels: list[float]):
        """``(mean, {q: values})`` from a statsmodels state space results object: mean + se * Phi^-1(q)."""
        forecast = results.get_forecast(h)
        mean = np.asarray(forecast.predicted_mean, dtype=float)
        se = np.asarray(forecast.se_mean, dtype=float)
        return mean, {q: mean + se * normal_quantile(q) for q in levels}

    def _fallback_method(self, y: np.ndarray, m: int) -> str:
        return "seasonal_naive" if m > 1 and len(y) >= 2 * m else "naive"

    def _is_linear(self, fit: SeriesFit) -> bool:
        """Whether the model's point forecast is a linear filter of the history (fixed parameters), hence
        an affine function of it: ARIMA, structural models, ETS without a multiplicative trend or season."""
        return False

    def _is_affine(self, fit: SeriesFit) -> bool:
        """Whether a series' point forecast is affine in the history it is computed from."""
        if fit.method == "model":
            return self._is_linear(fit)
        return fit.method in ("naive", "constant", "seasonal_naive")

    # ------------------------------------------------------------------ shared machinery

    def _fallback(self, y: np.ndarray, m: int, reason: str) -> SeriesFit:
        method = self._fallback_method(y, m)
        return SeriesFit(name=method, method=method, season_length=m, fallback=reason)

    def _forecast(self, fit: SeriesFit, y: np.ndarray, h: int, levels: list[float], new_history: bool = False):
        if fit.method == "model":
            return self._model_forecast(self._filter(fit, y, new_history), h, levels)
        if fit.method in ("naive", "constant"):
            return naive_forecast(y, h, levels)
        if fit.method == "seasonal_naive":
            return seasonal_naive_forecast(y, fit.season_length, h, levels)
        if fit.method == "naive2":
            return naive2_forecast(y, fit.season_length, h, levels)
        raise ValueError(f"unknown method {fit.method!r}")

    def _forecast_many(self, batch: list, h: int, levels: list[float]) -> list:
        """``[(mean, {q: values}), ...]`` for a batch ``[(fit, y, new_history), ...]``; a subclass may share work
        between a batch's series (ARIMA: one vectorised forecast recursion)."""
        return [self._forecast(fit, y, h, levels, new) for fit, y, new in batch]

    def _check_common(self) -> None:
        _check_int(self.season_length, "season_length", minimum=1, allow_none=True)
        _check_int(self.horizon, "horizon", minimum=1, allow_none=True)
        if self.n_jobs is not None and (isinstance(self.n_jobs, bool) or not isinstance(self.n_jobs, Integral)):
            raise ValueError(f"n_jobs must be an integer or None; got {self.n_jobs!r}")
        self._backend()

    @staticmethod
    def _panel(data: pd.DataFrame) -> _Panel:
        """The series of a validated frame (sorted by id, then ds) as arrays, cut at the id boundaries (no pandas
        group per series, issue #36)."""
        uid = data["unique_id"]
        if len(uid) == 0:
            empty = np.zeros(0, np.int64)
            return _Panel(np.zeros(0, object), np.zeros(0), empty, empty, pd.Index([]), pd.Index([]))
        codes = uid.factorize(sort=False)[0]  # one integer a series (an Arrow string column compares slowly)
        starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]]).astype(np.int64)
        lengths = np.diff(np.r_[starts, len(codes)]).astype(np.int64)
        ids = np.asarray(uid.iloc[starts].astype(str).to_numpy(), dtype=object)
        ds = pd.Index(data["ds"])
        first, last = ds[starts], ds[starts + lengths - 1]
        if len(ids) > 1 and not (ids[1:] > ids[:-1]).all():  # not in id order: sort as groupby did
            order = np.argsort(ids, kind="stable")
            ids, starts, lengths, first, last = ids[order], starts[order], lengths[order], first[order], last[order]
        return _Panel(ids, data["y"].to_numpy(dtype=float, copy=True), starts, lengths, first, last)

    def _series(self, data: pd.DataFrame) -> list[tuple[str, np.ndarray, object, object]]:
        """``(unique_id, y, first ds, last ds)`` per series of a validated frame, in id order."""
        return self._panel(data).series()

    def _is_new_history(self, uid: str, first) -> bool:
        """Whether a history of series ``uid`` starting at ``first`` starts elsewhere than the fitted series."""
        return uid not in self.starts_ or first != self.starts_[uid]

    def _worker(self):
        """An unfitted clone for the forecasting tasks, sharing this estimator's ``_caches`` dicts (results
        that depend on the parameters only, such as ETS's initial-state solvers; shared in-process)."""
        worker = clone(self)
        for name in self._caches:
            setattr(worker, name, self.__dict__.setdefault(name, {}))
        return worker

    def _run(self, fn, arguments: list[tuple], desc: str):
        """``fn(*args)`` for each task, in order, on this estimator's backend (:mod:`.parallel`)."""
        return parallel.run_tasks(fn, arguments, len(arguments), backend=self._backend(), n_jobs=self.n_jobs,
                                  desc=desc, verbose=self.verbose)

    def _backend(self) -> str:
        return parallel.check_backend(getattr(self, "backend", "local"))

    def _batches(self, items: list) -> list[list]:
        return parallel.batches(items, parallel.workers(self._backend(), self.n_jobs))

    def fit(self, df, y=None):
        """Fit one model per series of ``df`` (long/wide/Series, or polars/pyarrow; see :func:`ssmcast.data.to_long`).

        Series whose model fails fall back to a simpler model with a :class:`FallbackWarning`
        (see ``fallbacks_``). ``y`` is ignored (sklearn compatibility). Returns ``self``.
        """
        self._check_common()
        self._check_params()
        data = validate(df, min_length=self.min_length)
        freq = data.attrs.get("freq") or infer_freq(data)  # validate inferred it (None: one row a series)
        m = self.season_length if self.season_length is not None else season_length_from_freq(freq)
        self._check_season_length(m)
        panel = self._panel(data)
        if self._vectorised:  # the naive family: no task per series (issue #36)
            fits, messages = self._fit_panel(panel, m), {}
        else:
            worker = clone(self)
            batches = self._batches(list(zip(panel.ids, (y_ for _, y_, _, _ in panel.series()))))
            tasks = [(worker, batch, m) for batch in batches]
            done = {uid: (fit, notes) for out in self._run(_fit_batch, tasks, "fit") for uid, fit, notes in out}
            fits = [done[uid][0] for uid in panel.ids]
            messages = {uid: done[uid][1] for uid in panel.ids if done[uid][1]}

        ids = panel.ids.tolist()
        self.freq_ = freq
        self.season_length_ = int(m)
        self.models_ = dict(zip(ids, fits))
        ends = panel.starts + panel.lengths
        self.history_ = {uid: (panel.y[a:b].copy(), last)
                         for uid, a, b, last in zip(ids, panel.starts, ends, panel.last)}  # fmt: skip
        self.starts_ = dict(zip(ids, panel.first))
        self.fallbacks_ = {uid: fit.fallback for uid, fit in self.models_.items() if fit.fallback}
        self.fit_warnings_ = messages
        self._window_maps = {}  # predict_windows' affine maps, per (series, window length, h)
        for uid, reason in self.fallbacks_.items():
            warnings.warn(
                f"{type(self).__name__}: series {uid!r} could not be fitted ({reason}); "
                f"falling back to {self.models_[uid].name}",
                FallbackWarning,
                stacklevel=2,
            )
        return self

    def _resolve_h(self, h) -> int:
        if h is None:
            h = self.horizon
            if h is None:
                raise ValueError("h is required: pass predict(h=...) or set the horizon parameter")
        if isinstance(h, (bool, np.bool_)) or not isinstance(h, Integral) or h <= 0:
            raise ValueError(f"h must be a positive integer; got {h!r}")
        return int(h)

    def predict(self, h: int | None = None, df=None, quantiles=None) -> pd.DataFrame:
        """Forecast ``h`` steps (default: the ``horizon`` parameter) after the end of each series.

        Without ``df``: after each training series. With ``df`` (a new history, long/wide/Series): every
        series of ``df`` is re-filtered with its fitted parameters (no re-estimation) and forecast from
        the end of ``df``; ids not seen in ``fit`` raise ``ValueError`` for models with estimated
        parameters. ``quantiles`` adds one ``y_pred_q{q}`` column per level. Returns the long frame
        ``unique_id, ds, y_pred[, y_pred_q...]``.
        """
        check_is_fitted(self, "models_")
        h = self._resolve_h(h)
        levels = check_quantiles(quantiles)
        if df is None:
            ids = list(self.history_)
            panel = _Panel.from_histories(ids, [self.history_[uid][0] for uid in ids],
                                          [self.history_[uid][1] for uid in ids])  # fmt: skip
            fits = [self.models_[uid] for uid in ids]
            new = [False] * len(ids)
        else:
            data = validate(df, min_length=1, freq=self.freq_)
            panel = self._panel(data)
            known = self.models_
            unknown = [uid for uid in panel.ids if uid not in known]
            if unknown and self.has_parameters:
                shown = ", ".join(map(repr, unknown[:5]))
                shown += f" ... ({len(unknown)} in all)" if len(unknown) > 5 else ""
                raise ValueError(
                    f"df holds series not seen in fit: {shown}; {type(self).__name__} has per-series "
                    "parameters, so fit on those series first"
                )
            free = self._parameter_free_fit() if unknown else None
            fits = [known.get(uid) or free for uid in panel.ids]
            new = None if self._vectorised else [self._is_new_history(uid, f) for uid, f in zip(panel.ids, panel.first)]
        if len(panel.ids) == 0:
            return forecast_frame([], [], [], {q: [] for q in levels})
        if self._vectorised:
            mean, columns = self._forecast_panel(fits, panel, h, levels)  # (k, h), {q: (k, h)}
        else:
            worker = self._worker()
            histories = (panel.y[a : a + n] for a, n in zip(panel.starts, panel.lengths))
            batches = self._batches(list(zip(fits, histories, new)))
            tasks = [(worker, batch, h, levels) for batch in batches]
            outputs = [out for done in self._run(_forecast_batch, tasks, "predict") for out in done]
            mean = np.stack([mu for mu, _ in outputs])
            columns = {q: np.stack([qs[q] for _, qs in outputs]) for q in levels}
        return forecast_frame(np.repeat(panel.ids, h), self._future_stamps(panel.last, h), mean.ravel(),
                              {q: v.ravel() for q, v in columns.items()})

    def _future_stamps(self, last: pd.Index, h: int) -> pd.Index:
        """The ``h`` stamps after each series' last stamp, series after series: the stamps after each distinct
        end built once (a panel mostly ends on one stamp) and gathered."""
        codes, ends = pd.factorize(last)
        ahead = [pd.Index(future_timestamps(end, self.freq_, h)) for end in ends]
        stamps = ahead[0].append(ahead[1:]) if len(ahead) > 1 else ahead[0]
        return stamps.take((codes[:, None] * h + np.arange(h)).ravel())

    def _fit_panel(self, panel: _Panel, m: int) -> list[SeriesFit]:
        raise NotImplementedError

    def _forecast_panel(self, fits: list[SeriesFit], panel: _Panel, h: int, levels: list[float]):
        raise NotImplementedError

    def update(self, df_new, h: int | None = None, quantiles=None) -> pd.DataFrame:
        """Append new observations to the fitted series and forecast from their new end.

        ``df_new`` (long/wide/Series) must continue each of its series right after the series' last time
        stamp (series not in ``df_new`` keep their history). The parameters stay as fitted: each series'
        model is re-filtered (Kalman filter) over its extended history, so the result equals
        ``predict(h, df=full_history)``; later ``predict()`` calls start from the new end too. Returns the
        ``predict`` frame of every series. On any error nothing is appended.
        """
        check_is_fitted(self, "models_")
        h = self._resolve_h(h)
        levels = check_quantiles(quantiles)
        data = validate(df_new, min_length=1, freq=self.freq_)
        series = self._series(data)
        unknown = [uid for uid, _, _, _ in series if uid not in self.history_]
        if unknown:
            raise ValueError(f"df_new holds series not seen in fit: {', '.join(map(repr, unknown[:5]))}; "
                             "update() continues fitted series (use predict(df=...) for a new history)")
        extended = dict(self.history_)
        for uid, y_new, first, last_new in series:
            y_old, last = self.history_[uid]
            expected = future_timestamps(last, self.freq_, 1)[0]
            if first != expected:
                raise ValueError(f"df_new must continue series {uid!r} right after its last stamp {last} "
                                 f"(expected {expected}); got {first}")
            extended[uid] = (np.concatenate([y_old, y_new]), last_new)
        before, self.history_ = self.history_, extended
        try:
            return self.predict(h, quantiles=levels)
        except BaseException:
            self.history_ = before
            raise

    def predict_windows(self, context) -> np.ndarray:
        """Point forecasts of many windows at once: ``context`` ``(n_windows, L, n_series)`` ->
        ``(n_windows, horizon, n_series)``; column ``j`` holds histories of the ``j``-th fitted series (ids in
        sorted order), and each window is forecast as ``predict(df=window)`` would (parameters fixed). Used by
        the long-horizon protocol (:func:`ssmcast.evaluation.evaluate_ltsf`).

        A linear model's forecast from ``L`` values is affine in them, ``W y + b``: once a series has had
        more than ``L + 1`` windows, ``W (horizon, L)`` and ``b`` are computed from ``L + 1`` filtered
        histories (a window and its L unit perturbations), checked on a direct forecast and kept for later
        calls, so thousands of windows cost about ``L`` Kalman filters per series instead of one each. A
        model that is not linear (multiplicative ETS, Naive2) forecasts every window on its own.
        """
        check_is_fitted(self, "models_")
        h = self._resolve_h(None)
        context = np.asarray(context, dtype=float)
        ids = list(self.models_)
        if context.ndim != 3 or 0 in context.shape:
            raise ValueError(f"context must have shape (n_windows, L, n_series); got {context.shape}")
        if context.shape[2] != len(ids):
            raise ValueError(f"context has {context.shape[2]} series (last axis); the model was fitted on "
                             f"{len(ids)}: {ids[:5]}")
        if not np.isfinite(context).all():
            raise ValueError("context has NaN/inf values")
        n, L, _ = context.shape
        maps = self.__dict__.setdefault("_window_maps", {})
        worker, tasks, keys = self._worker(), [], []
        for j, uid in enumerate(ids):
            fit, key = self.models_[uid], (uid, L, h)
            entry = maps.setdefault(key, {"seen": 0, "map": None})
            build = entry["map"] is None and entry["seen"] + n > L + 1 and self._is_affine(fit)
            entry["seen"] += n
            keys.append(key)
            tasks.append((worker, fit, context[:, :, j], h, entry["map"], build))
        outputs = list(self._run(_windows_task, tasks, "predict_windows"))
        for key, (_, affine_map) in zip(keys, outputs):
            maps[key]["map"] = affine_map
        return np.stack([forecast for forecast, _ in outputs], axis=2)  # (n, h, n_series)

    def _parameter_free_fit(self) -> SeriesFit:
        raise NotImplementedError

    def summary(self) -> pd.DataFrame:
        """One row per series: the model used, whether it fell back (and why), and its fit statistics."""
        check_is_fitted(self, "models_")
        rows = []
        for uid, fit in self.models_.items():
            rows.append({"unique_id": uid, "model": fit.name, "fallback": fit.fallback, **fit.stats})
        return pd.DataFrame(rows)

    def results(self, unique_id: str, df=None):
        """The statsmodels results of one series: its fitted model filtered on the training history, or on
        the history of that series in ``df`` (parameters fixed; ETS re-estimates its initial states when that
        history starts elsewhere than the fitted series)."""
        check_is_fitted(self, "models_")
        uid = str(unique_id)
        if uid not in self.models_:
            raise ValueError(f"unknown unique_id {unique_id!r}; fitted series: {list(self.models_)[:5]}...")
        fit = self.models_[uid]
        if fit.method != "model":
            raise ValueError(f"series {uid!r} uses the parameter-free method {fit.name!r}: no statsmodels results")
        if df is None:
            return self._filter(fit, self.history_[uid][0], False)
        data = validate(df, min_length=1, freq=self.freq_)
        data = data[data["unique_id"] == uid]
        if data.empty:
            raise ValueError(f"df has no rows for series {uid!r}")
        return self._filter(fit, data["y"].to_numpy(dtype=float), self._is_new_history(uid, data["ds"].iloc[0]))

