"""The neural path at scale (issue #36): every vectorised path against the per-series computation it replaced.

Data preparation builds the whole panel at once (one scaled float32 array, the units views of it; the scaler's
statistics over chunks of whole series with integer keys); forecasts are assembled as arrays over the units;
``update()`` keeps the recurrent states as the batches they were computed in (:class:`StreamStates`) and appends
rows to many units with one copy. Each is compared here, bit for bit where the arithmetic is the same, with the
straightforward per-series code (the reference functions below are the code before issue #36's changes).
"""

import functools
import math

import numpy as np
import pandas as pd
import pytest
import torch
from panels_for_tests import make_panel

import ssmcast.data.frames as frames
import ssmcast.forecasters.preparation as preparation
from ssmcast.backbones.s4 import S4DConfig
from ssmcast.data.frames import ID, TARGET, TIME, validate
from ssmcast.forecasters import S4DForecaster
from ssmcast.forecasters.streaming import StreamStates, _append_many, _distinct
from ssmcast.forecasting import forecast_frame

SMALL_CHUNKS = functools.partial(frames._series_chunks, rows=7)  # several chunks even on a tiny panel


def uneven_panel(covariates=False, n_series=5):
    """Series of different lengths and ends (and covariates): several distinct ends, several chunks."""
    panel = make_panel(n_series=n_series, length=70, covariates=covariates)
    rank = panel.groupby("unique_id").cumcount()
    keep = rank < panel["unique_id"].map({f"s{i}": 50 + 4 * i for i in range(n_series)})
    return panel[keep].reset_index(drop=True)


def estimator(**kw):
    params = dict(input_size=12, horizon=4, max_epochs=1, batch_size=32, verbose=False, val_size=0,
                  backbone=S4DConfig(d_model=8, n_layers=2, d_state=4), accelerator="cpu")
    params.update(kw)
    return S4DForecaster(**params)


# ------------------------------------------------------------------ data preparation


@pytest.mark.parametrize("scaler", ["standard", "robust"])
@pytest.mark.parametrize("held_out", [0, 3])
def test_panel_scaler_equals_the_scaler_on_the_training_rows(scaler, held_out, monkeypatch):
    panel = validate(uneven_panel(covariates=True), covariates=["temp", "promo"])
    est = estimator(scaler=scaler, past_covariates=["temp"], future_covariates=["promo"])
    starts, lengths = frames._bounds(panel)
    est.ids_ = panel[ID].iloc[starts].tolist()
    cols = [TARGET, "temp", "promo"]
    train = lengths - held_out
    reference = panel[panel.groupby(ID).cumcount().to_numpy() < np.repeat(train, lengths)]
    est._fit_scaler(reference, cols)
    loc, scale = est.loc_, est.scale_
    monkeypatch.setattr(preparation, "_series_chunks", SMALL_CHUNKS)
    est._fit_scaler_panel(panel, lengths, train, cols)
    np.testing.assert_array_equal(est.loc_, loc)  # bit for bit: the same group kernels over the same rows
    np.testing.assert_array_equal(est.scale_, scale)


def test_panel_scaler_names_series_without_training_rows_as_before():
    panel = validate(uneven_panel())
    est = estimator(input_size=4, horizon=2, val_size=52)  # the shortest series (50 rows) has no training rows
    with pytest.raises(ValueError, match="series not seen when the scaler was fitted: 's0'"):
        est.fit(panel)


@pytest.mark.parametrize("covariates", [False, True])
def test_panel_units_equal_the_per_series_units(covariates, monkeypatch):
    kw = dict(past_covariates=["temp"], future_covariates=["promo"], static_features=["size"],
              calendar_features=True) if covariates else {}
    est = estimator(**kw).fit(uneven_panel(covariates))
    frame = est._validate_frame(uneven_panel(covariates), "df")
    reference = est._unit_inputs(est._series_arrays(frame, est.ids_))  # one series at a time
    monkeypatch.setattr(preparation, "_series_chunks", SMALL_CHUNKS)
    units, X, offsets = est._panel_units(frame)
    assert len(units) == len(reference) and X.dtype == np.float32
    for unit, ref, a, b in zip(units, reference, offsets[:-1], offsets[1:]):
        assert unit["ids"] == ref["ids"]
        np.testing.assert_array_equal(unit["X"], ref["X"])  # bit for bit
        np.testing.assert_array_equal(unit["ds"], ref["ds"])
        np.testing.assert_array_equal(unit["static"], ref["static"])
        assert np.shares_memory(unit["X"], X) and unit["X"].shape[0] == b - a
    fitted_units = [est.history_[k] for k in sorted(est.history_)]  # fit's units are the same
    for unit, ref in zip(fitted_units, reference):
        np.testing.assert_array_equal(unit["X"], ref["X"])


