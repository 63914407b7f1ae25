import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.stats import norm

from ssmcast.evaluation import (
    coverage,
    crps,
    mae,
    mape,
    mase,
    mase_scale,
    mean_pinball,
    mse,
    owa,
    pinball_loss,
    rmse,
    score,
    smape,
)
from ssmcast.evaluation.metrics import OVERALL
from ssmcast.forecasting import quantile_column

finite = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False)
pairs = st.integers(1, 30).flatmap(
    lambda n: st.tuples(arrays(float, n, elements=finite), arrays(float, n, elements=finite))
)


@given(pairs)
def test_point_metrics_match_direct_formulas(yf):
    y, f = yf
    assert mae(y, f) == pytest.approx(sum(abs(a - b) for a, b in zip(y, f)) / len(y), abs=1e-9)
    assert mse(y, f) == pytest.approx(sum((a - b) ** 2 for a, b in zip(y, f)) / len(y), rel=1e-9, abs=1e-9)
    assert rmse(y, f) == pytest.approx(math.sqrt(mse(y, f)), rel=1e-12)
    terms = [0.0 if a == b == 0 else 200 * abs(a - b) / (abs(a) + abs(b)) for a, b in zip(y, f)]
    assert smape(y, f) == pytest.approx(sum(terms) / len(terms), abs=1e-9)
    if np.all(np.abs(y) > 1e-6):  # sklearn clamps |y| below machine epsilon
        assert mape(y, f) == pytest.approx(100 * sum(abs((a - b) / a) for a, b in zip(y, f)) / len(y), rel=1e-9)


def test_smape_and_mape_known_values():
    assert smape([100.0, 0.0], [50.0, 0.0]) == pytest.approx((200 * 50 / 150 + 0) / 2)
    assert smape([1.0], [-1.0]) == pytest.approx(200.0)  # the maximum
    assert mape([2.0, 4.0], [1.0, 5.0]) == pytest.approx(100 * (0.5 + 0.25) / 2)


def mase_loop(y, f, train, m):
    naive_errors = [abs(train[t] - train[t - m]) for t in range(m, len(train))]
    return (sum(abs(a - b) for a, b in zip(y, f)) / len(y)) / (sum(naive_errors) / len(naive_errors))


@given(st.integers(1, 5), arrays(float, 20, elements=finite), pairs)
def test_mase_matches_the_m4_loop(m, train, yf):
    y, f = yf
    if np.all(train[m:] == train[:-m]):
        with pytest.raises(ValueError, match="constant"):
            mase(y, f, train, m)
        return
    assert mase(y, f, train, m) == pytest.approx(mase_loop(y, f, train, m), rel=1e-9)


def test_mase_errors():
    with pytest.raises(ValueError, match="constant at lag season_length=2"):
        mase_scale([1.0, 2.0, 1.0, 2.0, 1.0], 2)
    with pytest.raises(ValueError, match="more than season_length=24"):
        mase([1.0], [1.0], np.arange(10.0), 24)
    with pytest.raises(ValueError, match="season_length must be a positive integer"):
        mase([1.0], [1.0], np.arange(10.0), 0)


def test_owa_is_the_m4_average_of_relative_smape_and_mase():
    assert owa(10.0, 1.0, 20.0, 4.0) == pytest.approx(0.5 * (0.5 + 0.25))
    assert owa(18.383, 2.395, 18.383, 2.395) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="smape_naive2 is 0"):
        owa(1.0, 1.0, 0.0, 1.0)
    with pytest.raises(ValueError, match="mase_value"):
        owa(1.0, float("nan"), 1.0, 1.0)


@given(pairs, st.floats(0.01, 0.99))
def test_pinball_matches_direct_formula(yf, q):
    y, f = yf
    direct = sum(q * (a - b) if a >= b else (1 - q) * (b - a) for a, b in zip(y, f)) / len(y)
    assert pinball_loss(y, f, q) == pytest.approx(direct, abs=1e-9)


def test_mean_pinball_and_crps_forms_agree():
    rng = np.random.default_rng(0)
    y = rng.normal(size=50)
    levels = [0.1, 0.5, 0.9]
    Q = np.sort(rng.normal(size=(50, 3)), axis=1)
    as_dict = mean_pinball(y, {q: Q[:, j] for j, q in enumerate(levels)})
    assert mean_pinball(y, Q, levels) == pytest.approx(as_dict)
    assert as_dict == pytest.approx(np.mean([pinball_loss(y, Q[:, j], q) for j, q in enumerate(levels)]))
    assert crps(y, Q, levels) == pytest.approx(2 * as_dict)


