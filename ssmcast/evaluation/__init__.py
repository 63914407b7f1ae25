"""Evaluation: metrics, rolling-origin backtests, the long-horizon protocol and model comparison."""

from ssmcast.evaluation.backtest import backtest, cutoff_positions
from ssmcast.evaluation.compare import (
    CompareWarning,
    Leaderboard,
    compare,
    naive2_forecasts,
    plot_forecasts,
    plot_metric_bars,
)
from ssmcast.evaluation.ltsf import LTSFResult, evaluate_ltsf
from ssmcast.evaluation.metrics import (
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

__all__ = [
    "backtest",
    "cutoff_positions",
    "compare",
    "Leaderboard",
    "CompareWarning",
    "naive2_forecasts",
    "plot_forecasts",
    "plot_metric_bars",
    "evaluate_ltsf",
    "LTSFResult",
    "mae",
    "mse",
    "rmse",
    "mape",
    "smape",
    "mase",
    "mase_scale",
    "owa",
    "pinball_loss",
    "mean_pinball",
    "crps",
    "coverage",
    "score",
]
