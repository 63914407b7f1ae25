"""Training across processes for real: DDP over two CPU processes (gloo), and resuming a killed fit."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

SCRIPT = r'''
import json, os, sys
import pandas as pd
sys.path.insert(0, {tests!r})
from panels_for_tests import make_panel
from ssmcast.backbones.mamba import MambaConfig
from ssmcast.backbones.s4 import S4Config, S4DConfig
from ssmcast.forecasters import MambaForecaster, S4DForecaster, S4Forecaster

mode, out = sys.argv[1], sys.argv[2]
model = os.environ.get("SSMCAST_TEST_MODEL", "mamba")  # S4/S4D keep their default dropout (0.1): RNG state matters
cls, backbone = {{"mamba": (MambaForecaster, MambaConfig(d_model=8, n_layers=1, d_state=4)),
                  "s4d": (S4DForecaster, S4DConfig(d_model=8, n_layers=1, d_state=4)),
                  "s4": (S4Forecaster, S4Config(d_model=8, n_layers=1, d_state=4))}}[model]
kwargs = dict(input_size=24, horizon=6, batch_size=16, verbose=False, seed=0, lr_schedule=None,
              backbone=backbone, val_size=0)
if mode == "ddp":
    kwargs.update(max_epochs=2, trainer_kwargs={{"strategy": "ddp", "devices": 2, "accelerator": "cpu"}})
else:
    kwargs.update(max_epochs=int(sys.argv[3]), checkpoint_dir=sys.argv[4])
est = cls(**kwargs)
est.fit(make_panel(), resume=(mode == "resume"))
rank = int(os.environ.get("LOCAL_RANK", 0))
pred = est.predict()
pred.to_csv(f"{{out}}.rank{{rank}}.csv", index=False)
with open(f"{{out}}.rank{{rank}}.json", "w") as f:
    json.dump({{"world_size": est.world_size_, "epochs": est.n_epochs_}}, f)
'''


def _write_script(tmp_path: Path) -> Path:
    script = tmp_path / "train_script.py"
    script.write_text(SCRIPT.format(tests=str(Path(__file__).parent)))
    return script


def _env(model: str = "mamba"):
    env = dict(os.environ)
    env["PYTHONWARNINGS"] = "ignore"
    env["SSMCAST_TEST_MODEL"] = model
    env.pop("PYTEST_XDIST_WORKER", None)
    return env


@pytest.mark.slow
def test_ddp_two_cpu_processes(tmp_path):
    script = _write_script(tmp_path)
    out = tmp_path / "ddp"
    subprocess.run([sys.executable, str(script), "ddp", str(out)], check=True, cwd=tmp_path, env=_env(),
                   timeout=600)
    infos = [json.loads(Path(f"{out}.rank{r}.json").read_text()) for r in (0, 1)]
    assert [i["world_size"] for i in infos] == [2, 2]
    a, b = (pd.read_csv(f"{out}.rank{r}.csv") for r in (0, 1))
    pd.testing.assert_frame_equal(a, b)  # DDP keeps the replicas identical


@pytest.mark.slow
@pytest.mark.parametrize("model", ["mamba", "s4d", "s4"])
def test_killed_fit_resumes_to_the_uninterrupted_result(model, tmp_path):
    """SIGKILL after the first epoch's checkpoint, then fit(resume=True) in a new process: the forecasts equal an
    uninterrupted fit's, also with dropout (S4/S4D's default 0.1), whose masks come from the restored RNG states."""
    script = _write_script(tmp_path)
    epochs = 4
    reference = tmp_path / "ref"
    subprocess.run([sys.executable, str(script), "fit", str(reference), str(epochs), str(tmp_path / "ck_ref")],
                   check=True, cwd=tmp_path, env=_env(model), timeout=600)

    ckpt = tmp_path / "ck"
    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, str(script), "fit", str(killed), "1000", str(ckpt)], cwd=tmp_path,
                            env=_env(model), start_new_session=True)
    try:
        deadline = time.time() + 300
        while not (ckpt / "last.ckpt").exists():  # wait for the first epoch's checkpoint, then kill
            assert proc.poll() is None and time.time() < deadline, "training subprocess ended early"
            time.sleep(0.05)
        time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert not Path(f"{killed}.rank0.csv").exists()  # it really died mid-fit

    resumed = tmp_path / "resumed"
    subprocess.run([sys.executable, str(script), "resume", str(resumed), str(epochs), str(ckpt)], check=True,
                   cwd=tmp_path, env=_env(model), timeout=600)
    ref = pd.read_csv(f"{reference}.rank0.csv")
    res = pd.read_csv(f"{resumed}.rank0.csv")
    pd.testing.assert_frame_equal(res, ref, rtol=1e-4, atol=1e-5)


NODES_SCRIPT = r'''
import json, os, sys
import torch
sys.path.insert(0, {tests!r})
from panels_for_tests import make_panel
from ssmcast.backbones.mamba import MambaConfig
from ssmcast.forecasters import MambaForecaster

mode, out = sys.argv[1], sys.argv[2]
per_rank = 8
kwargs = dict(input_size=24, horizon=6, verbose=False, seed=0, max_epochs=2, val_size=12,
              backbone=MambaConfig(d_model=8, n_layers=1, d_state=4))
if mode == "ddp":  # two nodes of one process each, per-rank batch 8
    trainer_kwargs = {{"strategy": "ddp", "num_nodes": 2, "devices": 1, "limit_train_batches": 4}}
    est = MambaForecaster(batch_size=per_rank, accelerator="cpu", trainer_kwargs=trainer_kwargs, **kwargs)
else:  # the documented single-process equivalent: batch 2 * 8 (or, as a control, the per-rank batch alone)
    batch = int(sys.argv[3])
    est = MambaForecaster(batch_size=batch, trainer_kwargs={{"limit_train_batches": 4}}, **kwargs)
est.fit(make_panel())
rank = int(os.environ.get("RANK", os.environ.get("SLURM_PROCID", 0)))
torch.save(est.net_.state_dict(), f"{{out}}.rank{{rank}}.pt")
with open(f"{{out}}.rank{{rank}}.json", "w") as f:
    json.dump({{"world_size": est.world_size_, "epochs": est.n_epochs_}}, f)
'''


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _max_difference(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max()) for k in a)


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["torchrun", "slurm"])
def test_two_nodes_equal_the_single_process_equivalent(launcher, tmp_path):
    """Multi-node DDP (issue #36), launched the standard ways: two "nodes" of one CPU process each (gloo), started
    by ``torchrun --nnodes 2 --node-rank r`` or as SLURM's ``srun`` would (its environment variables), train the
    same weights as one process with twice the per-rank batch (the equivalence ssmcast.training.sampling
    documents), and the two ranks hold identical weights."""
    import torch

    script = tmp_path / "nodes.py"
    script.write_text(NODES_SCRIPT.format(tests=str(Path(__file__).parent)))
    env = _env()
    env["OMP_NUM_THREADS"] = "1"
    port = _free_port()
    procs = []
    for rank in (0, 1):
        if launcher == "torchrun":
            cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1",
                   "--node-rank", str(rank), "--master-addr", "127.0.0.1", "--master-port", str(port),
                   str(script), "ddp", str(tmp_path / "ddp")]
            rank_env = env
        else:
            cmd = [sys.executable, str(script), "ddp", str(tmp_path / "ddp")]
            rank_env = dict(env, SLURM_NTASKS="2", SLURM_NTASKS_PER_NODE="1", SLURM_NNODES="2",
                            SLURM_PROCID=str(rank), SLURM_LOCALID="0", SLURM_NODEID=str(rank),
                            SLURM_NODELIST="127.0.0.1", SLURM_JOB_ID="4242", SLURM_JOB_NAME="ssmcast",
                            MASTER_PORT=str(port))
        procs.append(subprocess.Popen(cmd, cwd=tmp_path, env=rank_env, start_new_session=True))
    try:
        for proc in procs:
            assert proc.wait(timeout=600) == 0
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    for batch in (16, 8):
        subprocess.run([sys.executable, str(script), "single", str(tmp_path / f"single{batch}"), str(batch)],
                       check=True, cwd=tmp_path, env=env, timeout=600)

    infos = [json.loads((tmp_path / f"ddp.rank{r}.json").read_text()) for r in (0, 1)]
    assert [i["world_size"] for i in infos] == [2, 2] and [i["epochs"] for i in infos] == [2, 2]
    w0, w1 = (torch.load(tmp_path / f"ddp.rank{r}.pt", weights_only=True) for r in (0, 1))
    single = torch.load(tmp_path / "single16.rank0.pt", weights_only=True)
    control = torch.load(tmp_path / "single8.rank0.pt", weights_only=True)
    assert _max_difference(w0, w1) == 0.0  # DDP keeps the replicas identical
    assert _max_difference(w0, single) < 1e-5  # float rounding of the all-reduce only
    assert _max_difference(control, single) > 1e-3  # the batch size matters: the check above can fail
