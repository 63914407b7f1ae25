"""Recurrent mode of the neural forecasters: ``update()`` and forecasts from the state over the full history.

:class:`Streaming` is a mixin of :class:`ssmcast.forecasters.base.NeuralForecaster`. The recurrent state of
a unit is an *entry* ``{"z": (1, d_model), "state": <the backbone's state>, "n": rows seen}``; histories run
in parallel (``prefill``) once, and new rows advance the states a step at a time, many units batched together.
The entries live in a :class:`StreamStates` (``stream_``), which keeps them as the batches they were computed in.
"""

from __future__ import annotations

import itertools
from collections.abc import MutableMapping

import numpy as np
import pandas as pd
from sklearn.utils.validation import check_is_fitted

from ssmcast.data.frames import TIME, _bounds, as_offset
from ssmcast.forecasters.preparation import _collector_paused, _ids_at

# histories of equal length prefill together, up to _PREFILL_ROWS rows and _PREFILL_VALUES rows x d_model a batch
# (a batch's activations are a few times rows x d_model floats: ~16 MB each at the default, whatever d_model is);
# 8192 rows (40 histories of 200) made a 10k-series prefill mostly per-batch overhead (issue #36)
_PREFILL_ROWS = 1 << 18
_PREFILL_VALUES = 1 << 22
_STEP_UNITS = 8192  # recurrent steps and decoding run this many units at a time (their tensors stay in cache)


