"""benchmarks/accuracy_table.py: the accuracy grid read back from MLflow runs (grouping by recipe and cell, the
latest run of each seed, mean ± std over seeds, smoke runs and other commands left out)."""


import mlflow
import pandas as pd
import pytest


@pytest.fixture(scope="module")
def script(load_benchmark):
    return load_benchmark("accuracy_table")


def run(line, mse, mae, fit, start, quick="False", output_dir="/nonexistent"):
    return {"tags.ssmcast.command_line": line, "metrics.test_mse": mse, "metrics.test_mae": mae,
            "metrics.fit_time_s": fit, "start_time": pd.Timestamp(start), "params.quick": quick,
            "tags.output_dir": output_dir}


def test_the_grid_groups_recipes_cells_and_seeds(script, tmp_path):
    cap = "'++trainer.kwargs.limit_train_batches=300'"
    runs = pd.DataFrame([
        run(f"ssmcast train experiment=ltsf_etth2_96 model=s4d {cap}", 0.9, 0.9, 10, "2026-01-01"),  # replaced
        run(f"ssmcast train experiment=ltsf_etth2_96 model=s4d {cap}", 0.30, 0.35, 100, "2026-01-02"),
        run(f"ssmcast train experiment=ltsf_etth2_96 model=s4d {cap} seed=1", 0.32, 0.37, 120, "2026-01-03"),
        run(f"ssmcast train experiment=ltsf_etth2_720 model=s4d {cap}", 0.40, 0.45, 90, "2026-01-04"),
        run("ssmcast train experiment=ltsf_etth2_96 model=dlinear", 0.50, 0.55, 5, "2026-01-05"),
        run("ssmcast train experiment=ltsf_etth2_96 model=s5 quick=true", 9.0, 9.0, 1, "2026-01-06", quick="True"),
        run("ssmcast train data=co2 model=s5", 1.0, 1.0, 1, "2026-01-07"),  # not the long-horizon protocol
        run(None, 1.0, 1.0, 1, "2026-01-08", output_dir=str(tmp_path)),  # older run: overrides from its folder
    ])
    (tmp_path / ".hydra").mkdir()
    (tmp_path / ".hydra" / "overrides.yaml").write_text("- command=train\n- experiment=ltsf_ettm2_96\n- model=gru\n")
    lines = script.table(runs, None, None).splitlines()
    assert lines[0] == "| recipe | etth2 H=96 | etth2 H=720 | ettm2 H=96 |"
    rows = {line.split(" | ")[0]: line.split(" | ")[1:] for line in lines[2:]}
    assert set(rows) == {"| `model=dlinear`", "| `model=gru`", "| `model=s4d ++trainer.kwargs.limit_train_batches=300`"}
    s4d = rows["| `model=s4d ++trainer.kwargs.limit_train_batches=300`"]
    assert s4d[0] == "0.310 ± 0.014 / 0.360 ± 0.014 (110 s, 2 seeds)"  # seed 0's later run, and seed 1
    assert s4d[1] == "0.400 / 0.450 (90 s)" and s4d[2] == "– |"
    assert rows["| `model=gru`"] == ["–", "–", "1.000 / 1.000 (1 s) |"]
    assert script.table(runs, ["etth1"], None) == "no finished long-horizon train runs match"
    assert script.table(runs, ["etth2"], [720]).count("\n") == 2  # header, rule, one row


def test_it_reads_a_real_store(script, tmp_path, monkeypatch, capsys):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow.MlflowClient(uri)
    experiment = client.create_experiment("ssmcast")
    for mse, status in ((0.25, "FINISHED"), (7.0, "FAILED")):
        line = "ssmcast train experiment=ltsf_ettm1_96 model=s5"
        r = client.create_run(experiment, tags={"ssmcast.command": "train", "ssmcast.command_line": line})
        for key, value in (("test_mse", mse), ("test_mae", 0.3), ("fit_time_s", 42.0)):
            client.log_metric(r.info.run_id, key, value)
        client.set_terminated(r.info.run_id, status)
    monkeypatch.setattr("sys.argv", ["accuracy_table.py", "--uri", uri])
    script.main()
    assert capsys.readouterr().out.splitlines()[-1] == "| `model=s5` | 0.250 / 0.300 (42 s) |"