def test_crps_from_many_quantiles_approaches_the_gaussian_closed_form():
    mu, sigma = 1.0, 2.0
    y = np.array([-3.0, 0.0, 1.0, 2.5, 7.0])
    levels = np.arange(0.005, 1.0, 0.01)  # midpoint rule over (0, 1)
    Q = mu + sigma * norm.ppf(levels)[None, :].repeat(len(y), axis=0)
    z = (y - mu) / sigma
    exact = sigma * (z * (2 * norm.cdf(z) - 1) + 2 * norm.pdf(z) - 1 / np.sqrt(np.pi))
    assert crps(y, Q, levels) == pytest.approx(exact.mean(), rel=5e-3)


def test_coverage_counts_points_inside_the_closed_interval():
    y = np.array([0.0, 1.0, 2.0, 3.0])
    assert coverage(y, [0, 0, 0, 0], [1, 1, 1, 1]) == 0.5
    assert coverage(y, y, y) == 1.0
    with pytest.raises(ValueError, match="lower > upper at 1 point"):
        coverage(y, [0, 2, 0, 0], [1, 1, 5, 5])


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: mae([1.0, 2.0], [1.0]), r"differ in shape: \(2,\) vs \(1,\)"),
        (lambda: mse([1.0, np.nan], [1.0, 2.0]), "y_true contains 1 NaN/inf"),
        (lambda: rmse([1.0, 2.0], [1.0, np.inf]), "y_pred contains 1 NaN/inf"),
        (lambda: smape([], []), "y_true is empty"),
        (lambda: mape([0.0, 1.0], [1.0, 1.0]), "y_true has 1 zero value"),
        (lambda: pinball_loss([1.0], [1.0], 1.5), "strictly between 0 and 1"),
        (lambda: mean_pinball([1.0], np.ones((1, 2)), [0.1]), "shape"),
        (lambda: mean_pinball([1.0], np.ones((1, 1))), "quantiles are required"),
        (lambda: crps([1.0, 2.0], {0.5: [1.0]}), "quantile_preds"),
    ],
)
def test_array_errors_name_the_problem(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_text_input_is_a_type_error():
    with pytest.raises(TypeError, match="y_true must be numeric"):
        mae(["a"], [1.0])


# ---------------------------------------------------------------------------------------------- score


def frames(seed=0):
    rng = np.random.default_rng(seed)
    ds = pd.date_range("2024-01-01", periods=30, freq="D")
    train, fc = [], []
    for uid, n_test in (("a", 5), ("b", 5)):
        y = 50 + rng.normal(size=30).cumsum()
        train.append(pd.DataFrame({"unique_id": uid, "ds": ds, "y": y}))
        f = pd.DataFrame({"unique_id": uid, "ds": ds[-n_test:], "y_pred": y[-n_test:] + rng.normal(size=n_test)})
        for q, shift in ((0.1, -1.5), (0.5, 0.0), (0.9, 1.5)):
            f[quantile_column(q)] = f["y_pred"] + shift
        fc.append(f)
    return pd.concat(fc, ignore_index=True), pd.concat(train, ignore_index=True)


def test_score_per_series_and_overall_match_array_metrics():
    fc, actuals = frames()
    before = (fc.copy(), actuals.copy())
    table = score(
        fc,
        actuals,
        metrics=["mae", "rmse", "smape", "mase", "pinball", "crps", "coverage"],
        train=actuals,
        season_length=7,
    )
    pd.testing.assert_frame_equal(fc, before[0])
    pd.testing.assert_frame_equal(actuals, before[1])
    assert list(table["unique_id"]) == ["a", "b", OVERALL]
    assert list(table.columns) == ["unique_id", "mae", "rmse", "smape", "mase", "pinball", "crps", "coverage_80"]
    for uid in ("a", "b"):
        f = fc[fc.unique_id == uid]
        a = actuals[actuals.unique_id == uid]
        y = a["y"].to_numpy()[-5:]
        row = table.set_index("unique_id").loc[uid]
        assert row["mae"] == pytest.approx(mae(y, f.y_pred))
        assert row["rmse"] == pytest.approx(rmse(y, f.y_pred))
        assert row["smape"] == pytest.approx(smape(y, f.y_pred))
        assert row["mase"] == pytest.approx(mase_loop(y, f.y_pred.to_numpy(), a["y"].to_numpy()[:-5], 7))
        Q = f[[quantile_column(q) for q in (0.1, 0.5, 0.9)]].to_numpy()
        assert row["crps"] == pytest.approx(crps(y, Q, [0.1, 0.5, 0.9]))
        assert row["coverage_80"] == pytest.approx(np.mean((y >= Q[:, 0]) & (y <= Q[:, 2])))
    overall = table.iloc[-1]
    for col in table.columns[1:]:
        assert overall[col] == pytest.approx(table[col].iloc[:2].mean())


def test_score_mase_is_scaled_per_cutoff():
    """With a cutoff column each window is scaled by the training data up to its own cutoff."""
    y = np.array([0, 1, 3, 6, 10, 15, 21, 28], dtype=float)  # growing steps: scale differs by cutoff
    ds = np.arange(8)
    data = pd.DataFrame({"unique_id": "s", "ds": ds, "y": y})
    fc = pd.DataFrame({"cutoff": [4, 4, 5, 5], "unique_id": "s", "ds": [5, 6, 6, 7], "y_pred": [10.0, 10, 15, 15]})
    table = score(fc, data, metrics=["mase"], train=data, season_length=1)
    scale4, scale5 = np.mean(np.diff(y[:5])), np.mean(np.diff(y[:6]))
    expected = np.mean([5 / scale4, 11 / scale4, 6 / scale5, 13 / scale5])
    assert table["mase"].iloc[0] == pytest.approx(expected)


def test_score_owa_uses_the_m4_ratio_of_means():
    fc, actuals = frames()
    bench = fc[["unique_id", "ds"]].assign(y_pred=fc["y_pred"] + 3.0)
    table = score(fc, actuals, metrics=["smape", "mase", "owa"], train=actuals, season_length=1, benchmark=bench)
    ours = score(fc, actuals, metrics=["smape", "mase"], train=actuals, season_length=1)
    theirs = score(bench, actuals, metrics=["smape", "mase"], train=actuals, season_length=1)
    o, t = ours.iloc[-1], theirs.iloc[-1]
    assert table["owa"].iloc[-1] == pytest.approx(owa(o.smape, o.mase, t.smape, t.mase))
    assert table["owa"].iloc[0] == pytest.approx(owa(ours.smape[0], ours.mase[0], theirs.smape[0], theirs.mase[0]))


def test_score_takes_y_from_the_forecast_frame_and_infers_the_season():
    fc, actuals = frames()
    with_y = fc.merge(actuals, on=["unique_id", "ds"])
    a = score(with_y, metrics=["mae", "mase"], train=actuals)  # daily -> season 7
    b = score(fc, actuals, metrics=["mae", "mase"], train=actuals, season_length=7)
    pd.testing.assert_frame_equal(a, b)


def test_score_errors():
    fc, actuals = frames()
    with pytest.raises(ValueError, match="no actual y for 5 forecast row"):
        score(fc, actuals[actuals.unique_id == "a"])
    with pytest.raises(ValueError, match="needs train="):
        score(fc, actuals, metrics=["mase"])
    with pytest.raises(ValueError, match="needs quantile columns"):
        score(fc[["unique_id", "ds", "y_pred"]], actuals, metrics=["crps"])
    with pytest.raises(ValueError, match=r"needs column y_pred_q0.025"):
        score(fc, actuals, metrics=["coverage_95"])
    with pytest.raises(ValueError, match="unknown metric 'wape'"):
        score(fc, actuals, metrics=["wape"])
    with pytest.raises(ValueError, match="missing column"):
        score(fc.drop(columns="y_pred"), actuals)
    with pytest.raises(ValueError, match="must have a 'y' column"):
        score(fc)
    with pytest.raises(ValueError, match=r"series 'a'.*constant"):
        flat = actuals.assign(y=np.where(actuals.unique_id == "a", 1.0, actuals.y))
        score(fc, actuals, metrics=["mase"], train=flat, season_length=1)
    with pytest.raises(ValueError, match="needs benchmark="):
        score(fc, actuals, metrics=["owa"], train=actuals)
    with pytest.raises(ValueError, match="duplicate"):
        score(pd.concat([fc, fc.head(1)]), actuals)
    nan = fc.copy()
    nan.loc[7, "y_pred"] = np.nan
    with pytest.raises(ValueError, match=r"'y_pred' has NaN/inf values for series \['b'\]"):
        score(nan, actuals)


def test_score_coverage_named_and_implicit_give_one_column():
    fc, actuals = frames()
    table = score(fc, actuals, metrics=["coverage_80", "coverage"])
    assert list(table.columns) == ["unique_id", "coverage_80"]