def test_panel_units_refuse_values_beyond_float32_naming_the_series():
    panel = uneven_panel()
    est = estimator().fit(panel)
    big = panel.assign(y=np.where(panel.unique_id == "s3", 1e300, panel.y))
    with pytest.raises(ValueError, match=r"series \['s3'\]: values that.*exceed float32"):
        est.predict(df=big)


def test_fit_windows_are_those_of_the_cut_series():
    """Training windows over the whole panel with targets before the held-out part: the same batches as
    windows over each series cut before it (what fit built before)."""
    est = estimator(val_size=4).fit(uneven_panel())
    frame = est._validate_frame(uneven_panel(), "df")
    units, X, offsets = est._panel_units(frame)
    cut = [len(u["X"]) - 4 for u in units]
    fast = est._windows(units, panel=(X, offsets), target_range=np.stack([np.zeros(len(cut), int), cut], 1))
    slow = est._windows([dict(u, X=u["X"][:c], ds=u["ds"][:c]) for u, c in zip(units, cut)])
    assert len(fast) == len(slow) == est.n_train_windows_
    a, b = fast.__getitems__(list(range(len(fast)))), slow.__getitems__(list(range(len(slow))))
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)


def test_static_features_per_series_as_before():
    panel = uneven_panel(covariates=True)
    est = estimator(static_features=["size"]).fit(panel)
    table = validate(panel, covariates=["size"]).groupby(ID, sort=False)["size"].first()
    assert list(est.static_values_) == est.ids_
    for uid, values in est.static_values_.items():
        np.testing.assert_array_equal(values, np.asarray([table.loc[uid]], np.float32))


# ------------------------------------------------------------------ validation in chunks


def test_grid_checks_in_chunks_equal_one_pass(monkeypatch):
    panel = frames.to_long(uneven_panel())
    drop = panel.index[(panel.unique_id == "s2") & (panel.groupby(ID).cumcount() == 10)]
    shifted = panel.drop(drop).reset_index(drop=True)
    shifted.loc[shifted.index[(shifted.unique_id == "s4")][5], TIME] += pd.Timedelta("30min")
    frame = frames.to_long(shifted)
    bounds = frames._bounds(frame)
    ds = frame[TIME].to_numpy()
    one = (frames._even_steps(ds, *bounds), frames._check_grid(frame, pd.tseries.frequencies.to_offset("h"), bounds))
    monkeypatch.setattr(frames, "_series_chunks", SMALL_CHUNKS)
    chunked = (frames._even_steps(ds, *bounds), frames._check_grid(frame, pd.tseries.frequencies.to_offset("h"),
                                                                   bounds))
    np.testing.assert_array_equal(chunked[0], one[0])
    np.testing.assert_array_equal(chunked[1][0], one[1][0])
    assert chunked[1][1] == one[1][1] and [g[0] for g in one[1][1]] == ["s2", "s4"] and one[1][0].sum() == 1
    assert (one[0] > 0).sum() == 3  # s2 (a gap) and s4 (an off-grid stamp) are not evenly spaced


# ------------------------------------------------------------------ forecasts as arrays


