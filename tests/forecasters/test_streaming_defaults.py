"""``update()`` at the forecasters' defaults (issue #32, "Streaming with the defaults").

With RevIN (the default) ``update`` appends the new rows to the stored history and forecasts from the last
``input_size`` observations: the same as ``predict(df=full_history)``. With ``revin=False`` it steps the
recurrent states (``predict(df=full_history, context="full")``; see also ``test_neural.py``). Either way a
failed update leaves the model exactly as it was.
"""

import copy

import numpy as np
import pandas as pd
import pytest
from panels_for_tests import make_panel
from test_every_backbone import CONFIGS, forecaster_for, tiny_config

import ssmcast
from ssmcast.backbones.mamba import MambaConfig

TINY = dict(input_size=16, horizon=4, max_epochs=1, batch_size=64, val_size=0, verbose=False)
PREFIX = {"s0": 40, "s1": 44, "s2": 40}  # rows each series is fitted on (unequal ends)


def history(panel, ends: dict) -> pd.DataFrame:
    """The first ``ends[id]`` rows of each series of ``panel``."""
    rank = panel.groupby("unique_id").cumcount()
    return panel[rank < panel["unique_id"].map(ends)].reset_index(drop=True)


def rows(panel, start: dict, stop: dict) -> pd.DataFrame:
    """Rows ``start[id]`` .. ``stop[id] - 1`` of each series (none where they are equal)."""
    rank = panel.groupby("unique_id").cumcount()
    keep = (rank >= panel["unique_id"].map(start)) & (rank < panel["unique_id"].map(stop))
    return panel[keep].reset_index(drop=True)


def history_arrays(est) -> dict:
    return {k: (u["X"].copy(), u["ds"].copy()) for k, u in est.history_.items()}


def assert_history_is(est, arrays: dict) -> None:
    assert est.history_.keys() == arrays.keys()
    for k, (X, ds) in arrays.items():
        np.testing.assert_array_equal(est.history_[k]["X"], X)
        np.testing.assert_array_equal(est.history_[k]["ds"], ds)


def assert_same_forecast(got, want):
    pd.testing.assert_frame_equal(got, want, rtol=1e-5, atol=1e-6)


def mamba(**kw):
    params = dict(TINY, backbone=MambaConfig(d_model=8, n_layers=1, d_state=4))
    params.update(kw)
    return ssmcast.MambaForecaster(**params)


@pytest.fixture(scope="module")
def panel():
    return make_panel(n_series=3, length=60)


@pytest.mark.parametrize("config_cls", CONFIGS, ids=lambda c: c.__name__)
def test_update_at_the_defaults_equals_predict_on_the_full_history(config_cls, panel):
    est = forecaster_for(config_cls)(**TINY, backbone=tiny_config(config_cls))
    assert est.revin is True or not getattr(config_cls, "recurrent", True)  # the default (DLinear's: False)
    est.fit(history(panel, PREFIX))
    first = {"s0": 45, "s1": 46, "s2": 40}  # 5, 2 and no new rows
    streamed = est.update(rows(panel, PREFIX, first))
    assert_same_forecast(streamed, est.predict(df=history(panel, first)))
    assert_same_forecast(est.predict(), streamed)
    assert [len(u["X"]) for u in est.history_.values()] == [45, 46, 40] and est.stream_ == {}
    second = {"s0": 46, "s1": 49, "s2": 44}
    streamed = est.update(rows(panel, first, second), h=7)  # h > horizon: the recursive roll-out
    assert_same_forecast(streamed, est.predict(df=history(panel, second), h=7))
    assert_same_forecast(est.predict(h=7), streamed)
    assert streamed.groupby("unique_id")["ds"].min().tolist() == list(
        history(panel, second).groupby("unique_id")["ds"].max() + pd.Timedelta(hours=1)
    )


