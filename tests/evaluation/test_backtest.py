import numpy as np
import pandas as pd
import pytest
from eval_estimators import LastValue, Spy, panel
from hypothesis import given
from hypothesis import strategies as st
from sklearn.base import BaseEstimator, clone

from ssmcast.evaluation import backtest, cutoff_positions
from ssmcast.evaluation.backtest import _run_backtest
from ssmcast.forecasting import quantile_column


def reference_backtest(estimator, df, horizon, cutoffs_by_series):
    """Slow reference: for every series and cutoff, fit a fresh clone on that series' rows up to the cutoff."""
    rows = []
    for uid, pos_list in cutoffs_by_series.items():
        g = df[df.unique_id == uid].sort_values("ds").reset_index(drop=True)
        for pos in pos_list:
            model = clone(estimator).fit(g.iloc[: pos + 1])
            fc = model.predict(h=horizon)
            actual = g.iloc[pos + 1 : pos + 1 + horizon]
            rows.append(
                pd.DataFrame(
                    {
                        "cutoff": g.ds[pos],
                        "unique_id": uid,
                        "ds": actual.ds.to_numpy(),
                        "y": actual.y.to_numpy(),
                        "y_pred": fc.y_pred.to_numpy(),
                    }
                )
            )
    return pd.concat(rows, ignore_index=True).sort_values(["unique_id", "cutoff", "ds"]).reset_index(drop=True)


@pytest.mark.parametrize("refit", [False, True, 2])
def test_backtest_matches_a_per_window_refit_loop(refit):
    df = panel((40, 30))
    out = backtest(LastValue(drift=True), df, horizon=4, n_windows=3, step=2, refit=refit)
    # n_windows: windows relative to each series' own end
    expected = reference_backtest(LastValue(drift=True), df, 4, {"s0": [31, 33, 35], "s1": [21, 23, 25]})
    assert list(out.columns) == ["cutoff", "unique_id", "ds", "y", "y_pred"]
    pd.testing.assert_frame_equal(out, expected, check_dtype=False)


def test_each_series_last_window_ends_at_its_own_end():
    df = panel((25, 18, 30))
    out = backtest(LastValue(), df, horizon=3, n_windows=2)
    last = df.groupby("unique_id")["ds"].max()
    assert (out.groupby("unique_id")["ds"].max() == last).all()
    assert out.groupby("unique_id")["cutoff"].nunique().eq(2).all()


def test_the_estimator_never_sees_data_after_the_cutoff():
    df = panel((40, 33))
    Spy.log.clear()
    out = backtest(Spy(), df, horizon=3, n_windows=5, step=1, refit=False)
    cutoffs = out.groupby(["unique_id", "cutoff"]).size().reset_index()
    by_window = [dict(zip(g.unique_id, g.cutoff)) for _, g in cutoffs.groupby(cutoffs.groupby("unique_id").cumcount())]
    assert [kind for kind, _ in Spy.log] == ["fit"] + ["predict"] * 4
    for (_, seen), cut in zip(Spy.log, by_window):
        assert seen == cut  # the last stamp shown is exactly the cutoff, for every series


@pytest.mark.parametrize(("refit", "fits"), [(False, 1), (True, 5), (2, 3), (3, 2), (0, 1)])
def test_refit_schedule(refit, fits):
    run = _run_backtest(LastValue(), panel((30,)), horizon=2, n_windows=5, refit=refit)
    assert run.n_fits == fits
    assert run.fit_time_s >= 0 and run.predict_time_s > 0


def test_start_as_position_negative_position_and_timestamp():
    df = panel((30, 20))
    by_pos = backtest(LastValue(), df, horizon=2, start=15, step=3)
    assert by_pos.groupby("unique_id").cutoff.nunique().to_dict() == {"s0": 5, "s1": 1}  # 15..27 and 15
    ds = pd.date_range("2024-01-01", periods=30, freq="h")
    assert sorted(by_pos[by_pos.unique_id == "s0"].cutoff.unique()) == list(ds[[15, 18, 21, 24, 27]])
    by_stamp = backtest(LastValue(), df, horizon=2, start=ds[15] + pd.Timedelta("30min"), step=3)
    pd.testing.assert_frame_equal(by_stamp, by_pos)
    capped = backtest(LastValue(), df, horizon=2, start=15, step=3, n_windows=2)
    assert capped.groupby("unique_id").cutoff.nunique().to_dict() == {"s0": 2, "s1": 1}
    negative = backtest(LastValue(), df, horizon=2, start=-5)
    assert negative.groupby("unique_id").cutoff.min().to_dict() == {"s0": ds[25], "s1": ds[15]}