class StreamStates(MutableMapping):
    """Unit key -> entry ``{"z": (1, d_model), "state": <the backbone's state, one row>, "n": rows seen}``.

    Entries are stored as the batches they were computed in: ``(z (G, d_model), state (G rows a tensor), n (G,))``,
    never changed once stored, and ``key -> (batch, row)``. Reading ``states[key]`` makes that entry's row views
    (kept, so a key reads as the same entry until it changes); :meth:`gather` returns many keys' rows as one batch
    (one index per tensor and batch) and :meth:`put` stores a batch under many keys. An entry a tensor per unit
    cost a slice per tensor per unit, and a concatenation of them per step: most of a 10k-series ``update()``
    (issue #36). :meth:`copy` is cheap (the batches are shared)."""

    def __init__(self):
        self._batches: list = []  # (z, state, n, signature) or None once no key uses it
        self._live: list[int] = []  # keys using each batch
        self._where: dict = {}  # key -> (batch, row)
        self._entries: dict = {}  # key -> its entry, once read

    def __getitem__(self, key):
        entry = self._entries.get(key)
        if entry is None:
            b, r = self._where[key]
            z, state, n, _ = self._batches[b]
            entry = {"z": z[r : r + 1], "state": _map_state(lambda t: t[r : r + 1], state), "n": int(n[r])}
            self._entries[key] = entry
        return entry

    def __setitem__(self, key, entry) -> None:
        self.put([key], entry["z"], entry["state"], [entry["n"]])
        self._entries[key] = entry

    def __delitem__(self, key) -> None:
        b, _ = self._where.pop(key)
        self._entries.pop(key, None)
        self._release(b)

    def __iter__(self):
        return iter(self._where)

    def __len__(self) -> int:
        return len(self._where)

    def __contains__(self, key) -> bool:
        return key in self._where

    def __repr__(self) -> str:
        return f"StreamStates({len(self)} units in {sum(b is not None for b in self._batches)} batches)"

    def copy(self) -> StreamStates:
        new = StreamStates()
        new._batches, new._live = list(self._batches), list(self._live)
        new._where, new._entries = dict(self._where), dict(self._entries)
        return new

    def put(self, keys: list, z, state, ns) -> None:
        """Store a batch: row ``j`` of ``z``, of every tensor of ``state`` and ``ns[j]`` become ``keys[j]``'s entry."""
        b = len(self._batches)
        signature = tuple(tuple(t.shape[1:]) for t in _state_leaves(state))
        self._batches.append((z, state, np.asarray(ns, dtype=np.int64), signature))
        self._live.append(len(keys))
        where = self._where
        old = [pair[0] for pair in map(where.get, keys) if pair is not None]  # the batches these keys leave
        where.update(zip(keys, zip(itertools.repeat(b), range(len(keys)))))
        if self._entries:
            for key in keys:
                self._entries.pop(key, None)
        if old:
            batches, counts = np.unique(np.asarray(old, dtype=np.int64), return_counts=True)
            for batch, count in zip(batches.tolist(), counts.tolist()):
                self._release(batch, count)

    def _release(self, b: int, count: int = 1) -> None:
        self._live[b] -= count
        if self._live[b] == 0:
            self._batches[b] = None

    def signature(self, key) -> tuple:
        """The shapes (without the batch dimension) of ``key``'s state tensors: keys that share it stack."""
        return self._batches[self._where[key][0]][3]

    def locate(self, keys: list) -> np.ndarray:
        """``(K, 2)``: the batch and row of each key."""
        return np.array(list(map(self._where.__getitem__, keys)), dtype=np.int64).reshape(len(keys), 2)

    def signatures(self, batches: np.ndarray) -> np.ndarray:
        """An integer per batch of ``batches``, equal for batches whose states stack (same :meth:`signature`)."""
        distinct, inverse = np.unique(batches, return_inverse=True)
        ids: dict = {}
        codes = np.array([ids.setdefault(self._batches[b][3], len(ids)) for b in distinct.tolist()], dtype=np.int64)
        return codes[inverse.reshape(-1)] if len(codes) else np.zeros(0, np.int64)

    def gather(self, keys: list, hidden_only: bool = False, located: np.ndarray | None = None):
        """``(z (K, d_model), state (K rows), n (K,))`` of ``keys``, whose states must share :meth:`signature`;
        ``hidden_only``: ``z`` alone (any keys). ``located``: :meth:`locate` of ``keys``, if known."""
        import torch

        located = self.locate(keys) if located is None else located
        batch, row = located[:, 0], located[:, 1]
        if len(batch) and (batch == batch[0]).all() and len(self._batches[batch[0]][2]) == len(batch) \
                and (row == np.arange(len(row))).all():  # a whole stored batch, in its order: as it is
            z, state, n, _ = self._batches[batch[0]]
            return z if hidden_only else (z, state, n)
        order = np.argsort(batch, kind="stable")
        bounds = np.flatnonzero(np.r_[True, batch[order][1:] != batch[order][:-1], True])
        parts = []
        for lo, hi in zip(bounds[:-1], bounds[1:]):
            z, state, n, _ = self._batches[batch[order[lo]]]
            index = row[order[lo:hi]]
            take = torch.from_numpy(index)
            parts.append((z.index_select(0, take), None if hidden_only else
                          _map_state(lambda t, take=take: t.index_select(0, take), state), n[index]))
        back = torch.from_numpy(np.argsort(order, kind="stable"))  # concatenated parts -> the keys' order
        z = torch.cat([p[0] for p in parts]).index_select(0, back)
        if hidden_only:
            return z
        state = _map_state(lambda *ts: torch.cat(ts).index_select(0, back), *[p[1] for p in parts])
        n = np.concatenate([p[2] for p in parts])[back.numpy()]
        return z, state, n

    def gather_z(self, keys: list):
        """The hidden states ``z (K, d_model)`` of ``keys``."""
        return self.gather(keys, hidden_only=True)


