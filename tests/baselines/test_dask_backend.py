"""The classical baselines, backtest and compare on a dask.distributed cluster (issue #36): a real LocalCluster
with two worker processes, the same forecasts as the local path, a worker killed mid-run, clear errors."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import distributed  # a dev dependency (pyproject): never skipped
import numpy as np
import pandas as pd
import pytest

from ssmcast.baselines import ARIMAForecaster, ETSForecaster, SeasonalNaiveForecaster
from ssmcast.evaluation import backtest, compare

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=":0", silence_logs=50) as cluster:  # fmt: skip
        yield cluster


@pytest.fixture
def client(cluster):
    with distributed.Client(cluster, set_as_default=True) as client:
        yield client


def panel(n_series=12, length=80, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(length)
    parts = [pd.DataFrame({"unique_id": f"s{i:02d}", "ds": pd.date_range("2024-01-01", periods=length, freq="h"),
                           "y": 30 + 3 * np.sin(2 * np.pi * t / 24) + np.cumsum(rng.normal(size=length))})
             for i in range(n_series)]  # fmt: skip
    return pd.concat(parts, ignore_index=True)


def tasks_run(cluster, name: str) -> float:
    """Seconds the cluster's workers have computed tasks of function ``name`` (grows with every task run there;
    the scheduler's task prefix drops the leading ``_``)."""
    prefix = cluster.scheduler.task_prefixes.get(name.lstrip("_"))
    return 0.0 if prefix is None else float(prefix.all_durations.get("compute", 0.0))


def test_baselines_on_the_cluster_give_the_local_forecasts(cluster, client):
    df = panel()
    for est in (ARIMAForecaster(order=(1, 1, 1)), ETSForecaster(trend="add")):
        local = est.fit(df).predict(12, quantiles=[0.1, 0.9])
        local_new = est.predict(6, df=df.groupby("unique_id").head(60))
        remote_est = est.set_params(backend="dask").fit(df)
        pd.testing.assert_frame_equal(remote_est.predict(12, quantiles=[0.1, 0.9]), local)
        pd.testing.assert_frame_equal(remote_est.predict(6, df=df.groupby("unique_id").head(60)), local_new)
    assert tasks_run(cluster, "_fit_batch") > 0 and tasks_run(cluster, "_forecast_batch") > 0


def test_backtest_and_compare_on_the_cluster(client):
    df = panel(n_series=8, length=120)
    est = ARIMAForecaster(order=(1, 0, 0))
    local = backtest(est, df, horizon=12, n_windows=3, step=12)
    pd.testing.assert_frame_equal(backtest(est, df, horizon=12, n_windows=3, step=12, backend="dask"), local)
    assert est.backend == "local"  # the caller's estimator is left as it was
    board_local = compare({"arima": est, "snaive": SeasonalNaiveForecaster()}, df, horizon=12, n_windows=2)
    board_dask = compare({"arima": est, "snaive": SeasonalNaiveForecaster()}, df, horizon=12, n_windows=2,
                         backend="dask")
    cols = ["model", "mae", "rmse", "smape", "mase"]
    pd.testing.assert_frame_equal(board_dask.table[cols], board_local.table[cols])


def test_a_worker_killed_mid_fit_loses_and_duplicates_nothing(cluster, client, tmp_path):
    """The task whose worker dies is run again elsewhere by the scheduler: every series once, the local result."""
    marker = tmp_path / "killed"

    class KillsItsWorkerOnce(ARIMAForecaster):
        def _fit_series(self, y, m):
            if abs(y[0] - KILL_AT) < 1e-12 and not marker.exists():
                marker.write_text(str(os.getpid()))
                os._exit(1)  # the worker process dies in the middle of its batch
            return super()._fit_series(y, m)

    df = panel(n_series=16)
    KILL_AT = float(df.loc[df.unique_id == "s09", "y"].iloc[0])  # noqa: N806 - read by the class above
    pids = set(client.run(os.getpid).values())
    local = ARIMAForecaster(order=(1, 1, 0)).fit(df).predict(6)
    est = KillsItsWorkerOnce(order=(1, 1, 0), backend="dask")
    est.fit(df)
    assert marker.exists() and int(marker.read_text()) in pids  # a worker really died mid-run
    assert sorted(est.models_) == sorted(df.unique_id.unique())
    pd.testing.assert_frame_equal(est.predict(6), local)
    client.wait_for_workers(2, timeout=60)  # the nanny restarts it, for the tests after this one


