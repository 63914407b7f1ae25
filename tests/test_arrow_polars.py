"""polars DataFrames and pyarrow Tables in, pandas out (issue #36): every entry point that takes a frame gives
exactly what it gives for the same data as a pandas frame, and leaves the caller's object as it was."""

import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest

import ssmcast
from ssmcast.backbones.s4 import S4DConfig
from ssmcast.baselines import ETSForecaster, NaiveForecaster, SeasonalNaiveForecaster
from ssmcast.data import to_pandas, validate
from ssmcast.evaluation import backtest, evaluate_ltsf, score
from ssmcast.forecasters import EnsembleForecaster

KINDS = ["pyarrow", "polars"]
N = 48  # stamps per series


def panel(n: int = N, ids=("a", "b", "c"), tz: str | None = None, x: bool = False) -> dict[str, np.ndarray]:
    """Columns of an hourly panel (ds as datetime64[ns], UTC instants when ``tz`` is given)."""
    rng = np.random.default_rng(0)
    t = np.arange(n)
    cols = {
        "unique_id": np.repeat(np.array(ids), n),
        "ds": np.tile(np.datetime64("2021-03-27T00", "ns") + t * np.timedelta64(1, "h"), len(ids)),
        "y": np.concatenate([5 + k + np.sin(2 * np.pi * t / 24) + 0.1 * rng.normal(size=n) for k in range(len(ids))]),
    }
    if x:
        cols["x"] = np.tile(np.cos(2 * np.pi * t / 24), len(ids))
    return cols


def as_pandas(cols: dict, tz: str | None = None) -> pd.DataFrame:
    frame = pd.DataFrame(cols)
    if tz is not None:
        frame["ds"] = frame["ds"].dt.tz_localize("UTC").dt.tz_convert(tz)
    return frame


def as_arrow(cols: dict, tz: str | None = None) -> pa.Table:
    columns = dict(cols)
    columns["ds"] = pa.array(cols["ds"].astype(np.int64), pa.timestamp("ns", tz=tz))
    return pa.table(columns)


def as_polars(cols: dict, tz: str | None = None) -> pl.DataFrame:
    frame = pl.DataFrame({k: v for k, v in cols.items() if k != "ds"})
    ds = pl.Series("ds", cols["ds"])  # Datetime("ns")
    if tz is not None:
        ds = ds.dt.replace_time_zone("UTC").dt.convert_time_zone(tz)
    return frame.insert_column(1, ds)


def make(kind: str, cols: dict, tz: str | None = None):
    return {"pandas": as_pandas, "pyarrow": as_arrow, "polars": as_polars}[kind](cols, tz)


def same(got: pd.DataFrame, want: pd.DataFrame) -> None:
    assert type(got) is pd.DataFrame
    pd.testing.assert_frame_equal(got, want, check_exact=True)


def snapshot(obj):
    return obj.clone() if isinstance(obj, pl.DataFrame) else pa.table(obj.columns, schema=obj.schema)


def unchanged(obj, before) -> None:
    assert obj.equals(before) and obj.schema == before.schema


# ------------------------------------------------------------------------------------ the conversion


