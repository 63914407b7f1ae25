"""Forecaster training throughput and streaming latency.

* Training throughput (windows/s) and peak memory of every backbone on ETTh1 (7 channels as independent
  series, standard-scaled on the training rows), input 96 / 336 / 720, horizon 96, batch 32 (``--batch``), the
  forecasters' defaults (backbone config, RevIN, linear skip, learning rate); on the CPU each measurement runs
  in a fresh subprocess so peak memory is its own, on CUDA in this process with the allocator's peak reset.
  The CUDA steps run under bf16 autocast, as ``precision="auto"`` trains there.
* ``--compare``: the training step as it was before the fused kernels ("old": the plain PyTorch scans and
  convolution, ``backend="torch"``, and AdamW's per-tensor loop) against today's defaults ("new": ``backend="auto"``
  and the fused AdamW), side by side in one run: the two alternate, ``--rounds`` times each, medians reported.
* ``--compile-time``: the first call of every numba kernel in a fresh cache directory (compilation), and the first
  call in a new process once they are cached (loading).
* ``update()`` latency per new observation against ``predict(df=full_history, context="full")`` after 1k
  and 10k steps of history.
* A panel of many series (``--panel N``, default 500, history 200): the first full-context forecast (every
  series' state from its history), then ``update()`` with one new row of every series in one call (it
  returns the forecast of every series).

    python benchmarks/bench_forecasters.py [--quick] [--device cpu|cuda] [--backbones mamba s4 ...]
    python benchmarks/bench_forecasters.py --device cuda --steps 50 --no-streaming
    python benchmarks/bench_forecasters.py --panel-only --backbones s5 mamba
    python benchmarks/bench_forecasters.py --compare --inputs 96 --no-streaming --panel 0
    python benchmarks/bench_forecasters.py --device cuda --batch 256 --compare --no-streaming --panel 0
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time

BACKBONES = {
    "s4": "S4Forecaster", "s4d": "S4DForecaster", "s5": "S5Forecaster",
    "mamba": "MambaForecaster", "mamba2": "Mamba2Forecaster", "jamba": "JambaForecaster",
}


def machine(device: str) -> str:
    import torch

    name = torch.cuda.get_device_name() if device == "cuda" else platform.processor() or platform.machine()
    return f"{name}, torch {torch.__version__}, {torch.get_num_threads()} threads"


def throughput(name: str, input_size: int, steps: int, device: str, backend: str | None = None,
               batch_size: int = 32, fused: bool = True) -> dict:
    import numpy as np
    import torch

    import ssmcast
    from ssmcast.datasets import load_dataset
    from ssmcast.training.losses import ForecastLoss
    from ssmcast.training.module import ForecastNet

    est = getattr(ssmcast, BACKBONES[name])(input_size=input_size, horizon=96)
    df = load_dataset("etth1")
    train = df.groupby("unique_id").head(8640)
    wide = train.pivot(index="ds", columns="unique_id", values="y")
    values = ((wide - wide.mean()) / wide.std()).to_numpy(np.float32)  # (8640, 7)
    config = est.backbone_config()
    if backend is not None and hasattr(config, "backend"):
        config.backend = backend
    net = ForecastNet(config.build(), config.d_model, 1, 1, 96, 1, revin=est.revin,
                      skip_window=input_size if est.linear_skip else None).to(device)
    loss = ForecastLoss("mse")
    opt = torch.optim.AdamW(net.parameters(), lr=est.learning_rate, fused=fused)
    rng = np.random.default_rng(0)
    series = torch.as_tensor(values.T.copy(), device=device)  # (7, T)

    def batch(n=batch_size):
        s = rng.integers(0, 7, n)
        t = rng.integers(0, values.shape[0] - input_size - 96, n)
        idx = torch.as_tensor(t[:, None] + np.arange(input_size + 96), device=device)
        w = series[torch.as_tensor(s, device=device)[:, None], idx]  # (n, L + h)
        return w[:, :input_size, None], w[:, input_size:, None]

    def train_step():
        x, y = batch()
        with torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda"):
            out = net(x)
        value = loss(out, y)
        opt.zero_grad()
        value.backward()
        opt.step()

    for _ in range(2):
        train_step()
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start, cpu_start = time.perf_counter(), time.process_time()
    for _ in range(steps):
        train_step()
    if device == "cuda":
        torch.cuda.synchronize()
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    peak = (torch.cuda.max_memory_allocated() if device == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    n_params = sum(p.numel() for p in net.parameters())
    return {"windows_per_s": steps * batch_size / elapsed, "peak_mb": peak / 2**20, "params": n_params,
            "windows_per_cpu_s": steps * batch_size / cpu}


def compile_times() -> dict:
    """Seconds of the first call of each numba kernel (float32 forward and backward) in this process."""
    import torch

    from ssmcast.ops.conv import causal_conv1d
    from ssmcast.ops.s5 import s5_scan
    from ssmcast.ops.selective_scan import selective_scan

    out = {}
    u = torch.randn(2, 8, 20, requires_grad=True)
    A, B = -torch.rand(8, 4), torch.randn(2, 4, 20)
    start = time.perf_counter()
    y = selective_scan(u, u.detach(), A, B, B, D=torch.ones(8), z=u.detach(), delta_softplus=True, backend="numba")
    y.sum().backward()
    out["selective_scan"] = time.perf_counter() - start
    start = time.perf_counter()
    causal_conv1d(u, torch.randn(8, 4), torch.randn(8), "silu", backend="numba").sum().backward()
    out["causal_conv1d"] = time.perf_counter() - start
    lam = torch.exp(torch.complex(-torch.rand(4), torch.randn(4)))
    Bb, Cc = torch.randn(4, 3, dtype=torch.complex64), torch.randn(3, 4, dtype=torch.complex64)
    x = torch.randn(2, 10, 3, requires_grad=True)
    start = time.perf_counter()
    s5_scan(lam, Bb, Cc, x, backend="numba").sum().backward()
    out["s5_scan"] = time.perf_counter() - start
    return out


def streaming(name: str, history: int, n_updates: int) -> dict:
    import numpy as np
    import pandas as pd

    import ssmcast

    rng = np.random.default_rng(0)
    total = history + n_updates
    ds = pd.date_range("2020-01-01", periods=total, freq="h")
    y = np.sin(np.arange(total) * 2 * np.pi / 24) + 0.1 * rng.normal(size=total)
    frame = pd.DataFrame({"unique_id": "s", "ds": ds, "y": y})
    est = getattr(ssmcast, BACKBONES[name])(input_size=96, horizon=24, max_epochs=1, verbose=False, val_size=0,
                                            revin=False, trainer_kwargs={"max_steps": 2})
    est.fit(frame.iloc[:history])
    start = time.perf_counter()
    est.predict(context="full")  # one-off: the recurrent state over the training history
    warm = time.perf_counter() - start
    start = time.perf_counter()
    for i in range(n_updates):
        est.update(frame.iloc[history + i : history + i + 1])
    per_update = (time.perf_counter() - start) / n_updates
    start = time.perf_counter()
    est.predict(df=frame, context="full")
    full = time.perf_counter() - start
    return {"update_ms": per_update * 1e3, "predict_full_history_ms": full * 1e3, "state_warmup_ms": warm * 1e3}


def streaming_panel(name: str, n_series: int, n_updates: int, history: int = 200) -> dict:
    import numpy as np
    import pandas as pd

    import ssmcast

    rng = np.random.default_rng(0)
    total = history + n_updates
    ds = pd.date_range("2020-01-01", periods=total, freq="h")
    t = np.arange(total)
    y = np.sin(2 * np.pi * t / 24 + np.arange(n_series)[:, None]) + 0.1 * rng.normal(size=(n_series, total))
    frame = pd.concat([pd.DataFrame({"unique_id": f"s{i:04d}", "ds": ds, "y": y[i]}) for i in range(n_series)],
                      ignore_index=True)
    step = frame.groupby("unique_id").cumcount()
    est = getattr(ssmcast, BACKBONES[name])(input_size=96, horizon=24, max_epochs=1, verbose=False, val_size=0,
                                            revin=False, trainer_kwargs={"max_steps": 2})
    est.fit(frame[step < history])
    start = time.perf_counter()
    est.predict(context="full")
    warm = time.perf_counter() - start
    rows = [frame[step == history + i] for i in range(n_updates)]
    start = time.perf_counter()
    for new in rows:
        est.update(new)
    return {"warmup_s": warm, "update_ms": (time.perf_counter() - start) / n_updates * 1e3}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--backbones", nargs="*", default=list(BACKBONES))
    parser.add_argument("--inputs", nargs="*", type=int, default=[96, 336, 720])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--no-streaming", action="store_true", help="training throughput only")
    parser.add_argument("--panel", type=int, default=500, help="series in the panel streaming case (0: skip it)")
    parser.add_argument("--panel-only", action="store_true", help="only the panel streaming case")
    parser.add_argument("--batch", type=int, default=32, help="training batch size")
    parser.add_argument("--compare", action="store_true", help="old (torch scans, AdamW loop) against new")
    parser.add_argument("--rounds", type=int, default=3, help="--compare: alternations of old and new")
    parser.add_argument("--compile-time", action="store_true", help="numba compile and cache-load times only")
    parser.add_argument("--_child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._child:
        kind, name, a, b, *rest = json.loads(args._child)
        backend, fused = rest if rest else (None, True)
        runs = {"train": lambda: throughput(name, a, b, args.device, backend, args.batch, fused),
                "stream": lambda: streaming(name, a, b), "panel": lambda: streaming_panel(name, a, b),
                "compile": compile_times}
        result = runs[kind]()
        print(json.dumps(result))
        return
    inputs = [96] if args.quick else args.inputs
    steps = 2 if args.quick else args.steps
    histories = [200] if args.quick else [1000, 10000]
    print(f"machine: {machine(args.device)}; device {args.device}")

    def child(spec, env=None):
        if args.device == "cuda" and spec[0] == "train":  # the allocator's peak is reset per case: no subprocess
            name, a, b, *rest = spec[1:]
            backend, fused = rest or (None, True)
            return throughput(name, a, b, args.device, backend, args.batch, fused)
        out = subprocess.run([sys.executable, __file__, "--device", args.device, "--batch", str(args.batch),
                              "--_child", json.dumps(spec)], capture_output=True, text=True,
                             env={**os.environ, "PYTHONWARNINGS": "ignore", **(env or {})})  # fmt: skip
        if out.returncode:
            return {"error": out.stderr.strip().splitlines()[-1] if out.stderr else "failed"}
        return json.loads(out.stdout.strip().splitlines()[-1])

    if args.compile_time:
        return compile_report(child)
    if args.panel_only:
        return panel(args, child)
    if args.compare:
        return compare(args, child, inputs, steps)
    print(f"\ntraining throughput, ETTh1, horizon 96, batch {args.batch} (windows/s, peak MB)")
    print(f"{'backbone':8s} " + " ".join(f"{'L=' + str(L):>22s}" for L in inputs) + "   params")
    for name in args.backbones:
        cells, params = [], ""
        for L in inputs:
            r = child(["train", name, L, steps])
            if "error" in r:
                cells.append(f"{'error':>22s}")
                print(f"  {name} L={L}: {r['error']}", file=sys.stderr)
                continue
            cells.append(f"{r['windows_per_s']:10.1f} /{r['peak_mb']:8.0f} MB")
            params = f"{r['params']:,}"
        print(f"{name:8s} " + " ".join(cells) + f"   {params}")

    if args.no_streaming:
        return
    n_updates = 5 if args.quick else 20
    print("\nstreaming: update() per new observation vs predict(df=full_history, context='full')")
    for name in args.backbones:
        for hist in histories:
            r = child(["stream", name, hist, n_updates])
            if "error" in r:
                print(f"{name:8s} history {hist:6d}: error {r['error']}")
                continue
            print(f"{name:8s} history {hist:6d}: update {r['update_ms']:8.2f} ms/obs   "
                  f"predict(full history) {r['predict_full_history_ms']:10.1f} ms   "
                  f"ratio {r['predict_full_history_ms'] / r['update_ms']:8.0f}x")
    panel(args, child)


def compare(args, child, inputs, steps) -> None:
    import statistics

    print(f"\ntraining throughput, ETTh1, horizon 96, batch {args.batch}: old (backend='torch', AdamW's per-tensor "
          f"loop) against new (backend='auto', fused AdamW), alternating, {args.rounds} rounds, medians "
          "(windows/s; peak MB)")
    for name in args.backbones:
        for L in inputs:
            runs = {"old": [], "new": []}
            for _ in range(args.rounds):
                for label, backend, fused in (("old", "torch", False), ("new", "auto", True)):
                    r = child(["train", name, L, steps, backend, fused])
                    if "error" in r:
                        print(f"  {name} L={L} {label}: {r['error']}", file=sys.stderr)
                        continue
                    runs[label].append(r)
            if not runs["old"] or not runs["new"]:
                continue
            old, new = (statistics.median(r["windows_per_s"] for r in runs[k]) for k in ("old", "new"))
            mem_old, mem_new = (statistics.median(r["peak_mb"] for r in runs[k]) for k in ("old", "new"))
            print(f"{name:8s} L={L:4d}   old {old:8.1f} ({mem_old:6.0f} MB)   new {new:8.1f} ({mem_new:6.0f} MB)   "
                  f"new / old {new / old:5.2f}x", flush=True)


def compile_report(child) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as cache:
        cold = child(["compile", "", 0, 0], env={"NUMBA_CACHE_DIR": cache})
        warm = child(["compile", "", 0, 0], env={"NUMBA_CACHE_DIR": cache})
    print("\nnumba kernels, first call (float32 forward + backward): compile in a fresh cache / load from the cache")
    for name in cold:
        print(f"  {name:15s} {cold[name]:6.1f} s / {warm[name]:5.2f} s")


def panel(args, child) -> None:
    if not args.panel:
        return
    n_updates = 2 if args.quick else 5
    print(f"\nstreaming a panel of {args.panel} series (history 200): first full-context forecast, then update() "
          "with one new row of every series")
    for name in args.backbones:
        r = child(["panel", name, args.panel, n_updates])
        if "error" in r:
            print(f"{name:8s} error {r['error']}")
            continue
        print(f"{name:8s} states over the histories {r['warmup_s']:7.2f} s   update() of all series "
              f"{r['update_ms']:8.1f} ms ({r['update_ms'] * 1e3 / args.panel:6.0f} us a series)")


if __name__ == "__main__":
    main()