def reference_forecast(est, units, h, levels, future_df=None, states=None):
    """The per-unit forecast assembly before issue #36 (lists of units, a frame built unit by unit)."""
    keys = list(units)
    n_blocks = math.ceil(h / est.horizon)
    after = {last: frames.future_timestamps(last, est.freq_, n_blocks * est.horizon)
             for last in dict.fromkeys(units[k]["ds"][-1] for k in keys)}
    ahead = {k: after[units[k]["ds"][-1]] for k in keys}
    stamps = {k: ahead[k][:h] for k in keys}
    future_rows = est._future_rows(future_df)
    futures = {k: est._future_block(units[k], ahead[k], future_rows, h, {}) for k in keys}
    points = np.zeros((len(keys), n_blocks * est.horizon, est.n_targets_))
    quants = np.zeros((len(keys), n_blocks * est.horizon, est.n_targets_, len(levels)))
    X = {k: units[k]["X"][-est.input_size :] for k in keys}
    fs = est._future_slice
    for b in range(n_blocks):
        span = slice(b * est.horizon, (b + 1) * est.horizon)
        fut = [futures[k][span] for k in keys]
        static = [units[k]["static"] for k in keys]
        if states is not None:
            windows = [est._last_targets(X[k]) for k in keys] if est.linear_skip else None
            point, quant = est._decode_hidden(states.gather_z(keys), fut, static, levels, windows)
        else:
            point, quant = est._predict_units([X[k][-est.input_size :] for k in keys], fut, static, levels)
        points[:, span], quants[:, span] = point, quant
        if b + 1 < n_blocks:
            new_rows = {}
            for j, k in enumerate(keys):
                rows = np.zeros((est.horizon, X[k].shape[1]), np.float32)
                rows[:, : est.n_targets_] = point[j]
                rows[:, fs] = fut[j]
                new_rows[k] = rows
                X[k] = np.concatenate([X[k], rows])
            if states is not None:
                states, _ = est._run_steps(states, keys, [new_rows[k] for k in keys])
    ids, ds, y, q = [], [], [], {lv: [] for lv in levels}
    index = {uid: i for i, uid in enumerate(est.ids_)}
    for j, k in enumerate(keys):
        for c, uid in enumerate(units[k]["ids"]):
            i = index[uid]
            loc, scale = est.loc_[i, 0], est.scale_[i, 0]
            ids += [uid] * len(stamps[k])
            ds.append(stamps[k])
            y.append(points[j, :h, c] * scale + loc)
            for n, lv in enumerate(levels):
                q[lv].append(quants[j, :h, c, n] * scale + loc)
    ds = [d if isinstance(d, pd.Index) else pd.Index(d) for d in ds]
    frame = forecast_frame(ids, ds[0].append(ds[1:]), np.concatenate(y), {lv: np.concatenate(v) for lv, v in q.items()})
    order = frame[ID].map(index)
    return frame.iloc[np.argsort(order.to_numpy(), kind="stable")].reset_index(drop=True)


@pytest.mark.parametrize("context", ["window", "full"])
@pytest.mark.parametrize("h", [4, 10])
@pytest.mark.parametrize("covariates", [False, True])
def test_forecasts_equal_the_per_unit_assembly(context, h, covariates):
    kw = dict(future_covariates=["promo"], calendar_features=True) if covariates else {}
    panel = uneven_panel(covariates)[[ID, TIME, TARGET, *(["promo"] if covariates else [])]]
    est = estimator(revin=False, loss="gaussian", **kw).fit(panel)
    future_df = None
    if covariates:
        ends = panel.groupby(ID)[TIME].max()
        future_df = pd.concat([pd.DataFrame({ID: uid, TIME: pd.date_range(end, periods=13, freq="h")[1:],
                                             "promo": np.arange(12.0) % 2}) for uid, end in ends.items()])
    got = est.predict(h=h, quantiles=[0.1, 0.9], context=context, future_df=future_df)
    units = dict(est.history_)
    states = est._full_states(units, use_stream=False) if context == "full" else None
    want = reference_forecast(est, units, h, [0.1, 0.9], future_df, states)
    pd.testing.assert_frame_equal(got, want, check_exact=True)
    assert got[TIME].nunique() > h  # several distinct ends


def test_forecasts_of_a_mixed_panel_equal_the_per_unit_assembly():
    panel = make_panel(n_series=3, length=60)
    est = estimator(channel_mode="mixed", revin=False).fit(panel)
    pd.testing.assert_frame_equal(est.predict(h=6), reference_forecast(est, dict(est.history_), 6, []),
                                  check_exact=True)


def test_predict_df_with_unsorted_series_keeps_the_fitted_order():
    panel = uneven_panel()
    est = estimator().fit(panel)
    shuffled = panel.sample(frac=1.0, random_state=0)
    out = est.predict(df=shuffled[shuffled.unique_id != "s1"])
    assert list(dict.fromkeys(out[ID])) == ["s0", "s2", "s3", "s4"]
    pd.testing.assert_frame_equal(out, est.predict(df=panel[panel.unique_id != "s1"]), check_exact=True)


# ------------------------------------------------------------------ streaming states and history


def test_stream_states_store_batches_and_gather_rows_in_any_order():
    z1, z2 = torch.arange(6.0).reshape(3, 2), torch.arange(10.0, 14.0).reshape(2, 2)
    s1 = [(torch.arange(3.0)[:, None] * 10, torch.ones(3, 4))]
    s2 = [(torch.arange(2.0)[:, None] * 100, torch.zeros(2, 4))]
    states = StreamStates()
    states.put(["a", "b", "c"], z1, s1, [5, 6, 7])
    z, state, n = states.gather(["a", "b", "c"])
    assert z is z1 and state is s1  # a whole batch in its order: as stored
    states.put(["d", "b"], z2, s2, [8, 9])
    z, state, n = states.gather(["b", "a", "d"])
    torch.testing.assert_close(z, torch.stack([z2[1], z1[0], z2[0]]))
    torch.testing.assert_close(state[0][0], torch.tensor([[100.0], [0.0], [0.0]]))
    assert n.tolist() == [9, 5, 8]
    entry = states["b"]
    assert states["b"] is entry and entry["n"] == 9
    torch.testing.assert_close(entry["state"][0][1], torch.zeros(1, 4))
    snapshot = states.copy()
    states.put(["a"], z2[:1], [(s2[0][0][:1], s2[0][1][:1])], [1])
    assert snapshot["a"]["n"] == 5 and states["a"]["n"] == 1 and snapshot["b"] is entry
    del states["b"], states["c"], states["a"]
    assert states._batches[0] is None and list(states) == ["d"]  # the first batch is unused: dropped
    assert dict(StreamStates()) == {} and StreamStates() == {}