def test_arrow_types_convert_column_by_column():
    table = pa.table({
        "string": pa.array(["a", None], pa.string()),
        "large_string": pa.array(["a", None], pa.large_string()),
        "string_view": pa.array(["a", None], pa.string_view()),
        "dictionary": pa.array(["a", "b"]).dictionary_encode(),
        "tz": pa.array([0, 3_600_000_000], pa.timestamp("us", tz="America/New_York")),
        "naive": pa.array([0, None], pa.timestamp("ns")),
        "date": pa.array([0, 1], pa.date32()),
        "int_null": pa.array([1, None], pa.int64()),
        "uint": pa.array([1, 2], pa.uint32()),
        "f32": pa.array([1.5, None], pa.float32()),
    })  # fmt: skip
    out = to_pandas(table)
    dtypes = {col: str(dtype) for col, dtype in out.dtypes.items()}
    assert dtypes == {
        "string": "str", "large_string": "str", "string_view": "str", "dictionary": "category",
        "tz": "datetime64[us, America/New_York]", "naive": "datetime64[ns]", "date": "datetime64[ms]",
        "int_null": "float64", "uint": "uint32", "f32": "float32",
    }  # fmt: skip
    assert out["string_view"].isna().tolist() == [False, True] and np.isnan(out["int_null"].iloc[1])
    assert out["tz"].iloc[1] == pd.Timestamp("1969-12-31 20:00", tz="America/New_York")
    assert out["naive"].isna().iloc[1] and np.isnan(out["f32"].iloc[1])
    same(to_pandas(table.to_batches()[0]), out)  # a RecordBatch too


def test_polars_types_convert_column_by_column():
    frame = pl.DataFrame({
        "utf8": pl.Series(["a", None], dtype=pl.Utf8),
        "categorical": pl.Series(["a", "b"], dtype=pl.Categorical),
        "enum": pl.Series(["b", "a"], dtype=pl.Enum(["a", "b"])),
        "tz": pl.Series([0, 1], dtype=pl.Datetime("us")).dt.replace_time_zone("Asia/Tokyo"),
        "date": pl.Series([0, 1], dtype=pl.Date),
        "i32": pl.Series([1, 2], dtype=pl.Int32),
        "int_null": pl.Series([1, None], dtype=pl.Int64),
        "f32": pl.Series([1.5, None], dtype=pl.Float32),
    })  # fmt: skip
    out = to_pandas(frame)
    dtypes = {col: str(dtype) for col, dtype in out.dtypes.items()}
    assert dtypes == {
        "utf8": "str", "categorical": "category", "enum": "category", "tz": "datetime64[us, Asia/Tokyo]",
        "date": "datetime64[ms]", "i32": "int32", "int_null": "float64", "f32": "float32",
    }  # fmt: skip
    assert out["enum"].tolist() == ["b", "a"] and out["utf8"].isna().tolist() == [False, True]


def test_pandas_objects_pass_through_unchanged():
    frame = as_pandas(panel())
    series = frame["y"]
    assert to_pandas(frame) is frame and to_pandas(series) is series


def test_lazy_frames_ask_for_collect():
    lazy = as_polars(panel()).lazy()
    with pytest.raises(TypeError, match=r"polars LazyFrame; call \.collect\(\)"):
        validate(lazy)
    with pytest.raises(TypeError, match=r"df: got a polars LazyFrame"):
        EnsembleForecaster([NaiveForecaster(horizon=2)]).fit(lazy)


@pytest.mark.parametrize(
    ("data", "shown"),
    [
        ({"y": [1.0]}, "got dict"),
        (np.zeros((3, 3)), "got numpy.ndarray"),
        ("train.parquet", "got str \\(to use a file"),
        (pl.Series([1.0]), "got polars.Series"),
    ],
)
def test_other_types_name_the_accepted_ones(data, shown):
    accepted = "expected a pandas DataFrame \\(or Series\\), a polars DataFrame or a pyarrow Table; "
    with pytest.raises(TypeError, match=accepted + shown):
        validate(data)
    with pytest.raises(TypeError, match=accepted + shown):
        SeasonalNaiveForecaster(season_length=24).fit(data)


# ------------------------------------------------------------------------------------ identical results


@pytest.mark.parametrize("kind", KINDS)
def test_validate_is_identical(kind):
    cols = panel(x=True)
    data = make(kind, cols)
    before = snapshot(data)
    want = validate(as_pandas(cols))
    got = validate(data)
    same(got, want)
    assert got.attrs == want.attrs == {"freq": "h"}
    same(validate(data, covariates=[]), validate(as_pandas(cols), covariates=[]))
    unchanged(data, before)