@given(st.integers(1, 40), st.integers(1, 6), st.integers(1, 5), st.integers(1, 4))
def test_cutoff_positions_leave_a_full_horizon(n, horizon, n_windows, step):
    ds = np.arange(n)
    pos = cutoff_positions(ds, horizon, n_windows=n_windows, step=step)
    if n < horizon + 1 + (n_windows - 1) * step:
        assert pos == []
    else:
        assert len(pos) == n_windows and pos[-1] == n - horizon - 1
        assert np.all(np.diff(pos) == step) and pos[0] >= 0
    started = cutoff_positions(ds, horizon, start=0, step=step)
    assert all(0 <= p <= n - horizon - 1 for p in started)
    assert len(started) == max(0, (n - horizon - 1) // step + 1)


def test_quantiles_integer_time_and_wide_input():
    ints = pd.DataFrame({"unique_id": "a", "ds": np.arange(20), "y": np.sin(np.arange(20.0))})
    out = backtest(LastValue(), ints, horizon=3, n_windows=2, quantiles=[0.9, 0.1])
    cols = [quantile_column(0.1), quantile_column(0.9)]
    assert list(out.columns) == ["cutoff", "unique_id", "ds", "y", "y_pred", *cols]
    assert (out[cols[0]] <= out.y_pred).all() and (out.y_pred <= out[cols[1]]).all()
    assert out.ds.tolist() == [16, 17, 18, 17, 18, 19] and out.cutoff.unique().tolist() == [15, 16]
    wide = panel((20, 20)).pivot(index="ds", columns="unique_id", values="y")
    from_wide = backtest(LastValue(), wide, horizon=2, n_windows=2)
    pd.testing.assert_frame_equal(from_wide, backtest(LastValue(), panel((20, 20)), horizon=2, n_windows=2))


def test_inputs_are_not_modified():
    df = panel((20, 15))
    before = df.copy(deep=True)
    est = LastValue()
    backtest(est, df, horizon=2, n_windows=2)
    pd.testing.assert_frame_equal(df, before)
    assert not hasattr(est, "state_")  # the caller's estimator stays unfitted


class WrongRows(BaseEstimator):
    def __init__(self, shift_hours=0, drop=0):
        self.shift_hours, self.drop = shift_hours, drop

    def fit(self, df):
        self.model_ = LastValue().fit(df)
        return self

    def predict(self, h=None, df=None, quantiles=None):
        out = self.model_.predict(h=h, df=df)
        out["ds"] = out["ds"] + pd.Timedelta(hours=self.shift_hours)
        return out.iloc[: len(out) - self.drop]


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"horizon": 0}, ValueError, "horizon must be a positive integer"),
        ({"horizon": 2, "step": 0}, ValueError, "step must be"),
        ({"horizon": 2, "n_windows": 0}, ValueError, "n_windows must be"),
        ({"horizon": 2, "refit": -1}, ValueError, "refit must be"),
        ({"horizon": 2, "quantiles": [1.2]}, ValueError, "strictly between 0 and 1"),
        ({"horizon": 15}, ValueError, r"series too short.*'s1 \(length 12\)'"),
        ({"horizon": 2, "n_windows": 6, "step": 2}, ValueError, r"too short.*s1"),
        ({"horizon": 2, "start": pd.Timestamp("2023-01-01")}, ValueError, "too short"),
    ],
)
def test_argument_errors(kwargs, error, message):
    with pytest.raises(error, match=message):
        backtest(LastValue(), panel((20, 12)), **kwargs)


def test_bad_data_and_bad_estimators():
    df = panel((20, 12))
    nan = df.copy()
    nan.loc[3, "y"] = np.nan
    with pytest.raises(ValueError, match=r"NaN/inf target values in series \['s0'\]"):
        backtest(LastValue(), nan, horizon=2)
    with pytest.raises(ValueError, match="do not match the next 2 timestamps of series"):
        backtest(WrongRows(shift_hours=1), df, horizon=2)
    with pytest.raises(ValueError, match="expected 2 forecast rows per series"):
        backtest(WrongRows(drop=1), df, horizon=2)
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['y_pred_q0.5'\]"):
        backtest(WrongRows(), df, horizon=2, quantiles=[0.5])
    with pytest.raises(TypeError, match="fit and predict"):
        backtest(object(), df, horizon=2)


@pytest.mark.parametrize("seed", range(4))
def test_the_cutoff_table_equals_cutoff_positions_series_by_series(seed):
    """The backtest's cutoffs over the whole panel at once (issue #36) against the per-series function."""
    from ssmcast.evaluation.backtest import _cutoff_table

    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 40, size=12)
    stamps = [pd.date_range("2021-01-01", periods=n, freq="D") + pd.Timedelta(days=int(rng.integers(0, 9)))
              for n in lengths]  # fmt: skip
    ds = pd.Series(np.concatenate([s.to_numpy() for s in stamps]))
    offsets = np.r_[0, np.cumsum(lengths)]
    for horizon, n_windows, start, step in [(3, None, None, 1), (2, 4, None, 3), (5, None, 10, 2), (1, 3, -8, 1),
                                            (2, None, pd.Timestamp("2021-01-12"), 2), (4, 2, "2021-01-20", 1),
                                            (3, None, 0, 5)]:  # fmt: skip
        table = _cutoff_table(ds, offsets, horizon, n_windows, start, step)
        for s, series_ds in enumerate(stamps):
            want = cutoff_positions(pd.Series(series_ds), horizon, n_windows, start, step)
            got = [int(c) for c in table[s] if c >= 0]
            assert got == want, (horizon, n_windows, start, step, s)