def test_append_many_equals_appending_one_unit_at_a_time():
    rng = np.random.default_rng(0)

    def unit(n):
        return {"ids": ["x"], "X": rng.normal(size=(n, 2)).astype(np.float32),
                "ds": np.arange(n).astype("datetime64[h]"), "static": np.zeros(0, np.float32)}

    units = [unit(5), unit(5), unit(3), unit(9)]
    rows = [rng.normal(size=(m, 2)).astype(np.float32) for m in (1, 1, 2, 30)]
    stamps = [np.arange(len(u["X"]), len(u["X"]) + len(r)).astype("datetime64[h]") for u, r in zip(units, rows)]
    out = _append_many(units, rows, stamps)
    for before, after, r, d in zip(units, out, rows, stamps):
        np.testing.assert_array_equal(after["X"], np.concatenate([before["X"], r]))
        np.testing.assert_array_equal(after["ds"], np.concatenate([before["ds"], d]))
        assert len(after["buffers"][0]) >= len(after["X"]) and np.shares_memory(after["X"], after["buffers"][0])
    again = _append_many(out, [r[:1] for r in rows], [d[:1] + 100 for d in stamps])
    for first, second in zip(out, again):  # room left: written into the same buffers, earlier views unchanged
        assert second["buffers"][0] is first["buffers"][0] or len(first["buffers"][0]) < len(second["X"])
        np.testing.assert_array_equal(second["X"][: len(first["X"])], first["X"])
        assert len(second["X"]) == len(first["X"]) + 1


def test_append_many_keeps_each_units_dtypes():
    units = [{"ids": ["a"], "X": np.zeros((3, 1), np.float32), "ds": np.arange(3)},
             {"ids": ["b"], "X": np.ones((3, 1), np.float64), "ds": np.arange(3)}]
    out = _append_many(units, [np.full((1, 1), 2, np.float32), np.full((1, 1), 3.0)], [np.array([3]), np.array([3])])
    assert [u["X"].dtype for u in out] == [np.float32, np.float64]
    np.testing.assert_array_equal(out[1]["X"][:, 0], [1, 1, 1, 3])


def test_distinct_stamps_in_order_of_first_appearance():
    stamps = list(np.array(["2021-01-02", "2021-01-01", "2021-01-02", "2021-01-03"], dtype="datetime64[us]"))
    distinct, index = _distinct(stamps)
    assert distinct == [stamps[0], stamps[1], stamps[3]] and index.tolist() == [0, 1, 0, 2]
    distinct, index = _distinct([np.int64(7), np.int64(3), np.int64(7)])
    assert distinct == [7, 3] and index.tolist() == [0, 1, 0]
    aware = [pd.Timestamp("2021-01-02", tz="UTC"), pd.Timestamp("2021-01-01", tz="UTC"),
             pd.Timestamp("2021-01-02", tz="UTC")]
    distinct, index = _distinct(aware)
    assert distinct == aware[:2] and index.tolist() == [0, 1, 0]


def test_updates_of_many_series_equal_their_full_context_forecasts():
    """Two updates (one row a series, then a few), every series' state from a batched prefill, against
    ``predict(df=full_history, context="full")``."""
    panel = make_panel(n_series=6, length=80)
    rank = panel.groupby(ID).cumcount()
    est = estimator(revin=False).fit(panel[rank < 60])
    first = panel[rank == 60]
    second = panel[(rank > 60) & (rank < 64) & (panel.unique_id != "s2")]
    est.update(first)
    out = est.update(second)
    history = panel[(rank <= 60) | ((rank < 64) & (panel.unique_id != "s2"))]
    pd.testing.assert_frame_equal(out, est.predict(df=history, context="full"), rtol=1e-5, atol=1e-5)
    assert len(est.stream_) == 6 and {e["n"] for e in est.stream_.values()} == {61, 64}
