"""Recurrent mode of the neural forecasters: ``update()`` and forecasts from the state over the full history.

:class:`Streaming` is a mixin of :class:`ssmcast.forecasters.base.NeuralForecaster`. The recurrent state of
a unit is an *entry* ``{"z": (1, d_model), "state": <the backbone's state>, "n": rows seen}``; histories run
in parallel (``prefill``) once, and new rows advance the states a step at a time, many units batched together.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.utils.validation import check_is_fitted

from ssmcast.data.frames import ID, TIME, as_offset

_PREFILL_ROWS = 8192  # histories of equal length prefill together, up to this many rows a batch


class Streaming:
    """``update()`` and the batched recurrent steps behind it and ``predict(context="full")``."""

    def _run_steps(self, entries, Xs: list[np.ndarray]) -> list[dict[str, Any]]:
        """Advance units' recurrent states (``entries``: ``{"z", "state", "n"}``) over their new rows
        ``Xs[u] (T_u, n_in)``; returns new entries, the given states untouched.

        Units with the same number of rows and state shapes step together as one batch."""
        import torch

        groups: dict[tuple, list[int]] = {}
        for u, (entry, X) in enumerate(zip(entries, Xs)):
            key = (len(X), tuple(t.shape for t in _state_leaves(entry["state"])))
            groups.setdefault(key, []).append(u)
        out: list[dict[str, Any]] = [{}] * len(entries)
        with torch.no_grad():
            for members in groups.values():
                state = _map_state(lambda *ts: torch.cat(ts), *[entries[u]["state"] for u in members])
                z = torch.cat([entries[u]["z"] for u in members])
                rows = torch.as_tensor(np.stack([Xs[u] for u in members]), dtype=torch.float32)  # (G, T, n_in)
                for t in range(rows.shape[1]):
                    z, state = self.net_.step(rows[:, t], state)  # (G, d_model)
                for u, entry in zip(members, _split_entries(z, state, [entries[u]["n"] + len(Xs[u]) for u in members])):
                    out[u] = entry
        return out

    def _prefill(self, Xs: list[np.ndarray]) -> list[dict[str, Any]]:
        """Units' whole histories ``Xs[u] (T_u, n_in)`` in parallel; returns the entries :meth:`_run_steps`
        from the initial state would. Histories of equal length run as one batch (up to ``_PREFILL_ROWS`` rows)."""
        import torch

        by_length: dict[int, list[int]] = {}
        for u, X in enumerate(Xs):
            by_length.setdefault(len(X), []).append(u)
        out: list[dict[str, Any]] = [{}] * len(Xs)
        with torch.no_grad():
            for length, members in by_length.items():
                size = max(1, _PREFILL_ROWS // length)
                for first in range(0, len(members), size):
                    batch = members[first : first + size]
                    x = torch.as_tensor(np.stack([Xs[u] for u in batch]), dtype=torch.float32)  # (G, T, n_in)
                    z, state = self.net_.prefill(x)  # (G, d_model)
                    for u, entry in zip(batch, _split_entries(z, state, [length] * len(batch))):
                        out[u] = entry
        return out

    def _full_states(self, units, use_stream: bool):
        """Hidden states after the whole history of each unit (cached per unit for the training data)."""
        keys = list(units)
        cached = {k: self.stream_[k] for k in keys if use_stream and k in self.stream_}
        missing = [k for k in keys if k not in cached]
        fresh = dict(zip(missing, self._prefill([units[k]["X"] for k in missing])))
        if use_stream:
            self.stream_.update(fresh)
        return [cached.get(k) or fresh[k] for k in keys]

    def _last_targets(self, X: np.ndarray) -> np.ndarray:
        """The last ``input_size`` target rows of a unit, zero-padded in front when the history is shorter."""
        window = np.zeros((self.input_size, self.n_targets_), np.float32)
        tail = X[-self.input_size :, : self.n_targets_]
        window[self.input_size - len(tail) :] = tail
        return window

    def _decode_hidden(self, entries, fut, static, levels, windows):
        import torch

        with torch.no_grad():
            z = torch.cat([e["z"] for e in entries])  # (U, d_model)
            window = torch.as_tensor(np.asarray(windows)) if windows is not None else None
            out = self.net_.decode(z, torch.as_tensor(np.asarray(fut)), torch.as_tensor(np.asarray(static)), window)
            point = self.loss_fn_.point(out).numpy()
            quant = self.loss_fn_.quantiles(out, levels).numpy()
        return point, quant

    def update(self, df_new, h: int | None = None, quantiles=None, future_df=None) -> pd.DataFrame:
        """Stream new observations in and forecast from there, at a cost flat in the history's length.

        ``df_new`` (long, wide or a Series, like ``fit``'s frame) holds new rows of known series; each series
        in it must continue right after its last time stamp (training data plus earlier updates), in the
        model's time zone; with ``channel_mode="mixed"`` it must hold the new rows of every series. Series
        without new rows keep their history. The rows are appended to the stored history, and the forecast
        (``h``, ``quantiles`` and ``future_df`` as in :meth:`predict`) depends on ``revin``:

        - ``revin=True`` (default): the forecast from the last ``input_size`` observations of the updated
          history, as in training: it returns what ``predict(h, quantiles, future_df=...)`` returns
          afterwards, which equals ``predict(df=full_history)``. Nothing but the new rows is processed.
        - ``revin=False``: the recurrent state of each series (over its whole history) advances by the new
          rows, O(1) per observation (the first call also runs it once over the training history); returns
          ``predict(h, context="full")`` from the new state, which equals ``predict(df=full_history,
          context="full")`` without reprocessing the history. (RevIN normalises each window, so a state over
          the whole history is not defined with it.) Window models (DLinear, PatchTST: ``recurrent = False`` on
          the backbone config) have no such state: they forecast as with RevIN, from the last ``input_size``
          observations, whatever ``revin`` is.

        The update is atomic: if anything fails (the new rows, a bad ``h``/``quantiles``/``future_df``, a
        non-finite forecast or state) it raises and the model is left exactly as it was (``history_`` and
        the recurrent states ``stream_``), so the call can be repeated.
        """
        check_is_fitted(self, "net_")
        frame = self._validate_frame(df_new, "df_new")
        unknown = sorted(set(frame[ID]) - set(self.ids_))
        if unknown:
            raise ValueError(f"unknown unique_id(s) {unknown[:5]} in df_new")
        new_units = self._history_units(frame, validated=True)
        offset = as_offset(self.freq_)
        following = self._stamps_after([self.history_[k]["ds"][-1] for k in new_units], 1)
        tz = getattr(frame[TIME].dtype, "tz", None)  # once for the frame, not per series
        zone_new, zone_fit = (None if tz is None else str(tz)), _time_zone(next(iter(self.history_.values()))["ds"][-1])
        if zone_new != zone_fit:
            raise ValueError(
                f"df_new's time stamps are in time zone {zone_new or 'none (naive)'}, the model's in "
                f"{zone_fit or 'none (naive)'}: convert df_new's ds to the model's (e.g. ds.dt.tz_convert(...) or "
                "ds.dt.tz_localize(None))"
            )
        for k, unit in new_units.items():
            expected = following[self.history_[k]["ds"][-1]][0]
            if unit["ds"][0] != expected:
                raise ValueError(
                    f"df_new must continue series {unit['ids']} right after their last stamp "
                    f"{self.history_[k]['ds'][-1]} (expected {expected} with freq {offset}); got {unit['ds'][0]}"
                )
        if self.channel_mode == "mixed" and set(new_units) != set(self.history_):
            raise ValueError("channel_mode='mixed': df_new must hold the new rows of every series")
        before = dict(self.stream_), dict(self.history_)  # the appended rows go past the old views: no copy needed
        try:
            keys = list(new_units)
            stateful = not self.revin and getattr(self.backbone_, "recurrent", True)  # window models: never
            if stateful:
                self._full_states(self.history_, use_stream=True)  # one-off: states over the training history
                advanced = self._run_steps([self.stream_[k] for k in keys], [new_units[k]["X"] for k in keys])
                bad = [k for k, ok in zip(keys, _finite_entries(advanced)) if not ok]
                if bad:
                    ids = [uid for k in bad for uid in new_units[k]["ids"]]
                    raise ValueError(
                        f"df_new would make the recurrent state of series {ids[:5]} non-finite (NaN or inf): its "
                        f"rows, scaled by the scaling fitted on the training data, reach "
                        f"{max(float(np.abs(new_units[k]['X']).max()) for k in bad):.3g}, beyond what the model's "
                        "float32 arithmetic can carry. Nothing was absorbed; check those rows."
                    )  # fmt: skip
                for k, entry in zip(keys, advanced):
                    self.stream_[k] = entry
            for k in keys:
                self.history_[k] = _append_rows(self.history_[k], new_units[k]["X"], new_units[k]["ds"])
            context = "full" if stateful else "window"
            return self.predict(h=h, quantiles=quantiles, context=context, future_df=future_df)
        except BaseException:  # a bad h, quantiles or future_df, a non-finite forecast: nothing is absorbed
            self.stream_, self.history_ = before
            raise


def _finite_entries(entries) -> list[bool]:
    """Whether each entry's ``z`` and state are finite: one check over all entries' tensors stacked (one torch
    call per tensor of an entry was most of a 10k-series ``update()``), entry by entry where shapes differ."""
    import torch

    leaves = [[e["z"], *_state_leaves(e["state"])] for e in entries]
    if not leaves:
        return []
    try:
        ok = torch.ones(len(entries), dtype=torch.bool)
        for slot in range(len(leaves[0])):
            stacked = torch.cat([entry[slot] for entry in leaves])  # (n_entries * rows, ...): each entry 1 row
            if stacked.shape[0] != len(entries):
                raise ValueError("entries of more than one row")
            ok &= stacked.isfinite().reshape(len(entries), -1).all(dim=1)
        return ok.tolist()
    except (RuntimeError, ValueError, IndexError):  # shapes differ between entries: one at a time
        return [all(bool(t.isfinite().all()) for t in entry) for entry in leaves]


def _state_leaves(state) -> list:
    """The tensors of a recurrent state (a tensor or nested lists/tuples of them), in order."""
    if isinstance(state, (list, tuple)):
        return [t for part in state for t in _state_leaves(part)]
    return [state]


def _map_state(fn, *states):
    """``fn`` applied leaf by leaf across states of the same structure (batch dim 0 on every tensor)."""
    first = states[0]
    if isinstance(first, (list, tuple)):
        return type(first)(_map_state(fn, *parts) for parts in zip(*states, strict=True))
    return fn(*states)


def _split_entries(z, state, ns: list[int]) -> list[dict[str, Any]]:
    """Per-unit entries ``{"z", "state", "n"}`` from a batch's hidden ``z (G, d_model)`` and state."""
    return [{"z": z[j : j + 1], "state": _map_state(lambda t, j=j: t[j : j + 1], state), "n": n}
            for j, n in enumerate(ns)]


def _append_rows(unit: dict, X: np.ndarray, ds: np.ndarray) -> dict:
    """The unit with rows appended, amortised O(len(X)): the arrays are views of buffers that double."""
    n, m = len(unit["X"]), len(X)
    buffers = unit.get("buffers")
    if buffers is None or len(buffers[0]) < n + m:
        capacity = max(2 * (n + m), 16)
        bx = np.empty((capacity, unit["X"].shape[1]), unit["X"].dtype)
        bds = np.empty(capacity, unit["ds"].dtype)
        bx[:n], bds[:n] = unit["X"], unit["ds"]
        buffers = (bx, bds)
    buffers[0][n : n + m], buffers[1][n : n + m] = X, ds
    return dict(unit, X=buffers[0][: n + m], ds=buffers[1][: n + m], buffers=buffers)


def _time_zone(stamp) -> str | None:
    """The time zone of a time stamp as text (None for naive stamps and integer steps)."""
    if isinstance(stamp, (int, np.integer)):
        return None
    tz = pd.Timestamp(stamp).tz
    return None if tz is None else str(tz)

