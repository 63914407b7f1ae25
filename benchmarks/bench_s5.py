"""S5: the parallel ``s5_scan`` against the slow reference, its scaling in L, and step latency.

1. ``s5_scan`` against a plain Python loop over time (the tests' reference: ``x = Lambda_bar x + B_bar u_k``,
   ``y_k = 2 Re(C x)``), batch 8, ``H = P = 64`` (``P`` complex states), L = 4096: forward, and forward +
   backward, with each backend that runs here (the torch reference's chunked scan; the fused kernel, numba on the
   CPU and Triton on CUDA), measured side by side in one run (target: >= 20x); also the two dense projections
   alone, which every backend computes the same way.
2. ``s5_scan`` time for L = 1k .. 64k (batch 1 by default) and the slope of log(time) against log(L)
   (1.0 = linear).
3. ``S5.step`` latency per new observation after 1k and after 64k observations of history (absorbed in
   parallel with ``S5.scan``): the state is ``(B, P')`` whatever the history, so both should be equal.

Timings are the median (and min) of repeats, wall clock; on a machine shared with other jobs they are
noisy: the load average is printed beside them.

    python benchmarks/bench_s5.py --quick               # smoke run, seconds
    python benchmarks/bench_s5.py --threads 1 --chunk 32
    python benchmarks/bench_s5.py --device cuda
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import time

import numpy as np
import torch

from ssmcast.backbones.s5 import S5
from ssmcast.ops import backends
from ssmcast.ops.s5 import discretize, s5_scan


def loop_scan(Lambda_bar, B_bar, C_tilde, u):
    """The slow reference: one Python iteration per time step."""
    batch, L, _ = u.shape
    x = torch.zeros(batch, Lambda_bar.shape[0], dtype=Lambda_bar.dtype, device=u.device)
    ys = []
    for k in range(L):
        x = Lambda_bar * x + u[:, k].to(B_bar.dtype) @ B_bar.T
        ys.append(2 * (x @ C_tilde.T).real)
    return torch.stack(ys, 1)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timeit(fn, device, repeats: int, warmup: int = 1) -> tuple[float, float, float]:
    """(median wall, min wall, median process CPU time) seconds of ``repeats`` calls after ``warmup``.

    The process CPU time (all threads) is less sensitive than wall time to other jobs on a shared CPU."""
    for _ in range(warmup):
        fn()
    sync(device)
    walls, cpus = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        sync(device)
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return statistics.median(walls), min(walls), statistics.median(cpus)


def system(P: int, H: int, device, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    Lambda = torch.complex(torch.full((P,), -0.5), torch.randn(P, generator=g) * 10)
    dt = torch.exp(torch.rand(P, generator=g) * math.log(100) + math.log(1e-3))
    B = torch.complex(*torch.randn(2, P, H, generator=g)) / math.sqrt(H)
    C = torch.complex(*torch.randn(2, H, P, generator=g)) / math.sqrt(P)
    Lambda_bar, B_bar = discretize(Lambda, B, dt)
    return Lambda_bar.to(device), B_bar.to(device), C.to(device)


def machine(device: torch.device) -> str:
    parts = [platform.platform(), platform.processor() or platform.machine(), f"torch {torch.__version__}",
             f"threads={torch.get_num_threads()}", f"cpus={os.cpu_count()}"]
    if device.type == "cuda":
        parts.append(torch.cuda.get_device_name(device))
    return ", ".join(parts)


def load() -> str:
    try:
        one, five, fifteen = os.getloadavg()
        return f"load avg {one:.1f} {five:.1f} {fifteen:.1f}"
    except OSError:
        return "load avg n/a"


def scan_backends(device) -> list[str]:
    fused = "triton" if device.type == "cuda" else "numba"
    return ["torch"] + [fused] * backends.available(fused, device)


def bench_vs_loop(args, device) -> None:
    L = 1024 if args.quick else 4096
    batch, H, P = 8, 64, 64
    Lambda_bar, B_bar, C = system(P, H, device)
    u = torch.randn(batch, L, H, device=device)
    names = scan_backends(device)
    print(f"\n[1] s5_scan vs Python loop: batch={batch} L={L} H={H} P={P} chunk={args.chunk}, backends {names}  "
          f"({load()})")
    with torch.no_grad():
        ref = loop_scan(Lambda_bar, B_bar, C, u)
        scale = ref[:1].abs().max().item()
        for name in names:
            err = s5_scan(Lambda_bar, B_bar, C, u, chunk_size=args.chunk, backend=name) - ref
            print(f"    {name}: max |fast - loop| = {err.abs().max().item():.2e} (output scale {scale:.1f})")

    def fwd(name):
        def run():
            with torch.no_grad():
                s5_scan(Lambda_bar, B_bar, C, u, chunk_size=args.chunk, backend=name)
        return run

    def slow_fwd():
        with torch.no_grad():
            loop_scan(Lambda_bar, B_bar, C, u)

    leaves = [t.clone().requires_grad_() for t in (Lambda_bar, B_bar, C, u)]

    def fb(name):
        return lambda: s5_scan(*leaves, chunk_size=args.chunk, backend=name).square().mean().backward()

    def slow_fb():
        loop_scan(*leaves).square().mean().backward()

    W = torch.randn(H, 2 * P, device=device)
    x = torch.randn(batch, L, 2 * P, device=device)

    def projections():
        with torch.no_grad():
            u @ W
            x @ W.T

    r = 3 if args.quick else 7
    t_proj, _, _ = timeit(projections, device, r)
    print(f"    the two dense projections alone (u @ W_in, x @ W_out): {t_proj * 1e3:.2f} ms")
    for label, make, slow, slow_repeats in (("forward", fwd, slow_fwd, 1 if args.quick else 3),
                                            ("forward+backward", fb, slow_fb, 1)):  # fmt: skip
        t_slow, t_slow_min, c_slow = timeit(slow, device, slow_repeats, warmup=0)
        for name in names:
            t_fast, t_fast_min, c_fast = timeit(make(name), device, r)
            print(f"    {label:17s} {name:6s} {t_fast * 1e3:8.2f} ms (min {t_fast_min * 1e3:.2f})   "
                  f"loop {t_slow * 1e3:9.1f} ms   speed-up x{t_slow / t_fast:.1f} "
                  f"(of mins x{t_slow_min / t_fast_min:.1f})")
            if device.type == "cpu":
                print(f"    {'':24s} process CPU time: {c_fast * 1e3:8.2f} ms   loop {c_slow * 1e3:9.1f} ms   "
                      f"ratio x{c_slow / c_fast:.1f}")


def bench_scaling(args, device) -> None:
    lengths = [1024, 2048, 4096, 8192] if args.quick else [1024, 2048, 4096, 8192, 16384, 32768, 65536]
    H, P, batch = 64, 64, args.scaling_batch
    Lambda_bar, B_bar, C = system(P, H, device)
    name = scan_backends(device)[-1]
    print(f"\n[2] s5_scan forward ({name}), L scaling: batch={batch} H={H} P={P} chunk={args.chunk}  ({load()})")
    times = []
    for L in lengths:
        u = torch.randn(batch, L, H, device=device)
        with torch.no_grad():
            t, t_min, _ = timeit(lambda u=u: s5_scan(Lambda_bar, B_bar, C, u, chunk_size=args.chunk, backend=name),
                                 device, 3 if args.quick else 5)
        times.append(t)
        print(f"    L={L:6d}  {t * 1e3:9.2f} ms (min {t_min * 1e3:.2f})   {t / L * 1e6:7.3f} us/step")
    slope = np.polyfit(np.log(lengths), np.log(times), 1)[0]
    print(f"    fitted slope d log(time) / d log(L) = {slope:.2f}  (1.00 = linear)")


def bench_step(args, device) -> None:
    histories = [1024, 8192] if args.quick else [1024, 65536]
    batch, H = 1, 64
    torch.manual_seed(0)
    layer = S5(H, d_state=128, blocks=8).to(device).eval()
    print(f"\n[3] S5.step latency per new observation: batch={batch} d_model={H} d_state=128 "
          f"({layer.n_states} complex states)  ({load()})")
    n_steps = 50 if args.quick else 300
    results = []
    for history in histories:
        with torch.no_grad():
            x = torch.randn(batch, history + n_steps, H, device=device)
            _, state = layer.scan(x[:, :history])

            def run(state=state, x=x, history=history):
                s = state
                for k in range(n_steps):
                    _, s = layer.step(x[:, history + k], s)

            t, t_min, _ = timeit(run, device, 3 if args.quick else 5)
        results.append(t / n_steps)
        print(f"    after {history:6d} observations: {t / n_steps * 1e6:8.1f} us/step "
              f"(min {t_min / n_steps * 1e6:.1f})")
    print(f"    ratio (longest / shortest history) = {results[-1] / results[0]:.2f}  (1.00 = O(1) per step)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short smoke run")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU)")
    parser.add_argument("--chunk", type=int, default=None, help="s5_scan chunk_size (default: the op's)")
    parser.add_argument("--scaling-batch", type=int, default=1)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"machine: {machine(device)}")
    print("note: wall-clock timings; on a shared machine they are noisy (see the load averages).")
    bench_vs_loop(args, device)
    bench_scaling(args, device)
    bench_step(args, device)


if __name__ == "__main__":
    main()
