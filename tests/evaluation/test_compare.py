import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from eval_estimators import Broken, LastValue  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from ssmcast.evaluation import CompareWarning, Leaderboard, backtest, compare, score  # noqa: E402
from ssmcast.evaluation.metrics import OVERALL  # noqa: E402


def trending(n=60, seed=1) -> pd.DataFrame:
    """Two series with a strong linear trend: drift beats last value."""
    rng = np.random.default_rng(seed)
    ds = pd.date_range("2024-01-01", periods=n, freq="D")
    return pd.concat(
        [
            pd.DataFrame({"unique_id": uid, "ds": ds, "y": 10 + slope * np.arange(n) + 0.3 * rng.normal(size=n)})
            for uid, slope in (("up", 1.0), ("down", -0.5))
        ],
        ignore_index=True,
    )


def test_leaderboard_ranks_and_matches_score():
    df = trending()
    lb = compare({"last": LastValue(), "drift": LastValue(drift=True)}, df, horizon=5, n_windows=3)
    assert isinstance(lb, Leaderboard)
    table = lb.table
    assert list(table.columns) == [
        "model",
        "mae",
        "rmse",
        "smape",
        "mase",
        "fit_time_s",
        "predict_time_s",
        "n_fits",
        "error",
    ]
    assert list(table.model) == ["drift", "last"]  # sorted by mae
    assert table.mae.is_monotonic_increasing and (table.error == "").all()
    assert (table.fit_time_s >= 0).all() and (table.predict_time_s > 0).all() and (table.n_fits == 1).all()
    # the same numbers as backtest + score by hand (windows step = horizon, MASE m = 7 for daily data)
    frame = backtest(LastValue(drift=True), df, horizon=5, n_windows=3, step=5)
    pd.testing.assert_frame_equal(lb.forecasts["drift"], frame)
    expected = score(frame, metrics=["mae", "rmse", "smape", "mase"], train=df, season_length=7)
    overall = expected[expected.unique_id == OVERALL].iloc[0]
    for m in ("mae", "rmse", "smape", "mase"):
        assert table.set_index("model").loc["drift", m] == pytest.approx(overall[m])
    assert frame.groupby("unique_id").cutoff.nunique().eq(3).all()


def test_a_failing_model_is_reported_not_fatal():
    df = trending(30)
    with pytest.warns(CompareWarning, match="model 'broken' failed: RuntimeError: deliberate failure"):
        lb = compare({"broken": Broken(), "last": LastValue()}, df, horizon=3)
    assert list(lb.table.model) == ["last", "broken"]
    broken = lb.table.iloc[1]
    assert broken.error.startswith("RuntimeError") and np.isnan(broken.mae) and "broken" not in lb.forecasts


def test_list_input_names_and_argument_errors():
    df = trending(30)
    lb = compare([LastValue(), LastValue(drift=True)], df, horizon=2, metrics=["mae"])
    assert sorted(lb.table.model) == ["LastValue", "LastValue-2"]
    with pytest.raises(ValueError, match="unknown metric 'acc'"):
        compare([LastValue()], df, horizon=2, metrics=["acc"])
    with pytest.raises(ValueError, match="estimators is empty"):
        compare({}, df, horizon=2)
    with pytest.raises(TypeError, match="estimator 'x' has no fit/predict"):
        compare({"x": 3}, df, horizon=2)
    with pytest.raises(ValueError, match="horizon must be"):
        compare([LastValue()], df, horizon=0)


def test_figures_with_intervals_and_saved_files(tmp_path):
    df = trending(40)
    lb = compare(
        {"last": LastValue(), "drift": LastValue(drift=True)},
        df,
        horizon=4,
        n_windows=2,
        quantiles=[0.1, 0.5, 0.9],
        metrics=["mae", "crps", "coverage"],
    )
    assert list(lb.table.columns[1:4]) == ["mae", "crps", "coverage_80"]
    fig = lb.plot_forecasts(n_series=2)
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    ax = fig.axes[0]
    assert len(ax.collections) == 2 * 2  # one band per model and window
    assert {t.get_text() for t in ax.get_legend().get_texts()} >= {"actual", "last", "drift", "last 80%"}
    plt.close(fig)
    bars = lb.plot_metric_bars()
    assert isinstance(bars, Figure) and [a.get_title() for a in bars.axes] == ["mae", "crps", "coverage_80"]
    assert len(bars.axes[0].patches) == 2
    plt.close(bars)
    paths = lb.save(tmp_path / "out")
    assert sorted(p.name for p in paths) == ["forecasts.csv", "forecasts.png", "leaderboard.csv", "metrics.png"]
    assert all(p.stat().st_size > 0 for p in paths)
    saved = pd.read_csv(tmp_path / "out" / "leaderboard.csv", keep_default_na=False)
    assert list(saved.model) == list(lb.table.model)
    assert (tmp_path / "out" / "forecasts.png").read_bytes()[:4] == b"\x89PNG"


def test_plot_errors():
    lb = compare([LastValue()], trending(20), horizon=2, metrics=["mae"])
    with pytest.raises(ValueError, match=r"series \['nope'\] have no forecasts"):
        lb.plot_forecasts(series=["nope"])
    with pytest.raises(ValueError, match=r"metric\(s\) \['rmse'\] not in the table"):
        lb.plot_metric_bars(metrics=["rmse"])


def seasonal_panel(n=120, seed=3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ds = pd.date_range("2024-01-01", periods=n, freq="h")
    t = np.arange(n)
    return pd.concat(
        [pd.DataFrame({"unique_id": uid, "ds": ds, "y": 20 + amp * np.sin(2 * np.pi * t / 24) + rng.normal(size=n)})
         for uid, amp in (("a", 5.0), ("b", 2.0))],
        ignore_index=True,
    )


def test_owa_is_relative_to_naive2_on_the_same_windows():
    from ssmcast.baselines import Naive2Forecaster
    from ssmcast.evaluation import naive2_forecasts

    df = seasonal_panel()
    lb = compare({"last": LastValue(), "naive2": Naive2Forecaster()}, df, horizon=6, n_windows=2,
                 metrics=["smape", "mase", "owa"])
    table = lb.table.set_index("model")
    assert (table["error"] == "").all()
    assert table.loc["naive2", "owa"] == pytest.approx(1.0)
    bench = naive2_forecasts(df, horizon=6, n_windows=2)
    assert bench.groupby("unique_id").cutoff.nunique().eq(2).all()
    expected = score(lb.forecasts["last"], metrics=["owa"], train=df, season_length=24, benchmark=bench)
    assert table.loc["last", "owa"] == pytest.approx(expected[expected.unique_id == OVERALL]["owa"].iloc[0])
    given = compare({"last": LastValue()}, df, horizon=6, n_windows=2, metrics=["owa"], benchmark=bench)
    assert given.table["owa"].iloc[0] == pytest.approx(table.loc["last", "owa"])
