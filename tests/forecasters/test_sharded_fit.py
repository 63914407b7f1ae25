"""fit() from a partitioned Parquet dataset (issue #36): the whole panel in one process, each rank's own files under
DDP, and the single-process equivalent of a sharded DDP fit."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from ssmcast.backbones.mamba import MambaConfig
from ssmcast.data.shards import ParquetShards, assign_files
from ssmcast.forecasters import MambaForecaster
from ssmcast.training.ranks import RANK_VARIABLES, env_rank_world
from ssmcast.training.sampling import rank_epoch_order

#: file -> {series: length}: unequal files, so the ranks hold different numbers of windows (the padding is used)
FILES = {"a.parquet": {"s0": 80, "s1": 80}, "b.parquet": {"s2": 120}, "c.parquet": {"s3": 60},
         "d.parquet": {"s4": 70}}


def write_dataset(directory: Path, covariates: bool = False) -> pd.DataFrame:
    """The files of ``FILES`` (hourly sines with noise) under ``directory``; returns the panel they hold."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    panel = []
    for name, lengths in FILES.items():
        frames = []
        for uid, n in lengths.items():
            t = np.arange(n)
            level = 5 * int(uid[1:])
            frame = pd.DataFrame({"unique_id": uid, "ds": pd.date_range("2021-01-01", periods=n, freq="h"),
                                  "y": level + np.sin(2 * np.pi * t / 12) + 0.1 * rng.normal(size=n)})
            if covariates:
                frame["temp"] = rng.normal(size=n)
                frame["size"] = float(level)
            frames.append(frame)
        part = pd.concat(frames, ignore_index=True)
        part.to_parquet(directory / name, index=False)
        panel.append(part)
    return pd.concat(panel, ignore_index=True)


def _tiny(**kwargs):
    params = dict(input_size=24, horizon=6, batch_size=16, verbose=False, seed=0, max_epochs=2, val_size=6,
                  backbone=MambaConfig(d_model=8, n_layers=1, d_state=4), accelerator="cpu")
    params.update(kwargs)
    return MambaForecaster(**params)


@pytest.fixture
def one_process(monkeypatch):
    for name in (*RANK_VARIABLES, "WORLD_SIZE", "SLURM_NTASKS"):
        monkeypatch.delenv(name, raising=False)


def _max_difference(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max()) for k in a)


# ------------------------------------------------------------------------------------------------- one process


@pytest.mark.parametrize("covariates", [False, True])
def test_one_process_from_parquet_equals_the_in_memory_fit(covariates, tmp_path, one_process):
    """World size 1: the dataset's directory (or its ParquetShards) reads every file, and the fit is the in-memory
    fit of the files' rows put together, bit for bit (weights, statistics, forecasts)."""
    panel = write_dataset(tmp_path / "ds", covariates)
    kwargs = dict(past_covariates=["temp"], static_features=["size"]) if covariates else {}
    memory = _tiny(**kwargs).fit(panel.sample(frac=1.0, random_state=0))  # any row order: fit sorts it
    from_path = _tiny(**kwargs).fit(str(tmp_path / "ds"))
    from_shards = _tiny(**kwargs).fit(ParquetShards(tmp_path / "ds"))
    for est in (from_path, from_shards):
        assert _max_difference(est.net_.state_dict(), memory.net_.state_dict()) == 0.0
        np.testing.assert_array_equal(est.loc_, memory.loc_)
        np.testing.assert_array_equal(est.scale_, memory.scale_)
        assert est.ids_ == memory.ids_ and est.n_train_windows_ == memory.n_train_windows_
        pd.testing.assert_frame_equal(est.predict(), memory.predict(), check_dtype=False)
        pd.testing.assert_frame_equal(est.predict(df=panel), memory.predict(df=panel), check_dtype=False)
    assert from_path.data_shard_ == {"rank": 0, "world_size": 1, "files": list(FILES), "rows": len(panel),
                                     "series": 5}


def test_sharded_fit_errors_name_the_problem(tmp_path, one_process, monkeypatch):
    write_dataset(tmp_path / "ds")
    with pytest.raises(ValueError, match=r"lacks the column\(s\) \['temp'\] the model needs"):
        _tiny(past_covariates=["temp"]).fit(tmp_path / "ds")
    with pytest.raises(ValueError, match="is not a directory"):
        _tiny().fit(tmp_path / "ds" / "a.parquet")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    with pytest.raises(ValueError, match="channel_mode='mixed' .* cannot be sharded by series over 2 ranks"):
        _tiny(channel_mode="mixed").fit(tmp_path / "ds")
    with pytest.raises(ValueError, match="val_df is not taken by a fit sharded over 2 ranks"):
        _tiny().fit(tmp_path / "ds", val_df=pd.DataFrame())
    # rank 1 of 2 by the environment, but no DDP trainer: refused once training starts, before any step
    with pytest.raises(ValueError, match="rank 1 of 2 .* trains without a process group: give the trainer DDP"):
        _tiny().fit(tmp_path / "ds")
    monkeypatch.setenv("WORLD_SIZE", "5")
    with pytest.raises(ValueError, match=r"4 Parquet file\(s\) for 5 ranks"):
        _tiny().fit(tmp_path / "ds")