class Streaming:
    """``update()`` and the batched recurrent steps behind it and ``predict(context="full")``."""

    def _run_steps(self, states: StreamStates, keys: list, Xs: list[np.ndarray]) -> tuple[StreamStates, list[bool]]:
        """Advance the recurrent states of ``keys`` over their new rows ``Xs[u] (T_u, n_in)``; returns a copy of
        ``states`` with them advanced (``states`` untouched) and whether each advanced state is finite.

        Units with the same number of rows and state shapes step together as one batch."""
        import torch

        located = states.locate(keys)  # (K, 2): batch, row
        lengths = np.fromiter(map(len, Xs), np.int64, len(Xs))
        code = states.signatures(located[:, 0]) * (int(lengths.max(initial=0)) + 1) + lengths  # equal: step together
        if len(code) and (code == code[0]).all():
            groups = [np.arange(len(keys))]
        else:
            order = np.argsort(code, kind="stable")
            groups = np.split(order, np.flatnonzero(np.diff(code[order])) + 1)
        out = states.copy()
        finite = np.ones(len(keys), dtype=bool)
        with torch.no_grad():
            for group in groups:
                for lo in range(0, len(group), _STEP_UNITS):  # (a chunk's tensors stay in the CPU's caches)
                    members = group[lo : lo + _STEP_UNITS]
                    member_keys = [keys[u] for u in members.tolist()]
                    z, state, n = states.gather(member_keys, located=located[members])
                    rows = torch.as_tensor(np.stack([Xs[u] for u in members.tolist()]), dtype=torch.float32)
                    for t in range(rows.shape[1]):  # rows (G, T, n_in)
                        z, state = self.net_.step(rows[:, t], state)  # (G, d_model)
                    finite[members] = _finite_rows(z, state)
                    out.put(member_keys, z, state, n + rows.shape[1])
        return out, finite.tolist()

    def _prefill(self, states: StreamStates, keys: list, Xs: list[np.ndarray]) -> None:
        """Units' whole histories ``Xs[u] (T_u, n_in)`` in parallel, stored in ``states`` under ``keys``: the
        entries :meth:`_run_steps` from the initial state would give. Histories of equal length run as one batch
        (up to ``_PREFILL_ROWS`` rows and ``_PREFILL_VALUES`` rows x d_model)."""
        import torch

        by_length: dict[int, list[int]] = {}
        for u, X in enumerate(Xs):
            by_length.setdefault(len(X), []).append(u)
        width = int(getattr(self.backbone_, "d_model", 1) or 1)
        rows = min(_PREFILL_ROWS, max(1, _PREFILL_VALUES // width))
        with torch.no_grad():
            for length, members in by_length.items():
                size = max(1, rows // length)
                for first in range(0, len(members), size):
                    batch = members[first : first + size]
                    x = torch.as_tensor(np.stack([Xs[u] for u in batch]), dtype=torch.float32)  # (G, T, n_in)
                    z, state = self.net_.prefill(x)  # (G, d_model)
                    states.put([keys[u] for u in batch], z, state, [length] * len(batch))

    def _full_states(self, units, use_stream: bool) -> StreamStates:
        """Hidden states after the whole history of each unit: ``stream_`` itself (cached per unit for the
        training data and the updates) with ``use_stream``, else new states of these units."""
        states = self.stream_ if use_stream else StreamStates()
        missing = [k for k in units if k not in states]
        self._prefill(states, missing, [units[k]["X"] for k in missing])
        return states

    def _last_targets(self, X: np.ndarray) -> np.ndarray:
        """The last ``input_size`` target rows of a unit, zero-padded in front when the history is shorter."""
        window = np.zeros((self.input_size, self.n_targets_), np.float32)
        tail = X[-self.input_size :, : self.n_targets_]
        window[self.input_size - len(tail) :] = tail
        return window

    def _decode_hidden(self, z, fut, static, levels, windows):
        """Forecasts in model scale from hidden states ``z (U, d_model)``."""
        import torch

        fut, static = torch.as_tensor(np.asarray(fut)), torch.as_tensor(np.asarray(static))
        window = torch.as_tensor(np.asarray(windows)) if windows is not None else None
        points, quants = [], []
        with torch.no_grad():
            for lo in range(0, len(z), _STEP_UNITS):
                part = slice(lo, lo + _STEP_UNITS)
                out = self.net_.decode(z[part], fut[part], static[part], None if window is None else window[part])
                points.append(self.loss_fn_.point(out).numpy())
                quants.append(self.loss_fn_.quantiles(out, levels).numpy())
        return np.concatenate(points), np.concatenate(quants)

    @_collector_paused
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
        ids = _ids_at(frame, _bounds(frame)[0])  # validated: sorted by id, each series' first row names it
        unknown = sorted(u for u in ids if u not in self.unit_of_)
        if unknown:
            raise ValueError(f"unknown unique_id(s) {unknown[:5]} in df_new")
        elsewhere = [u for u in ids if self.unit_of_[u] not in self.history_]
        if elsewhere:
            raise ValueError(
                f"series {elsewhere[:5]} were fitted by another rank of a sharded fit: this model holds the histories "
                "of its own shard only (data_shard_); update them on that rank, or forecast them with "
                "predict(df=history)"
            )
        new_units = self._history_units(frame, validated=True)
        offset = as_offset(self.freq_)
        keys = list(new_units)
        distinct, ends = _distinct([self.history_[k]["ds"][-1] for k in keys])  # once per distinct end (#36)
        after = self._stamps_after(distinct, 1)
        following = [stamps[0] for stamps in after.values()]  # (Timestamps: for the message)
        values = [stamps[:1].to_numpy()[0] if isinstance(stamps, pd.Index) else stamps[0] for stamps in after.values()]
        tz = getattr(frame[TIME].dtype, "tz", None)  # once for the frame, not per series
        zone_new, zone_fit = (None if tz is None else str(tz)), _time_zone(next(iter(self.history_.values()))["ds"][-1])
        if zone_new != zone_fit:
            raise ValueError(
                f"df_new's time stamps are in time zone {zone_new or 'none (naive)'}, the model's in "
                f"{zone_fit or 'none (naive)'}: convert df_new's ds to the model's (e.g. ds.dt.tz_convert(...) or "
                "ds.dt.tz_localize(None))"
            )
        firsts = [new_units[k]["ds"][0] for k in keys]
        if np.asarray(firsts).dtype.kind in "Mi" and np.asarray(values).dtype.kind in "Mi":
            wrong = np.flatnonzero(np.asarray(firsts) != np.asarray(values)[ends])
        else:
            wrong = [j for j, (first, e) in enumerate(zip(firsts, ends)) if first != following[e]]
        if len(wrong):
            k, expected = keys[wrong[0]], following[ends[wrong[0]]]
            raise ValueError(
                f"df_new must continue series {new_units[k]['ids']} right after their last stamp "
                f"{self.history_[k]['ds'][-1]} (expected {expected} with freq {offset}); got {firsts[wrong[0]]}"
            )
        if self.channel_mode == "mixed" and set(new_units) != set(self.history_):
            raise ValueError("channel_mode='mixed': df_new must hold the new rows of every series")
        before = self.stream_, dict(self.history_)  # the appended rows go past the old views: no copy needed
        try:
            stateful = not self.revin and getattr(self.backbone_, "recurrent", True)  # window models: never
            if stateful:  # (stream_ is replaced, never changed in place: an ensemble's snapshot of it holds)
                states = self.stream_.copy()
                missing = [k for k in self.history_ if k not in states]  # one-off: states over the training history
                self._prefill(states, missing, [self.history_[k]["X"] for k in missing])
                advanced, finite = self._run_steps(states, keys, [new_units[k]["X"] for k in keys])
                bad = [k for k, ok in zip(keys, finite) if not ok]
                if bad:
                    ids = [uid for k in bad for uid in new_units[k]["ids"]]
                    raise ValueError(
                        f"df_new would make the recurrent state of series {ids[:5]} non-finite (NaN or inf): its "
                        f"rows, scaled by the scaling fitted on the training data, reach "
                        f"{max(float(np.abs(new_units[k]['X']).max()) for k in bad):.3g}, beyond what the model's "
                        "float32 arithmetic can carry. Nothing was absorbed; check those rows."
                    )  # fmt: skip
                self.stream_ = advanced
            appended = _append_many([self.history_[k] for k in keys], [new_units[k]["X"] for k in keys],
                                    [new_units[k]["ds"] for k in keys])
            self.history_.update(zip(keys, appended))
            context = "full" if stateful else "window"
            return self.predict(h=h, quantiles=quantiles, context=context, future_df=future_df)
        except BaseException:  # a bad h, quantiles or future_df, a non-finite forecast: nothing is absorbed
            self.stream_, self.history_ = before
            raise


def _finite_rows(z, state) -> np.ndarray:
    """Whether each row of a batch's hidden ``z (G, d_model)`` and state tensors is finite: ``(G,)``."""
    ok = z.isfinite().reshape(len(z), -1).all(dim=1)
    for t in _state_leaves(state):
        if t.numel():  # (an empty tensor, e.g. a key/value cache before any step, is finite)
            ok &= t.isfinite().reshape(len(z), -1).all(dim=1)
    return ok.numpy()


def _distinct(values: list) -> tuple[list, np.ndarray]:
    """The distinct values (time stamps, in order of first appearance) and each value's index into them: one sort
    for numpy datetimes and integers (hashing a numpy scalar per series was most of a 10k-series ``update()``'s
    bookkeeping, issue #36), a dict for other stamps (time-zone aware ones)."""
    array = np.asarray(values) if len(values) else np.zeros(0, np.int64)
    if array.ndim == 1 and array.dtype.kind in "Mi":
        _, first, inverse = np.unique(array, return_index=True, return_inverse=True)
        order = np.argsort(first)
        rank = np.empty(len(order), np.int64)
        rank[order] = np.arange(len(order))
        return [values[i] for i in first[order]], rank[inverse.reshape(-1)]
    index: dict = {}
    inverse = np.array([index.setdefault(value, len(index)) for value in values], dtype=np.int64)
    return list(index), inverse


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


def _capacity(rows: int) -> int:
    return max(rows + rows // 2, 16)  # 1.5x: amortised O(1) a row, a third less memory than doubling


def _append_many(units: list[dict], Xs: list[np.ndarray], dss: list[np.ndarray]) -> list[dict]:
    """The units with rows ``Xs[j]``/``dss[j]`` appended, amortised O(rows appended): each unit's ``X``/``ds`` are
    views of buffers (``buffers``) that grow geometrically, so earlier views never see later rows. Units whose
    buffers are full (or that have none, after fit) and share their row counts and dtypes move into one new block
    with one copy (issue #36: a buffer and two copies per series were a fifth of a 10k-series update); the others
    write their rows into their buffers."""
    out: list = [None] * len(units)
    moving: dict[tuple, list[int]] = {}  # (rows, new rows) -> units that move to a new block
    for j, (unit, X, ds) in enumerate(zip(units, Xs, dss)):
        n, m = len(unit["X"]), len(X)
        buffers = unit.get("buffers")
        if buffers is None or len(buffers[0]) < n + m:
            moving.setdefault((n, m), []).append(j)
            continue
        buffers[0][n : n + m], buffers[1][n : n + m] = X, ds
        out[j] = dict(unit, X=buffers[0][: n + m], ds=buffers[1][: n + m], buffers=buffers)
    for (n, m), members in moving.items():
        first = units[members[0]]
        old_x = np.stack([units[j]["X"] for j in members])  # (G, n, ...): one copy of the group's rows
        old_ds = np.stack([units[j]["ds"] for j in members])
        if old_x.dtype != first["X"].dtype or old_ds.dtype != first["ds"].dtype:  # units of mixed dtypes: one by one
            for j in members:
                out[j] = _append_block([units[j]], units[j]["X"][None], units[j]["ds"][None], [Xs[j]], [dss[j]],
                                       n, m)[0]
            continue
        for j, unit in zip(members, _append_block([units[j] for j in members], old_x, old_ds,
                                                  [Xs[j] for j in members], [dss[j] for j in members], n, m)):
            out[j] = unit
    return out


def _append_block(units, old_x, old_ds, Xs, dss, n: int, m: int) -> list[dict]:
    """``units`` (``n`` rows each, stacked in ``old_x``/``old_ds``) with ``m`` rows appended, in one new block."""
    capacity = _capacity(n + m)
    bx = np.empty((len(units), capacity, *old_x.shape[2:]), old_x.dtype)
    bds = np.empty((len(units), capacity), old_ds.dtype)
    bx[:, :n], bds[:, :n] = old_x, old_ds
    bx[:, n : n + m], bds[:, n : n + m] = np.stack(Xs), np.stack(dss)
    return [dict(unit, X=x[: n + m], ds=d[: n + m], buffers=(x, d)) for unit, x, d in zip(units, bx, bds)]


def _time_zone(stamp) -> str | None:
    """The time zone of a time stamp as text (None for naive stamps and integer steps)."""
    if isinstance(stamp, (int, np.integer)):
        return None
    tz = pd.Timestamp(stamp).tz
    return None if tz is None else str(tz)