@pytest.mark.parametrize("kind", KINDS)
def test_classical_baseline_is_identical(kind):
    cols = panel()
    history = {k: v.reshape(3, N)[:, : N - 6].ravel() for k, v in cols.items()}  # each series' first N - 6 rows
    new = {k: v.reshape(3, N)[:, N - 6 :].ravel() for k, v in cols.items()}  # and the 6 after
    train, window, rows = make(kind, history), make(kind, cols), make(kind, new)
    before = [snapshot(train), snapshot(window), snapshot(rows)]
    est = lambda: ETSForecaster(trend="add")  # noqa: E731
    reference = est().fit(as_pandas(history))
    model = est().fit(train)
    same(model.predict(6, quantiles=[0.1, 0.9]), reference.predict(6, quantiles=[0.1, 0.9]))
    same(model.predict(6, df=window), reference.predict(6, df=as_pandas(cols)))
    same(model.update(rows, h=4), reference.update(as_pandas(new), h=4))
    for obj, snap in zip([train, window, rows], before):
        unchanged(obj, snap)


@pytest.mark.parametrize("kind", KINDS)
def test_tiny_neural_forecaster_is_identical(kind):
    cols = panel(x=True)
    history = {k: v.reshape(3, N)[:, : N - 8].ravel() for k, v in cols.items()}
    future = {k: v.reshape(3, N)[:, N - 8 : N - 4].ravel() for k, v in cols.items() if k != "y"}  # x over h = 4
    new = {k: v.reshape(3, N)[:, N - 8 : N - 4].ravel() for k, v in cols.items()}  # the 4 rows after, streamed
    after = {k: v.reshape(3, N)[:, N - 4 :].ravel() for k, v in cols.items() if k != "y"}  # x after those
    train, future_df, rows, after_df = make(kind, history), make(kind, future), make(kind, new), make(kind, after)
    before = [snapshot(train), snapshot(future_df), snapshot(rows), snapshot(after_df)]

    def fitted(frame):
        est = ssmcast.S4DForecaster(
            input_size=12, horizon=4, max_epochs=1, batch_size=64, val_size=0, seed=0, verbose=False,
            accelerator="cpu", precision="32-true", backbone=S4DConfig(d_model=8, n_layers=1, d_state=4),
            future_covariates=["x"],
        )  # fmt: skip
        return est.fit(frame)

    reference, model = fitted(as_pandas(history)), fitted(train)
    same(model.predict(future_df=future_df), reference.predict(future_df=as_pandas(future)))
    same(
        model.predict(df=train, future_df=future_df),
        reference.predict(df=as_pandas(history), future_df=as_pandas(future)),
    )
    same(model.update(rows, future_df=after_df), reference.update(as_pandas(new), future_df=as_pandas(after)))
    for obj, snap in zip([train, future_df, rows, after_df], before):
        unchanged(obj, snap)


@pytest.mark.parametrize("kind", KINDS)
def test_backtest_score_and_ensemble_are_identical(kind):
    cols = panel()
    data = make(kind, cols)
    before = snapshot(data)
    est = SeasonalNaiveForecaster(season_length=12)  # the first window fits on 30 stamps
    want = backtest(est, as_pandas(cols), horizon=6, n_windows=3, step=6)
    got = backtest(est, data, horizon=6, n_windows=3, step=6)
    same(got, want)
    metrics = ["mae", "mase"]
    same(score(pa.Table.from_pandas(got) if kind == "pyarrow" else pl.from_pandas(got), metrics=metrics,
               train=data, season_length=12),
         score(want, metrics=metrics, train=as_pandas(cols), season_length=12))  # fmt: skip
    members = [NaiveForecaster(horizon=3), SeasonalNaiveForecaster(season_length=24, horizon=3)]
    ensemble = lambda: EnsembleForecaster(members)  # noqa: E731
    same(ensemble().fit(data).predict(df=data), ensemble().fit(as_pandas(cols)).predict(df=as_pandas(cols)))
    unchanged(data, before)