def test_clear_errors():
    df = panel(n_series=2)
    with pytest.raises(ValueError, match=r"backend must be one of \('local', 'dask'\); got 'spark'"):
        ARIMAForecaster(backend="spark").fit(df)
    if distributed.client._get_global_client() is None:
        with pytest.raises(ValueError, match="there is none: create one first"):
            ARIMAForecaster(backend="dask").fit(df)
    from ssmcast import S4DForecaster

    with pytest.raises(ValueError, match="S4DForecaster has no backend parameter"):
        backtest(S4DForecaster(), df, horizon=4, backend="dask")
    with pytest.raises(ValueError, match="backend must be one of"):
        compare([ARIMAForecaster()], df, horizon=4, backend="threads")


def test_the_cli_runs_the_baselines_on_a_cluster_address(cluster, tmp_path):
    """`ssmcast compare ... +cluster.address=tcp://...`: the baselines' per-series tasks run on that cluster."""
    before = tasks_run(cluster, "_fit_batch")
    cmd = [sys.executable, "-m", "ssmcast.cli", "compare", "data=co2", "quick=true", "models=[arima,seasonal_naive]",
           "tracking=none", f"+cluster.address={cluster.scheduler_address}", f"hydra.run.dir={tmp_path}"]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert tasks_run(cluster, "_fit_batch") > before  # the CLI's fits ran on the cluster
    board = pd.read_csv(tmp_path / "leaderboard.csv")
    assert set(board["model"]) == {"arima", "seasonal_naive"} and board["error"].isna().all()  # no model failed


def test_the_cli_names_an_unreachable_scheduler(tmp_path):
    cmd = [sys.executable, "-m", "ssmcast.cli", "compare", "data=co2", "quick=true", "models=[arima]",
           "tracking=none", "+cluster.address=tcp://127.0.0.1:1", "+cluster.timeout_s=2", f"hydra.run.dir={tmp_path}"]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode != 0
    assert "cannot reach the Dask scheduler" in done.stdout + done.stderr


# ------------------------------------------------------------------ a panel that stays on the cluster


def by_series(df: pd.DataFrame, npartitions: int):
    """A Dask DataFrame of ``df`` whose partitions hold whole series (divisions on the sorted unique_id)."""
    import dask.dataframe as dd

    ddf = dd.from_pandas(df.set_index("unique_id").sort_index(), npartitions=npartitions, sort=True).reset_index()
    assert ddf.npartitions > 1
    return ddf


