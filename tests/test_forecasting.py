import numpy as np
import pandas as pd
import pytest

from ssmcast.forecasting import check_quantiles, forecast_frame, quantile_column, season_length_from_freq


def test_quantile_column_names():
    assert quantile_column(0.1) == "y_pred_q0.1"
    assert quantile_column(0.5) == "y_pred_q0.5"
    assert quantile_column(0.975) == "y_pred_q0.975"


@pytest.mark.parametrize("bad", [0.0, 1.0, -0.2, 1.5, float("nan"), "x"])
def test_check_quantiles_rejects(bad):
    with pytest.raises(ValueError, match="quantiles"):
        check_quantiles([0.5, bad])


def test_check_quantiles_sorts_and_dedups():
    assert check_quantiles([0.9, 0.1, 0.9]) == [0.1, 0.9]
    assert check_quantiles(None) == []
    assert check_quantiles(0.5) == [0.5]


def test_forecast_frame_columns():
    frame = forecast_frame(["a", "a"], pd.date_range("2020", periods=2, freq="D"), [1, 2], {0.9: [3, 4], 0.1: [0, 1]})
    assert list(frame.columns) == ["unique_id", "ds", "y_pred", "y_pred_q0.1", "y_pred_q0.9"]
    np.testing.assert_array_equal(frame["y_pred_q0.9"], [3.0, 4.0])


@pytest.mark.parametrize(
    "freq,m", [("h", 24), ("15min", 96), ("10min", 144), ("D", 7), ("W-SAT", 52), ("MS", 12), ("QS-DEC", 4),
               ("YS", 1), ("2h", 12), (1, 1), (None, 1)]
)
def test_season_length_from_freq(freq, m):
    assert season_length_from_freq(freq) == m
