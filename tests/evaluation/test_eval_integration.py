"""The evaluation tools with the real baselines and datasets of ssmcast."""

import numpy as np
import pytest
from test_ltsf import reference, synthetic

from ssmcast.baselines.arima import ARIMAForecaster
from ssmcast.baselines.naive import Naive2Forecaster, NaiveForecaster, SeasonalNaiveForecaster
from ssmcast.datasets import load_dataset, load_m4_hourly
from ssmcast.evaluation import backtest, compare, evaluate_ltsf, score


@pytest.mark.slow  # 414 series, Naive2 + seasonal naive
def test_m4_hourly_naive2_reproduces_the_published_row(data_dir):
    """M4 (Makridakis et al. 2020), Hourly, Naive2: sMAPE 18.383, MASE 2.395 (m = 24)."""
    train, test = load_m4_hourly(data_dir=data_dir)
    naive2 = Naive2Forecaster(season_length=24).fit(train).predict(h=48)
    table = score(naive2, test, metrics=["smape", "mase"], train=train, season_length=24)
    assert len(table) == 414 + 1
    assert table.smape.iloc[-1] == pytest.approx(18.383, abs=5e-4)
    assert table.mase.iloc[-1] == pytest.approx(2.395, abs=5e-4)
    snaive = SeasonalNaiveForecaster(season_length=24).fit(train).predict(h=48)
    owa = score(snaive, test, metrics=["smape", "mase", "owa"], train=train, season_length=24, benchmark=naive2)
    s = owa.iloc[-1]
    assert s.owa == pytest.approx(0.5 * (s.smape / table.smape.iloc[-1] + s.mase / table.mase.iloc[-1]))
    assert s.owa < 1  # seasonal naive beats Naive2 on hourly data


def test_compare_baselines_on_the_airline_data(data_dir):
    air = load_dataset("airline", data_dir=data_dir)
    log_air = air.assign(y=np.log(air.y))
    models = {
        "naive": NaiveForecaster(),
        "seasonal_naive": SeasonalNaiveForecaster(season_length=12),
        "airline_arima": ARIMAForecaster(order=(0, 1, 1), seasonal_order=(0, 1, 1), season_length=12),
    }
    lb = compare(models, log_air, horizon=12, n_windows=2, quantiles=[0.1, 0.9], metrics=["rmse", "mase", "coverage"])
    assert list(lb.table.model) == ["airline_arima", "seasonal_naive", "naive"]
    assert (lb.table.error == "").all() and lb.table.mase.iloc[0] < 1


def test_backtest_naive_is_the_value_at_the_cutoff(data_dir):
    air = load_dataset("airline", data_dir=data_dir)
    out = backtest(NaiveForecaster(), air, horizon=6, n_windows=3, step=6)
    at_cutoff = air.set_index("ds").y.loc[out.cutoff].to_numpy()
    np.testing.assert_array_equal(out.y_pred.to_numpy(), at_cutoff)


class ARIMAWithoutWindows(ARIMAForecaster):
    predict_windows = None  # forces evaluate_ltsf's fallback: one predict(df=window) call per window


def test_ltsf_with_classical_baselines_uses_their_predict_windows():
    wide = synthetic(90)
    split = ((0, 50), (50, 70), (70, 90))
    sq, ab = reference(wide, split, 8, 4, dict.fromkeys(wide.columns, 1.0))
    naive = evaluate_ltsf(NaiveForecaster(), wide, input_size=8, horizon=4, split=split)  # batched, vectorised
    assert naive.predict_mode == "predict_windows" and naive.n_windows == 17
    assert naive.mse == pytest.approx(sq.mean(), rel=1e-6) and naive.mae == pytest.approx(ab.mean(), rel=1e-6)
    # Naive2 (8 values are too short to be seasonal: the naive forecast), window by window
    naive2 = evaluate_ltsf(Naive2Forecaster(season_length=4), wide, input_size=8, horizon=4, split=split)
    assert naive2.predict_mode == "predict_windows" and naive2.n_windows == 17
    assert naive2.mse == pytest.approx(sq.mean(), rel=1e-6) and naive2.mae == pytest.approx(ab.mean(), rel=1e-6)
    # ARIMA through its affine window map (batches of 5 windows: the map is built on the second batch)
    # against the fallback that re-filters every window under the channel names
    arima = evaluate_ltsf(ARIMAForecaster(order=(1, 1, 1)), wide, input_size=8, horizon=4, split=split, batch_size=5)
    slow = evaluate_ltsf(ARIMAWithoutWindows(order=(1, 1, 1)), wide, input_size=8, horizon=4, split=split)
    assert arima.predict_mode == "predict_windows" and slow.predict_mode == "predict_per_window"
    assert arima.n_windows == slow.n_windows == 17
    assert arima.mse == pytest.approx(slow.mse, rel=1e-10) and arima.mae == pytest.approx(slow.mae, rel=1e-10)
    assert arima.mse_per_channel.index.tolist() == list(wide.columns)


def test_ltsf_custom_split_with_the_real_loader(data_dir):
    res = evaluate_ltsf(
        NaiveForecaster(),
        "illness",
        input_size=36,
        horizon=24,
        data_dir=data_dir,
        channels=["ILITOTAL", "OT"],
        batch_size=64,
    )
    assert res.n_windows == 194 - 24 and res.settings["split"]["test"] == (966 - 193, 966)
    assert res.channels == ["ILITOTAL", "OT"] and res.predict_mode == "predict_windows"


@pytest.mark.slow  # imports lightning and trains (tiny) twice
@pytest.mark.parametrize("channel_mode", ["independent", "mixed"])
def test_ltsf_with_a_neural_forecaster_matches_window_by_window_calls(channel_mode):
    from ssmcast.backbones.mamba import MambaConfig
    from ssmcast.forecasters import MambaForecaster

    wide = synthetic(160)
    split = ((0, 90), (90, 120), (120, 160))
    est = MambaForecaster(
        input_size=16,
        horizon=4,
        max_epochs=1,
        batch_size=64,
        verbose=False,
        channel_mode=channel_mode,
        backbone=MambaConfig(d_model=8, n_layers=1, d_state=4),
    )
    res = evaluate_ltsf(est, wide, input_size=16, horizon=4, split=split, batch_size=9)
    model = res.estimator
    assert res.predict_mode == "predict_windows" and res.n_windows == 37
    assert model.ids_ == sorted(wide.columns)  # the channel order evaluate_ltsf feeds (sorted unique_id)
    values = wide[model.ids_].to_numpy()
    z = (values - values[:90].mean(0)) / values[:90].std(0)
    errors = []
    for start in range(120, 160 - 4 + 1):
        pred = model.predict_windows(z[None, start - 16 : start].astype(np.float32))[0]  # (H, C)
        errors.append(pred - z[start : start + 4])
    errors = np.array(errors)
    assert res.mse == pytest.approx((errors**2).mean(), rel=1e-5)
    assert res.mae == pytest.approx(np.abs(errors).mean(), rel=1e-5)