@pytest.mark.parametrize("kind", KINDS)
def test_evaluate_ltsf_takes_a_wide_frame(kind):
    cols = panel()
    wide = pd.DataFrame(cols["y"].reshape(3, N).T, columns=["a", "b", "c"])
    wide.insert(0, "ds", cols["ds"][:N])
    data = pa.Table.from_pandas(wide, preserve_index=False) if kind == "pyarrow" else pl.from_pandas(wide)
    split = ((0, 24), (24, 36), (36, 48))
    want = evaluate_ltsf(NaiveForecaster(horizon=4), wide, input_size=8, horizon=4, split=split)
    got = evaluate_ltsf(NaiveForecaster(horizon=4), data, input_size=8, horizon=4, split=split)
    assert (got.mse, got.mae, got.n_windows) == (want.mse, want.mae, want.n_windows)


# ------------------------------------------------------------------------------------ dtypes of ds, ids, nulls


@pytest.mark.parametrize("kind", KINDS)
def test_time_zone_aware_stamps_stay_aware(kind):
    cols = panel(tz="Europe/Paris")  # the stamps cross the switch to summer time (2021-03-28 02:00)
    data = make(kind, cols, tz="Europe/Paris")
    frame = validate(data)
    assert str(frame["ds"].dtype) == "datetime64[ns, Europe/Paris]" and frame.attrs["freq"] == "h"
    same(frame, validate(as_pandas(cols, tz="Europe/Paris")))
    forecast = SeasonalNaiveForecaster(season_length=24).fit(data).predict(3)
    assert forecast["ds"].iloc[0] == pd.Timestamp("2021-03-29 02:00", tz="Europe/Paris")  # 48 h after 01:00 CET
    same(forecast, SeasonalNaiveForecaster(season_length=24).fit(as_pandas(cols, tz="Europe/Paris")).predict(3))


@pytest.mark.parametrize("kind", KINDS)
def test_integer_stamps(kind):
    cols = panel()
    cols["ds"] = np.tile(np.arange(10, 10 + 2 * N, 2, dtype=np.int32), 3)  # int32 stamps, step 2
    data = pl.DataFrame(cols) if kind == "polars" else pa.table(cols)
    frame = validate(data)
    assert frame["ds"].dtype == np.int64 and frame.attrs["freq"] == 2
    same(frame, validate(pd.DataFrame(cols)))
    forecast = SeasonalNaiveForecaster(season_length=24).fit(data).predict(2)
    assert forecast["ds"].tolist() == [10 + 2 * N, 12 + 2 * N] * 3


@pytest.mark.parametrize(
    "ids",
    [
        pa.array(np.repeat(["a", "b", "c"], N)).dictionary_encode(),
        pa.array(np.repeat(["a", "b", "c"], N), pa.large_string()),
        pa.array(np.repeat(["a", "b", "c"], N), pa.string_view()),
        pl.Series(np.repeat(["a", "b", "c"], N), dtype=pl.Categorical),
        pl.Series(np.repeat(["a", "b", "c"], N), dtype=pl.Enum(["c", "b", "a"])),
    ],
    ids=["arrow-dictionary", "arrow-large_string", "arrow-string_view", "polars-Categorical", "polars-Enum"],
)
def test_categorical_and_string_ids(ids):
    cols = panel()
    if isinstance(ids, pl.Series):
        data = as_polars(cols).with_columns(ids.alias("unique_id"))
    else:
        data = as_arrow(cols).set_column(0, "unique_id", ids)
    frame = validate(data)
    assert frame["unique_id"].dtype == "str"
    same(frame, validate(as_pandas(cols)))
    same(ETSForecaster().fit(data).predict(2), ETSForecaster().fit(as_pandas(cols)).predict(2))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("y_type", ["float32", "float64", "int64"])
