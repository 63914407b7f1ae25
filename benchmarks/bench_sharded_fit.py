"""Peak memory of a sharded fit (issue #36): one process fitting a partitioned Parquet dataset against each rank of a
DDP fit over the same dataset, where each rank reads only its own files.

    python benchmarks/bench_sharded_fit.py --n 100000 --length 200 --files 8 --ranks 2

Writes a synthetic hourly panel (``--n`` series of ``--length`` points, ``--files`` Parquet files of whole series)
to a temporary folder, then fits a tiny S4D (``revin=False``, 5 batches, no validation) from the folder's path in
one process and, launched by ``torchrun --standalone --nproc-per-node R`` (gloo, CPU), in ``R`` processes. Each
process resets its resident-set high-water mark just before ``fit`` (Linux ``/proc/self/clear_refs``) and prints
its RSS before ``fit`` (interpreter, torch, lightning), the peak during ``fit`` and the rows it read, as one JSON
line; the script prints them as a table with the panel's own memory (``df.memory_usage(deep=True)`` of the whole
panel as ``fit`` reads it) and the machine's load.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path


def _status_mb(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1]) / 1024
    raise KeyError(field)


def write_panel(directory: Path, n: int, length: int, files: int) -> float:
    """The panel's files; returns its memory as a pandas frame (MB), as ``fit`` reads it."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    directory.mkdir(parents=True, exist_ok=True)
    edges = np.linspace(0, n, files + 1).astype(int)
    size = 0
    t = np.arange(length)
    stamps = pd.date_range("2021-01-01", periods=length, freq="h")
    for k, (a, b) in enumerate(zip(edges[:-1], edges[1:])):
        ids = np.repeat(np.array([f"s{i:07d}" for i in range(a, b)], dtype=object), length)
        phase = np.repeat(rng.uniform(0, 6.3, b - a), length)
        y = 10 + np.sin(2 * np.pi * np.tile(t, b - a) / 24 + phase) + 0.1 * rng.normal(size=(b - a) * length)
        frame = pd.DataFrame({"unique_id": pd.array(ids, dtype="str"), "ds": np.tile(stamps, b - a), "y": y})
        frame.to_parquet(directory / f"part{k:03d}.parquet", index=False)
        size += frame.memory_usage(deep=True).sum()
    return size / 2**20


def worker(path: str) -> None:
    """One process's fit from the dataset's path (a rank under torchrun); prints its figures as JSON."""
    import lightning  # noqa: F401 - imported before the clock and the memory mark, as bench_scale does

    from ssmcast import S4DForecaster
    from ssmcast.backbones.s4 import S4DConfig

    ddp = {"strategy": "ddp", "devices": int(os.environ["WORLD_SIZE"])} if "WORLD_SIZE" in os.environ else {}
    est = S4DForecaster(input_size=48, horizon=24, batch_size=64, max_epochs=1, val_size=0, verbose=False,
                        revin=False, accelerator="cpu", backbone=S4DConfig(d_model=8, n_layers=1, d_state=4),
                        trainer_kwargs={"limit_train_batches": 5, **ddp})
    before = _status_mb("VmRSS")
    open("/proc/self/clear_refs", "w").write("5")
    est.fit(path)
    print(json.dumps({"rank": est.data_shard_["rank"], "world": est.data_shard_["world_size"],
                      "rows": est.data_shard_["rows"], "files": len(est.data_shard_["files"]),
                      "rss_before_mb": round(before), "peak_mb": round(_status_mb("VmHWM")),
                      "fit_s": round(est.fit_time_s_, 2)}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--length", type=int, default=200)
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker)
        return
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    with tempfile.TemporaryDirectory(prefix="ssmcast-shards-") as tmp:
        panel_mb = write_panel(Path(tmp) / "ds", args.n, args.length, args.files)
        load = [os.getloadavg()[0]]
        runs = {"one process": [sys.executable, __file__, "--worker", f"{tmp}/ds"],
                f"{args.ranks} ranks": [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                        "--nproc-per-node", str(args.ranks), __file__, "--worker", f"{tmp}/ds"]}
        rows = []
        for name, cmd in runs.items():
            done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
            lines = [json.loads(x) for x in re.findall(r"\{[^{}]*\}", done.stdout)]  # (the ranks' lines may interleave)
            if done.returncode or not lines:
                sys.exit(f"{name} failed:\n{done.stderr[-3000:]}")
            rows += [{"run": name, **line} for line in sorted(lines, key=lambda r: r["rank"])]
            load.append(os.getloadavg()[0])
    print(f"panel: {args.n} series x {args.length} points in {args.files} files, {panel_mb:.0f} MB as a frame; "
          f"{os.cpu_count()} CPUs, load average {min(load):.1f}-{max(load):.1f}")
    print(f"{'run':>12} {'rank':>4} {'files':>5} {'rows':>10} {'RSS before':>10} {'peak':>8} {'peak-before':>11} "
          f"{'fit s':>6}")
    for r in rows:
        print(f"{r['run']:>12} {r['rank']:>4} {r['files']:>5} {r['rows']:>10} {r['rss_before_mb']:>8} MB "
              f"{r['peak_mb']:>5} MB {r['peak_mb'] - r['rss_before_mb']:>8} MB {r['fit_s']:>6}")


if __name__ == "__main__":
    main()