def test_update_with_revin_in_the_mixed_channel_mode(panel):
    ends = {"s0": 40, "s1": 40, "s2": 40}
    est = mamba(channel_mode="mixed").fit(history(panel, ends))
    new = {"s0": 43, "s1": 43, "s2": 43}
    assert_same_forecast(est.update(rows(panel, ends, new)), est.predict(df=history(panel, new)))
    arrays = history_arrays(est)
    with pytest.raises(ValueError, match="channel_mode='mixed'.* every"):
        est.update(rows(panel, new, {"s0": 44, "s1": 44, "s2": 43}))  # s2 has no new rows
    assert_history_is(est, arrays)


def test_failed_update_without_revin_leaves_the_states_as_they_were(panel):
    """``revin=False``: a failing first update leaves ``stream_`` as it was (no states cached on the way)."""
    est = mamba(revin=False).fit(history(panel, PREFIX))
    arrays = history_arrays(est)
    new = {"s0": 45, "s1": 46, "s2": 40}
    with pytest.raises(ValueError, match="h must be a positive integer"):
        est.update(rows(panel, PREFIX, new), h=0)
    assert est.stream_ == {}
    assert_history_is(est, arrays)
    streamed = est.update(rows(panel, PREFIX, new))
    assert_same_forecast(streamed, est.predict(df=history(panel, new), context="full"))


def bad_updates(panel):
    """``(what the error says, the update)``: each must fail and change nothing."""
    new = rows(panel, PREFIX, {"s0": 42, "s1": 46, "s2": 42})
    spike = new.copy()
    spike.loc[spike.index[spike.unique_id == "s1"][-1], "y"] = 1e30  # RevIN's variance overflows float32
    beyond = new.copy()
    beyond.loc[beyond.index[beyond.unique_id == "s1"][-1], "y"] = 1e40  # beyond float32 once scaled
    unknown = pd.concat([new, new.head(1).assign(unique_id="s9")], ignore_index=True)
    stale = rows(panel, {"s0": 39, "s1": 44, "s2": 40}, {"s0": 41, "s1": 45, "s2": 41})  # s0 repeats a stamp
    return {
        "bad h": ("h must be a positive integer", lambda est: est.update(new, h=0)),
        "untrained quantile": ("point forecasts only", lambda est: est.update(new, quantiles=[0.3])),
        "non-finite forecast": (r"forecast of series \['s1'\] is not finite", lambda est: est.update(spike)),
        "beyond float32": (r"series \['s1'\]: values that, scaled .* exceed float32's range",
                           lambda est: est.update(beyond)),
        "unknown id": (r"unknown unique_id\(s\) \['s9'\]", lambda est: est.update(unknown)),
        "stale stamps": ("must continue series", lambda est: est.update(stale)),
    }, new


@pytest.fixture(scope="module")
def fitted_with_revin(panel):
    return mamba().fit(history(panel, PREFIX))


@pytest.mark.parametrize("case", ["bad h", "untrained quantile", "non-finite forecast", "beyond float32",
                                  "unknown id", "stale stamps"])
def test_failed_update_with_revin_changes_nothing(case, panel, fitted_with_revin):
    est = copy.deepcopy(fitted_with_revin)
    arrays, before = history_arrays(est), est.predict()
    cases, new = bad_updates(panel)
    message, call = cases[case]
    with pytest.raises(ValueError, match=message):
        call(est)
    assert_history_is(est, arrays)
    assert est.stream_ == {}
    assert_same_forecast(est.predict(), before)
    streamed = est.update(new)  # the good rows still go in
    assert_same_forecast(streamed, est.predict(df=history(panel, {"s0": 42, "s1": 46, "s2": 42})))


def test_save_and_load_after_an_update_keep_the_updated_history(panel, tmp_path):
    est = mamba().fit(history(panel, PREFIX))
    first = {"s0": 45, "s1": 46, "s2": 40}
    est.update(rows(panel, PREFIX, first))
    est.save(tmp_path / "m")
    loaded = ssmcast.load(tmp_path / "m")
    assert [len(u["X"]) for u in loaded.history_.values()] == [45, 46, 40]
    assert_same_forecast(loaded.predict(), est.predict())
    second = {"s0": 47, "s1": 47, "s2": 43}
    assert_same_forecast(loaded.update(rows(panel, first, second)), est.update(rows(panel, first, second)))