def test_backtest_of_a_partitioned_panel_equals_the_collected_one(cluster, client, tmp_path):
    """A Dask DataFrame partitioned by series, or the Parquet dataset it was written to: each partition's
    backtest runs on a worker, the lazy result computed equals the in-memory backtest (issue #36)."""
    import dask.dataframe as dd

    df = panel(n_series=9, length=100)
    est = ETSForecaster(trend="add")
    local = backtest(est, df, horizon=6, n_windows=2, step=6, quantiles=[0.1, 0.9])
    before = tasks_run(cluster, "_backtest_part")
    lazy = backtest(est, by_series(df, 3), horizon=6, n_windows=2, step=6, quantiles=[0.1, 0.9])
    assert isinstance(lazy, dd.DataFrame)  # nothing computed yet
    got = lazy.compute().sort_values(["unique_id", "cutoff", "ds"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(got, local)
    assert tasks_run(cluster, "_backtest_part") > before  # on the workers
    path = tmp_path / "panel.parquet"
    by_series(df, 3).to_parquet(str(path))
    got = backtest(est, path, horizon=6, n_windows=2, step=6, quantiles=[0.1, 0.9]).compute()
    pd.testing.assert_frame_equal(got.sort_values(["unique_id", "cutoff", "ds"]).reset_index(drop=True), local)


def test_compare_of_a_partitioned_panel_equals_the_collected_one(cluster, client):
    df = panel(n_series=10, length=120, seed=3)
    models = {"arima": ARIMAForecaster(order=(1, 0, 0)), "snaive": SeasonalNaiveForecaster(season_length=24)}
    metrics = ["mae", "rmse", "smape", "mase", "owa"]
    local = compare(models, df, horizon=12, n_windows=2, metrics=metrics, season_length=24)
    before = tasks_run(cluster, "_compare_part")
    board = compare(models, by_series(df, 4), horizon=12, n_windows=2, metrics=metrics, season_length=24)
    assert tasks_run(cluster, "_compare_part") > before
    cols = ["model", *metrics, "n_fits"]
    pd.testing.assert_frame_equal(board.table[cols], local.table[cols])
    for name in models:  # the per-series rows too, and the overall row built from them
        pd.testing.assert_frame_equal(board.scores[name], local.scores[name][board.scores[name].columns])
    assert board.forecasts == {} and (board.table["fit_time_s"] > 0).all()


def test_a_partitioned_panel_is_refused_clearly_where_it_cannot_work(tmp_path):
    """Without a client (dask's local scheduler): a series split over partitions, a global model, a missing
    column, mase without season_length, a missing path: each an error naming the problem."""
    import dask.dataframe as dd

    from ssmcast import S4DForecaster

    df = panel(n_series=4, length=60)
    split = dd.from_pandas(df, npartitions=3, sort=False)  # row blocks: series cut in two
    with pytest.raises(ValueError, match=r"span more than one partition.*shuffle"):
        backtest(SeasonalNaiveForecaster(), split, horizon=6)
    with pytest.raises(TypeError, match="S4DForecaster.*global model"):
        backtest(S4DForecaster(input_size=12, horizon=6), by_series(df, 2), horizon=6)
    with pytest.raises(ValueError, match=r"missing column\(s\) \['y'\]"):
        backtest(SeasonalNaiveForecaster(), by_series(df, 2).rename(columns={"y": "value"}), horizon=6)
    with pytest.raises(ValueError, match="season_length is needed"):
        compare([SeasonalNaiveForecaster()], by_series(df, 2), horizon=6, metrics=["mase"])
    with pytest.raises(FileNotFoundError, match="no Parquet dataset"):
        backtest(SeasonalNaiveForecaster(), tmp_path / "nowhere", horizon=6)
    got = backtest(SeasonalNaiveForecaster(), by_series(df, 2), horizon=6).compute()  # the local scheduler works
    pd.testing.assert_frame_equal(got.sort_values(["unique_id", "cutoff", "ds"]).reset_index(drop=True),
                                  backtest(SeasonalNaiveForecaster(), df, horizon=6))


def test_the_cli_compares_a_partitioned_parquet_dataset_on_the_cluster(cluster, tmp_path):
    """`ssmcast compare data=parquet data.partitioned=true data.path=DIR +cluster.address=...`: every partition's
    backtests run on the cluster and the leaderboard equals compare() on the collected panel."""
    df = panel(n_series=6, length=100, seed=5).rename(columns={"unique_id": "store", "ds": "time", "y": "sales"})
    path = tmp_path / "panel"
    ddf = by_series(df.rename(columns={"store": "unique_id"}), 3).rename(columns={"unique_id": "store"})
    with warnings.catch_warnings():  # dask 2026.8's writer uses inplace=True, deprecated by pandas 3.1
        warnings.filterwarnings("ignore", message=".*inplace keyword in DataFrame.*is deprecated")
        ddf.to_parquet(str(path))
    before = tasks_run(cluster, "_compare_part")
    cmd = [sys.executable, "-m", "ssmcast.cli", "compare", "data=parquet", f"data.path={path}", "data.partitioned=true",
           "data.id_col=store", "data.time_col=time", "data.target_col=sales", "data.season_length=24", "horizon=12",
           "n_windows=2", "models=[seasonal_naive,naive2]", "metrics=[smape,mase,owa]", "tracking=none",
           f"+cluster.address={cluster.scheduler_address}", f"hydra.run.dir={tmp_path / 'run'}"]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert tasks_run(cluster, "_compare_part") > before
    board = pd.read_csv(tmp_path / "run" / "leaderboard.csv")
    from ssmcast.baselines import Naive2Forecaster

    local = compare({"seasonal_naive": SeasonalNaiveForecaster(season_length=24),
                     "naive2": Naive2Forecaster(season_length=24)},
        df.rename(columns={"store": "unique_id", "time": "ds", "sales": "y"}), horizon=12, n_windows=2,
        metrics=["smape", "mase", "owa"], season_length=24)
    cols = ["model", "smape", "mase", "owa"]
    pd.testing.assert_frame_equal(board[cols], local.table[cols], check_exact=False, rtol=1e-9)
    bad = [sys.executable, "-m", "ssmcast.cli", "compare", "data=parquet", f"data.path={path}",
           "data.partitioned=true", "data.id_col=store", "data.time_col=time", "data.target_col=sales",
           "models=[seasonal_naive]", "metrics=[mase]", "tracking=none", f"hydra.run.dir={tmp_path / 'bad'}"]
    done = subprocess.run(bad, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode != 0 and "data.season_length is needed" in done.stdout + done.stderr
