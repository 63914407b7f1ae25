"""S4/S4D speed: kernel + FFT convolution time against L, and recurrent step latency against history.

    python benchmarks/bench_s4.py            # L = 1k, 4k, 16k, 64k; step latency after 1k and 64k steps
    python benchmarks/bench_s4.py --quick    # smoke run: short lengths, few steps

Prints the machine, a table of median times, the fitted log-log slope of time against L (about 1 for
O(L log L)), and the per-step latency of ``S4.step`` after a short and a long history (equal within noise
for an O(1) recurrence). Timings on a shared machine are noisy.
"""

from __future__ import annotations

import argparse
import math
import platform
import statistics
import time

import numpy as np
import torch

from ssmcast.backbones.s4 import S4
from ssmcast.ops.conv import fft_conv


def machine() -> str:
    parts = [platform.platform(), platform.processor() or platform.machine(), f"torch {torch.__version__}"]
    parts.append(f"threads {torch.get_num_threads()}")
    if torch.cuda.is_available():
        parts.append(f"cuda {torch.cuda.get_device_name()}")
    return ", ".join(parts)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def median_time(fn, device: torch.device, repeats: int) -> float:
    fn()  # warm-up
    sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_kernel_conv(mode: str, lengths, batch: int, H: int, N: int, device, repeats: int) -> dict[str, list[float]]:
    """Median seconds of the kernel, the FFT convolution, both, and the kernel forward + backward (train)."""
    out = {"kernel": [], "conv": [], "total": [], "kernel train": []}
    for L in lengths:
        torch.manual_seed(0)
        init = "legs" if mode == "dplr" else "inv"
        layer = S4(H, d_state=N, mode=mode, init=init, l_max=L if mode == "dplr" else None).to(device).eval()
        u = torch.randn(batch, H, L, device=device)
        with torch.no_grad():
            K = layer.kernel(L)  # (1, H, L)
        D = layer.D.detach()  # (1, H)

        def kernel(layer=layer, L=L):
            with torch.no_grad():
                return layer.kernel(L)

        def conv(u=u, K=K, D=D):
            return fft_conv(u[:, None], K, D)  # (batch, 1, H, L)

        def total(layer=layer, u=u, L=L):
            with torch.no_grad():
                return fft_conv(u[:, None], layer.kernel(L), layer.D)

        def train(layer=layer, L=L):
            layer.kernel(L).square().sum().backward()

        for name, fn in (("kernel", kernel), ("conv", conv), ("total", total), ("kernel train", train)):
            out[name].append(median_time(fn, device, repeats))
    return out


def bench_step(mode: str, histories, batch: int, H: int, N: int, device, measured: int, rounds: int) -> list[float]:
    """Seconds per ``step`` after each history length, measured side by side: the states after each history
    are built first, then timed in alternating rounds from copies of them (median over rounds)."""
    torch.manual_seed(0)
    layer = S4(H, d_state=N, mode=mode, init="legs").to(device).eval()
    x = torch.randn(batch, H, device=device)
    states, state, done = [], layer.initial_state(batch), 0
    with torch.no_grad():
        for history in histories:
            while done < history:
                _, state = layer.step(x, state)
                done += 1
            states.append(state.clone())
        times = [[] for _ in histories]
        for _ in range(rounds):
            for i, start_state in enumerate(states):
                state = start_state.clone()
                sync(device)
                start = time.perf_counter()
                for _ in range(measured):
                    _, state = layer.step(x, state)
                sync(device)
                times[i].append((time.perf_counter() - start) / measured)
    return [statistics.median(t) for t in times]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="short smoke run")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--H", type=int, default=64)
    parser.add_argument("--N", type=int, default=64)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if args.quick:
        lengths, histories, measured, rounds, repeats = [256, 1024, 4096], [256, 2048], 50, 3, 2
    else:
        lengths, histories, measured, rounds, repeats = [1024, 4096, 16384, 65536], [1024, 65536], 200, 7, args.repeats
    modes = ("dplr", "diag")

    print(f"machine: {machine()}")
    print(f"batch={args.batch} H={args.H} N={args.N} device={device} (shared machine: timings are noisy)")
    print()
    results = {mode: bench_kernel_conv(mode, lengths, args.batch, args.H, args.N, device, repeats) for mode in modes}
    columns = list(results["dplr"])
    print("median seconds")
    print(f"{'L':>8} " + " ".join(f"{mode + ' ' + col:>18}" for mode in modes for col in columns))
    for i, L in enumerate(lengths):
        print(f"{L:>8} " + " ".join(f"{results[mode][col][i]:>18.4f}" for mode in modes for col in columns))
    for mode in modes:
        slopes = {col: np.polyfit(np.log(lengths), np.log(results[mode][col]), 1)[0] for col in columns}
        cells = ", ".join(f"{col} {slope:.2f}" for col, slope in slopes.items())
        print(f"{mode}: log-log slope of time vs L: {cells} (1 = linear; L log L is slightly above)")
    print()
    print(f"step latency per new observation (median of {rounds} alternating rounds of {measured} steps)")
    for mode in modes:
        latency = bench_step(mode, histories, args.batch, args.H, args.N, device, measured, rounds)
        cells = ", ".join(f"after {h} steps: {t * 1e6:.1f} us" for h, t in zip(histories, latency))
        print(f"{mode}: {cells}; ratio long/short = {latency[-1] / latency[0]:.2f}")
    if any(math.isnan(t) for r in results.values() for col in r.values() for t in col):
        raise SystemExit("NaN timing")


if __name__ == "__main__":
    main()
