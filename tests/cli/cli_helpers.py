"""Shared helpers of the CLI and tracking tests: tiny data and running ``ssmcast`` as a subprocess."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"

# backbone fields that make every neural model tiny (forced with ++ so unknown keys are added)
TINY_BACKBONES = {
    "MambaConfig": {"d_model": 8, "n_layers": 1, "d_state": 4},
    "Mamba2Config": {"d_model": 8, "n_layers": 1, "d_state": 8, "head_dim": 4, "chunk_size": 8},
    "S4Config": {"d_model": 8, "n_layers": 1, "d_state": 8},
    "S4DConfig": {"d_model": 8, "n_layers": 1, "d_state": 8},
    "S5Config": {"d_model": 8, "n_layers": 1, "d_state": 8, "blocks": 2},
    "JambaConfig": {"d_model": 8, "n_layers": 2, "attn_every": 2, "attn_offset": 1, "n_heads": 2, "moe_every": 2,
                    "moe_offset": 1, "n_experts": 2, "top_k": 1, "d_state": 4, "head_dim": 4, "chunk_size": 8},
}
TINY_RUN = ["input_size=12", "horizon=4", "trainer.max_epochs=1", "verbose=false", "seed=0",
            "++trainer.kwargs.limit_train_batches=2", "++trainer.kwargs.limit_val_batches=1"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def tiny_frame(n_series: int = 2, length: int = 72) -> pd.DataFrame:
    """Monthly seasonal series with a trend and noise (long format)."""
    rng = np.random.default_rng(0)
    ds = pd.date_range("2000-01-01", periods=length, freq="MS")
    t = np.arange(length)
    frames = [
        pd.DataFrame({"series": f"s{i}", "date": ds,
                      "value": 10 + i + 0.05 * t + np.sin(2 * np.pi * t / 12) + 0.1 * rng.standard_normal(length)})
        for i in range(n_series)
    ]
    return pd.concat(frames, ignore_index=True)


def tiny_csv(directory: Path, **kwargs) -> Path:
    path = Path(directory) / "tiny.csv"
    tiny_frame(**kwargs).to_csv(path, index=False)
    return path


def csv_data(path: Path) -> list[str]:
    """Overrides that point data=csv at ``tiny.csv``."""
    return ["data=csv", f"data.path={path}", "data.id_col=series", "data.time_col=date", "data.target_col=value",
            "data.season_length=12"]


def tiny_model(backbone_class: str | None) -> list[str]:
    return [f"++model.backbone.{k}={v}" for k, v in TINY_BACKBONES.get(backbone_class or "", {}).items()]


def run_cli(args: list[str], cwd: Path, timeout: float = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    """``python -m ssmcast.cli <args>`` in ``cwd`` (no MLFLOW_TRACKING_URI from the caller's shell)."""
    full_env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "HYDRA_FULL_ERROR")}
    full_env.update({"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "OMP_NUM_THREADS": "1"})
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "ssmcast.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=full_env)


def run_dir(args: list[str], directory: Path) -> list[str]:
    """Hydra flags: outputs into ``directory``, nothing else written."""
    return [*args, f"hydra.run.dir={directory}"]