def test_null_values_are_reported_as_pandas_nan_is(kind, y_type):
    cols = panel()
    cols["y"] = np.round(cols["y"]).astype(y_type)
    reference = as_pandas(cols).astype({"y": "float64"})
    reference.loc[5, "y"] = np.nan
    if kind == "pyarrow":
        y = pa.array(cols["y"], mask=np.arange(3 * N) == 5)
        data = as_arrow(cols).set_column(2, "y", y)
    else:
        data = as_polars(cols).with_columns(
            pl.when(pl.int_range(pl.len()) == 5).then(None).otherwise(pl.col("y")).alias("y")
        )
    with pytest.raises(ValueError) as want:
        validate(reference)
    with pytest.raises(ValueError) as got:
        validate(data)
    assert str(got.value) == str(want.value) and "NaN/inf values (in ['y']) at rows ('a', 2021-03-27 05:00:00)" in str(
        got.value
    )
    with pytest.raises(ValueError, match=r"NaN/inf values \(in \['y'\]\)"):
        SeasonalNaiveForecaster(season_length=24).fit(data)
    same(validate(data, fill="interpolate"), validate(reference, fill="interpolate"))


@pytest.mark.parametrize("kind", KINDS)
def test_null_ids_and_stamps_are_named(kind):
    cols = panel()
    ids = [None if i == 3 else uid for i, uid in enumerate(cols["unique_id"])]
    stamps = [None if i == N + 2 else i % N for i in range(3 * N)]
    if kind == "pyarrow":
        data_ids = pa.table({**cols, "unique_id": pa.array(ids, pa.string()), "ds": np.tile(np.arange(N), 3)})
        data_stamps = pa.table({**cols, "ds": pa.array(stamps, pa.int64())})
    else:
        data_ids = pl.DataFrame({**cols, "unique_id": pl.Series(ids, dtype=pl.String), "ds": np.tile(np.arange(N), 3)})
        data_stamps = pl.DataFrame({**cols, "ds": pl.Series(stamps, dtype=pl.Int64)})
    with pytest.raises(ValueError, match=r"missing unique_id in 1 row\(s\) \(ds 3\)"):
        validate(data_ids)
    with pytest.raises(ValueError, match=r"missing ds \(NaT/NaN\) in series 'b'"):
        validate(data_stamps)
    with pytest.raises(ValueError, match=r"missing ds \(NaT/NaN\) in series 'b'"):
        validate(pd.DataFrame({**cols, "ds": np.array(stamps, dtype=float)}))  # the same for pandas float stamps


# ------------------------------------------------------------------------------------ polars stays optional


def _python(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_import_ssmcast_does_not_import_polars():
    # (ssmcast.baselines is left out: statsmodels itself imports polars when it is installed)
    out = _python("""
        import sys
        import ssmcast, ssmcast.data, ssmcast.evaluation, ssmcast.forecasters
        ssmcast.validate, ssmcast.S4DForecaster, ssmcast.EnsembleForecaster  # the lazy exports too
        print('polars' in sys.modules)
    """)
    assert out.strip() == "False"


def test_arrow_input_works_without_polars():
    out = _python("""
        import sys
        sys.modules['polars'] = None  # `import polars` now raises ImportError, as when it is not installed
        import numpy as np, pyarrow as pa
        import ssmcast
        from ssmcast.baselines import NaiveForecaster
        table = pa.table({'unique_id': ['a'] * 30, 'ds': np.arange(30), 'y': np.arange(30.0)})
        print(len(ssmcast.validate(table)), NaiveForecaster().fit(table).predict(2)['y_pred'].tolist())
        try:
            ssmcast.validate({'y': [1.0]})
        except TypeError as err:
            print(err)
    """)
    lines = out.splitlines()
    assert lines[0] == "30 [29.0, 29.0]" and "a polars DataFrame or a pyarrow Table; got dict" in lines[1]