def test_rank_and_world_from_each_launchers_environment(one_process, monkeypatch):
    assert env_rank_world() == (0, 1)
    with monkeypatch.context() as env:  # torchrun
        env.setenv("RANK", "3"), env.setenv("WORLD_SIZE", "4"), env.setenv("LOCAL_RANK", "1")
        env.setenv("GROUP_RANK", "1")
        assert env_rank_world() == (3, 4)
    with monkeypatch.context() as env:  # srun
        env.setenv("SLURM_PROCID", "2"), env.setenv("SLURM_NTASKS", "3")
        assert env_rank_world() == (2, 3)
    with monkeypatch.context() as env:  # a process Lightning started on one node
        env.setenv("LOCAL_RANK", "1"), env.setenv("NODE_RANK", "0"), env.setenv("WORLD_SIZE", "2")
        assert env_rank_world() == (1, 2)
    with monkeypatch.context() as env:
        env.setenv("LOCAL_RANK", "0"), env.setenv("NODE_RANK", "1"), env.setenv("WORLD_SIZE", "4")
        with pytest.raises(ValueError, match="cannot tell this process's global rank"):
            env_rank_world()
    with monkeypatch.context() as env:
        env.setenv("RANK", "2"), env.setenv("WORLD_SIZE", "2")
        with pytest.raises(ValueError, match="rank 2 of a world of 2"):
            env_rank_world()


# ------------------------------------------------------------------------------------------------- two ranks

SCRIPT = r'''
import json, math, os, sys
import numpy as np, pandas as pd, torch
from ssmcast.backbones.mamba import MambaConfig
from ssmcast.data.shards import ParquetShards
from ssmcast.forecasters import MambaForecaster, load
from ssmcast.forecasters.preparation import DataPreparation
from ssmcast.training import sampling
from ssmcast.training.sampling import rank_epoch_order

mode, data, out = sys.argv[1], sys.argv[2], sys.argv[3]
PER_RANK = 8
kwargs = dict(input_size=24, horizon=6, verbose=False, seed=0, max_epochs=2, val_size=6, accelerator="cpu",
              backbone=MambaConfig(d_model=8, n_layers=1, d_state=4))
whole = pd.concat([pd.read_parquet(f) for f in ParquetShards(data).files], ignore_index=True)
if mode == "ddp":  # two nodes of one process each (torchrun), per-rank batch 8, each reading its own files
    est = MambaForecaster(batch_size=PER_RANK, trainer_kwargs={{"strategy": "ddp", "num_nodes": 2, "devices": 1}},
                          **kwargs)
    est.fit(data)
    rank = est.data_shard_["rank"]
    est.predict().to_csv(f"{{out}}.rank{{rank}}.csv", index=False)
    est.predict(df=whole).to_csv(f"{{out}}.rank{{rank}}.whole.csv", index=False)
    est.save(f"{{out}}.rank{{rank}}.model")
    loaded = load(f"{{out}}.rank{{rank}}.model")
    pd.testing.assert_frame_equal(loaded.predict(), est.predict())
    pd.testing.assert_frame_equal(loaded.predict(df=whole), est.predict(df=whole))
    elsewhere = [u for u in est.ids_ if est.unit_of_[u] not in est.history_]
    try:
        est.update(whole[whole.unique_id == elsewhere[0]].tail(1).assign(ds=lambda f: f.ds + pd.Timedelta("1h")))
        update_error = ""
    except ValueError as err:
        update_error = str(err)
    info = {{"world_size": est.world_size_, "epochs": est.n_epochs_, "shard": est.data_shard_,
            "history": [u["ids"][0] for u in est.history_.values()], "ids": est.ids_, "loc": est.loc_.tolist(),
            "scale": est.scale_.tolist(), "n_train_windows": est.n_train_windows_, "update_error": update_error}}
else:  # one process, batch 2 * 8: first the plain fit (a control), then the fit whose step-k batch is rank 0's
    rank = 0  # step-k batch then rank 1's (sampling's documented orders)
    plain = MambaForecaster(batch_size=2 * PER_RANK, **kwargs).fit(whole)
    torch.save(plain.net_.state_dict(), f"{{out}}.plain.pt")
    shares = [json.loads(open(f"{{sys.argv[4]}}.rank{{r}}.json").read())["history"] for r in (0, 1)]
    recorded = []
    windows = DataPreparation._windows

    def recording(self, *args, **kw):
        recorded.append(windows(self, *args, **kw))
        return recorded[-1]

    DataPreparation._windows = recording

    class Together(torch.utils.data.Sampler):
        def __init__(self, n, seed=0, val=False):
            self.seed, self.epoch, self.val = seed, 0, val

        def set_epoch(self, epoch):
            self.epoch = epoch

        def orders(self):
            counts = recorded[1 if self.val else 0].dataset.counts  # windows per series, ids in sorted order
            cum = np.concatenate([[0], np.cumsum(counts)])
            place = {{u: i for i, u in enumerate(sorted(u for s in shares for u in s))}}
            maps = [np.concatenate([np.arange(cum[place[u]], cum[place[u] + 1]) for u in s]) for s in shares]
            total = max(len(m) for m in maps)
            if self.val:
                return [m[np.resize(np.arange(len(m)), total)] for m in maps], total
            return [m[rank_epoch_order(len(m), total, self.seed, self.epoch, r)] for r, m in enumerate(maps)], total

        def __iter__(self):
            orders, total = self.orders()
            b = 256 if self.val else PER_RANK
            for k in range(math.ceil(total / b)):
                for order in orders:
                    yield from order[k * b : (k + 1) * b].tolist()

        def __len__(self):
            return 2 * self.orders()[1]

    sampling.EpochShuffleSampler = Together
    sampling.ShardSampler = lambda n: Together(n, val=True)
    est = MambaForecaster(batch_size=2 * PER_RANK, **kwargs).fit(whole)
    est.predict().to_csv(f"{{out}}.rank0.csv", index=False)
    info = {{"ids": est.ids_, "loc": est.loc_.tolist(), "scale": est.scale_.tolist()}}
torch.save(est.net_.state_dict(), f"{{out}}.rank{{rank}}.pt")
with open(f"{{out}}.rank{{rank}}.json", "w") as f:
    json.dump(info, f)
'''


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_ranks_read_their_own_files_and_equal_the_single_process_equivalent(tmp_path):
    """Two "nodes" of one CPU process each (gloo, torchrun) fit from the Parquet dataset: each reads only its own
    files (the union is the dataset, no overlap), trains on its own windows in the documented order, ends with every
    series' statistics and its own histories; the replicas are identical and equal the one process whose step-k
    batch is the ranks' step-k batches put together (and not the plain fit with the doubled batch)."""
    data = tmp_path / "ds"
    panel = write_dataset(data)
    script = tmp_path / "sharded.py"
    script.write_text(SCRIPT.format())
    env = dict(os.environ, PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1")
    env.pop("PYTEST_XDIST_WORKER", None)
    for name in (*RANK_VARIABLES, "WORLD_SIZE", "SLURM_NTASKS"):
        env.pop(name, None)
    port = _free_port()
    procs = [subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1",
                               "--node-rank", str(rank), "--master-addr", "127.0.0.1", "--master-port", str(port),
                               str(script), "ddp", str(data), str(tmp_path / "ddp")],
                              cwd=tmp_path, env=env, start_new_session=True) for rank in (0, 1)]
    try:
        for proc in procs:
            assert proc.wait(timeout=600) == 0
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    subprocess.run([sys.executable, str(script), "single", str(data), str(tmp_path / "together"),
                    str(tmp_path / "ddp")], check=True, cwd=tmp_path, env=env, timeout=600)

    infos = [json.loads((tmp_path / f"ddp.rank{r}.json").read_text()) for r in (0, 1)]
    assert [i["world_size"] for i in infos] == [2, 2] and [i["epochs"] for i in infos] == [2, 2]
    # what each rank read: its own files (the documented assignment), their series and rows, nothing else
    names, rows = list(FILES), [sum(lengths.values()) for lengths in FILES.values()]
    expected = [[names[i] for i in share] for share in assign_files(rows, names, 2)]
    assert [i["shard"]["files"] for i in infos] == expected
    assert sorted(f for i in infos for f in i["shard"]["files"]) == names  # the union is the dataset, no overlap
    for info in infos:
        series = sorted(u for f in info["shard"]["files"] for u in FILES[f])
        assert info["history"] == series and info["shard"]["series"] == len(series)
        assert info["shard"]["rows"] == sum(FILES[f][u] for f in info["shard"]["files"] for u in FILES[f])
        assert "fitted by another rank of a sharded fit" in info["update_error"]
    assert not set(infos[0]["history"]) & set(infos[1]["history"])
    # every rank ends with every series' statistics, equal to the in-memory fit's
    together = json.loads((tmp_path / "together.rank0.json").read_text())
    for info in infos:
        assert info["ids"] == together["ids"] == sorted(panel["unique_id"].unique())
        np.testing.assert_array_equal(info["loc"], together["loc"])
        np.testing.assert_array_equal(info["scale"], together["scale"])
    assert infos[0]["n_train_windows"] == infos[1]["n_train_windows"] == sum(
        n - 24 - 6 - 6 + 1 for lengths in FILES.values() for n in lengths.values())

    w0, w1 = (torch.load(tmp_path / f"ddp.rank{r}.pt", weights_only=True) for r in (0, 1))
    single = torch.load(tmp_path / "together.rank0.pt", weights_only=True)
    plain = torch.load(tmp_path / "together.plain.pt", weights_only=True)
    assert _max_difference(w0, w1) == 0.0  # DDP keeps the replicas identical
    assert _max_difference(w0, single) < 1e-6  # float rounding of the all-reduce only
    assert _max_difference(plain, single) > 1e-3  # the order matters: the check above can fail

    # predict(): each rank its own series; predict(df=...): any fitted series
    forecasts = [pd.read_csv(tmp_path / f"ddp.rank{r}.csv") for r in (0, 1)]
    for info, forecast in zip(infos, forecasts):
        assert sorted(forecast["unique_id"].unique()) == info["history"]
    reference = pd.read_csv(tmp_path / "together.rank0.csv")
    joined = pd.concat(forecasts).sort_values(["unique_id", "ds"], kind="stable").reset_index(drop=True)
    pd.testing.assert_frame_equal(joined, reference, rtol=1e-5, atol=1e-5)
    whole = [pd.read_csv(tmp_path / f"ddp.rank{r}.whole.csv") for r in (0, 1)]
    pd.testing.assert_frame_equal(whole[0], whole[1])
    pd.testing.assert_frame_equal(whole[0], reference, rtol=1e-5, atol=1e-5)


LIGHTNING_LAUNCH = r'''
from ssmcast.backbones.mamba import MambaConfig
from ssmcast.forecasters import MambaForecaster
est = MambaForecaster(input_size=24, horizon=6, batch_size=8, verbose=False, seed=0, max_epochs=1, val_size=6,
                      accelerator="cpu", backbone=MambaConfig(d_model=8, n_layers=1, d_state=4),
                      trainer_kwargs={"strategy": "ddp", "devices": 2})
est.fit("ds")
'''


@pytest.mark.slow
def test_lightnings_own_launcher_is_refused_on_every_rank_not_left_hanging(tmp_path):
    """strategy="ddp", devices=2 from a plain python run: the first process read the dataset before Lightning
    started the second, as rank 0 of 1; once the group exists both ranks see it and raise the same error."""
    write_dataset(tmp_path / "ds")
    (tmp_path / "launch.py").write_text(LIGHTNING_LAUNCH)
    env = dict(os.environ, PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1")
    env.pop("PYTEST_XDIST_WORKER", None)
    for name in (*RANK_VARIABLES, "WORLD_SIZE", "SLURM_NTASKS"):
        env.pop(name, None)
    done = subprocess.run([sys.executable, "launch.py"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)
    message = "the process group has 2 ranks, but rank 0 read the Parquet dataset as rank 0 of 1"
    assert done.returncode != 0
    assert (done.stdout + done.stderr).count(message) >= 2, (done.stdout + done.stderr)[-3000:]  # both ranks


def test_rank_epoch_orders_are_seeded_permutations_cycled_to_the_longest():
    a = rank_epoch_order(5, 8, seed=3, epoch=1, rank=0)
    assert sorted(a[:5].tolist()) == list(range(5)) and a[5:].tolist() == a[:3].tolist()
    np.testing.assert_array_equal(a, rank_epoch_order(5, 8, seed=3, epoch=1, rank=0))
    assert rank_epoch_order(8, 8, 3, 1, 0).tolist() != rank_epoch_order(8, 8, 3, 1, 1).tolist()
    assert rank_epoch_order(8, 8, 3, 1, 0).tolist() != rank_epoch_order(8, 8, 3, 2, 0).tolist()
    with pytest.raises(ValueError, match="below the rank's 5 windows"):
        rank_epoch_order(5, 4, 0, 0, 0)


def test_the_cli_train_refuses_a_partitioned_dataset_by_name(tmp_path):
    """`ssmcast train data=parquet data.partitioned=true`: a JobError pointing to compare and to fit(path)."""
    from hydra import compose, initialize_config_dir

    from ssmcast.jobs import CONF_DIR, JobError, run

    write_dataset(tmp_path / "ds")
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=["data=parquet", f"data.path={tmp_path / 'ds'}", "data.partitioned=true",
                                           "tracking=none"])
    with pytest.raises(JobError, match=r"ssmcast train does not take data.partitioned=true.*est.fit\(path\)"):
        run(cfg, tmp_path / "run")
